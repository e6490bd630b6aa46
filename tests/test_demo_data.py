"""The multilingual demo data set: shape, determinism, coverage and the planted stories."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest

from service.demo import (
    DEMO_SOURCE_PREFIX,
    LANGUAGES,
    TOUCHPOINTS,
    DemoText,
    demo_items,
    demo_texts,
    story_dates,
)
from service.ingest.schemas import FeedbackItemIn

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)

# Rating values that agree with a text's polarity (the domain's mapping; mixed sits in the middle).
AGREES: dict[str, dict[str, tuple[float, float]]] = {
    "stars": {"negative": (1, 2), "neutral": (3, 3), "mixed": (2, 4), "positive": (4, 5)},
    "nps": {"negative": (0, 6), "neutral": (7, 8), "mixed": (5, 8), "positive": (9, 10)},
    "csat": {"negative": (1, 2), "neutral": (3, 3), "mixed": (2, 4), "positive": (4, 5)},
    "ces": {"negative": (1, 3), "neutral": (4, 5), "mixed": (3, 5), "positive": (5, 7)},
}


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return demo_items(now=NOW)


@pytest.fixture(scope="module")
def texts() -> dict[str, DemoText]:
    return {text.text: text for text in demo_texts()}


def text_of(item: dict[str, Any], texts: dict[str, DemoText]) -> DemoText:
    return texts[item["text"]]


def created(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["created_at"])


def test_texts_file_is_well_formed() -> None:
    lines = (files("service.demo") / "texts.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) >= 260
    assert all(set(row) == {"key", "language", "touchpoints", "polarity", "text"} for row in rows)
    assert len({row["key"] for row in rows}) == len(rows)
    assert len({row["text"] for row in rows}) == len(rows)
    per_language = Counter(row["language"] for row in rows)
    assert per_language["en"] >= 110
    assert min(per_language[lang] for lang in ("ar", "fa", "th")) >= 50
    mixed = sum(row["polarity"] == "mixed" for row in rows) / len(rows)
    assert 0.12 <= mixed <= 0.2


def test_every_touchpoint_in_every_language(texts: dict[str, DemoText]) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    polarities: dict[str, set[str]] = defaultdict(set)
    for text in texts.values():
        for touchpoint in text.touchpoints:
            seen[touchpoint].add(text.language)
            polarities[touchpoint].add(text.polarity)
    assert set(seen) == set(TOUCHPOINTS)
    for touchpoint in TOUCHPOINTS:
        assert seen[touchpoint] == set(LANGUAGES), touchpoint
        assert {"negative", "positive"} <= polarities[touchpoint], touchpoint


def test_persian_and_arabic_script_variants(texts: dict[str, DemoText]) -> None:
    persian = [t.text for t in texts.values() if t.language == "fa"]
    arabic = [t.text for t in texts.values() if t.language == "ar"]
    assert sum("\u200c" in text for text in persian) >= 20  # ZWNJ inside words
    assert any("می\u200cخواهم" in text for text in persian)
    assert any("ی" in text and "ک" in text for text in persian)
    assert any("ي" in text or "ك" in text for text in persian)  # typed on an Arabic keyboard
    assert any("ى" in text for text in arabic)
    thai = [t.text for t in texts.values() if t.language == "th"]
    assert all("\u200c" not in text for text in arabic + thai)


def test_items_validate(items: list[dict[str, Any]]) -> None:
    assert len(items) == 400
    for item in items:
        FeedbackItemIn.model_validate(item)


def test_count_and_determinism() -> None:
    assert demo_items(now=NOW, count=50) == demo_items(now=NOW, count=50)
    assert len(demo_items(now=NOW, count=50)) == 50
    assert demo_items(now=NOW, count=0) == []
    assert demo_items(now=NOW, seed=8, count=50) != demo_items(now=NOW, count=50)


def test_default_now_is_the_current_hour() -> None:
    latest = max(created(item) for item in demo_items(count=30))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert hour - timedelta(weeks=8) <= latest < hour + timedelta(hours=1)


def test_languages(items: list[dict[str, Any]]) -> None:
    per_language = Counter(item["language"] for item in items)
    assert set(per_language) == set(LANGUAGES)
    assert all(per_language[lang] >= 40 for lang in LANGUAGES), per_language


def test_touchpoints_in_every_language_among_items(
    items: list[dict[str, Any]], texts: dict[str, DemoText]
) -> None:
    seen = {(tp, item["language"]) for item in items for tp in text_of(item, texts).touchpoints}
    assert seen == {(tp, lang) for tp in TOUCHPOINTS for lang in LANGUAGES}


def test_ids_authors_and_times(items: list[dict[str, Any]], texts: dict[str, DemoText]) -> None:
    ids = [item["external_id"] for item in items]
    assert len(set(ids)) == len(ids)
    assert ids[0] == f"{DEMO_SOURCE_PREFIX}0001"
    assert all(i.startswith(DEMO_SOURCE_PREFIX) for i in ids)
    authors = Counter(item["author"] for item in items)
    assert all(author.startswith("demo-user-") for author in authors)
    assert 1 < max(authors.values()) <= 6  # some repeat customers, no spammer
    assert len(authors) > 0.8 * len(items)
    copies = Counter((item["text"], item["created_at"], item["author"]) for item in items)
    assert max(copies.values()) == 1
    for item in items:
        when = created(item)
        assert when.utcoffset() is not None
        assert NOW - timedelta(weeks=8) <= when < NOW
        assert item["language"] == text_of(item, texts).language


def test_offsets_follow_locations(items: list[dict[str, Any]]) -> None:
    expected = {
        "Tehran Valiasr": {"+03:30"},
        "Bangkok Siam": {"+07:00"},
        "Riyadh Olaya": {"+03:00"},
        "Dubai Mall": {"+04:00"},
        "London Oxford St": {"+00:00", "+01:00"},
    }
    for item in items:
        if item["location"] in expected:
            assert item["created_at"][-6:] in expected[item["location"]], item


def test_sources_fit(items: list[dict[str, Any]], texts: dict[str, DemoText]) -> None:
    for item in items:
        rating = item.get("rating")
        source = item["source"]
        if source in {"support-email", "reddit", "x"}:
            assert rating is None
        else:
            assert rating is not None
        if source in {"google-play", "app-store"}:
            assert item["product"] == "Nova app"
            assert item["channel"] == "app"
            assert item["metadata"]["app_version"]
        if source == "google-business":
            assert item["location"] in {
                "Dubai Mall",
                "Riyadh Olaya",
                "Cairo Zamalek",
                "Tehran Valiasr",
                "Shiraz Zand",
                "Bangkok Siam",
                "Chiang Mai Nimman",
                "London Oxford St",
            }
        if source == "nps-survey":
            assert rating is not None
            assert rating["scale"] == "nps"
            assert item["metadata"]["survey"] == "post-purchase NPS"
        if source == "reddit":
            assert item["language"] == "en"


def test_rating_polarity_agreement(items: list[dict[str, Any]], texts: dict[str, DemoText]) -> None:
    rated = [item for item in items if item.get("rating")]
    agree = 0
    for item in rated:
        low, high = AGREES[item["rating"]["scale"]][text_of(item, texts).polarity]
        agree += low <= item["rating"]["value"] <= high
    share = agree / len(rated)
    assert 0.85 <= share < 1.0  # mostly agrees, with some deliberate disagreement


def weekly(items: list[dict[str, Any]], start: datetime, end: datetime) -> float:
    return sum(start <= created(item) < end for item in items) / ((end - start) / timedelta(weeks=1))


def test_riyadh_delivery_spike(items: list[dict[str, Any]], texts: dict[str, DemoText]) -> None:
    dates = story_dates(NOW)
    riyadh = [
        item
        for item in items
        if item["location"] == "Riyadh Olaya" and "delivery_shipping" in text_of(item, texts).touchpoints
    ]
    assert {item["language"] for item in riyadh} == {"ar", "en"}
    recent = weekly(riyadh, dates.riyadh_spike_start, NOW)
    earlier = weekly(riyadh, dates.start, dates.riyadh_spike_start)
    assert recent >= 5
    assert recent >= 3 * max(earlier, 0.5)
    # The other stores' delivery complaints stay flat.
    others = [
        item
        for item in items
        if item["location"] != "Riyadh Olaya" and text_of(item, texts).is_delivery_complaint
    ]
    assert weekly(others, dates.riyadh_spike_start, NOW) < 2 * weekly(
        others, dates.start, dates.riyadh_spike_start
    )


def test_app_crash_after_release(items: list[dict[str, Any]], texts: dict[str, DemoText]) -> None:
    dates = story_dates(NOW)
    crashes = [item for item in items if text_of(item, texts).is_app_crash]
    assert len(crashes) >= 20
    assert {item["language"] for item in crashes} == set(LANGUAGES)
    for item in crashes:
        assert created(item) >= dates.app_release
        assert item["source"] in {"google-play", "app-store"}
        assert item["metadata"]["app_version"] == "5.2.0"
    for item in items:
        if item["source"] in {"google-play", "app-store"} and created(item) < dates.app_release:
            assert item["metadata"]["app_version"] != "5.2.0"


def test_tehran_rude_staff_is_steady(items: list[dict[str, Any]], texts: dict[str, DemoText]) -> None:
    dates = story_dates(NOW)
    rude = [
        item
        for item in items
        if item["location"] == "Tehran Valiasr"
        and "staff" in text_of(item, texts).touchpoints
        and text_of(item, texts).polarity == "negative"
    ]
    halves = [
        weekly(rude, dates.start, dates.start + timedelta(weeks=4)),
        weekly(rude, dates.start + timedelta(weeks=4), NOW),
    ]
    assert min(halves) >= 1
    assert max(halves) <= 2 * min(halves)


def test_loyalty_after_launch_and_mostly_positive(
    items: list[dict[str, Any]], texts: dict[str, DemoText]
) -> None:
    dates = story_dates(NOW)
    loyalty = [item for item in items if "loyalty_programme" in text_of(item, texts).touchpoints]
    assert all(created(item) >= dates.loyalty_launch for item in loyalty)
    polarity = Counter(text_of(item, texts).polarity for item in loyalty)
    assert polarity["positive"] > 0.5 * len(loyalty)
    assert {item["language"] for item in loyalty} == set(LANGUAGES)
