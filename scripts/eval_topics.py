"""Topic quality: how well ``nlp.topics.fit_topics`` recovers gold labels, and whether it is language-neutral.

Used by ``scripts/evaluate.py`` (``evaluate_topics``); run alone for the tuning grid on the train splits:

    .venv/bin/python -m scripts.eval_topics --grid
    .venv/bin/python -m scripts.eval_topics --engines   # the hand-written stages against BERTopic (topics extra)

- **BANKING77** (intent labels) and **MAMS ACSA** (aspect categories): NMI and ARI against the labels,
  (a) over every sentence with the outliers counted as one cluster and (b) over the non-outliers only;
  the outlier share before and after outlier reduction, the number of topics and the fit time; and a
  k-means reference with k = the number of gold labels (no outliers). Every MAMS sentence carries 2-5
  categories, so its label is the *first listed* category; ``purity`` (the share of a topic's sentences
  whose gold set holds the topic's most common category) uses every category.
- **Cross-language** (service/demo/texts.jsonl: en/ar/fa/th texts labelled with touchpoints and
  polarity): topics with language centering on and off; NMI against the first touchpoint and against
  the language, mean language purity of the topics, and the co-assignment rate of same-label pairs
  across languages versus within a language.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

from nlp.datasets import data_root
from nlp.topics import OUTLIER, FloatArray, TopicConfig, create_stage, fit_topics, stages, unit_rows
from scripts.train_heads import EmbeddingCache

DEMO_TEXTS = Path(__file__).resolve().parent.parent / "service" / "demo" / "texts.jsonl"
TOPIC_DATASETS = ("en_banking77_intents", "en_mams_acsa")
TOPIC_PUBLISHED = {
    "en_banking77_intents": (
        "no published figure on this split (dev is carved from the original train split); for reference, "
        "on the official test split DeepAligned (Zhang et al., AAAI 2021: BERT fine-tuned on 75 % known "
        "intents, 10 % labelled, k-means) reports NMI 79.56, ARI 53.64"
    ),
    "en_mams_acsa": "no published figure on this split",
}
GRID_CAP = 5000
UMAP = {"name": "topics.reduce.umap.v1", "dimensions": 5, "neighbours": 15}
PCA = {"name": "topics.reduce.pca.v1", "dimensions": 10}


@dataclass(frozen=True)
class Labelled:
    """Texts of one split with a single gold label each (and every gold label, for purity)."""

    name: str
    cache_label: str
    texts: list[str]
    labels: list[str]
    gold_sets: list[frozenset[str]]
    languages: list[str]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_labelled(dataset: str, split: str, *, cap: int | None = None, seed: int = 0) -> Labelled:
    """A split of BANKING77 or MAMS ACSA (at most ``cap`` rows, a seeded sample)."""
    rows = read_jsonl(data_root() / dataset / f"{split}.jsonl")
    label = f"{dataset}-{split}"
    if cap is not None and len(rows) > cap:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=cap, replace=False))
        rows = [rows[i] for i in keep.tolist()]
        label = f"{label}{cap}"
    if dataset == "en_mams_acsa":
        labels = [r["aspect_categories"][0]["category"] for r in rows]
        gold = [frozenset(a["category"] for a in r["aspect_categories"]) for r in rows]
    else:
        labels = [r["label"] for r in rows]
        gold = [frozenset([r["label"]]) for r in rows]
    return Labelled(
        name=dataset,
        cache_label=label,
        texts=[r["text"] for r in rows],
        labels=labels,
        gold_sets=gold,
        languages=[r.get("lang") or "en" for r in rows],
    )


# ------------------------------------------------------------------------------------------- scoring


def clustering_scores(truth: Sequence[str], predicted: np.ndarray) -> dict[str, float]:
    """NMI / ARI / AMI over all sentences (outliers one cluster) and over the non-outliers only.

    NMI is not corrected for chance and rises with the number of clusters; AMI is (0 = chance).
    """
    truth_array = np.asarray(truth)
    core = predicted != OUTLIER
    scores = {
        "nmi_all": float(normalized_mutual_info_score(truth_array, predicted)),
        "ari_all": float(adjusted_rand_score(truth_array, predicted)),
        "ami_all": float(adjusted_mutual_info_score(truth_array, predicted)),
        "nmi_core": float("nan"),
        "ari_core": float("nan"),
    }
    if core.sum() > 1:
        scores["nmi_core"] = float(normalized_mutual_info_score(truth_array[core], predicted[core]))
        scores["ari_core"] = float(adjusted_rand_score(truth_array[core], predicted[core]))
    return scores


def purity(gold_sets: Sequence[frozenset[str]], predicted: np.ndarray) -> float:
    """Share of non-outliers whose gold labels include their topic's most common gold label."""
    hits = total = 0
    for topic in sorted(set(predicted.tolist()) - {OUTLIER}):
        members = np.flatnonzero(predicted == topic).tolist()
        counts = Counter(label for i in members for label in gold_sets[i])
        top = counts.most_common(1)[0][0]
        hits += sum(top in gold_sets[i] for i in members)
        total += len(members)
    return hits / total if total else float("nan")


