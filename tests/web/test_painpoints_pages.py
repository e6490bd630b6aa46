"""The pain-points and theme pages: the API's pain points, exports equal to the page, triage, scoping."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from service.demo import STORES
from service.web.pages.painpoints import EXPORT_COLUMNS, expected_value, significance_text
from tests.web.conftest import SCOPED_LOCATIONS, DemoKeys, sign_in

DELIVERY = "delivery_shipping"
RIYADH = "Riyadh Olaya"


class _Rows(HTMLParser):
    """The data-* attributes of the table rows (``tr``) that carry ``marker``, and the quotes."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.rows: list[dict[str, str]] = []
        self.quotes: list[dict[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "tr" and self.marker in values:
            self.rows.append(values)
        if tag == "li" and "quote" in values.get("class", "").split():
            self.quotes.append(values)
        if tag == "a" and "href" in values:
            self.links.append(values["href"])


def parse(html: str, marker: str = "data-topic") -> _Rows:
    parser = _Rows(marker)
    parser.feed(html)
    return parser


def _period() -> tuple[str, str, str, str]:
    """Custom page dates (the last 8 weeks) and the API's since/until for the same period."""
    until_day = datetime.now(UTC).date()
    since_day = until_day - timedelta(weeks=8)
    since = datetime.combine(since_day, time(), UTC)
    until = datetime.combine(until_day + timedelta(days=1), time(), UTC)
    return since_day.isoformat(), until_day.isoformat(), since.isoformat(), until.isoformat()


def _api(client: TestClient, key: str, path: str, **params: Any) -> Any:
    answer = client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _page_rows(client: TestClient, query: str) -> list[dict[str, str]]:
    page = client.get(f"/pain-points?{query}")
    assert page.status_code == 200, page.text
    return parse(page.text).rows


def test_page_lists_the_api_pain_points_for_the_same_filters(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.admin)
    since_day, until_day, since, until = _period()
    for extra, api_extra in (
        ({}, {}),
        ({"location": RIYADH}, {"location": RIYADH}),
        ({"stage": "experience", "language": "ar"}, {"stage": "experience", "language": "ar"}),
        ({"trending": "1", "location": RIYADH}, {"trending": "true", "location": RIYADH}),
    ):
        query = "&".join(
            f"{k}={quote(v)}" for k, v in {"since": since_day, "until": until_day, **extra}.items()
        )
        rows = _page_rows(web, query)
        api = _api(
            web,
            demo_keys.admin,
            "/v1/pain-points",
            window=2,
            baseline=6,
            limit=50,
            since=since,
            until=until,
            **api_extra,
        )["pain_points"]
        assert [(int(r["data-topic"]), r["data-touchpoint"]) for r in rows] == [
            (p["topic_id"], p["touchpoint"]) for p in api
        ], extra
        for row, point in zip(rows, api, strict=True):
            assert int(row["data-negative"]) == point["negative"]
            assert int(row["data-sentences"]) == point["sentences"]
            assert (row["data-trending"] == "yes") == point["trending"]
            assert int(row["data-current"]) == point["trend"]["current"]
            assert float(row["data-expected"]) == expected_value(point["trend"]["expected"])
            assert float(row["data-p-value"]) == float(f"{point['trend']['p_value']:.3g}")
            assert row["data-status"] == point["status"]
            # The sparkline's weekly negatives add up to the period's negatives.
            assert sum(int(n) for n in row["data-weekly"].split(",")) == point["negative"]
    assert all(r["data-trending"] == "yes" for r in rows)


def test_page_explains_the_trend_test_and_links_rows(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    page = web.get("/pain-points")
    assert page.status_code == 200
    assert "last 2 weeks" in page.text
    assert "6 weeks before" in page.text
    assert 'sse-connect="/events"' in page.text
    assert 'hx-trigger="sse:scored, sse:alert"' in page.text
    parsed = parse(page.text)
    first = parsed.rows[0]
    key = f"{first['data-topic']}:{first['data-touchpoint']}"
    assert f"/themes/{first['data-topic']}?focus={first['data-touchpoint']}" in parsed.links
    assert any(link.startswith("/feedback?") and f"pain_point={quote(key)}" in link for link in parsed.links)
    assert "/pain-points?trending=1" in parsed.links
    assert significance_text(0.0004) == "p < 0.001"
    assert significance_text(0.004) == "p = 0.004"
    assert significance_text(0.27) == "p = 0.27"


def _export_rows(client: TestClient, path: str) -> tuple[list[str], list[list[str]], list[list[Any]]]:
    as_csv = client.get(f"{path}&format=csv" if "?" in path else f"{path}?format=csv")
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    as_xlsx = client.get(f"{path}&format=xlsx" if "?" in path else f"{path}?format=xlsx")
    assert as_xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(as_xlsx.content), read_only=True).worksheets[0]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    return table[0], table[1:], cells


def _as_number(value: str) -> float | None:
    return float(value) if value else None


def test_csv_and_xlsx_exports_equal_the_page(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.admin)
    for query in ("", f"location={quote(RIYADH)}", "trending=1&range=13w"):
        rows = _page_rows(web, query)
        header, table, cells = _export_rows(web, f"/pain-points/export?{query}")
        assert header == list(EXPORT_COLUMNS)
        assert list(cells[0]) == list(EXPORT_COLUMNS)
        assert len(table) == len(rows) == len(cells) - 1
        column = {name: index for index, name in enumerate(EXPORT_COLUMNS)}
        for row, line, xlsx in zip(rows, table, cells[1:], strict=True):
            assert int(line[column["Topic id"]]) == int(row["data-topic"]) == xlsx[column["Topic id"]]
            assert line[column["Touchpoint id"]] == row["data-touchpoint"] == xlsx[column["Touchpoint id"]]
            assert line[column["Trending"]] == row["data-trending"] == xlsx[column["Trending"]]
            for name, attribute in (
                ("Negative mentions", "data-negative"),
                ("Mentions", "data-sentences"),
                ("Negative, last 2 weeks", "data-current"),
                ("Expected, last 2 weeks", "data-expected"),
                ("Growth (x expected)", "data-growth"),
                ("p-value", "data-p-value"),
                ("Negative share (%)", "data-share"),
            ):
                page_value = _as_number(row[attribute])
                assert _as_number(line[column[name]]) == page_value, name
                assert xlsx[column[name]] == page_value, name
            assert line[column["Status"]] == row["data-status"] == xlsx[column["Status"]]
            assert line[column["Owner"]] == row["data-owner"] == (xlsx[column["Owner"]] or "")
            assert line[column["Negatives per week"]] == row["data-weekly"].replace(",", "; ")


def _flagged(html: str) -> set[tuple[int, str]]:
    """The (topic, touchpoint) of each row that shows the Trending flag."""
    flagged = set()
    for chunk in html.split("<tr data-topic=")[1:]:
        row = chunk.split("</tr>")[0]
        if 'class="flag flag-trending"' in row:
            topic, touchpoint = re.match(r'"(\d+)" data-touchpoint="([^"]+)"', row).groups()  # type: ignore[union-attr]
            flagged.add((int(topic), touchpoint))
    return flagged


def _story(client: TestClient) -> dict[str, str]:
    """The planted Riyadh Olaya delivery spike: the Riyadh delivery pain point with the most recent negatives."""
    rows = _page_rows(client, f"location={quote(RIYADH)}")
    delivery = [r for r in rows if r["data-touchpoint"] == DELIVERY]
    assert delivery, "the Riyadh Olaya delivery pain point is listed"
    return max(delivery, key=lambda r: (int(r["data-current"]), -int(r["data-topic"])))


def test_riyadh_delivery_story_stands_out_on_the_page(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    story = _story(web)
    # The spike: far above the level the 6 weeks before predict, and significant.
    assert int(story["data-current"]) >= 3
    assert int(story["data-current"]) >= 1.5 * float(story["data-expected"])
    assert float(story["data-p-value"]) < 0.01
    # Flagged exactly where the API's trend test says so (which also needs 5 mentions in one theme).
    page = web.get(f"/pain-points?location={quote(RIYADH)}")
    api = _api(web, demo_keys.analyst, "/v1/pain-points", window=2, limit=50, location=RIYADH)["pain_points"]
    trending = {(p["topic_id"], p["touchpoint"]) for p in api if p["trending"]}
    assert _flagged(page.text) == trending
    only = _page_rows(web, f"location={quote(RIYADH)}&trending=1")
    assert {(int(r["data-topic"]), r["data-touchpoint"]) for r in only} == trending


def _riyadh_delivery_topic(client: TestClient) -> int:
    return int(_story(client)["data-topic"])


def test_theme_page_shows_quotes_in_their_script_linking_to_items(
    web: TestClient, demo_keys: DemoKeys
) -> None:
    sign_in(web, demo_keys.admin)
    topic = _riyadh_delivery_topic(web)
    page = web.get(f"/themes/{topic}?focus={DELIVERY}&location={quote(RIYADH)}")
    assert page.status_code == 200, page.text
    parsed = parse(page.text, marker="data-touchpoint")
    assert parsed.quotes, "the theme shows quotes"
    for q in parsed.quotes:
        assert q["dir"] == ("rtl" if q["lang"] in ("ar", "fa") else "auto")
        assert f"/feedback/{q['data-item']}" in parsed.links
    # The theme's trend test is the list's: same expected level, same flag.
    listed = next(
        r
        for r in _page_rows(web, f"location={quote(RIYADH)}")
        if (int(r["data-topic"]), r["data-touchpoint"]) == (topic, DELIVERY)
    )
    assert f'data-focus-expected="{listed["data-expected"]}"' in page.text
    assert f'data-focus-trending="{listed["data-trending"]}"' in page.text
    assert "Expected (trend test)" in page.text
    assert 'id="triage-panel"' in page.text
    assert [r["data-touchpoint"] for r in parsed.rows if r.get("aria-current") == "true"] == [DELIVERY]
    # The quotes export holds the page's quotes.
    _, table, cells = _export_rows(
        web, f"/themes/{topic}/quotes/export?focus={DELIVERY}&location={quote(RIYADH)}"
    )
    assert [int(line[0]) for line in table] == [int(q["data-item"]) for q in parsed.quotes]
    assert [row[0] for row in cells[1:]] == [int(q["data-item"]) for q in parsed.quotes]
    assert {line[4] for line in table} == {RIYADH}
    # Without a focus, the touchpoint with the most negatives is in focus.
    default = parse(web.get(f"/themes/{topic}").text, marker="data-touchpoint").rows
    focused = [r for r in default if r.get("aria-current") == "true"]
    assert focused and int(focused[0]["data-negative"]) == max(int(r["data-negative"]) for r in default)


def test_arabic_and_persian_quotes_read_right_to_left(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    since_day, until_day, since, until = _period()
    api = _api(web, demo_keys.analyst, "/v1/pain-points", window=2, limit=50, since=since, until=until)
    seen: set[str] = set()
    for language in ("ar", "fa"):
        point = next(p for p in api["pain_points"] if any(q["language"] == language for q in p["quotes"]))
        page = web.get(
            f"/themes/{point['topic_id']}?focus={point['touchpoint']}&since={since_day}&until={until_day}"
        )
        quotes = parse(page.text).quotes
        expected = {q["item_id"] for q in point["quotes"] if q["language"] == language}
        shown = {int(q["data-item"]) for q in quotes if q["lang"] == language and q["dir"] == "rtl"}
        assert expected <= shown, language
        seen |= {q["lang"] for q in quotes}
        assert all(q["dir"] == "auto" for q in quotes if q["lang"] not in ("ar", "fa"))
    assert {"ar", "fa"} <= seen


def _triage(client: TestClient, path: str, token: str | None, **fields: str) -> Any:
    headers = {"HX-Request": "true"}
    if token:
        headers["X-CSRF-Token"] = token
    return client.post(path, data=fields, headers=headers)


def test_triage_through_the_page_shows_in_history_and_api(web: TestClient, demo_keys: DemoKeys) -> None:
    token = sign_in(web, demo_keys.admin)
    topic = _riyadh_delivery_topic(web)
    path = f"/themes/{topic}/triage/{DELIVERY}"
    assigned = _triage(web, path, token, action="assign", owner="ops-riyadh@nova.example", comment="Courier?")
    assert assigned.status_code == 200, assigned.text
    assert 'id="triage-panel"' in assigned.text
    assert "ops-riyadh@nova.example" in assigned.text
    assert 'data-status="acknowledged"' in assigned.text
    resolved = _triage(web, path, token, action="resolve", comment="New courier from Monday")
    assert 'data-status="resolved"' in resolved.text
    assert "New courier from Monday" in resolved.text
    # A refused transition is shown in the panel, not as a crash.
    refused = _triage(web, path, token, action="acknowledge")
    assert refused.status_code == 200
    assert "data-triage-error" in refused.text
    assert "reopen it" in refused.text
    missing_owner = _triage(web, path, token, action="assign", owner="  ")
    assert "data-triage-error" in missing_owner.text

    api = _api(web, demo_keys.admin, f"/v1/pain-points/{topic}/{DELIVERY}/triage")
    assert api["status"] == "resolved"
    assert api["owner"] == "ops-riyadh@nova.example"
    assert [e["action"] for e in api["history"]] == ["assigned", "resolved"]
    assert [e["actor"] for e in api["history"]] == ["key:CX lead", "key:CX lead"]
    assert api["history"][1]["comment"] == "New courier from Monday"
    listed = _api(web, demo_keys.admin, "/v1/pain-points", window=2, limit=200, location=RIYADH)[
        "pain_points"
    ]
    row = next(p for p in listed if (p["topic_id"], p["touchpoint"]) == (topic, DELIVERY))
    assert (row["status"], row["owner"]) == ("resolved", "ops-riyadh@nova.example")
    page_row = next(
        r
        for r in _page_rows(web, f"location={quote(RIYADH)}")
        if (int(r["data-topic"]), r["data-touchpoint"]) == (topic, DELIVERY)
    )
    assert (page_row["data-status"], page_row["data-owner"]) == ("resolved", "ops-riyadh@nova.example")
    theme = web.get(f"/themes/{topic}?focus={DELIVERY}")
    assert theme.text.count('data-action="') == 2
    assert "Reopen" in theme.text and ">Acknowledge<" not in theme.text
    # A plain form post (no HTMX) carries the token as a field and comes back to the page.
    plain = web.post(path, data={"action": "reopen", "csrf_token": token})
    assert plain.status_code == 303
    assert plain.headers["location"].startswith(f"/themes/{topic}?focus={DELIVERY}")
    assert _api(web, demo_keys.admin, f"/v1/pain-points/{topic}/{DELIVERY}/triage")["status"] == "open"


def test_triage_without_csrf_token_is_refused(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.analyst)
    topic = _riyadh_delivery_topic(web)
    path = f"/themes/{topic}/triage/{DELIVERY}"
    assert _triage(web, path, None, action="acknowledge").status_code == 403
    assert _triage(web, path, "forged", action="acknowledge").status_code == 403
    assert web.post(path, data={"action": "acknowledge"}).status_code == 403
    api = _api(web, demo_keys.admin, f"/v1/pain-points/{topic}/{DELIVERY}/triage")
    assert api["status"] == "open" and api["history"] == []


def test_scoped_key_sees_only_its_stores(web: TestClient, demo_keys: DemoKeys) -> None:
    sign_in(web, demo_keys.scoped)
    others = [name for name in STORES if name not in SCOPED_LOCATIONS]
    pages = [web.get("/pain-points"), web.get("/pain-points?trending=1&range=13w")]
    rows = parse(pages[0].text).rows
    assert rows, "the scoped key has pain points at its stores"
    api = _api(web, demo_keys.scoped, "/v1/pain-points", window=2, limit=50)["pain_points"]
    assert [(int(r["data-topic"]), r["data-touchpoint"], int(r["data-negative"])) for r in rows] == [
        (p["topic_id"], p["touchpoint"], p["negative"]) for p in api
    ]
    for row in rows[:6]:
        topic, touchpoint = row["data-topic"], row["data-touchpoint"]
        pages.append(web.get(f"/themes/{topic}?focus={touchpoint}"))
        pages.append(web.get(f"/themes/{topic}/quotes/export?focus={touchpoint}&format=csv"))
    pages += [
        web.get("/pain-points/export?format=csv"),
        web.get("/pain-points/export?format=xlsx&trending=1"),
    ]
    for answer in pages:
        assert answer.status_code == 200, answer.text
        text = answer.text if "xlsx" not in answer.headers["content-type"] else _xlsx_text(answer.content)
        for name in others:
            assert name not in text, (answer.url, name)
    theme = web.get(f"/themes/{rows[0]['data-topic']}?focus={rows[0]['data-touchpoint']}")
    for location in parse(theme.text, marker="data-location").rows:
        assert location["data-location"] in SCOPED_LOCATIONS
    # A tampered URL for another store is refused, not answered with its data.
    assert web.get(f"/pain-points?location={quote(others[0])}").status_code == 403
    assert web.get(f"/pain-points/export?format=csv&location={quote(others[0])}").status_code == 403
    assert web.get(f"/themes/{rows[0]['data-topic']}?location={quote(others[0])}").status_code == 403


def _xlsx_text(content: bytes) -> str:
    sheet = load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    return "\n".join(
        " ".join(str(v) for v in row if v is not None) for row in sheet.iter_rows(values_only=True)
    )


def test_unknown_theme_is_a_404_page(web: TestClient, demo_keys: DemoKeys) -> None:
    token = sign_in(web, demo_keys.analyst)
    for path in ("/themes/999999", "/themes/not-a-topic", "/themes/999999/quotes/export?format=csv"):
        answer = web.get(path)
        assert answer.status_code == 404, path
        assert "Not found" in answer.text
    assert web.get("/themes/1?focus=no_such_touchpoint").status_code == 404
    assert (
        _triage(web, "/themes/999999/triage/delivery_shipping", token, action="acknowledge").status_code
        == 404
    )
    assert web.get("/pain-points/export?format=pdf").status_code == 422


def test_weekly_negatives_service_matches_the_report(web: TestClient, demo_keys: DemoKeys) -> None:
    from service.feedback import Scope
    from service.painpoint_series import bucket_starts, pain_point_negatives
    from service.painpoints import pain_point_report

    factory = web.app.state.session_factory  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    scope = Scope(since=now - timedelta(weeks=8), until=now, locations=(RIYADH,))
    with factory() as session:
        report = pain_point_report(session, scope=scope, window=2, quotes=0, now=now)
        keys = [(p.topic_id, p.touchpoint) for p in report.pain_points]
        series = pain_point_negatives(
            session, keys=[*keys, (999999, DELIVERY)], scope=scope, since=report.since, until=report.until
        )
    assert series.starts == bucket_starts(since=report.since, until=report.until, interval="week")
    assert all(start.weekday() == 0 and start.hour == 0 for start in series.starts)
    assert series.starts[0] <= report.since < series.starts[0] + timedelta(weeks=1)
    for point in report.pain_points:
        assert sum(series.of((point.topic_id, point.touchpoint))) == point.negative
    assert series.of((999999, DELIVERY)) == [0] * len(series.starts)
    assert date.today() >= series.starts[-1].date()


def _active_topics(client: TestClient, key: str) -> list[dict[str, Any]]:
    topics: list[dict[str, Any]] = _api(client, key, "/v1/topics")["topics"]
    active = [t for t in topics if t["status"] == "active"]
    assert len(active) >= 2, "the demo refit has themes"
    return active


def _rename(client: TestClient, topic: int, token: str | None, *, htmx: bool = True, **fields: str) -> Any:
    headers = {"HX-Request": "true"} if htmx else {}
    if token and htmx:
        headers["X-CSRF-Token"] = token
    elif token:
        fields = {**fields, "csrf_token": token}
    return client.post(f"/themes/{topic}/name", data=fields, headers=headers)


def _shown_name(html: str) -> str:
    found = re.search(r"<h1 data-topic=\"\d+\" data-theme-name dir=\"auto\">([^<]*)</h1>", html)
    assert found, "the theme page shows its name"
    return found.group(1).replace("&#39;", "'").replace("&amp;", "&")


def test_theme_page_names_the_theme_and_its_keywords_per_language(
    web: TestClient, demo_keys: DemoKeys
) -> None:
    sign_in(web, demo_keys.analyst)
    topic = max(_active_topics(web, demo_keys.analyst), key=lambda t: len(t["keywords_by_language"]))
    assert topic["keywords_by_language"], "a demo theme has keywords in some language"
    page = web.get(f"/themes/{topic['id']}")
    assert page.status_code == 200
    assert _shown_name(page.text) == topic["label"]
    assert "Named by the refit" in page.text
    for language, words in topic["keywords_by_language"].items():
        block = page.text.split(f'data-keywords-language="{language}"')[1].split("</div>")[0]
        assert f'lang="{language}"' in block
        for word in words[:8]:
            assert f'<li dir="auto">{word}</li>' in block.replace("&#39;", "'"), (language, word)


def test_admin_renames_a_theme_and_the_name_stays(web: TestClient, demo_keys: DemoKeys) -> None:
    token = sign_in(web, demo_keys.admin)
    first, second = _active_topics(web, demo_keys.admin)[:2]
    name = "Rude staff at the returns desk"
    page = web.get(f"/themes/{first['id']}")
    assert f'action="/themes/{first["id"]}/name"' in page.text, "an admin gets the rename form"
    renamed = _rename(web, first["id"], token, name=f"  {name} ")
    assert renamed.status_code == 200, renamed.text
    assert renamed.text.lstrip().startswith('<div id="theme-name"'), "HTMX gets the title back"
    assert _shown_name(renamed.text) == name
    assert (
        'data-label-source="admin"' in renamed.text and "Renamed by <strong>CX lead</strong>" in renamed.text
    )
    # It survives a reload, shows in the API, and on the pain points list at once.
    reloaded = web.get(f"/themes/{first['id']}")
    assert _shown_name(reloaded.text) == name
    assert "Renamed by <strong>CX lead</strong>" in reloaded.text
    assert f"<title>{name} · cxmine</title>" in reloaded.text
    topic = _api(web, demo_keys.admin, f"/v1/topics/{first['id']}")
    assert (topic["label"], topic["label_source"]) == (name, "admin")
    listed = parse(web.get("/pain-points").text)
    if any(int(r["data-topic"]) == first["id"] for r in listed.rows):
        assert f">{name}</a>" in web.get("/pain-points").text

    # Another theme cannot take the name (any case): 409 and the error shown in place.
    clash = _rename(web, second["id"], token, name=name.upper())
    assert clash.status_code == 409
    assert 'data-rename-error="409"' in clash.text and "already called" in clash.text
    assert _shown_name(clash.text) == second["label"]
    plain_clash = _rename(web, second["id"], token, htmx=False, name=name)
    assert plain_clash.status_code == 409
    assert 'data-rename-error="409"' in plain_clash.text and "<nav" in plain_clash.text, "the whole page"
    assert _api(web, demo_keys.admin, f"/v1/topics/{second['id']}")["label"] == second["label"]
    # A blank or too long name is refused with 422.
    blank = _rename(web, second["id"], token, name="   ")
    assert blank.status_code == 422 and 'data-rename-error="422"' in blank.text
    assert _rename(web, second["id"], token, name="x" * 81).status_code == 422

    # A plain form comes back to the page; the reset gives naming back to the refit.
    plain = _rename(web, second["id"], token, htmx=False, name="Slow refunds")
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/themes/{second['id']}"
    assert _shown_name(web.get(f"/themes/{second['id']}").text) == "Slow refunds"
    reset = _rename(web, first["id"], token, action="reset")
    assert reset.status_code == 200
    assert 'data-label-source="generated"' in reset.text and "gave naming back" in reset.text
    assert _api(web, demo_keys.admin, f"/v1/topics/{first['id']}")["label_source"] == "generated"


def test_analyst_cannot_rename_and_csrf_is_required(web: TestClient, demo_keys: DemoKeys) -> None:
    token = sign_in(web, demo_keys.analyst)
    topic = _active_topics(web, demo_keys.analyst)[0]
    page = web.get(f"/themes/{topic['id']}")
    assert page.status_code == 200
    assert f'action="/themes/{topic["id"]}/name"' not in page.text
    assert "theme-rename" not in page.text
    assert _rename(web, topic["id"], token, name="Mine now").status_code == 403
    assert _rename(web, topic["id"], token, htmx=False, name="Mine now").status_code == 403

    admin = TestClient(web.app, follow_redirects=False)
    sign_in(admin, demo_keys.admin)
    assert _rename(admin, topic["id"], None, name="No token").status_code == 403
    assert _rename(admin, topic["id"], "forged", name="No token").status_code == 403
    assert admin.post(f"/themes/{topic['id']}/name", data={"name": "No token"}).status_code == 403
    assert _api(web, demo_keys.admin, f"/v1/topics/{topic['id']}")["label"] == topic["label"]
