"""Key drivers: planted effects are found with the right sign and size, null ones are not, on real rows."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from service.db.models import (
    FeedbackItem,
    FeedbackSentence,
    ItemTouchpoint,
    PainPointFact,
    Role,
    SentenceTopic,
    Topic,
    TopicModelRun,
)
from service.drivers import Moments, compare, key_drivers
from service.feedback import Scope
from service.ingest.service import ingest_batch
from service.keys import create_api_key
from service.topics import fact_rows
from service.touchpoints import TouchpointRef

Auth = Callable[[Role], dict[str, str]]
Z = 1.959963984540054
RIYADH, DUBAI = "Riyadh Olaya", "Dubai Mall"


@dataclass(frozen=True)
class Response:
    """One feedback item: its rating, the themes its sentences are about, its touchpoints and store."""

    value: float | None
    scale: str | None = "nps"
    themes: tuple[str, ...] = ()
    touchpoints: tuple[str, ...] = ()
    location: str | None = None


def _topic(session: Session, run_id: int, name: str, status: str = "active") -> Topic:
    topic = Topic(
        label=f"{name} sentence from {DUBAI}",
        keywords=[name, "dubai", "issue"],
        keyword_weights={name: 1.0, "dubai": 0.5, "issue": 0.2},
        representative=f"The {name} was a problem at {DUBAI}.",
        languages={"en": 1},
        centroid=b"\x00\x00",
        born_model_id=run_id,
        last_model_id=run_id,
        status=status,
    )
    session.add(topic)
    session.flush()
    return topic


def _negative(response: Response) -> bool:
    low = {"nps": 6, "csat": 2, "ces": 3, "stars": 2}
    return response.value is not None and response.scale is not None and response.value <= low[response.scale]


def _seed(
    session: Session, responses: Sequence[Response], *, themes: Sequence[str], dead: Sequence[str] = ()
) -> dict[str, int]:
    """Store the responses as the scorer, touchpoint labeller and a refit would; the theme ids by name."""
    run = TopicModelRun(status="done", config={}, figures={})
    session.add(run)
    session.flush()
    topics = {name: _topic(session, run.id, name) for name in themes}
    topics |= {name: _topic(session, run.id, name, status="dead") for name in dead}
    now = datetime.now(UTC).replace(microsecond=0)
    raw = [
        {
            "text": f"response {n}: " + (", ".join(r.themes) or "fine"),
            "source": "survey",
            "external_id": f"r-{n}",
            "created_at": (now - timedelta(days=1 + n % 30, minutes=n)).isoformat(),
            "location": r.location,
            **({"rating": {"value": r.value, "scale": r.scale}} if r.value is not None else {}),
        }
        for n, r in enumerate(responses)
    ]
    ingest_batch(session, raw_items=raw, author_salt=b"s", max_text_chars=10_000, actor="test")
    ids = dict(session.execute(select(FeedbackItem.external_id, FeedbackItem.id)).all())
    sentences, touchpoints = [], []
    for n, r in enumerate(responses):
        label, score = ("negative", -0.8) if _negative(r) else ("positive", 0.8)
        session.execute(
            update(FeedbackItem)
            .where(FeedbackItem.id == ids[f"r-{n}"])
            .values(sentiment_label=label, sentiment_score=score, scored_at=now)
        )
        sentences += [
            {
                "item_id": ids[f"r-{n}"],
                "position": position,
                "start": 0,
                "end": 8,
                "sentiment_label": label,
                "sentiment_score": score,
                "sentiment_probabilities": {},
                "emotions": {},
                "embedding": b"\x00\x00",
            }
            for position in range(len(r.themes))
        ]
        touchpoints += [
            {"item_id": ids[f"r-{n}"], "touchpoint": t, "score": 0.9, "origin": "text"} for t in r.touchpoints
        ]
    if sentences:
        session.execute(insert(FeedbackSentence), sentences)
    if touchpoints:
        session.execute(insert(ItemTouchpoint), touchpoints)
    sentence_ids = {
        (item_id, position): sentence_id
        for sentence_id, item_id, position in session.execute(
            select(FeedbackSentence.id, FeedbackSentence.item_id, FeedbackSentence.position)
        )
    }
    items = {item.id: item for item in session.scalars(select(FeedbackItem))}
    topic_rows, facts = [], []
    for n, r in enumerate(responses):
        item = items[ids[f"r-{n}"]]
        for position, theme in enumerate(r.themes):
            negative = _negative(r)
            common: dict[str, Any] = {
                "sentence_id": sentence_ids[(item.id, position)],
                "item_id": item.id,
                "topic_id": topics[theme].id,
                "created_at": item.created_at,
                "negative": negative,
                "sentiment_score": -0.8 if negative else 0.8,
                "similarity": 0.9,
            }
            topic_rows.append({**common, "model_id": run.id, "origin": "fit"})
            facts += fact_rows(
                **common,
                touchpoints=[TouchpointRef(t, "text") for t in r.touchpoints],
                location=item.location,
                source_id=item.source_id,
                language=item.language,
            )
    if topic_rows:
        session.execute(insert(SentenceTopic), topic_rows)
    if facts:
        session.execute(insert(PainPointFact), facts)
    session.commit()
    return {name: topic.id for name, topic in topics.items()}


def _get(client: TestClient, url: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(url, params=params or None, headers=headers)  # {} would drop the URL's query
    assert response.status_code == 200, response.text
    return response.json()


def _listed(client: TestClient, feedback_query: str, headers: dict[str, str]) -> int:
    """How many items the driver's GET /v1/feedback link lists."""
    return len(_get(client, f"{feedback_query}&limit=500", headers)["items"])