def fit_scored(embeddings: FloatArray, data: Labelled, config: TopicConfig) -> dict[str, Any]:
    """Fit topics with ``config`` and score them against the labels."""
    global _last_reduce_seconds  # noqa: PLW0603
    _last_reduce_seconds = 0.0
    started = time.perf_counter()
    fit = fit_topics(embeddings, data.texts, data.languages, config=config)
    seconds = time.perf_counter() - started + _last_reduce_seconds
    n = len(data.texts)
    return {
        "n": n,
        "topics": len(fit.topics),
        "clusters_before_merge": fit.clusters_before_merge,
        "outlier_share_before": fit.outliers_before_reduction / n,
        "outlier_share_after": fit.outliers / n,
        "fit_seconds": round(seconds, 2),
        **clustering_scores(data.labels, fit.labels),
        "purity": purity(data.gold_sets, fit.labels),
        "keyword_label_hits": keyword_label_hits(data.labels, fit.labels, [t.keywords for t in fit.topics]),
    }


def keyword_label_hits(
    truth: Sequence[str], predicted: np.ndarray, keywords: Sequence[Sequence[tuple[str, float]]]
) -> float:
    """Share of topic members whose topic's top 10 keywords name its majority gold label.

    A keyword names a label when it shares its first 4 letters with a word of the label ("card_arrival":
    card, arrival; so "cards" and "arrived" both count). A rough check that the keywords say what a topic is.
    """
    hits = total = 0
    for topic, words in enumerate(keywords):
        members = np.flatnonzero(predicted == topic).tolist()
        if not members:
            continue
        label = Counter(truth[i] for i in members).most_common(1)[0][0]
        stems = {w[:4] for w in label.lower().replace("-", "_").split("_") if len(w) > 2}
        hits += len(members) * any(word[:4] in stems for word, _ in words[:10])
        total += len(members)
    return hits / total if total else float("nan")


def kmeans_reference(embeddings: FloatArray, data: Labelled, k: int, seed: int = 0) -> dict[str, Any]:
    """Plain k-means (k = gold labels) on the unit embeddings: the usual SBERT + k-means reference."""
    started = time.perf_counter()
    predicted = np.asarray(
        KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit_rows(embeddings)), np.int64
    )
    return {
        "n": len(data.texts),
        "topics": k,
        "outlier_share_before": 0.0,
        "outlier_share_after": 0.0,
        "fit_seconds": round(time.perf_counter() - started, 2),
        **clustering_scores(data.labels, predicted),
        "purity": purity(data.gold_sets, predicted),
    }


def evaluate_dataset(
    cache: EmbeddingCache, dataset: str, configs: Mapping[str, TopicConfig], *, split: str = "dev"
) -> dict[str, Any]:
    """Every config, k-means on the full embeddings, and the pipeline with k-means (k = gold labels)."""
    data = load_labelled(dataset, split)
    embeddings = cache.embed(data.cache_label, data.texts)
    k = len(set(data.labels))
    runs = {name: fit_scored(embeddings, data, config) for name, config in configs.items()}
    runs["kmeans_k_gold"] = kmeans_reference(embeddings, data, k)
    pipeline_kmeans = replace(TopicConfig(), cluster={"name": "topics.cluster.kmeans.v1", "topics": k})
    runs["pipeline_kmeans_k_gold"] = fit_scored(embeddings, data, pipeline_kmeans)
    return {
        "split": split,
        "n": len(data.texts),
        "gold_labels": k,
        "label": "first listed aspect category (every sentence has 2-5)"
        if dataset == "en_mams_acsa"
        else "intent",
        "published": TOPIC_PUBLISHED[dataset],
        "runs": runs,
    }


# ------------------------------------------------------------------------------------ cross-language


