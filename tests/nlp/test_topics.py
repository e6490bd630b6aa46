"""Topic stages, the fit, language centering, outlier reduction and stable ids across refits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nlp.registry import UnknownComponentError
from nlp.topics import (
    OUTLIER,
    ClassTfidf,
    MultilingualTokenizer,
    TopicConfig,
    TopicSnapshot,
    TopicSpace,
    create_stage,
    fit_topics,
    match_topics,
    unit_rows,
)

PCA_CONFIG = TopicConfig(
    reduce={"name": "topics.reduce.pca.v1", "dimensions": 5},
    cluster={"name": "topics.cluster.hdbscan.v1", "min_cluster_size": 8, "min_samples": 2},
)


def _clusters(
    centres: int,
    per_centre: int,
    *,
    languages: tuple[str, ...] = ("en",),
    spread: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Points around random directions; each language adds its own offset, as multilingual encoders do."""
    rng = np.random.default_rng(seed)
    dim = 64
    directions = unit_rows(rng.normal(size=(centres, dim)).astype(np.float32))
    offsets = {language: rng.normal(size=dim).astype(np.float32) * 0.12 for language in languages}
    rows, truth, langs = [], [], []
    for c in range(centres):
        for i in range(per_centre):
            language = languages[i % len(languages)]
            rows.append(directions[c] + offsets[language] + rng.normal(scale=spread, size=dim))
            truth.append(c)
            langs.append(language)
    return unit_rows(np.asarray(rows, dtype=np.float32)), truth, langs


def _purity(labels: np.ndarray, truth: list[int]) -> float:
    """Share of points whose topic's majority truth is their own truth."""
    total = 0
    for label in set(labels.tolist()) - {OUTLIER}:
        members = [t for t, lab in zip(truth, labels.tolist(), strict=True) if lab == label]
        total += max(members.count(t) for t in set(members))
    return total / len(truth)


def test_unknown_stage_names_list_the_known_ones() -> None:
    with pytest.raises(UnknownComponentError, match=r"topics\.cluster\.hdbscan\.v1"):
        create_stage({"name": "topics.cluster.nope.v1"})
    with pytest.raises(ValueError, match="not a reduce stage"):
        TopicConfig.from_document({"reduce": {"name": "topics.cluster.kmeans.v1"}})
    with pytest.raises(ValueError, match="unknown topic settings"):
        TopicConfig.from_document({"min_size": 3})
    with pytest.raises(ValueError, match="bad config"):
        create_stage({"name": "topics.reduce.pca.v1", "dims": 3})


@pytest.mark.parametrize(
    "aligner", ["topics.align.language_centering.v1", "topics.align.language_standardise.v1"]
)
def test_language_alignment_puts_one_theme_in_one_topic_across_languages(aligner: str) -> None:
    embeddings, truth, languages = _clusters(4, 40, languages=("en", "ar", "fa", "th"))
    texts = [f"text {i}" for i in range(len(truth))]
    unaligned = replace(PCA_CONFIG, align={"name": "topics.align.none.v1"}, cross_language_similarity=1.0)
    plain = fit_topics(embeddings, texts, languages, config=unaligned)
    rescued = fit_topics(
        embeddings, texts, languages, config=replace(unaligned, cross_language_similarity=0.25)
    )
    centred = fit_topics(embeddings, texts, languages, config=replace(PCA_CONFIG, align={"name": aligner}))
    assert len(centred.topics) == 4
    assert _purity(centred.labels, truth) > 0.95
    assert all(len(topic.languages) == 4 for topic in centred.topics)
    # Without alignment the language offset dominates: each theme splits into one topic per language...
    assert len(plain.topics) > len(centred.topics)
    assert all(len(t.languages) == 1 for t in plain.topics)
    # ...which the cross-language merge repairs: mutual nearest clusters written in different languages.
    assert len(rescued.topics) == 4
    assert _purity(rescued.labels, truth) > 0.95


def test_outliers_are_reduced_and_the_rest_counted() -> None:
    embeddings, _truth, languages = _clusters(3, 30, spread=0.08)
    rng = np.random.default_rng(1)
    noise = unit_rows(rng.normal(size=(5, embeddings.shape[1])).astype(np.float32))
    all_embeddings = np.vstack([embeddings, noise])
    texts = [f"t{i}" for i in range(len(all_embeddings))]
    fit = fit_topics(all_embeddings, texts, [*languages, *["en"] * 5], config=PCA_CONFIG)
    assert fit.outliers_before_reduction >= fit.outliers
    assert fit.outliers == int((fit.labels == OUTLIER).sum())
    assert (fit.labels[-5:] == OUTLIER).all(), "random noise must stay outside the topics"
    assert (fit.labels[:-5] != OUTLIER).mean() > 0.95


