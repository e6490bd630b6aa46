"""The feedback ingestion and listing API, end to end through HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import FeedbackItem, ImportAudit, Role, Source

Auth = Callable[[Role], dict[str, str]]


def _post(client: TestClient, auth: Auth, items: list[Any]) -> dict[str, Any]:
    response = client.post("/v1/feedback", json={"items": items}, headers=auth(Role.INGEST))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(FeedbackItem)) or 0


BATCH: list[dict[str, Any]] = [
    {
        "text": "Delivery was three days late.",
        "source": "trustpilot",
        "external_id": "tp-1",
        "created_at": "2026-10-01T09:30:00+03:00",
        "rating": {"value": 2, "scale": "stars"},
        "location": "Riyadh Olaya",
        "language": "en",
        "author": "alice@example.com",
    },
    {
        "text": "التوصيل تأخر كثيرا",
        "source": "trustpilot",
        "external_id": "tp-2",
        "created_at": "2026-10-02T10:00:00Z",
        "rating": {"value": 1, "scale": "stars"},
        "language": "ar",
    },
    {
        "text": "Great!",
        "source": "nps-survey",
        "author": "customer-a",
        "created_at": "2026-10-03T08:00:00+00:00",
        "rating": {"value": 10, "scale": "nps"},
    },
    {
        "text": "Great!",
        "source": "nps-survey",
        "author": "customer-b",
        "created_at": "2026-10-03T08:00:00+00:00",
        "rating": {"value": 9, "scale": "nps"},
    },
    {
        "text": "ارسال سفارش‌ها خیلی کند است",
        "source": "app-store",
        "language": "fa",
        "created_at": "2026-10-04T12:00:00+03:30",
    },
]


def test_same_batch_twice_stores_once(client: TestClient, auth: Auth, session: Session) -> None:
    first = _post(client, auth, BATCH)
    assert [item["status"] for item in first["items"]] == ["stored"] * 5
    assert first["stored"] == 5
    second = _post(client, auth, BATCH)
    assert [item["status"] for item in second["items"]] == ["duplicate"] * 5
    assert [item["id"] for item in second["items"]] == [item["id"] for item in first["items"]]
    assert (second["stored"], second["duplicates"]) == (0, 5)
    assert _count(session) == 5


def test_two_customers_writing_the_same_words_stay_two(
    client: TestClient, auth: Auth, session: Session
) -> None:
    result = _post(client, auth, BATCH[2:4])
    assert [item["status"] for item in result["items"]] == ["stored", "stored"]
    same_author_again = _post(client, auth, [BATCH[2]])
    assert same_author_again["items"][0]["status"] == "duplicate"
    assert _count(session) == 2


def test_duplicates_inside_one_batch_point_at_the_first_copy(client: TestClient, auth: Auth) -> None:
    result = _post(client, auth, [BATCH[0], BATCH[1], BATCH[0]])
    statuses = [item["status"] for item in result["items"]]
    assert statuses == ["stored", "stored", "duplicate"]
    assert result["items"][2]["id"] == result["items"][0]["id"]


def test_external_id_is_unique_per_source_only(client: TestClient, auth: Auth, session: Session) -> None:
    same_id_other_source = {**BATCH[0], "source": "google-play"}
    result = _post(client, auth, [BATCH[0], same_id_other_source])
    assert [item["status"] for item in result["items"]] == ["stored", "stored"]
    assert set(session.scalars(select(Source.name))) == {"trustpilot", "google-play"}


def test_mixed_batch_keeps_good_items_and_explains_bad_ones(
    client: TestClient, auth: Auth, session: Session
) -> None:
    bad_items: list[Any] = [
        {"text": "   ", "source": "web"},
        {"text": "x" * 10_001, "source": "web"},
        {"text": "has a \x00 byte", "source": "web"},
        {"source": "web"},
        {"text": "no source"},
        {"text": "naive time", "source": "web", "created_at": "2026-10-01T09:00:00"},
        {"text": "NPS out of range", "source": "web", "rating": {"value": 11, "scale": "nps"}},
        {"text": "unknown scale", "source": "web", "rating": {"value": 3, "scale": "smileys"}},
        {"text": "unexpected field", "source": "web", "sentiment": "positive"},
        "just a string",
        None,
    ]
    items = [BATCH[0], *bad_items, BATCH[1]]
    result = _post(client, auth, items)
    statuses = [item["status"] for item in result["items"]]
    assert statuses == ["stored"] + ["rejected"] * len(bad_items) + ["stored"]
    assert (result["received"], result["stored"], result["rejected"]) == (len(items), 2, len(bad_items))
    reasons = [item["reason"] for item in result["items"][1:-1]]
    assert "text is empty" in reasons[0]
    assert "limit is 10000" in reasons[1]
    assert "NUL" in reasons[2]
    assert reasons[3].startswith("text:")
    assert reasons[4].startswith("source:")
    assert "UTC offset" in reasons[5]
    assert "nps ratings run from 0 to 10" in reasons[6]
    assert reasons[7].startswith("rating.scale:")
    assert "sentiment" in reasons[8]
    assert "JSON object" in reasons[9] and "JSON object" in reasons[10]
    assert all(item["errors"] for item in result["items"][1:-1])
    assert _count(session) == 2
    audit = session.get(ImportAudit, result["import_id"])
    assert audit is not None and (audit.received, audit.stored, audit.rejected) == (
        len(items),
        2,
        len(bad_items),
    )
    assert len(audit.error_sample) == len(bad_items)


def test_stored_item_keeps_its_offset_and_hashes_the_author(
    client: TestClient, auth: Auth, session: Session
) -> None:
    result = _post(client, auth, [BATCH[0], BATCH[4]])
    item = client.get(f"/v1/feedback/{result['items'][0]['id']}", headers=auth(Role.ANALYST)).json()
    assert item["created_at"] == "2026-10-01T09:30:00+03:00"
    assert item["rating"] == {"value": 2.0, "scale": "stars"}
    assert item["source"] == "trustpilot" and item["location"] == "Riyadh Olaya"
    assert item["created_at_given"] is True
    assert item["author_ref"] and "alice" not in item["author_ref"]
    assert item["import_id"] == result["import_id"]
    stored_columns = " ".join(str(v) for v in session.execute(select(FeedbackItem.__table__)).first() or ())
    assert "alice" not in stored_columns
    persian = client.get(f"/v1/feedback/{result['items'][1]['id']}", headers=auth(Role.ANALYST)).json()
    assert persian["created_at"] == "2026-10-04T12:00:00+03:30"
    assert "\u200c" in persian["text"]


def test_item_without_time_gets_collection_time_and_says_so(client: TestClient, auth: Auth) -> None:
    result = _post(client, auth, [{"text": "no time given", "source": "web"}])
    item = client.get(f"/v1/feedback/{result['items'][0]['id']}", headers=auth(Role.ANALYST)).json()
    assert item["created_at_given"] is False
    assert item["created_at"] == item["collected_at"]


def test_batch_over_the_item_limit_is_413(client: TestClient, auth: Auth, session: Session) -> None:
    items = [{"text": f"item {i}", "source": "web"} for i in range(1001)]
    response = client.post("/v1/feedback", json={"items": items}, headers=auth(Role.INGEST))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "1000" in response.json()["detail"]
    assert _count(session) == 0


def test_body_over_the_byte_limit_is_413_declared_or_streamed(client: TestClient, auth: Auth) -> None:
    limit = client.app.state.settings.max_json_body_bytes  # type: ignore[attr-defined]
    big = b'{"items": [{"text": "' + b"a" * (limit + 10) + b'", "source": "web"}]}'
    headers = {**auth(Role.INGEST), "Content-Type": "application/json"}
    declared = client.post("/v1/feedback", content=big, headers=headers)
    assert declared.status_code == 413
    assert declared.json()["type"] == "urn:cxmine:problem:payload-too-large"

    def chunks() -> Any:
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    streamed = client.post("/v1/feedback", content=chunks(), headers=headers)
    assert streamed.status_code == 413


def test_list_filters_and_paginates_with_a_cursor(client: TestClient, auth: Auth) -> None:
    items = [
        {
            "text": f"review {i}",
            "source": "trustpilot" if i % 2 else "google-play",
            "external_id": str(i),
            "created_at": f"2026-10-{1 + i % 20:02d}T10:00:00+00:00",
            "location": "Dubai Mall" if i % 3 else None,
            "language": "en" if i % 4 else "ar",
        }
        for i in range(40)
    ]
    _post(client, auth, items)
    headers = auth(Role.ANALYST)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/feedback", params=params, headers=headers).json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 6 and len(seen) == 40 and len(set(seen)) == 40
    everything = client.get("/v1/feedback", params={"limit": 500}, headers=headers).json()["items"]
    times = [item["created_at"] for item in everything]
    assert times == sorted(times, reverse=True)

    def ids(**params: Any) -> set[str]:
        response = client.get("/v1/feedback", params={"limit": 500, **params}, headers=headers)
        assert response.status_code == 200, response.text
        return {item["external_id"] for item in response.json()["items"]}

    assert ids(source="trustpilot") == {str(i) for i in range(40) if i % 2}
    assert ids(location="Dubai Mall") == {str(i) for i in range(40) if i % 3}
    assert ids(language="ar") == {str(i) for i in range(40) if i % 4 == 0}
    assert ids(since="2026-10-19T00:00:00Z") == {str(i) for i in range(40) if 1 + i % 20 >= 19}
    assert ids(until="2026-10-02T00:00:00+00:00") == {str(i) for i in range(40) if i % 20 == 0}
    assert ids(q="REVIEW 1") == {str(i) for i in range(40) if str(i).startswith("1")}
    assert ids(source=["trustpilot", "google-play"], language="ar") == {
        str(i) for i in range(40) if i % 4 == 0
    }


def test_text_search_treats_wildcards_literally(client: TestClient, auth: Auth) -> None:
    _post(client, auth, [{"text": "100% late", "source": "web"}, {"text": "100 late", "source": "web"}])
    page = client.get("/v1/feedback", params={"q": "100%"}, headers=auth(Role.ANALYST)).json()
    assert [item["text"] for item in page["items"]] == ["100% late"]


def test_bad_list_parameters_are_problems(client: TestClient, auth: Auth) -> None:
    headers = auth(Role.ANALYST)
    bad_cursor = client.get("/v1/feedback", params={"cursor": "not-a-cursor"}, headers=headers)
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["errors"][0]["field"] == "query.cursor"
    too_many = client.get("/v1/feedback", params={"limit": 501}, headers=headers)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "query.limit"
    naive = client.get("/v1/feedback", params={"since": "2026-10-01T00:00:00"}, headers=headers)
    assert naive.status_code == 422
    missing = client.get("/v1/feedback/999999", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert set(missing.json()) >= {"type", "title", "status", "detail"}


def test_malformed_json_body_is_a_problem(client: TestClient, auth: Auth) -> None:
    headers = {**auth(Role.INGEST), "Content-Type": "application/json"}
    response = client.post("/v1/feedback", content=b'{"items": [', headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:cxmine:problem:validation-error" and body["errors"]
    not_a_list = client.post("/v1/feedback", json={"items": "nope"}, headers=headers)
    assert not_a_list.status_code == 422
    assert not_a_list.json()["errors"][0]["field"] == "body.items"


def test_unknown_route_and_wrong_method_are_problems(client: TestClient) -> None:
    assert client.get("/v1/nothing-here").json()["status"] == 404
    wrong_method = client.put("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "FeedbackItemIn" in schema["components"]["schemas"]