def pair_rates(topics: np.ndarray, keys: Sequence[str], languages: Sequence[str]) -> dict[str, float | int]:
    """Share of text pairs put in one topic (outliers never count as together), by label and language."""
    key_ids = np.unique(np.asarray(keys), return_inverse=True)[1]
    language_ids = np.unique(np.asarray(languages), return_inverse=True)[1]
    i, j = np.triu_indices(len(topics), k=1)
    together = (topics[i] == topics[j]) & (topics[i] != OUTLIER)
    same_label = key_ids[i] == key_ids[j]
    same_language = language_ids[i] == language_ids[j]
    groups = {
        "same_label_cross_language": same_label & ~same_language,
        "same_label_same_language": same_label & same_language,
        "different_label_cross_language": ~same_label & ~same_language,
        "different_label_same_language": ~same_label & same_language,
    }
    result: dict[str, float | int] = {}
    for name, mask in groups.items():
        result[name] = float(together[mask].mean()) if mask.any() else float("nan")
        result[f"{name}_pairs"] = int(mask.sum())
    return result


def cross_language(cache: EmbeddingCache, configs: Mapping[str, TopicConfig]) -> dict[str, Any]:
    """Each config with language centering on and off, on the multilingual demo texts."""
    rows = read_jsonl(DEMO_TEXTS)
    texts = [r["text"] for r in rows]
    languages = [r["language"] for r in rows]
    first_touchpoint = [r["touchpoints"][0] for r in rows]
    keys = ["|".join(sorted(r["touchpoints"])) + "/" + r["polarity"] for r in rows]
    embeddings = cache.embed("demo-texts", texts)
    results: dict[str, Any] = {
        "n": len(rows),
        "languages": dict(Counter(languages).most_common()),
        "label": "touchpoint = first listed; pairs: same (touchpoint set, polarity); global_centering = "
        "the centering aligner told every text is one language (subtracts the overall mean only)",
        "runs": {},
    }
    touchpoints = len(set(first_touchpoint))
    configs = {
        **configs,
        f"pipeline_kmeans_k{touchpoints}": replace(
            TopicConfig(), cluster={"name": "topics.cluster.kmeans.v1", "topics": touchpoints}
        ),
    }
    arms = {
        # name: (aligner, the languages the aligner sees)
        "language_standardise": ("topics.align.language_standardise.v1", languages),
        "language_centering": ("topics.align.language_centering.v1", languages),
        "global_centering": ("topics.align.language_centering.v1", ["und"] * len(rows)),
        "none": ("topics.align.none.v1", languages),
    }
    for name, config in configs.items():
        for arm, (align, seen_languages) in arms.items():
            started = time.perf_counter()
            fit = fit_topics(embeddings, texts, seen_languages, config=replace(config, align={"name": align}))
            seconds = time.perf_counter() - started
            counts = [
                Counter(languages[i] for i in np.flatnonzero(fit.labels == t.index)) for t in fit.topics
            ]
            topic_purity = [max(c.values()) / sum(c.values()) for c in counts]
            results["runs"][f"{name}/{arm}"] = {
                "topics": len(fit.topics),
                "outlier_share_before": fit.outliers_before_reduction / len(rows),
                "outlier_share_after": fit.outliers / len(rows),
                "fit_seconds": round(seconds, 2),
                "nmi_touchpoint": float(normalized_mutual_info_score(first_touchpoint, fit.labels)),
                "nmi_touchpoint_core": clustering_scores(first_touchpoint, fit.labels)["nmi_core"],
                "nmi_language": float(normalized_mutual_info_score(languages, fit.labels)),
                "language_purity": float(np.mean(topic_purity)) if topic_purity else float("nan"),
                "single_language_topics": sum(p == 1.0 for p in topic_purity),
                **pair_rates(fit.labels, keys, languages),
            }
    return results


# ---------------------------------------------------------------------------------------------- grid

_reductions: dict[tuple[str, str], tuple[FloatArray, float]] = {}
_last_reduce_seconds = 0.0


@stages.register("topics.reduce.memo_eval.v1")
class MemoReducer:
    """Evaluation only: runs ``inner`` once per input, so a grid over clustering settings reuses it."""

    def __init__(self, *, inner: Mapping[str, Any]) -> None:
        self.inner = dict(inner)

    def fit_transform(self, embeddings: FloatArray) -> FloatArray:
        global _last_reduce_seconds  # noqa: PLW0603
        key = (json.dumps(self.inner, sort_keys=True), hashlib.sha1(embeddings.tobytes()).hexdigest())
        if key not in _reductions:
            started = time.perf_counter()
            reduced = create_stage(self.inner).fit_transform(embeddings)
            _reductions[key] = (reduced, time.perf_counter() - started)
        reduced, seconds = _reductions[key]
        _last_reduce_seconds = seconds  # counted in the fit time as if it had been computed again
        return reduced


