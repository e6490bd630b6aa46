"""Collector sources in the service: the API, runs with page-atomic cursors, PII, near-duplicates, leases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.collectors import SourceBusyError, create_source, run_collector
from service.config import Settings
from service.db.engine import make_session_factory
from service.db.models import FeedbackItem, ImportAudit, Role, Source
from service.ingest.service import hash_author
from tests.scrapers.replay import FakeSleep, ReplayTransport, Route, json_response, load_json

Auth = Callable[[Role], dict[str, str]]
PAGE = r"/us/rss/customerreviews/page={}/id=1234567890/sortby=mostrecent/json"


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def app_store_feed(*, first_page: dict[str, Any] | None = None) -> ReplayTransport:
    return ReplayTransport(
        Route("GET", PAGE.format(1), [json_response(first_page or load_json("app_store", "page1.json"))]),
        Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page2.json"))]),
        Route("GET", PAGE.format(3), [json_response(load_json("app_store", "page3_empty.json"))]),
    )


def add_app_store(session: Session, name: str = "app-store-us", **options: Any) -> Source:
    source = create_source(
        session,
        name=name,
        kind="app_store.v1",
        config={"app_id": "1234567890", "product": "Shop app"},
        default_touchpoint="mobile_app",
        **options,
    )
    session.commit()
    return source


def run(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: httpx.BaseTransport,
    name: str = "app-store-us",
    **options: Any,
) -> Any:
    sleep = FakeSleep()
    return run_collector(
        factory,
        name=name,
        settings=settings,
        trigger="test",
        source_options={"transport": transport, "sleep": sleep, "clock": sleep.clock},
        **options,
    )


# ---------------------------------------------------------------------------------------------- API


def test_admin_adds_a_collector_and_analysts_see_its_health(client: TestClient, auth: Auth) -> None:
    body = {
        "name": "app-store-us",
        "kind": "app_store.v1",
        "config": {"app_id": "1234567890", "countries": ["us", "gb"]},
        "default_touchpoint": "mobile_app",
        "interval_seconds": 1800,
    }
    assert client.post("/v1/sources", json=body, headers=auth(Role.ANALYST)).status_code == 403
    created = client.post("/v1/sources", json=body, headers=auth(Role.ADMIN))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/sources/app-store-us"
    listed = client.get("/v1/sources", headers=auth(Role.ANALYST)).json()
    (source,) = [s for s in listed if s["name"] == "app-store-us"]
    assert source["collector"] is True and source["enabled"] is True and source["interval_seconds"] == 1800
    assert source["health"]["state"] == "new"
    assert source["health"]["items_collected"] == 0
    assert source["health"]["next_run_at"] is not None
    assert source["config"]["countries"] == ["us", "gb"]

    again = client.post("/v1/sources", json=body, headers=auth(Role.ADMIN))
    assert again.status_code == 409 and "already exists" in again.json()["detail"]


def test_bad_collector_definitions_are_rejected_with_reasons(client: TestClient, auth: Auth) -> None:
    admin = auth(Role.ADMIN)
    unknown = client.post("/v1/sources", json={"name": "x", "kind": "myspace.v1"}, headers=admin)
    assert unknown.status_code == 422
    assert "unknown source kind 'myspace.v1'; known kinds:" in unknown.json()["detail"]
    assert "app_store.v1" in unknown.json()["detail"]
    bad_config = client.post(
        "/v1/sources", json={"name": "x", "kind": "app_store.v1", "config": {"app": "1"}}, headers=admin
    )
    assert bad_config.status_code == 422
    assert "app_id: Field required" in bad_config.json()["detail"]
    assert "app: Extra inputs are not permitted" in bad_config.json()["detail"]
    bad_cron = client.post(
        "/v1/sources",
        json={"name": "x", "kind": "app_store.v1", "config": {"app_id": "1234567890"}, "cron": "every day"},
        headers=admin,
    )
    assert bad_cron.status_code == 422 and "crontab" in bad_cron.json()["detail"]
    no_such_touchpoint = client.post(
        "/v1/sources",
        json={
            "name": "x",
            "kind": "app_store.v1",
            "config": {"app_id": "1234567890"},
            "default_touchpoint": "moon",
        },
        headers=admin,
    )
    assert no_such_touchpoint.status_code == 422
    assert (
        "unknown touchpoint 'moon'; the taxonomy's touchpoints are: website, mobile_app"
        in no_such_touchpoint.json()["detail"]
    )
    too_often = client.post(
        "/v1/sources",
        json={"name": "x", "kind": "app_store.v1", "config": {"app_id": "1234567890"}, "interval_seconds": 5},
        headers=admin,
    )
    assert too_often.status_code == 422 and "between 60" in too_often.json()["detail"]
    kinds = client.get("/v1/source-kinds", headers=auth(Role.ANALYST)).json()
    app_store = next(kind for kind in kinds if kind["kind"] == "app_store.v1")
    assert "app_id" in app_store["config_schema"]["properties"]


def test_pause_resume_and_run_now(client: TestClient, auth: Auth, session: Session) -> None:
    add_app_store(session)
    admin = auth(Role.ADMIN)
    paused = client.post("/v1/sources/app-store-us/pause", headers=admin).json()
    assert paused["enabled"] is False and paused["health"]["state"] == "paused"
    refused = client.post("/v1/sources/app-store-us/run", headers=admin)
    assert refused.status_code == 409 and "paused" in refused.json()["detail"]
    client.post("/v1/sources/app-store-us/resume", headers=admin)
    requested = client.post("/v1/sources/app-store-us/run", headers=admin)
    assert requested.status_code == 202
    assert requested.json()["runs"] == "/v1/sources/app-store-us/runs"
    session.expire_all()
    assert session.scalar(select(Source.run_requested_at).where(Source.name == "app-store-us")) is not None
    assert client.post("/v1/sources/nope/run", headers=admin).status_code == 404
    client.post(
        "/v1/feedback", json={"items": [{"text": "hi there", "source": "web"}]}, headers=auth(Role.INGEST)
    )
    not_collector = client.post("/v1/sources/web/run", headers=admin)
    assert not_collector.status_code == 409 and "no collector" in not_collector.json()["detail"]


def test_changes_to_a_collector(client: TestClient, auth: Auth, session: Session) -> None:
    add_app_store(session)
    admin = auth(Role.ADMIN)
    changed = client.patch("/v1/sources/app-store-us", json={"cron": "0 */6 * * *"}, headers=admin).json()
    assert changed["cron"] == "0 */6 * * *" and changed["interval_seconds"] is None
    bad = client.patch("/v1/sources/app-store-us", json={"config": {"app_id": "x"}}, headers=admin)
    assert bad.status_code == 422 and "app_id" in bad.json()["detail"]
    assert client.patch("/v1/sources/app-store-us", json={"colour": "red"}, headers=admin).status_code == 422


def test_literal_secrets_are_masked_and_env_references_shown(
    client: TestClient, auth: Auth, session: Session
) -> None:
    from scrapers.registry import masked_config, source_kinds

    shown = masked_config("app_store.v1", {"app_id": "1234567890"})
    assert shown == {"app_id": "1234567890"}
    kinds = client.get("/v1/source-kinds", headers=auth(Role.ANALYST)).json()
    secret_kinds = [
        kind["kind"]
        for kind in kinds
        if kind["kind"] in source_kinds()
        and any(
            p.get("format") == "password" or p.get("writeOnly")
            for p in kind["config_schema"].get("properties", {}).values()
        )
    ]
    assert secret_kinds, "every keyed source declares its secrets as SecretStr"
    for kind in secret_kinds:
        from scrapers.registry import source_class

        model = source_class(kind).config_model
        secret_field = next(
            name for name, info in model.model_fields.items() if "SecretStr" in str(info.annotation)
        )
        masked = masked_config(kind, {secret_field: "s3cr3t-value", "other": 1})
        assert masked[secret_field] == "********"
        referenced = masked_config(kind, {secret_field: {"env": "MY_KEY"}})
        assert referenced[secret_field] == {"env": "MY_KEY"}


# ---------------------------------------------------------------------------------------------- runs


def test_a_run_stores_every_record_once_with_its_cursor(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    outcome = run(factory, settings, app_store_feed())
    assert outcome.status == "completed" and outcome.pages == 3 and outcome.stored == 7
    items = session.scalars(select(FeedbackItem).order_by(FeedbackItem.external_id)).all()
    assert len(items) == 7
    german = next(item for item in items if item.external_id == "11000000003")
    assert german.channel == "app_store" and german.product == "Shop app"
    assert german.rating_value == 1.0 and german.rating_scale == "stars"
    assert german.meta["app_version"] == "5.2.1" and german.meta["touchpoint"] == "mobile_app"
    assert german.author_hash == hash_author("user3", salt=settings.author_salt_bytes())
    assert german.import_id == outcome.run_id
    source = session.scalar(select(Source).where(Source.name == "app-store-us"))
    assert source is not None
    assert source.cursor == {"since": {"us": "2026-11-20T12:15:00-07:00"}}
    assert source.items_collected == 7 and source.last_success_at is not None and source.lease_owner is None
    audit = session.get(ImportAudit, outcome.run_id)
    assert audit is not None and audit.kind == "collect" and audit.pages == 3 and audit.status == "completed"

    again = run(
        factory,
        settings,
        ReplayTransport(Route("GET", PAGE.format(1), [json_response(load_json("app_store", "page1.json"))])),
    )
    assert again.status == "completed" and again.pages == 1 and again.stored == 0
    assert session.scalar(select(Source.items_collected).where(Source.name == "app-store-us")) == 7


def test_personal_data_is_redacted_unless_the_source_keeps_it(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    page = load_json("app_store", "page1.json")
    entry = page["feed"]["entry"][0]
    entry["content"]["label"] = (
        "Refund to jane.doe@example.com please, call +44 20 7946 0958, card 4111 1111 1111 1111"
    )
    page["feed"]["entry"] = [entry]
    add_app_store(session)
    add_app_store(session, name="app-store-raw", redact_pii=False)
    run(
        factory,
        settings,
        ReplayTransport(
            Route("GET", PAGE.format(1), [json_response(page)]),
            Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page3_empty.json"))]),
        ),
    )
    run(
        factory,
        settings,
        ReplayTransport(
            Route("GET", PAGE.format(1), [json_response(page)]),
            Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page3_empty.json"))]),
        ),
        name="app-store-raw",
    )
    redacted, raw = (
        session.scalar(select(FeedbackItem).join(Source).where(Source.name == name))
        for name in ("app-store-us", "app-store-raw")
    )
    assert redacted is not None and raw is not None
    assert redacted.text.endswith("Refund to [email] please, call [phone], card [card]")
    assert redacted.meta["pii_redacted"] == {"email": 1, "phone": 1, "card": 1}
    assert "jane.doe@example.com" in raw.text and "pii_redacted" not in raw.meta
    runs = session.scalars(
        select(ImportAudit).where(ImportAudit.kind == "collect").order_by(ImportAudit.id)
    ).all()
    assert runs[0].redacted == 3


def test_near_duplicates_across_sources_are_flagged(
    factory: sessionmaker[Session], settings: Settings, session: Session, client: TestClient, auth: Auth
) -> None:
    add_app_store(session)
    add_app_store(session, name="app-store-mirror")
    run(factory, settings, app_store_feed())
    page = load_json("app_store", "page1.json")
    entry = page["feed"]["entry"][3]
    entry["id"]["label"] = "99"
    entry["content"]["label"] = (
        "SEIT dem Update stürzt die App beim Bezahlen ab!!! Bitte beheben... https://t.co/x"
    )
    page["feed"]["entry"] = [entry]
    outcome = run(
        factory,
        settings,
        ReplayTransport(
            Route("GET", PAGE.format(1), [json_response(page)]),
            Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page3_empty.json"))]),
        ),
        name="app-store-mirror",
    )
    copy = session.scalar(select(FeedbackItem).where(FeedbackItem.external_id == "99"))
    original = session.scalar(select(FeedbackItem).where(FeedbackItem.external_id == "11000000003"))
    assert copy is not None and original is not None
    assert copy.near_duplicate_of == original.id
    assert original.near_duplicate_of is None
    assert session.get(ImportAudit, outcome.run_id).near_duplicates == 1  # type: ignore[union-attr]
    flagged = client.get("/v1/feedback", params={"near_duplicate": True}, headers=auth(Role.ANALYST)).json()
    assert [(item["id"], item["near_duplicate_of"]) for item in flagged["items"]] == [(copy.id, original.id)]
    from_run = client.get(
        "/v1/feedback", params={"import_id": outcome.run_id}, headers=auth(Role.ANALYST)
    ).json()
    assert [item["external_id"] for item in from_run["items"]] == ["99"]


def test_a_failed_page_keeps_the_pages_before_it(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    transport = ReplayTransport(
        Route("GET", PAGE.format(1), [json_response(load_json("app_store", "page1.json"))]),
        Route("GET", PAGE.format(2), [httpx.ReadTimeout("slow") for _ in range(4)]),
    )
    outcome = run(factory, settings, transport)
    assert outcome.status == "failed" and outcome.pages == 1 and outcome.stored == 4
    assert "did not answer" in (outcome.error or "")
    source = session.scalar(select(Source).where(Source.name == "app-store-us"))
    assert source is not None and source.cursor is not None and source.cursor["page"] == 2
    assert source.consecutive_failures == 1 and source.last_error_action == "retry"
    resumed = run(
        factory,
        settings,
        ReplayTransport(
            Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page2.json"))]),
            Route("GET", PAGE.format(3), [json_response(load_json("app_store", "page3_empty.json"))]),
        ),
    )
    assert resumed.status == "completed" and resumed.stored == 3
    assert session.scalar(select(Source.consecutive_failures).where(Source.name == "app-store-us")) == 0
    session.expire_all()
    assert len(session.scalars(select(FeedbackItem.id)).all()) == 7


def test_rate_limiting_defers_the_source(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    transport = ReplayTransport(
        Route("GET", PAGE.format(1), [json_response({}, 429, {"Retry-After": "7200"})])
    )
    outcome = run(factory, settings, transport)
    assert outcome.status == "rate_limited"
    source = session.scalar(select(Source).where(Source.name == "app-store-us"))
    assert source is not None and source.deferred_until is not None
    assert source.last_error_action == "rate_limited"


def test_malformed_records_are_counted_and_sampled(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    transport = ReplayTransport(
        Route("GET", PAGE.format(1), [json_response(load_json("app_store", "page2_malformed.json"))]),
        Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page3_empty.json"))]),
    )
    outcome = run(factory, settings, transport)
    assert outcome.status == "completed" and outcome.stored == 1 and outcome.malformed == 2
    audit = session.get(ImportAudit, outcome.run_id)
    assert audit is not None
    assert {sample["external_id"] for sample in audit.error_sample} == {"11000000099", "11000000098"}


@dataclass
class HeldRun:
    """A collector run in another thread whose first page is held until ``release`` is set."""

    release: threading.Event
    worker: threading.Thread
    results: list[Any]

    def finish(self) -> Any:
        self.release.set()
        self.worker.join(30)
        return self.results[0]


def start_held_run(factory: sessionmaker[Session], settings: Settings) -> HeldRun:
    entered, release = threading.Event(), threading.Event()

    def held_first_page(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(30)
        return json_response(load_json("app_store", "page1.json"))

    transport = ReplayTransport(
        Route("GET", PAGE.format(1), [held_first_page]),
        Route("GET", PAGE.format(2), [json_response(load_json("app_store", "page3_empty.json"))]),
    )
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(run(factory, settings, transport)))
    worker.start()
    assert entered.wait(10)
    return HeldRun(release=release, worker=worker, results=results)


def test_one_run_at_a_time_and_a_lost_lease_stores_nothing(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    held = start_held_run(factory, settings)
    with pytest.raises(SourceBusyError):
        run(factory, settings, app_store_feed())
    # Someone else takes the source over (an expired lease): the slow run's page must not be stored.
    with factory() as other, other.begin():
        other.execute(update(Source).values(lease_owner="elsewhere:1:x"))
    outcome = held.finish()
    assert outcome.status == "interrupted" and outcome.stored == 0
    assert session.scalar(select(FeedbackItem.id).limit(1)) is None


def test_a_config_missing_its_secret_fails_clearly(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    session.execute(update(Source).values(config={"app_id": {"env": "CXMINE_TEST_UNSET_VARIABLE"}}))
    session.commit()
    outcome = run(factory, settings, app_store_feed())
    assert outcome.status == "failed"
    assert outcome.error == "environment variable CXMINE_TEST_UNSET_VARIABLE is not set"


def test_a_long_page_keeps_its_lease(
    factory: sessionmaker[Session], settings: Settings, session: Session
) -> None:
    add_app_store(session)
    short_lease = settings.model_copy(update={"collector_lease_seconds": 3})
    held = start_held_run(factory, short_lease)
    time.sleep(4.5)  # longer than the lease: only the renewals keep it
    with pytest.raises(SourceBusyError):
        run(factory, short_lease, app_store_feed())
    outcome = held.finish()
    assert outcome.status == "completed" and outcome.stored == 4