def _nps(values: Sequence[float]) -> float:
    return 100 * (sum(v >= 9 for v in values) - sum(v <= 6 for v in values)) / len(values)


def _nps_variance(values: Sequence[float]) -> float:
    """The NPS variance formula (points^2 per response), as the sample variance (n - 1)."""
    n = len(values)
    promoters, detractors = sum(v >= 9 for v in values) / n, sum(v <= 6 for v in values) / n
    return 100**2 * (promoters + detractors - (promoters - detractors) ** 2) * n / (n - 1)


# --------------------------------------------------------------------------------------------- pure


def test_compare_follows_the_nps_variance_formula_and_the_drag_definition() -> None:
    refund = [2, 3, 4, 7] * 5  # 15 detractors, 5 passives: NPS -75
    rest = [8, 9, 10, 10] * 15  # 15 passives, 45 promoters: NPS 75
    scores = [100 if v >= 9 else -100 if v <= 6 else 0 for v in refund + rest]

    def moments(values: Sequence[float]) -> Moments:
        xs = [100 if v >= 9 else -100 if v <= 6 else 0 for v in values]
        return Moments(len(xs), sum(xs), sum(x * x for x in xs))

    figures = compare(moments(refund), moments(refund + rest))
    assert figures["score_with"] == pytest.approx(-75) and figures["score_without"] == pytest.approx(75)
    assert figures["difference"] == pytest.approx(-150)
    error = math.sqrt(_nps_variance(refund) / 20 + _nps_variance(rest) / 60)
    assert figures["ci_low"] == pytest.approx(-150 - Z * error)
    assert figures["ci_high"] == pytest.approx(-150 + Z * error)
    assert figures["significant"] and figures["p_value"] < 1e-10
    # the overall NPS would rise from 37.5 to 75 if refund responses scored like the rest
    assert sum(scores) / len(scores) == pytest.approx(37.5)
    assert figures["share_with"] == 0.25 and figures["impact"] == pytest.approx(75 - 37.5)
    lower_better = compare(moments(refund), moments(refund + rest), higher_is_better=False)
    assert lower_better["impact"] == pytest.approx(-37.5)
    everyone = compare(moments(refund), moments(refund))
    assert everyone["score_without"] is None and everyone["impact"] is None and not everyone["significant"]


# ------------------------------------------------------------------------------------------ the API