def grid_configs() -> dict[str, TopicConfig]:
    """The current default, and reducer × min_cluster_size × min_samples × selection."""
    configs = {"default": TopicConfig()}
    for reducer_name, reducer in (("pca10", PCA), ("umap5", UMAP)):
        for size in (5, 8, 15):
            for samples in (1, 3):
                for selection in ("eom", "leaf"):
                    configs[f"{reducer_name}/mcs{size}/ms{samples}/{selection}"] = replace(
                        TopicConfig(),
                        reduce=reducer,
                        cluster={
                            "name": "topics.cluster.hdbscan.v1",
                            "min_cluster_size": size,
                            "min_samples": samples,
                            "selection": selection,
                        },
                    )
    return configs


def memoised(config: TopicConfig) -> TopicConfig:
    """The config with its reducer wrapped in the memo."""
    return replace(config, reduce={"name": "topics.reduce.memo_eval.v1", "inner": dict(config.reduce)})


def tuning_grid(
    cache: EmbeddingCache, *, split: str = "train", cap: int = GRID_CAP, max_outliers: float = 0.3
) -> dict[str, Any]:
    """The grid on each data set's ``split`` (≤ ``cap`` sentences); best = mean NMI (all), outliers ≤ max."""
    configs = grid_configs()
    rows: dict[str, dict[str, Any]] = {name: {} for name in configs}
    sizes = {}
    for dataset in TOPIC_DATASETS:
        data = load_labelled(dataset, split, cap=cap)
        sizes[dataset] = len(data.texts)
        embeddings = cache.embed(data.cache_label, data.texts)
        for name, config in configs.items():
            rows[name][dataset] = fit_scored(embeddings, data, memoised(config))
            print(f"  grid {dataset} {name}: NMI {rows[name][dataset]['nmi_all']:.3f}", flush=True)
    for figures in rows.values():
        figures["mean_nmi_all"] = float(np.mean([figures[d]["nmi_all"] for d in TOPIC_DATASETS]))
        figures["mean_ami_all"] = float(np.mean([figures[d]["ami_all"] for d in TOPIC_DATASETS]))
        figures["max_outlier_share_after"] = max(figures[d]["outlier_share_after"] for d in TOPIC_DATASETS)
    eligible = [n for n, f in rows.items() if f["max_outlier_share_after"] <= max_outliers]
    best = max(eligible, key=lambda n: rows[n]["mean_nmi_all"]) if eligible else None
    best_ami = max(eligible, key=lambda n: rows[n]["mean_ami_all"]) if eligible else None
    return {
        "split": split,
        "n": sizes,
        "criterion": f"mean NMI (all sentences) over the data sets, outlier share after reduction ≤ {max_outliers}",
        "best": best,
        "best_config": configs[best].to_document() if best else None,
        "best_by_ami": best_ami,
        "best_by_ami_config": configs[best_ami].to_document() if best_ami else None,
        "rows": rows,
    }


def configs_from_grid(grid: Mapping[str, Any]) -> dict[str, TopicConfig]:
    """The grid's best configs (by NMI, by AMI; one entry when they agree) as TopicConfigs."""
    found: dict[str, TopicConfig] = {}
    for label, key in (("tuned_nmi", "best"), ("tuned_ami", "best_by_ami")):
        document = grid.get(f"{key}_config")
        if document and document not in [c.to_document() for c in found.values()]:
            found[f"{label} {grid[key]}"] = TopicConfig.from_document(document)
    return found


# --------------------------------------------------------------------------------------- engines


