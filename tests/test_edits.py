"""Edited reviews: an item seen again under its external id with another text or rating keeps its old one as
a version, is rescored once, and says so in the API and on its page; identical re-sends stay duplicates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from nlp.analysis import TextInput
from service.config import Settings
from service.db.engine import make_session_factory
from service.db.models import (
    FeedbackEmotion,
    FeedbackItem,
    FeedbackItemVersion,
    FeedbackSentence,
    ItemEmbedding,
    PainPointDay,
    PainPointFact,
    Role,
    Source,
    Topic,
    TopicModelRun,
)
from service.pipeline import load_analyzer
from service.scoring import score_pending
from tests.scrapers.replay import load_json
from tests.test_collectors import add_app_store, app_store_feed
from tests.test_collectors import run as collector_run
from tests.web.conftest import sign_in

Auth = Callable[[Role], dict[str, str]]
FIRST = "The delivery was a week late. The staff at the store were rude."
EDITED = "The delivery was late, but the store called me and fixed it. Thank you!"


def _review(text: str, stars: float, **extra: Any) -> dict[str, Any]:
    return {
        "text": text,
        "source": "app store",
        "external_id": "r-1",
        "rating": {"value": stars, "scale": "stars"},
        **extra,
    }


def _post(client: TestClient, auth: Auth, *items: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/feedback", json={"items": list(items)}, headers=auth(Role.INGEST))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _count(session: Session, model: Any, item_id: int) -> int:
    return session.scalar(select(func.count()).select_from(model).where(model.item_id == item_id)) or 0


def _add_facts(session: Session, item_id: int) -> None:
    """A pain-point fact for each of the item's sentences, as the topic job would write them."""
    run = TopicModelRun(status="done", config={}, figures={})
    session.add(run)
    session.flush()
    topic = Topic(label="delivery", centroid=b"\x00\x00", born_model_id=run.id, last_model_id=run.id)
    session.add(topic)
    session.flush()
    item = session.get(FeedbackItem, item_id)
    assert item is not None
    sentences = session.scalars(select(FeedbackSentence.id).where(FeedbackSentence.item_id == item_id)).all()
    facts = [
        {
            "sentence_id": sentence_id,
            "touchpoint": "delivery_shipping",
            "origin": "text",
            "item_id": item_id,
            "topic_id": topic.id,
            "created_at": item.created_at,
            "negative": True,
            "sentiment_score": -0.8,
            "similarity": 0.9,
            "location": None,
            "source_id": item.source_id,
            "language": "en",
        }
        for sentence_id in sentences
    ]
    session.execute(insert(PainPointFact), facts)
    session.commit()


def test_an_api_edit_makes_one_version_and_is_rescored_once(
    client: TestClient, auth: Auth, engine: Engine, session: Session, scoring_settings: Settings
) -> None:
    first = _post(client, auth, _review(FIRST, 1))
    item_id = first["items"][0]["id"]
    analyzer = load_analyzer(scoring_settings)
    factory = make_session_factory(engine)
    assert score_pending(factory, analyzer=analyzer).scored == 1
    _add_facts(session, item_id)
    assert _count(session, PainPointFact, item_id) > 0
    assert (session.scalar(select(func.sum(PainPointDay.sentences))) or 0) > 0

    edit = _post(client, auth, _review(EDITED, 4))
    assert edit["items"][0]["status"] == "updated" and edit["items"][0]["id"] == item_id
    assert (edit["stored"], edit["updated"], edit["duplicates"]) == (0, 1, 0)
    session.expire_all()
    item = session.get(FeedbackItem, item_id)
    assert item is not None and item.text == EDITED and item.rating_value == 4
    assert item.scored_at is None and item.score_model is None and item.sentiment_label is None
    assert item.touchpoint_taxonomy is None and item.topic_model_id is None
    for model in (FeedbackSentence, FeedbackEmotion, ItemEmbedding, PainPointFact):
        assert _count(session, model, item_id) == 0, model
    assert (session.scalar(select(func.sum(PainPointDay.sentences))) or 0) == 0  # the rollups followed

    again = _post(client, auth, _review(EDITED, 4))
    assert again["items"][0]["status"] == "duplicate" and (again["updated"], again["duplicates"]) == (0, 1)
    versions = session.scalars(
        select(FeedbackItemVersion).where(FeedbackItemVersion.item_id == item_id)
    ).all()
    assert [(v.version, v.text, v.rating_value, v.change_source) for v in versions] == [(1, FIRST, 1, "api")]
    assert versions[0].import_id == edit["import_id"]

    assert score_pending(factory, analyzer=analyzer).scored == 1
    assert score_pending(factory, analyzer=analyzer).scored == 0
    session.expire_all()
    stored = session.scalars(
        select(FeedbackSentence)
        .where(FeedbackSentence.item_id == item_id)
        .order_by(FeedbackSentence.position)
    ).all()
    expected = analyzer.analyse([TextInput(str(item_id), EDITED, None)])[0].sentences
    assert [EDITED[s.start : s.end] for s in stored] == [EDITED[s.start : s.end] for s in expected]
    assert [s.position for s in stored] == list(range(len(expected)))
    assert _count(session, ItemEmbedding, item_id) == 1

    detail = client.get(f"/v1/feedback/{item_id}", headers=auth(Role.ANALYST)).json()
    assert detail["edited"] is True and detail["text"] == EDITED
    assert detail["rating"] == {"value": 4.0, "scale": "stars"}
    assert [
        (v["version"], v["text"], v["rating"]["value"], v["change_source"]) for v in detail["versions"]
    ] == [(1, FIRST, 1.0, "api")]
    assert detail["versions"][0]["seen_at"] <= detail["versions"][0]["replaced_at"]
    listed = client.get("/v1/feedback", headers=auth(Role.ANALYST)).json()["items"]
    assert [(i["id"], i["edited"], i["versions"]) for i in listed] == [(item_id, True, None)]
    audit = client.get(f"/v1/imports/{edit['import_id']}", headers=auth(Role.ADMIN)).json()
    assert (audit["updated"], audit["duplicates"], audit["stored"]) == (1, 0, 0)


