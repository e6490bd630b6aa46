"""The training data loaders: every label of every data set maps, and the counts match the data's README."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nlp.datasets import (
    CX_EMOTION_ROLLUP,
    GOEMOTIONS_LABELS,
    SENTIMENT_DATASETS,
    SENTIMENT_LABELS,
    DatasetLabelError,
    data_root,
    load_emotions,
    load_sentiment,
)

needs_data = pytest.mark.skipif(not data_root().exists(), reason="../shared/data is not beside the checkout")


def test_rollup_covers_every_goemotions_label_once() -> None:
    members = [label for group in CX_EMOTION_ROLLUP.values() for label in group]
    assert sorted(members) == sorted(GOEMOTIONS_LABELS)
    assert len(CX_EMOTION_ROLLUP) == 11


@needs_data
@pytest.mark.parametrize("name", sorted(SENTIMENT_DATASETS))
def test_every_sentiment_label_maps(name: str) -> None:
    dataset = SENTIMENT_DATASETS[name]
    for split in ("train", "dev"):
        examples = load_sentiment(name, split)
        if split == "train" and not dataset.has_train:
            assert examples == []
            continue
        assert examples
        labels = {SENTIMENT_LABELS[example.label] for example in examples}
        assert labels == set(dataset.label_map.values())
        assert {example.language for example in examples} == set(dataset.languages)


@needs_data
def test_counts_match_the_data_readme() -> None:
    xlmt = load_sentiment("xlmt_umsab_multilingual_sentiment", "train")
    assert len(xlmt) == 14_686
    assert Counter(example.language for example in xlmt)["ar"] == 1_839
    thai = Counter(SENTIMENT_LABELS[e.label] for e in load_sentiment("wisesight_sentiment_th", "dev"))
    assert thai == {"neutral": 1_284 + 42, "negative": 637, "positive": 429}
    goemotions = load_emotions("en_goemotions", "train")
    assert len(goemotions) == 38_673
    assert sum(len(example.labels) > 1 for example in goemotions) == 6_343
    tweeteval = Counter(GOEMOTIONS_LABELS[e.labels[0]] for e in load_emotions("en_tweeteval_emotion", "dev"))
    assert tweeteval == {"anger": 160, "joy": 97, "sadness": 89, "optimism": 28}


def test_unknown_labels_and_names_fail_loudly(tmp_path: Path) -> None:
    folder = tmp_path / "en_sst2"
    folder.mkdir()
    (folder / "dev.jsonl").write_text(json.dumps({"text": "meh", "label": "mixed", "lang": "en"}) + "\n")
    with pytest.raises(DatasetLabelError, match="'mixed'"):
        load_sentiment("en_sst2", "dev", root=tmp_path)
    with pytest.raises(KeyError, match="xlmt_umsab_multilingual_sentiment"):
        load_sentiment("imdb", "dev", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="CXMINE_TRAINING_DATA"):
        load_sentiment("en_sst2", "train", root=tmp_path)