def _planted() -> list[Response]:
    """20 refund responses that are all detractors (2-4), 60 others at 8-10; noise around them."""
    responses = [
        Response(value=2 + n % 3, themes=("refund",), touchpoints=("returns_refunds",)) for n in range(20)
    ]
    responses[0] = Response(
        value=2, themes=("refund", "refund"), touchpoints=("returns_refunds",)
    )  # counted once
    responses += [
        Response(value=8 + n % 3, themes=("staff",) if n % 4 == 0 else (), touchpoints=("staff",))
        for n in range(60)
    ]
    responses += [Response(value=1, scale="csat", themes=("refund",)) for _ in range(12)]  # another scale
    responses += [Response(value=None, themes=("refund",)) for _ in range(5)]  # unrated
    responses += [Response(value=0, themes=("old",)) for _ in range(10)]  # a dead topic
    return responses


def test_a_planted_driver_is_the_top_significant_one_with_the_hand_computed_figures(
    client: TestClient, session: Session, auth: Auth
) -> None:
    ids = _seed(session, _planted(), themes=["refund", "staff"], dead=["old"])
    body = _get(client, "/v1/drivers", auth(Role.ANALYST), metric="nps")
    refund_values = [2 + n % 3 for n in range(20)]
    refund_values[0] = 2
    rest_values = [8 + n % 3 for n in range(60)] + [0] * 10  # the dead topic's responses are still responses
    everyone = refund_values + rest_values
    assert body["responses"] == 90 and body["score"] == pytest.approx(_nps(everyone))
    assert body["direction"] == "higher_is_better" and body["by"] == "theme"
    top = body["drivers"][0]
    assert top["id"] == str(ids["refund"]) and top["kind"] == "theme" and top["label"].startswith("refund")
    assert (top["responses_with"], top["responses_without"]) == (20, 70)
    assert top["score_with"] == pytest.approx(-100)
    assert top["score_without"] == pytest.approx(_nps(rest_values))  # (40 - 10) / 70
    difference = -100 - _nps(rest_values)
    assert top["difference"] == pytest.approx(difference)
    error = math.sqrt(0 / 20 + _nps_variance(rest_values) / 70)  # every refund response is a detractor
    assert (top["ci_low"], top["ci_high"]) == pytest.approx((difference - Z * error, difference + Z * error))
    assert top["significant"] and top["difference"] < 0
    assert top["impact"] == pytest.approx(20 / 90 * -difference)
    assert top["impact"] == pytest.approx(_nps(rest_values) - _nps(everyone))  # what the NPS would gain
    assert {d["id"] for d in body["drivers"]} == {str(ids["refund"]), str(ids["staff"])}  # no dead topic
    staff = body["drivers"][1]
    assert staff["responses_with"] == 15 and staff["impact"] < 0  # staff responses are the happy ones
    # every number is traceable: the links list exactly the responses behind them
    assert f"topic={ids['refund']}" in top["feedback_query"] and "rating_scale=nps" in top["feedback_query"]
    assert _listed(client, top["feedback_query"], auth(Role.ANALYST)) == 20
    assert _listed(client, body["feedback_query"], auth(Role.ANALYST)) == 90

    by_touchpoint = _get(client, "/v1/drivers", auth(Role.ANALYST), by="touchpoint")
    returns = next(d for d in by_touchpoint["drivers"] if d["id"] == "returns_refunds")
    assert returns["kind"] == "touchpoint" and returns["label"] == "Returns and refunds"
    assert (returns["responses_with"], returns["score_with"]) == (20, pytest.approx(-100))
    assert by_touchpoint["drivers"][0]["id"] == "returns_refunds"
    assert _listed(client, returns["feedback_query"], auth(Role.ANALYST)) == 20

    # too few responses: the staff theme (15) leaves with min_responses=16
    fewer = _get(client, "/v1/drivers", auth(Role.ANALYST), min_responses=16)
    assert [d["id"] for d in fewer["drivers"]] == [str(ids["refund"])]


