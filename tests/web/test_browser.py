"""The dashboard in a real browser (Debian's Chromium) against a live ``cxmine serve`` on the scored demo.

Each test drives the pages the way a CX manager would: sign in, follow the planted Riyadh delivery spike,
triage it, download an export, watch a live update arrive. A location-scoped key must never see another
store. Screenshots of every page at desktop and phone size land in ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from openpyxl import load_workbook
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.demo import STORES
from tests.web.browser import (
    NO_CHROMIUM,
    VIEWPORTS,
    LiveServer,
    ScreenSize,
    chromium_executable,
    horizontal_overflow,
    screenshot,
    settle,
    signed_in_page,
    start_live_server,
    watch_page_errors,
)
from tests.web.conftest import SCOPED_LOCATIONS, DemoKeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OpenPage = Callable[..., Page]
SPIKE_STORE = "Riyadh Olaya"
SPIKE_TOUCHPOINT = "delivery_shipping"
SPIKE_ROW = f'tr[data-spike-location="{SPIKE_STORE}"][data-touchpoint="{SPIKE_TOUCHPOINT}"]'
OTHER_STORES = tuple(store for store in STORES if store not in SCOPED_LOCATIONS)
FILTER_CONTROLS = ("f-range", "f-touchpoint", "f-stage", "f-location", "f-source", "f-language")
EXPORT_LINKS = 'a[data-export], a[href*="format=csv"], a[href*="format=xlsx"]'


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_executable()
    if path is None:
        pytest.skip(NO_CHROMIUM)
    return path


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def live(
    chromium: str, demo_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """``cxmine serve`` on a copy of the demo, for the whole browser suite (no scheduler)."""
    server = start_live_server(demo_data_dir, tmp_path_factory.mktemp("live"))
    yield server
    server.stop()


@pytest.fixture
def open_page(browser: Browser, live: LiveServer) -> Iterator[OpenPage]:
    """Open a signed-in page: ``open_page(key, "desktop" | "phone")``; its context closes after the test."""
    pages: list[Page] = []

    def opener(key: str, size: ScreenSize = "desktop") -> Page:
        page = signed_in_page(browser, live.base_url, key, size)
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.context.close()


def api(live: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def goto(page: Page, path: str) -> int:
    """Open ``path``; the HTTP status of the document."""
    response = page.goto(path)
    assert response is not None, f"no response for {path}"
    return response.status


def delivery_theme_path(page: Page) -> str:
    """The theme page of Riyadh Olaya's biggest delivery pain point (the spike's theme, found without the spike)."""
    assert goto(page, f"/pain-points?touchpoint={SPIKE_TOUCHPOINT}&location={quote(SPIKE_STORE)}") == 200
    link = page.locator(
        f'table[data-table="pain-points"] tr[data-touchpoint="{SPIKE_TOUCHPOINT}"] a.theme-label'
    )
    expect(link.first).to_be_visible()
    href = link.first.get_attribute("href")
    assert href and href.startswith("/themes/"), href
    return href


def topic_of(theme_path: str) -> int:
    found = re.match(r"/themes/(\d+)", theme_path)
    assert found, theme_path
    return int(found.group(1))


def triage_history(live: LiveServer, key: str, topic_id: int) -> list[dict[str, Any]]:
    """The spike's triage history through the API."""
    with api(live, key) as client:
        answer = client.get(f"/v1/pain-points/{topic_id}/{SPIKE_TOUCHPOINT}/triage")
    assert answer.status_code == 200, answer.text
    history: list[dict[str, Any]] = answer.json()["history"]
    return history


