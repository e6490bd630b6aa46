"""Head training mechanics on a tiny synthetic set, and numpy inference equal to the torch module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlp.heads import Head, HeadMismatchError

torch_heads = pytest.importorskip("nlp.training.torch_heads")

RNG = np.random.default_rng(0)
CENTRES = RNG.normal(size=(3, 16)).astype(np.float32)


def _blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = RNG.integers(0, 3, size=n)
    points = CENTRES[labels] + 0.35 * RNG.normal(size=(n, 16)).astype(np.float32)
    return points.astype(np.float32), labels.astype(np.int64)


FAST = torch_heads.TrainConfig(hidden=32, epochs=15, batch_size=64, patience=3)


def test_softmax_head_learns_calibrates_and_matches_numpy(tmp_path: Path) -> None:
    x_train, y_train = _blobs(600)
    x_dev, y_dev = _blobs(200)
    module = torch_heads.train_head(
        kind="softmax",
        x_train=x_train,
        y_train=y_train,
        x_dev=x_dev,
        y_dev=y_dev,
        outputs=3,
        config=FAST,
        log=False,
    )
    logits = torch_heads.module_logits(module, x_dev)
    assert (logits.argmax(axis=1) == y_dev).mean() > 0.95
    temperature = torch_heads.fit_temperature(logits, y_dev, kind="softmax")
    assert 0.25 <= temperature <= 8.0
    head = torch_heads.to_head(
        module,
        name="sentiment.test",
        version="1",
        kind="softmax",
        labels=["a", "b", "c"],
        encoder="enc-x",
        temperature=temperature,
    )
    np.testing.assert_allclose(head.logits(x_dev), logits, rtol=1e-4, atol=1e-4)
    path = tmp_path / "head.safetensors"
    head.save(path)
    loaded = Head.load(path, expected_encoder="enc-x")
    probabilities = loaded.probabilities(x_dev)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert loaded.labels == ("a", "b", "c") and loaded.temperature == pytest.approx(temperature)
    with pytest.raises(HeadMismatchError, match="enc-x"):
        Head.load(path, expected_encoder="another-encoder")


def test_training_is_reproducible_with_a_seed() -> None:
    x_train, y_train = _blobs(300)
    x_dev, y_dev = _blobs(100)
    runs = [
        torch_heads.module_logits(
            torch_heads.train_head(
                kind="softmax",
                x_train=x_train,
                y_train=y_train,
                x_dev=x_dev,
                y_dev=y_dev,
                outputs=3,
                config=FAST,
                log=False,
            ),
            x_dev,
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_sigmoid_head_thresholds_are_tuned_per_label(tmp_path: Path) -> None:
    x_train, y_train = _blobs(600)
    x_dev, y_dev = _blobs(200)
    targets_train = np.eye(3, dtype=np.float32)[y_train]
    targets_dev = np.eye(3, dtype=np.float32)[y_dev]
    module = torch_heads.train_head(
        kind="sigmoid",
        x_train=x_train,
        y_train=targets_train,
        x_dev=x_dev,
        y_dev=targets_dev,
        outputs=3,
        config=FAST,
        log=False,
    )
    logits = torch_heads.module_logits(module, x_dev)
    probabilities = 1 / (1 + np.exp(-logits))
    thresholds = torch_heads.tune_thresholds(probabilities, targets_dev)
    assert thresholds.shape == (3,) and ((thresholds >= 0.05) & (thresholds <= 0.95)).all()
    head = torch_heads.to_head(
        module,
        name="emotion.test",
        version="1",
        kind="sigmoid",
        labels=["x", "y", "z"],
        encoder="enc",
        temperature=1.0,
        thresholds=thresholds,
    )
    head.save(tmp_path / "e.safetensors")
    loaded = Head.load(tmp_path / "e.safetensors")
    detected = loaded.detected(loaded.probabilities(x_dev))
    hits = sum(["x", "y", "z"][label] in found for label, found in zip(y_dev, detected, strict=True))
    assert hits / len(y_dev) > 0.9


def test_a_file_that_is_not_a_head_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"weights": np.zeros(3, np.float32)}, tmp_path / "x.safetensors")
    with pytest.raises(HeadMismatchError, match="not a cxmine head"):
        Head.load(tmp_path / "x.safetensors")