def test_a_theme_with_no_effect_is_not_significant_and_the_interval_holds_the_true_difference(
    session: Session,
) -> None:
    rng = random.Random(20261203)
    responses = []
    for _ in range(400):
        about_refund = rng.random() < 0.3
        # refund responses draw 2-9 (NPS -50), the rest 5-10 (NPS 0): a true difference of -50 points
        value = rng.randint(2, 9) if about_refund else rng.randint(5, 10)
        about_parking = rng.random() < 0.4  # independent of the score
        themes = (("refund",) if about_refund else ()) + (("parking",) if about_parking else ())
        responses.append(Response(value=value, themes=themes))
    ids = _seed(session, responses, themes=["refund", "parking"])
    report = key_drivers(session, scope=Scope(), metric="nps")
    by_id = {d.topic_id: d for d in report.drivers}
    refund, parking = by_id[ids["refund"]], by_id[ids["parking"]]
    assert refund.significant and refund.ci_low is not None and refund.ci_high is not None
    assert refund.ci_low < -50 < refund.ci_high
    assert not parking.significant and parking.ci_low is not None and parking.ci_high is not None
    assert parking.ci_low < 0 < parking.ci_high
    assert report.drivers[0] is refund


def test_ces_and_stars_are_means_and_a_hard_theme_drags(
    client: TestClient, session: Session, auth: Auth
) -> None:
    hard = [1, 2, 3] * 4  # checkout: mean 2
    easy = [5, 6, 7] * 8  # the rest: mean 6
    responses = [Response(value=v, scale="ces", themes=("checkout",)) for v in hard]
    responses += [Response(value=v, scale="ces") for v in easy]
    responses += [Response(value=v, scale="stars", themes=("checkout",)) for v in (1, 2) * 6]
    responses += [Response(value=v, scale="stars") for v in (4, 5) * 6]
    ids = _seed(session, responses, themes=["checkout"])

    ces = _get(client, "/v1/drivers", auth(Role.ANALYST), metric="ces")
    assert ces["direction"] == "higher_is_better" and "higher is easier" in ces["description"]
    assert ces["responses"] == 36 and ces["score"] == pytest.approx((24 + 144) / 36)
    checkout = ces["drivers"][0]
    assert checkout["id"] == str(ids["checkout"])
    assert (checkout["score_with"], checkout["score_without"]) == (pytest.approx(2), pytest.approx(6))
    error = math.sqrt((8 / 11) / 12 + (16 / 23) / 24)  # sample variances of 1,2,3 x4 and 5,6,7 x8
    assert (checkout["ci_low"], checkout["ci_high"]) == pytest.approx((-4 - Z * error, -4 + Z * error))
    # a harder checkout drags CES down: a positive impact, like a detractor theme's on NPS
    assert checkout["impact"] == pytest.approx(12 / 36 * 4) and checkout["significant"]
    assert "rating_scale=ces" in checkout["feedback_query"]
    assert _listed(client, checkout["feedback_query"], auth(Role.ANALYST)) == 12

    stars = _get(client, "/v1/drivers", auth(Role.ANALYST), metric="stars")["drivers"][0]
    assert (stars["score_with"], stars["score_without"]) == (pytest.approx(1.5), pytest.approx(4.5))
    assert stars["impact"] == pytest.approx(0.5 * 3)
    csat = _get(client, "/v1/drivers", auth(Role.ANALYST), metric="csat")
    assert csat["responses"] == 0 and csat["score"] is None and csat["drivers"] == []