@pytest.mark.parametrize(
    "aligner",
    ["topics.align.language_centering.v1", "topics.align.language_standardise.v1", "topics.align.none.v1"],
)
def test_sample_fit_assigns_the_rest_and_the_space_round_trips(aligner: str) -> None:
    embeddings, truth, languages = _clusters(3, 60, languages=("en", "th"))
    texts = [f"t{i}" for i in range(len(truth))]
    config = replace(PCA_CONFIG, max_fit_sentences=90, align={"name": aligner})
    fit = fit_topics(embeddings, texts, languages, config=config)
    assert fit.fitted_on == 90
    assert _purity(fit.labels, truth) > 0.9
    restored = TopicSpace.from_bytes(fit.space.to_bytes())
    assert type(restored.aligner) is type(fit.space.aligner)
    labels, similarities = restored.assign(embeddings, languages)
    agree = (labels == fit.labels)[fit.labels != OUTLIER].mean()
    assert agree > 0.9
    assert similarities.shape == (len(truth),)


def test_tokenizer_handles_every_script() -> None:
    tokenize = MultilingualTokenizer()
    assert tokenize("The delivery was late, again!!! 3 days", "en") == ["delivery", "late", "days"]
    thai = tokenize("ส่งของช้ามากค่ะ รอสามวัน", "th")
    assert "ส่ง" in thai
    assert "ช้า" in thai
    assert all(" " not in word for word in thai)
    arabic = tokenize("التوصيل تأخر كثير", "ar")
    assert "توصیل" in arabic, "the definite article is stripped (and ي unified to ی)"
    persian = tokenize("سفارشم دیر رسید و پشتیبانی جواب نمی‌دهد", "fa")
    assert "نمی‌دهد" in persian or "نمیدهد" in persian, "the zero-width non-joiner keeps a word whole"
    assert "و" not in persian


def test_class_tfidf_prefers_words_specific_to_a_topic() -> None:
    keywords = ClassTfidf(top_words=3, min_count=1).keywords(
        {
            0: [["delivery", "late", "order"], ["delivery", "late"], ["order", "late"]],
            1: [["app", "crash", "order"], ["app", "crash"], ["order", "payment"]],
        }
    )
    assert [w for w, _ in keywords[0]][:2] == ["late", "delivery"]
    assert "order" not in [w for w, _ in keywords[1]][:2]


def _snapshot(key: int, members: range, centroid: np.ndarray, words: dict[str, float]) -> TopicSnapshot:
    return TopicSnapshot(key=key, centroid=centroid, vocabulary=words, members=frozenset(members))


def test_matching_continues_merges_splits_births_and_deaths() -> None:
    eye = np.eye(8, dtype=np.float32)
    previous = [
        _snapshot(10, range(0, 100), eye[0], {"late": 1.0}),
        _snapshot(11, range(100, 150), eye[1], {"rude": 1.0}),
        _snapshot(12, range(150, 200), eye[2], {"staff": 1.0}),
        _snapshot(13, range(200, 300), eye[3], {"crash": 1.0}),
        _snapshot(14, range(300, 340), eye[4], {"parking": 1.0}),
    ]
    current = [
        _snapshot(0, range(0, 110), eye[0], {"late": 1.0}),  # 10 plus new sentences: continues
        _snapshot(1, range(100, 200), eye[1], {"rude": 1.0, "staff": 1.0}),  # 11 and 12 merge
        _snapshot(2, range(200, 260), eye[3], {"crash": 1.0}),  # 13 splits in two
        _snapshot(3, range(260, 300), eye[5], {"checkout": 1.0}),
        _snapshot(4, range(400, 420), eye[6], {"loyalty": 1.0}),  # new
    ]  # 14 is gone
    matching = match_topics(previous, current)
    assert matching.kept[0] == 10
    assert matching.kept[1] in (11, 12)
    assert matching.kept[2] == 13
    events = {(e.event, e.current, e.previous) for e in matching.events}
    merged_away = 12 if matching.kept[1] == 11 else 11
    assert ("merged", 1, merged_away) in events
    assert ("split", 3, 13) in events
    assert ("born", 4, None) in events
    assert ("died", None, 14) in events


def test_matching_without_shared_sentences_uses_centroid_and_vocabulary() -> None:
    eye = np.eye(4, dtype=np.float32)
    previous = [_snapshot(7, range(0, 10), eye[0], {"late": 1.0, "delivery": 0.5})]
    similar = [_snapshot(0, range(100, 110), eye[0], {"late": 0.8, "courier": 0.3})]
    assert match_topics(previous, similar).kept == {0: 7}
    other_words = [_snapshot(0, range(100, 110), eye[0], {"refund": 1.0})]
    assert match_topics(previous, other_words).kept == {}
