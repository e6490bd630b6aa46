"""The torch side of the heads: the module, its training loops, calibration and threshold tuning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from nlp.heads import Head, HeadKind

FloatArray = NDArray[np.float32]


class MLPHead(nn.Module):
    """Standardise the embedding, one GELU hidden layer, dropout, one output per label."""

    input_mean: torch.Tensor
    input_scale: torch.Tensor

    def __init__(
        self, *, input_mean: FloatArray, input_scale: FloatArray, hidden: int, outputs: int, dropout: float
    ) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.from_numpy(input_mean.astype(np.float32)))
        self.register_buffer("input_scale", torch.from_numpy(input_scale.astype(np.float32)))
        self.fc1 = nn.Linear(input_mean.shape[0], hidden)
        self.act = nn.GELU(approximate="tanh")
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) * self.input_scale
        return self.fc2(self.drop(self.act(self.fc1(x))))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one head's training run."""

    hidden: int = 1024
    dropout: float = 0.5
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 5e-4
    weight_decay: float = 1e-3
    patience: int = 4
    seed: int = 13


def _standardiser(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    mean = x.mean(axis=0).astype(np.float32)
    scale = (1.0 / (x.std(axis=0) + 1e-6)).astype(np.float32)
    return mean, scale


def train_head(
    *,
    kind: HeadKind,
    x_train: FloatArray,
    y_train: NDArray[np.int64] | FloatArray,
    x_dev: FloatArray,
    y_dev: NDArray[np.int64] | FloatArray,
    outputs: int,
    sample_weight: FloatArray | None = None,
    config: TrainConfig = TrainConfig(),
    log: bool = True,
) -> MLPHead:
    """Train with AdamW and early stopping on dev loss; return the best module (in eval mode)."""
    module = _new_module(x_train, outputs=outputs, config=config)
    xt, xd = torch.from_numpy(x_train), torch.from_numpy(x_dev)
    if kind == "softmax":
        yt, yd = (
            torch.from_numpy(np.asarray(y_train, np.int64)),
            torch.from_numpy(np.asarray(y_dev, np.int64)),
        )
    else:
        yt, yd = (
            torch.from_numpy(np.asarray(y_train, np.float32)),
            torch.from_numpy(np.asarray(y_dev, np.float32)),
        )
    wt = (
        torch.from_numpy(sample_weight.astype(np.float32))
        if sample_weight is not None
        else torch.ones(len(xt))
    )

    def loss_of(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if kind == "softmax":
            return nn.functional.cross_entropy(logits, target, reduction="none")
        return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        weights = wt[index]
        return (loss_of(module(xt[index]), yt[index]) * weights).sum() / weights.sum()

    return _early_stopping(
        module,
        rows=len(xt),
        batch_loss=batch_loss,
        held_out_loss=lambda: float(loss_of(module(xd), yd).mean()),
        held_out="dev loss",
        config=config,
        log=log,
    )


def _new_module(x_train: FloatArray, *, outputs: int, config: TrainConfig) -> MLPHead:
    """A fresh head standardising inputs like ``x_train``, after seeding torch with ``config.seed``."""
    torch.manual_seed(config.seed)
    mean, scale = _standardiser(x_train)
    return MLPHead(
        input_mean=mean, input_scale=scale, hidden=config.hidden, outputs=outputs, dropout=config.dropout
    )


def _early_stopping(
    module: MLPHead,
    *,
    rows: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    held_out_loss: Callable[[], float],
    held_out: str,
    config: TrainConfig,
    log: bool,
) -> MLPHead:
    """AdamW over shuffled mini-batches of ``rows`` training rows; the epoch with the lowest held-out loss
    wins (stopping after ``config.patience`` epochs without improvement). Returns the module in eval mode."""
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    best_loss, best_state, stale = float("inf"), None, 0
    for epoch in range(config.epochs):
        module.train()
        order = torch.randperm(rows, generator=generator)
        for start in range(0, rows, config.batch_size):
            optimiser.zero_grad()
            loss = batch_loss(order[start : start + config.batch_size])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        module.eval()
        with torch.no_grad():
            loss_now = held_out_loss()
        if log:
            print(f"  epoch {epoch + 1:2d}  {held_out} {loss_now:.4f}", flush=True)
        if loss_now < best_loss - 1e-4:
            best_loss, stale = loss_now, 0
            best_state = {k: v.clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return module


def module_logits(module: MLPHead, x: FloatArray) -> FloatArray:
    """The module's logits for embeddings ``x``."""
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]


def fit_temperature(logits: FloatArray, target: NDArray[np.int64] | FloatArray, *, kind: HeadKind) -> float:
    """The temperature minimising dev negative log-likelihood (calibration, Guo et al. 2017)."""
    log_t = torch.zeros(1, requires_grad=True)
    logits_t = torch.from_numpy(logits)
    target_t = torch.from_numpy(np.asarray(target, np.int64 if kind == "softmax" else np.float32))
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        scaled = logits_t / log_t.exp()
        if kind == "softmax":
            loss = nn.functional.cross_entropy(scaled, target_t)
        else:
            loss = nn.functional.binary_cross_entropy_with_logits(scaled, target_t)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return float(log_t.detach().exp().clamp(0.25, 8.0))


def tune_thresholds(probabilities: FloatArray, target: FloatArray, *, floor: float = 0.05) -> FloatArray:
    """Per label, the decision threshold maximising that label's F1 on dev data."""
    candidates = np.linspace(floor, 0.95, 91, dtype=np.float32)
    thresholds = np.full(probabilities.shape[1], 0.5, dtype=np.float32)
    for label in range(probabilities.shape[1]):
        truth = target[:, label] > 0.5
        if not truth.any():
            continue
        predicted = probabilities[:, label][None, :] >= candidates[:, None]
        tp = (predicted & truth).sum(axis=1)
        f1 = 2 * tp / (predicted.sum(axis=1) + truth.sum() + 1e-9)
        thresholds[label] = candidates[int(np.argmax(f1))]
    return thresholds


def to_head(
    module: MLPHead,
    *,
    name: str,
    version: str,
    kind: HeadKind,
    labels: Sequence[str],
    encoder: str,
    temperature: float,
    thresholds: FloatArray | None = None,
) -> Head:
    """The numpy head equivalent to ``module``."""
    state = {k: v.detach().numpy().astype(np.float32) for k, v in module.state_dict().items()}
    return Head(
        name=name,
        version=version,
        kind=kind,
        labels=tuple(labels),
        encoder=encoder,
        temperature=temperature,
        tensors=state,
        thresholds=thresholds,
    )


@dataclass(frozen=True)
class ServedTexts:
    """Texts as the scorer sees them: sentence embeddings, sentence weights, and each text's sentence range."""

    sentences: FloatArray
    weights: FloatArray
    bounds: NDArray[np.int64]
    """Text ``i``'s sentences are rows ``bounds[i]:bounds[i + 1]``."""

    def __len__(self) -> int:
        return len(self.bounds) - 1


def _served_log_probabilities(
    module: MLPHead, texts: ServedTexts, rows: NDArray[np.int64], temperature: float = 1.0
) -> torch.Tensor:
    """log of the length-weighted mean of each text's sentence probabilities (SentimentScorer's review)."""
    starts, ends = texts.bounds[rows], texts.bounds[rows + 1]
    counts = ends - starts
    sentence_rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
    owner = torch.from_numpy(np.repeat(np.arange(len(rows)), counts))
    weights = torch.from_numpy(texts.weights[sentence_rows])
    probabilities = torch.softmax(
        module(torch.from_numpy(texts.sentences[sentence_rows])) / temperature, dim=1
    )
    total = torch.zeros(len(rows), probabilities.shape[1]).index_add_(
        0, owner, probabilities * weights[:, None]
    )
    mass = torch.zeros(len(rows)).index_add_(0, owner, weights)
    return torch.log((total / mass[:, None]).clamp_min(1e-7))


def train_served_head(
    *,
    train: ServedTexts,
    y_train: NDArray[np.int64],
    stop: ServedTexts,
    y_stop: NDArray[np.int64],
    outputs: int,
    sample_weight: FloatArray | None = None,
    config: TrainConfig = TrainConfig(),
    log: bool = True,
) -> MLPHead:
    """Train a softmax head on what is served: the loss is on each text's review probabilities, the
    length-weighted mean of its sentences' probabilities, not on one embedding of the whole text.

    Early stopping on the review loss of ``stop`` texts.
    """
    module = _new_module(train.sentences, outputs=outputs, config=config)
    yt, ys = torch.from_numpy(np.asarray(y_train, np.int64)), torch.from_numpy(np.asarray(y_stop, np.int64))
    wt = torch.from_numpy(
        (sample_weight if sample_weight is not None else np.ones(len(train))).astype(np.float32)
    )
    every_stop = np.arange(len(stop))

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        rows = index.numpy()
        weights = wt[index]
        log_p = _served_log_probabilities(module, train, rows)
        return (nn.functional.nll_loss(log_p, yt[index], reduction="none") * weights).sum() / weights.sum()

    return _early_stopping(
        module,
        rows=len(train),
        batch_loss=batch_loss,
        held_out_loss=lambda: float(
            nn.functional.nll_loss(_served_log_probabilities(module, stop, every_stop), ys)
        ),
        held_out="held-out review loss",
        config=config,
        log=log,
    )


def fit_served_temperature(module: MLPHead, texts: ServedTexts, target: NDArray[np.int64]) -> float:
    """The temperature (on sentence logits) minimising the review NLL of ``texts``: a grid search."""
    grid = np.exp(np.linspace(np.log(0.4), np.log(6.0), 55))
    rows = np.arange(len(texts))
    y = torch.from_numpy(np.asarray(target, np.int64))
    with torch.no_grad():
        losses = [
            float(nn.functional.nll_loss(_served_log_probabilities(module, texts, rows, float(t)), y))
            for t in grid
        ]
    return float(grid[int(np.argmin(losses))])