def test_a_location_scoped_key_sees_only_its_stores_responses(
    client: TestClient, session: Session, auth: Auth
) -> None:
    # Riyadh: 12 refund responses (8 detractors, 4 promoters) and 10 others (all promoters)
    riyadh = [Response(value=3 if n < 8 else 10, themes=("refund",), location=RIYADH) for n in range(12)]
    riyadh += [Response(value=9, location=RIYADH) for _ in range(10)]
    # Dubai: 20 refund responses (all passives) and 20 others (all detractors)
    dubai = [Response(value=7, themes=("refund",), location=DUBAI) for _ in range(20)]
    dubai += [Response(value=1, location=DUBAI) for _ in range(20)]
    ids = _seed(session, riyadh + dubai, themes=["refund"])
    _, plaintext = create_api_key(session, name="Olaya manager", role=Role.ANALYST, locations=[RIYADH])
    session.commit()
    manager = {"Authorization": f"Bearer {plaintext}"}

    mine = _get(client, "/v1/drivers", manager)
    assert (mine["responses"], mine["score"]) == (22, pytest.approx(100 * (14 - 8) / 22))
    refund = mine["drivers"][0]
    assert refund["id"] == str(ids["refund"])
    assert (refund["responses_with"], refund["responses_without"]) == (12, 10)
    assert refund["score_with"] == pytest.approx(100 * (4 - 8) / 12)
    assert refund["score_without"] == pytest.approx(100)
    assert refund["impact"] == pytest.approx(12 / 22 * (100 - 100 * (4 - 8) / 12))
    assert "location=Riyadh+Olaya" in refund["feedback_query"]
    assert _listed(client, refund["feedback_query"], manager) == 12
    # the label is the topic's keywords without store names, never a customer's sentence
    assert refund["label"] == "refund, issue" and DUBAI not in client.get("/v1/drivers", headers=manager).text

    admin = _get(client, "/v1/drivers", auth(Role.ANALYST))
    everything = admin["drivers"][0]
    assert (admin["responses"], everything["responses_with"], everything["responses_without"]) == (62, 32, 30)
    assert everything["score_with"] == pytest.approx(100 * (4 - 8) / 32)
    assert everything["score_without"] == pytest.approx(100 * (10 - 20) / 30)
    assert everything["impact"] < 0 < refund["impact"]  # across stores refund looks good; in Riyadh it hurts

    assert client.get("/v1/drivers", params={"location": DUBAI}, headers=manager).status_code == 403
    dubai_only = _get(client, "/v1/drivers", auth(Role.ANALYST), location=DUBAI)["drivers"][0]
    assert (dubai_only["responses_with"], dubai_only["score_with"]) == (20, pytest.approx(0))


def test_an_unknown_metric_is_a_problem_naming_the_allowed_ones(client: TestClient, auth: Auth) -> None:
    response = client.get("/v1/drivers", params={"metric": "nsp"}, headers=auth(Role.ANALYST))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    message = response.json()["errors"][0]["message"]
    assert all(name in message for name in ("nps", "csat", "ces", "stars"))
    bad_by = client.get("/v1/drivers", params={"by": "store"}, headers=auth(Role.ANALYST))
    assert bad_by.status_code == 422
    assert client.get("/v1/drivers").status_code == 401
    bad = client.get("/v1/pain-points", params={"impact_on": "effort"}, headers=auth(Role.ANALYST))
    assert bad.status_code == 422


def test_pain_points_carry_their_theme_s_impact_on_a_metric(
    client: TestClient, session: Session, auth: Auth
) -> None:
    ids = _seed(session, _planted(), themes=["refund", "staff"], dead=["old"])
    plain = _get(client, "/v1/pain-points", auth(Role.ANALYST))
    refund_points = [p for p in plain["pain_points"] if p["topic_id"] == ids["refund"]]
    assert refund_points and all(p["rating_impact"] is None for p in plain["pain_points"])

    body = _get(client, "/v1/pain-points", auth(Role.ANALYST), impact_on="nps")
    point = next(p for p in body["pain_points"] if p["topic_id"] == ids["refund"])
    impact = point["rating_impact"]
    drivers = _get(client, "/v1/drivers", auth(Role.ANALYST), since=body["since"], until=body["until"])
    expected = next(d for d in drivers["drivers"] if d["id"] == str(ids["refund"]))
    assert impact == {k: v for k, v in expected.items() if k not in ("id", "kind", "label")}
    assert impact["responses_with"] == 20 and impact["significant"] and impact["impact"] > 0
    assert _listed(client, impact["feedback_query"], auth(Role.ANALYST)) == 20
    # stars: nobody rated on that scale, so no theme has the responses
    stars = _get(client, "/v1/pain-points", auth(Role.ANALYST), impact_on="stars")
    assert stars["pain_points"] and all(p["rating_impact"] is None for p in stars["pain_points"])
