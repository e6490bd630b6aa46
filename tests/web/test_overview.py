"""The overview on the demo: its figures equal the rows behind them, and the planted Riyadh spike trends."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from service.config import Settings
from service.db.engine import make_engine, make_session_factory
from service.demo import STORES
from service.feedback import Scope
from service.spikes import location_spikes
from tests.web.conftest import SCOPED_LOCATIONS, DemoKeys, sign_in


def _all_items(web: TestClient, key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        page = web.get("/v1/feedback", params=query, headers={"Authorization": f"Bearer {key}"}).json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def _kpi(html: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}">([^<]*)<', html)
    assert found, f"no {name} figure"
    return found.group(1).strip()


def test_the_riyadh_delivery_spike_is_trending_at_its_store(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    page = web.get("/").text
    row = re.search(
        r'<tr data-spike-location="Riyadh Olaya" data-touchpoint="delivery_shipping">(.*?)</tr>', page, re.S
    )
    assert row, "the overview does not show Riyadh Olaya's delivery spike"
    assert "Trending" in row.group(1)
    assert re.search(r'href="/themes/\d+\?[^"]*focus=delivery_shipping', row.group(1)), (
        "no theme behind the spike"
    )
    others = re.findall(r'data-spike-location="([^"]+)"', page)
    assert others == ["Riyadh Olaya"], f"only the planted spike should trend, got {others}"


def test_the_spike_rests_on_more_negatives_than_the_store_history_explains(demo_settings: Settings) -> None:
    engine = make_engine(demo_settings.effective_database_url)
    with make_session_factory(engine)() as session:
        spikes = location_spikes(session, scope=Scope(until=datetime.now(UTC) + timedelta(minutes=1)))
        quiet = location_spikes(
            session,
            scope=Scope(until=datetime.now(UTC) - timedelta(weeks=3)),
            touchpoints={"delivery_shipping"},
        )
    engine.dispose()
    spike = next(s for s in spikes if s.location == "Riyadh Olaya" and s.touchpoint == "delivery_shipping")
    assert spike.current >= 5 and spike.growth is not None and spike.growth > 3 and spike.p_value < 1e-4
    assert sum(n for _, n in spike.topics) == spike.current
    assert quiet == [], "three weeks ago, before the story, nothing trended at delivery"


def test_key_figures_equal_the_items_behind_them(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.admin)
    since = (datetime.now(UTC) - timedelta(weeks=8)).date()
    page = web.get(f"/?since={since.isoformat()}").text
    items = _all_items(web, demo_keys.admin, since=f"{since.isoformat()}T00:00:00Z")
    assert _kpi(page, "items") == f"{len(items):,}"
    nps = [i["rating"]["value"] for i in items if i.get("rating") and i["rating"]["scale"] == "nps"]
    expected = 100 * (sum(v >= 9 for v in nps) - sum(v <= 6 for v in nps)) / len(nps)
    assert _kpi(page, "nps") == f"{expected:,.0f}"
    negative = [
        i for i in items if i.get("sentiment", {}) and i["sentiment"]["label"] in ("negative", "mixed")
    ]
    scored = [i for i in items if i.get("sentiment")]
    assert _kpi(page, "negative") == f"{100 * len(negative) / len(scored):.0f} %"


def test_a_store_manager_sees_only_their_stores(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.scoped)
    page = web.get("/").text
    for store in STORES:
        if store not in SCOPED_LOCATIONS:
            assert store not in page, f"{store} leaks onto a scoped overview"
    assert web.get("/?location=Cairo Zamalek").status_code == 403
    since = (datetime.now(UTC) - timedelta(weeks=8)).date().isoformat()
    scoped_items = _all_items(web, demo_keys.scoped, since=f"{since}T00:00:00Z")
    assert _kpi(web.get(f"/?since={since}").text, "items") == f"{len(scoped_items):,}"
    assert {i["location"] for i in scoped_items} <= set(SCOPED_LOCATIONS)


def test_live_updates_are_wired_and_the_feed_needs_a_session(web: TestClient, demo_keys: DemoKeys) -> None:
    assert web.get("/events").status_code == 303
    sign_in(web, demo_keys.analyst)
    page = web.get("/").text
    assert 'sse-connect="/events"' in page and "sse:scored" in page