def engine_configs(encoder: Mapping[str, Any] | None) -> dict[str, TopicConfig]:
    """The hand-written stages and BERTopic (topics.engine.bertopic.v1) on one UMAP + HDBSCAN setting.

    Each BERTopic arm swaps one step for BERTopic's own: merging (none; ``nr_topics="auto"``), outlier
    reduction (none; every outlier with a positive cosine, BERTopic's default threshold 0; c-TF-IDF), and
    the keywords (KeyBERTInspired, + MaximalMarginalRelevance, with cxmine's encoder for the words).
    """
    base = TopicConfig()
    bertopic = {"name": "topics.engine.bertopic.v1"}
    arms: dict[str, dict[str, Any]] = {
        "bertopic (cxmine merge rule, reduce_outliers embeddings at cxmine's threshold, c-TF-IDF)": {},
        "bertopic, no merge": {"merge": "none"},
        'bertopic, nr_topics="auto"': {"merge": "auto"},
        "bertopic, no outlier reduction": {"outliers": "none"},
        "bertopic, reduce_outliers embeddings threshold 0": {"outlier_threshold": 0.0},
        "bertopic, reduce_outliers c-tf-idf threshold 0": {"outliers": "c-tf-idf"},
    }
    if encoder is not None:
        arms["bertopic, KeyBERTInspired"] = {"representation": "keybert", "encoder": dict(encoder)}
        arms["bertopic, KeyBERTInspired + MMR"] = {"representation": "keybert+mmr", "encoder": dict(encoder)}
    configs = {"cxmine (hand-written stages)": base}
    for name, options in arms.items():
        configs[name] = replace(base, engine={**bertopic, **options})
    return configs


def compare_engines(
    cache: EmbeddingCache, encoder: Mapping[str, Any] | None, *, split: str = "dev"
) -> dict[str, Any]:
    """Every engine config on BANKING77 and MAMS ``split``; the UMAP reduction is computed once per data set.

    The first two configs are fitted once untimed first, so no run pays for imports or first calls.
    """
    configs = engine_configs(encoder)
    results: dict[str, Any] = {"split": split, "datasets": {}}
    for dataset in TOPIC_DATASETS:
        data = load_labelled(dataset, split)
        embeddings = cache.embed(data.cache_label, data.texts)
        if dataset == TOPIC_DATASETS[0]:  # untimed: imports (bertopic brings torch), stop lists, numba's JIT
            for config in list(configs.values())[:2]:
                fit_scored(embeddings, data, memoised(config))
            _reductions.clear()  # the timed runs measure a warm UMAP
        runs = {}
        for name, config in configs.items():
            runs[name] = fit_scored(embeddings, data, memoised(config))
            print(f"  {dataset} {name}: NMI {runs[name]['nmi_all']:.3f}", flush=True)
        results["datasets"][dataset] = {
            "n": len(data.texts),
            "gold_labels": len(set(data.labels)),
            "runs": runs,
        }
    cleaned: dict[str, Any] = no_nan(results)
    return cleaned