def test_a_reimported_file_with_a_changed_row_updates_that_row_only(
    client: TestClient, auth: Auth, session: Session
) -> None:
    rows = [("r-1", FIRST, 1), ("r-2", "Great coffee and quick service.", 5), ("r-3", "Parking was full.", 2)]

    def upload(lines: list[tuple[str, str, int]]) -> dict[str, Any]:
        csv = "id,comment,stars\n" + "".join(f'{i},"{text}",{stars}\n' for i, text, stars in lines)
        response = client.post(
            "/v1/feedback/import",
            files={"file": ("reviews.csv", csv.encode(), "text/csv")},
            data={
                "source": "survey",
                "mapping": "external_id=id,text=comment,rating=stars",
                "rating_scale": "stars",
            },
            headers=auth(Role.INGEST),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    first = upload(rows)
    assert first["stored"] == 3
    second = upload([rows[0], ("r-2", "Great coffee, slow service today.", 3), rows[2]])
    assert [r["status"] for r in second["rows"]] == ["duplicate", "updated", "duplicate"]
    assert (second["stored"], second["updated"], second["duplicates"]) == (0, 1, 2)
    third = upload([rows[0], ("r-2", "Great coffee, slow service today.", 3), rows[2]])
    assert (third["updated"], third["duplicates"]) == (0, 3)
    versions = session.scalars(select(FeedbackItemVersion)).all()
    assert [(v.text, v.rating_value, v.change_source, v.import_id) for v in versions] == [
        ("Great coffee and quick service.", 5, "import", second["import_id"])
    ]
    imports = client.get("/v1/imports", headers=auth(Role.ADMIN)).json()
    assert [(i["id"], i["updated"]) for i in imports] == [
        (third["import_id"], 0),
        (second["import_id"], 1),
        (first["import_id"], 0),
    ]


def test_changes_inside_one_batch_each_make_a_version(
    client: TestClient, auth: Auth, session: Session
) -> None:
    body = _post(client, auth, _review(FIRST, 1), _review(FIRST, 1), _review(EDITED, 4), _review(FIRST, 2))
    assert [r["status"] for r in body["items"]] == ["stored", "duplicate", "updated", "updated"]
    versions = session.scalars(select(FeedbackItemVersion).order_by(FeedbackItemVersion.version)).all()
    assert [(v.version, v.text, v.rating_value) for v in versions] == [(1, FIRST, 1), (2, EDITED, 4)]
    item = session.scalars(select(FeedbackItem)).one()
    assert (item.text, item.rating_value) == (FIRST, 2)


def test_a_resend_without_a_rating_or_with_other_spacing_is_no_edit(
    client: TestClient, auth: Auth, session: Session
) -> None:
    _post(client, auth, _review(FIRST, 1))
    same = {"text": "  " + FIRST.upper().replace(" ", "  "), "source": "app store", "external_id": "r-1"}
    assert _post(client, auth, same)["items"][0]["status"] == "duplicate"
    assert session.scalar(select(func.count()).select_from(FeedbackItemVersion)) == 0


def test_an_item_without_external_id_is_never_edited(
    client: TestClient, auth: Auth, session: Session
) -> None:
    plain = {"text": FIRST, "source": "kiosk", "rating": {"value": 1, "scale": "stars"}}
    first = _post(client, auth, plain)
    changed = _post(client, auth, {**plain, "text": EDITED})
    again = _post(client, auth, plain)
    assert [b["items"][0]["status"] for b in (first, changed, again)] == ["stored", "stored", "duplicate"]
    assert session.scalar(select(func.count()).select_from(FeedbackItemVersion)) == 0
    detail = client.get(f"/v1/feedback/{first['items'][0]['id']}", headers=auth(Role.ANALYST)).json()
    assert (detail["edited"], detail["versions"]) == (False, [])


def test_the_item_page_shows_the_history(client: TestClient, auth: Auth, api_keys: dict[Role, str]) -> None:
    item_id = _post(client, auth, _review(FIRST, 1))["items"][0]["id"]
    other = _post(client, auth, {**_review("Fine.", 3), "external_id": "r-2"})["items"][0]["id"]
    _post(client, auth, _review(EDITED, 4))
    client.follow_redirects = False  # as the dashboard's own tests sign in
    sign_in(client, api_keys[Role.ANALYST])
    page = client.get(f"/feedback/{item_id}")
    assert page.status_code == 200
    html = page.text
    assert 'class="card fx-history"' in html and 'class="badge fx-edited"' in html
    assert 'Rating <span class="fx-rating">1 star</span> → <span class="fx-rating">4 stars</span>' in html
    assert "Version 1" in html and "Version 2 (current)" in html and "replaced through api" in html
    assert html.index(FIRST) > html.index("History")  # the old text is in the history, the new one above
    assert html.index(EDITED) < html.index("History")
    plain = client.get(f"/feedback/{other}").text
    assert "fx-history" not in plain and 'class="badge fx-edited"' not in plain
    listing = client.get("/feedback").text
    assert listing.count('class="badge fx-edited"') == 1


def test_a_collector_that_sees_a_review_edited_updates_it(
    client: TestClient, auth: Auth, engine: Engine, session: Session, settings: Settings
) -> None:
    add_app_store(session)
    factory = make_session_factory(engine)
    first = collector_run(factory, settings, app_store_feed())
    assert first.stored > 0 and first.updated == 0
    page = load_json("app_store", "page1.json")
    entry = page["feed"]["entry"][1]
    entry["im:rating"]["label"] = "4"
    entry["content"]["label"] = "Checkout is fixed now, thanks for the reply!"
    session.execute(update(Source).values(cursor=None))
    session.commit()
    again = collector_run(factory, settings, app_store_feed(first_page=page))
    assert (again.stored, again.updated, again.duplicates) == (0, 1, first.stored - 1)
    version = session.scalars(select(FeedbackItemVersion)).one()
    assert (version.rating_value, version.change_source, version.import_id) == (2, "collector", again.run_id)
    assert "checkout crashes sometimes (1)" in version.text
    item = session.get(FeedbackItem, version.item_id)
    assert item is not None and item.rating_value == 4 and "Checkout is fixed now" in item.text
    runs = client.get("/v1/sources/app-store-us/runs", headers=auth(Role.ADMIN)).json()
    assert [r["updated"] for r in runs] == [1, 0]


def test_an_edit_committed_while_its_item_is_analysed_waits_for_the_next_pass(
    client: TestClient, auth: Auth, engine: Engine, session: Session, scoring_settings: Settings
) -> None:
    item_id = _post(client, auth, _review(FIRST, 1))["items"][0]["id"]
    real = load_analyzer(scoring_settings)
    factory = make_session_factory(engine)

    class EditedMeanwhile:
        """The real analyzer; the customer edits the review while the first batch is being analysed."""

        version = real.version

        def __init__(self) -> None:
            self.calls = 0

        def analyse(self, inputs: list[TextInput]) -> Any:
            self.calls += 1
            if self.calls == 1:
                assert _post(client, auth, _review(EDITED, 4))["items"][0]["status"] == "updated"
            return real.analyse(inputs)

    run = score_pending(factory, analyzer=EditedMeanwhile())  # type: ignore[arg-type]
    assert (run.scored, run.skipped) == (0, 1), "the analysis of the old text is not written"
    assert score_pending(factory, analyzer=real).scored == 1
    session.expire_all()
    stored = session.scalars(select(FeedbackSentence).where(FeedbackSentence.item_id == item_id)).all()
    assert stored and all(0 <= s.start < s.end <= len(EDITED) for s in stored)
    assert " ".join(EDITED[s.start : s.end] for s in stored).startswith("The delivery was late, but")