def item_of_store(live: LiveServer, key: str, store: str, **params: str) -> dict[str, Any]:
    """One demo feedback item at ``store`` (through the API)."""
    with api(live, key) as client:
        answer = client.get("/v1/feedback", params={"location": store, "limit": 1, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    assert items, f"the demo has no item at {store} ({params})"
    return items[0]


def number(text: str) -> int:
    digits = re.sub(r"[^\d-]", "", text)
    assert digits, f"no number in {text!r}"
    return int(digits)


def leaked_stores(text: str) -> list[str]:
    return [store for store in OTHER_STORES if store in text]


def export_text(page: Page, href: str) -> str:
    """An export's contents as text (CSV as is; XLSX as its cells' values), downloaded with the page's session."""
    answer = page.request.get(href)
    assert answer.status == 200, f"{href}: {answer.status}"
    if "format=xlsx" in href:
        workbook = load_workbook(io.BytesIO(answer.body()), read_only=True)
        cells = (
            str(v) for sheet in workbook.worksheets for row in sheet.iter_rows(values_only=True) for v in row
        )
        return "\n".join(cells)
    return answer.body().decode("utf-8-sig")


def test_sign_in_refuses_a_bad_key_and_lands_a_good_one_on_the_overview(
    browser: Browser, live: LiveServer, demo_keys: DemoKeys
) -> None:
    context = browser.new_context(viewport=VIEWPORTS["desktop"], base_url=live.base_url)
    page = context.new_page()
    try:
        page.goto("/")
        assert "/signin" in page.url
        page.fill("#api_key", "cxm_not_a_real_key")
        page.click("form[action='/signin'] button[type=submit]")
        expect(page.locator("#signin-error")).to_contain_text("unknown or revoked")
        assert "/signin" in page.url
        page.fill("#api_key", demo_keys.admin)
        page.click("form[action='/signin'] button[type=submit]")
        page.wait_for_url(live.url("/"))
        expect(page.locator("h1")).to_have_text("Overview")
        expect(page.locator('[data-kpi="items"]')).to_be_visible()
    finally:
        context.close()


def test_overview_shows_the_riyadh_delivery_spike_and_it_leads_to_quotes_and_items(
    open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys
) -> None:
    page = open_page(demo_keys.admin)
    assert goto(page, "/") == 200
    row = page.locator(SPIKE_ROW).first
    expect(row).to_be_visible()
    expect(row.locator(".flag-trending")).to_have_text("Trending")
    expect(row).to_contain_text(SPIKE_STORE)

    row.locator("a.theme-label").first.click()
    page.wait_for_url(re.compile(r"/themes/\d+"))
    expect(page.locator("h1")).to_be_visible()
    quotes = page.locator('a[href^="/feedback/"]')
    assert quotes.count() > 0, "the theme page shows no quote linking to its item"
    href = quotes.first.get_attribute("href")
    assert href
    quotes.first.click()
    page.wait_for_url(live.url(href))
    with api(live, demo_keys.admin) as client:
        item = client.get(f"/v1{href}").json()
    expect(page.locator("main")).to_contain_text(item["text"][:40])


def test_assigning_and_resolving_show_in_the_history_and_the_api(
    open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys
) -> None:
    page = open_page(demo_keys.admin)
    theme = delivery_theme_path(page)
    topic_id = topic_of(theme)
    assert goto(page, theme) == 200
    panel = page.locator("#triage-panel")
    expect(panel).to_be_visible()
    owner = "Noura (delivery ops)"
    panel.locator('[name="owner"]').fill(owner)
    panel.locator('button[name="action"][value="assign"]').click()
    expect(page.locator("#triage-panel")).to_have_attribute("data-owner", owner)
    page.locator('#triage-panel [name="comment"]').fill("Courier partner changed in Riyadh; fixed.")
    page.locator('#triage-panel button[name="action"][value="resolve"]').click()
    expect(page.locator("#triage-panel")).to_have_attribute("data-status", "resolved")
    history = page.locator("#triage-panel .history")
    expect(history.locator('li[data-action="assigned"]')).to_contain_text(owner)
    expect(history.locator('li[data-action="resolved"]')).to_contain_text("Courier partner changed")

    with api(live, demo_keys.admin) as client:
        answer = client.get("/v1/pain-points", params={"topic": topic_id, "touchpoint": SPIKE_TOUCHPOINT})
        assert answer.status_code == 200, answer.text
        (point,) = [p for p in answer.json()["pain_points"] if p["touchpoint"] == SPIKE_TOUCHPOINT]
        assert (point["status"], point["owner"]) == ("resolved", owner)

    # After a reload the page still says so; reopening puts the pain point back for the other tests.
    assert goto(page, theme) == 200
    expect(page.locator("#triage-panel")).to_have_attribute("data-status", "resolved")
    page.locator('#triage-panel button[name="action"][value="reopen"]').click()
    expect(page.locator("#triage-panel")).to_have_attribute("data-status", "open")


def _scoped_pages(page: Page, live: LiveServer, demo_keys: DemoKeys) -> list[str]:
    """Every page a store manager can open: each nav page, the spike's theme and one of its stores' items."""
    theme = delivery_theme_path(page)
    item = item_of_store(live, demo_keys.admin, SPIKE_STORE, language="ar")
    pages = [
        "/",
        "/pain-points",
        "/pain-points?trending=1",
        "/drivers",
        "/journey",
        "/locations",
        "/feedback",
    ]
    pages += [f"/locations?store={quote(store)}" for store in SCOPED_LOCATIONS]
    return [*pages, theme, f"/feedback/{item['id']}", "/feedback?language=ar"]


def test_a_location_scoped_key_sees_only_its_stores_on_every_page_and_export(
    open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys
) -> None:
    page = open_page(demo_keys.scoped)
    exports: set[str] = set()
    problems: list[str] = []
    for path in _scoped_pages(page, live, demo_keys):
        status = goto(page, path)
        if status != 200:
            problems.append(f"{path}: HTTP {status}")
            continue
        if leaked := leaked_stores(page.content()):
            problems.append(f"{path} shows {leaked}")
        exports |= {h for h in page.locator(EXPORT_LINKS).evaluate_all("els => els.map(e => e.href)") if h}
        next_page = page.locator('a[href*="cursor="]').first
        if next_page.count():
            next_page.click()
            page.wait_for_load_state("load")
            if leaked := leaked_stores(page.content()):
                problems.append(f"{page.url} (next page) shows {leaked}")
    for href in sorted(exports):
        if leaked := leaked_stores(export_text(page, href)):
            problems.append(f"export {href} holds {leaked}")
    assert not problems, "\n".join(problems)
    assert len(exports) >= 4, f"expected CSV and XLSX exports of pain points, quotes and feedback: {exports}"


def test_a_tampered_url_for_another_store_gives_no_data(
    open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys
) -> None:
    page = open_page(demo_keys.scoped)
    theme = delivery_theme_path(page)
    other = item_of_store(live, demo_keys.admin, "Cairo Zamalek")
    cairo = quote("Cairo Zamalek")
    tampered = [
        f"/?location={cairo}",
        "/?location=Cairo",
        f"/pain-points?location={cairo}",
        f"/pain-points/export?location={cairo}&format=csv",
        f"/journey?location={cairo}",
        f"/locations?store={cairo}",
        f"/locations?location={cairo}",
        f"/feedback?location={cairo}",
        f"/feedback/export?location={cairo}&format=csv",
        f"/feedback/{other['id']}",
        f"{theme.split('?')[0]}?location={cairo}",
        f"{theme.split('?')[0]}/quotes/export?location={cairo}&format=csv",
    ]
    problems = []
    for path in tampered:
        answer = page.request.get(path)
        body = answer.text()
        if answer.status not in (403, 404):
            problems.append(f"{path}: HTTP {answer.status}, not 403/404")
        if other["text"][:40] in body or 'data-kpi="items"' in body or "<tbody" in body:
            problems.append(f"{path}: the answer holds data")
    assert not problems, "\n".join(problems)


def test_the_pain_points_export_has_the_numbers_of_the_page(open_page: OpenPage, demo_keys: DemoKeys) -> None:
    page = open_page(demo_keys.admin)
    assert goto(page, "/pain-points") == 200
    rows = page.locator('table[data-table="pain-points"] tbody tr')
    assert rows.count() > 0
    shown = []
    for row in rows.all():
        shown.append(
            {
                "topic": row.get_attribute("data-topic"),
                "touchpoint": row.get_attribute("data-touchpoint"),
                "negative": number(row.locator("td.num a").first.inner_text()),
                "current": number(row.locator(".pp-vs strong").inner_text()),
                "status": row.locator(".status").last.inner_text().strip(),
            }
        )
    with page.expect_download() as download_info:
        page.locator('a[data-export="csv"]').click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8-sig", newline="") as handle:
        exported = list(csv.DictReader(handle))
    current_column = next(c for c in exported[0] if c.startswith("Negative, last"))
    assert [
        {
            "topic": r["Topic id"],
            "touchpoint": r["Touchpoint id"],
            "negative": int(r["Negative mentions"]),
            "current": int(r[current_column]),
            "status": r["Status"],
        }
        for r in exported
    ] == shown


def test_a_new_negative_item_appears_live_on_the_overview(
    open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys
) -> None:
    page = open_page(demo_keys.admin)
    assert goto(page, "/") == 200
    page.wait_for_selector("body[data-live='open']", timeout=15_000)
    before = number(page.locator('[data-kpi="items"]').inner_text())
    page.evaluate("() => { window.__notReloaded = true; }")

    item = {
        "source": "trustpilot",
        "external_id": f"browser-live-{datetime.now(UTC).timestamp():.0f}",
        "text": "The courier was three days late, my order arrived broken and nobody answered the phone. Awful.",
        "created_at": datetime.now(UTC).isoformat(),
        "location": SPIKE_STORE,
        "rating": {"value": 1, "scale": "stars"},
    }
    with api(live, demo_keys.ingest) as client:
        answer = client.post("/v1/feedback", json={"items": [item]})
    assert answer.status_code in (200, 201, 207), answer.text
    assert answer.json()["stored"] == 1, answer.text
    live.cli("score")  # what the scheduler does every few seconds; the live server runs without it

    page.wait_for_selector("body[data-last-event^='scored']", timeout=20_000)
    expect(page.locator("#live-status")).to_contain_text("scored")
    page.wait_for_function(
        "n => Number(document.querySelector('[data-kpi=\"items\"]').textContent.replace(/\\D/g, '')) === n",
        arg=before + 1,
        timeout=20_000,
    )
    assert page.evaluate("() => window.__notReloaded === true"), (
        "the page reloaded instead of updating in place"
    )


def test_an_analyst_cannot_see_the_admin_pages(open_page: OpenPage, demo_keys: DemoKeys) -> None:
    page = open_page(demo_keys.analyst)
    assert goto(page, "/") == 200
    assert page.locator('a[href^="/alerts"], a[href^="/sources"]').count() == 0
    for path in ("/alerts", "/sources"):
        assert goto(page, path) == 403
        expect(page.locator("main")).to_contain_text("administrators")


def test_a_post_without_the_csrf_token_is_refused(
    open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys
) -> None:
    page = open_page(demo_keys.analyst)
    theme = delivery_theme_path(page)
    history = triage_history(live, demo_keys.admin, topic_of(theme))
    triage = f"/themes/{topic_of(theme)}/triage/{SPIKE_TOUCHPOINT}"
    assert page.request.post("/signout").status == 403
    assert page.request.post(triage, form={"action": "acknowledge"}).status == 403
    assert page.request.post(triage, form={"action": "acknowledge", "csrf_token": "forged"}).status == 403
    fetched = page.evaluate("async () => (await fetch('/signout', {method: 'POST'})).status")
    assert fetched == 403
    assert triage_history(live, demo_keys.admin, topic_of(theme)) == history
    assert goto(page, "/") == 200
    assert page.url == live.url("/"), "a refused sign-out still signed the user out"
    page.locator("form[action='/signout'] button").click()  # the real form carries the token
    page.wait_for_url(re.compile(r"/signin"))
    goto(page, "/")
    assert "/signin" in page.url


@pytest.mark.parametrize("path", ["/", "/pain-points", "/journey", "/locations", "/feedback"])
def test_the_keyboard_reaches_the_skip_link_and_the_filters(
    open_page: OpenPage, demo_keys: DemoKeys, path: str
) -> None:
    page = open_page(demo_keys.analyst)
    assert goto(page, path) == 200
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('skip-link')")
    box = page.locator(".skip-link").bounding_box()
    assert box is not None and box["x"] >= 0, "the focused skip link stays off screen"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    reached: list[str] = []
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.id")
        if focused in FILTER_CONTROLS and focused not in reached:
            reached.append(focused)
        if len(reached) == len(FILTER_CONTROLS):
            break
    assert reached == list(FILTER_CONTROLS)


def _pages_to_shoot(page: Page, live: LiveServer, demo_keys: DemoKeys) -> dict[str, str]:
    theme = delivery_theme_path(page)
    arabic = item_of_store(live, demo_keys.admin, SPIKE_STORE, language="ar")
    thai = item_of_store(live, demo_keys.admin, "Bangkok Siam", language="th")
    return {
        "overview": "/",
        "pain-points": "/pain-points",
        "drivers": "/drivers",
        "theme": theme,
        "journey": "/journey",
        "locations": f"/locations?store={quote(SPIKE_STORE)}",
        "feedback": "/feedback",
        "feedback-thai": "/feedback?language=th",
        "item-arabic": f"/feedback/{arabic['id']}",
        "item-thai": f"/feedback/{thai['id']}",
        "alerts": "/alerts",
        "sources": "/sources",
    }


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_renders_without_errors_and_is_screenshot(
    browser: Browser, open_page: OpenPage, live: LiveServer, demo_keys: DemoKeys, size: ScreenSize
) -> None:
    context = browser.new_context(viewport=VIEWPORTS[size], base_url=live.base_url)
    signin = context.new_page()
    signin.goto("/signin")
    screenshot(signin, "signin")
    context.close()

    page = open_page(demo_keys.admin, size)
    errors = watch_page_errors(page)
    problems = []
    for name, path in _pages_to_shoot(page, live, demo_keys).items():
        status = goto(page, path)
        settle(page)
        screenshot(page, name)
        if status != 200:
            problems.append(f"{name} ({path}): HTTP {status}")
        if errors:
            problems.append(f"{name}: script errors {errors}")
            errors.clear()
        if size == "phone" and (overflow := horizontal_overflow(page)):
            problems.append(f"{name}: {overflow}px wider than the phone screen")
    assert not problems, "\n".join(problems)