def engines_markdown(results: Mapping[str, Any]) -> str:
    """The engine comparison as one markdown table."""
    lines = [
        "| data set | engine | topics | NMI all | ARI all | NMI non-outl. | outliers before → after | "
        "keywords name the label | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, result in results["datasets"].items():
        for name, r in result["runs"].items():
            lines.append(
                f"| {dataset} ({results['split']}, n = {r['n']}) | {name} | {r['topics']} | "
                f"**{_pct(r['nmi_all'])}** | {_pct(r['ari_all'])} | {_pct(r['nmi_core'])} | "
                f"{_pct(r['outlier_share_before'])} → {_pct(r['outlier_share_after'])} | "
                f"{_pct(r['keyword_label_hits'])} | {r['fit_seconds']} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ together


def evaluate_topics(
    cache: EmbeddingCache,
    *,
    grid: bool = False,
    previous_grid: Mapping[str, Any] | None = None,
    candidates: Mapping[str, TopicConfig] | None = None,
) -> dict[str, Any]:
    """Topic quality on the dev splits and the demo texts (the default config, candidates, tuned).

    ``grid`` runs the tuning grid; ``previous_grid`` (an earlier run's ``grid``) is reused instead.
    """
    import nlp.topics

    source = Path(nlp.topics.__file__).read_bytes()
    results: dict[str, Any] = {
        "default_config": TopicConfig().to_document(),
        "nlp_topics_sha256": hashlib.sha256(source).hexdigest()[:16],
    }
    configs = {"default": TopicConfig(), **(candidates or {})}
    if grid:
        results["grid"] = tuning_grid(cache)
    elif previous_grid:
        results["grid"] = {**previous_grid, "reused": True}
    if "grid" in results:
        configs |= configs_from_grid(results["grid"])
    results["datasets"] = {dataset: evaluate_dataset(cache, dataset, configs) for dataset in TOPIC_DATASETS}
    results["cross_language"] = cross_language(cache, configs)
    cleaned: dict[str, Any] = no_nan(results)
    return cleaned


def no_nan(value: Any) -> Any:
    """``value`` with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def _pct(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"  # None / NaN → dash


def topics_markdown(results: Mapping[str, Any]) -> str:
    """The topic figures as markdown tables (NMI, ARI, shares in percent)."""
    lines = [
        "| data set | run | n | topics | NMI all | ARI all | AMI all | NMI non-outl. | ARI non-outl. | purity | "
        "outliers before → after | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, result in results["datasets"].items():
        for name, r in result["runs"].items():
            lines.append(
                f"| {dataset} ({result['split']}) | {name} | {r['n']} | {r['topics']} | **{_pct(r['nmi_all'])}** | "
                f"{_pct(r['ari_all'])} | {_pct(r['ami_all'])} | {_pct(r['nmi_core'])} | {_pct(r['ari_core'])} | {_pct(r['purity'])} | "
                f"{_pct(r['outlier_share_before'])} → {_pct(r['outlier_share_after'])} | {r['fit_seconds']} |"
            )
    lines.append("")
    for dataset, result in results["datasets"].items():
        lines.append(f"- {dataset}: label = {result['label']}; published: {result['published']}")
    cross = results["cross_language"]
    lines += [
        "",
        f"Cross-language ({cross['n']} demo texts, {cross['languages']}; {cross['label']}):",
        "",
        "| run | topics | outliers after | NMI touchpoint | NMI language | language purity | "
        "same label, cross-lang together | same label, same lang together | different label, cross-lang together |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in cross["runs"].items():
        lines.append(
            f"| {name} | {r['topics']} | {_pct(r['outlier_share_after'])} | {_pct(r['nmi_touchpoint'])} | "
            f"{_pct(r['nmi_language'])} | {_pct(r['language_purity'])} | "
            f"**{_pct(r['same_label_cross_language'])}** | {_pct(r['same_label_same_language'])} | "
            f"{_pct(r['different_label_cross_language'])} |"
        )
    if "grid" in results:
        lines += ["", grid_markdown(results["grid"])]
    return "\n".join(lines)


def grid_markdown(grid: Mapping[str, Any]) -> str:
    """The tuning grid as a markdown table."""
    lines = [
        f"Tuning grid ({grid['split']} splits, n = {grid['n']}; best by {grid['criterion']}): **{grid['best']}**; "
        f"best by mean AMI under the same outlier cap: **{grid['best_by_ami']}**",
        "",
        "| config | mean NMI | mean AMI | "
        + " | ".join(
            f"{d} NMI / NMI non-outl. / ARI / AMI / topics / outliers after / s" for d in TOPIC_DATASETS
        )
        + " |",
        "|---|---|---|" + "---|" * len(TOPIC_DATASETS),
    ]
    ranked = sorted(grid["rows"].items(), key=lambda kv: -kv[1]["mean_nmi_all"])
    for name, f in ranked:
        cells = [
            f"{_pct(f[d]['nmi_all'])} / {_pct(f[d]['nmi_core'])} / {_pct(f[d]['ari_all'])} / {_pct(f[d]['ami_all'])} / "
            f"{f[d]['topics']} / "
            f"{_pct(f[d]['outlier_share_after'])} / {f[d]['fit_seconds']}"
            for d in TOPIC_DATASETS
        ]
        lines.append(
            f"| {name} | {_pct(f['mean_nmi_all'])} | {_pct(f['mean_ami_all'])} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    from nlp.encoders import EncodeSentences
    from nlp.registry import registry
    from scripts.train_heads import encoder_step

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="onnx:var/models/e5-small-onnx")
    parser.add_argument("--cache", type=Path, default=Path("var/cache/embeddings"))
    parser.add_argument("--grid", action="store_true", help="only the tuning grid (train splits)")
    parser.add_argument(
        "--engines",
        action="store_true",
        help="only the hand-written stages against BERTopic (pip install 'cxmine[topics]') on the dev splits",
    )
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    step = encoder_step(args.encoder)
    encoder = registry.create(step.pop("name"), **step)
    assert isinstance(encoder, EncodeSentences)
    cache = EmbeddingCache(encoder=encoder, folder=args.cache)
    if args.engines:
        result: dict[str, Any] = compare_engines(cache, encoder_step(args.encoder))
        print(engines_markdown(result))
    elif args.grid:
        result = no_nan(tuning_grid(cache))
        print(grid_markdown(result))
    else:
        result = evaluate_topics(cache)
        print(topics_markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
