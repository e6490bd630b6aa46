"""Alert rules: evaluated into episodes (one alert per subject while its condition holds), sent to webhooks.

Evaluation finds the subjects for which a rule's condition holds now. A subject without an open alert
gets one (delivery pending); an open alert that still holds is only marked seen; one that no longer
holds is resolved. The unique (rule_id, open_subject) constraint keeps one open episode per subject
even with concurrent evaluators. An item (``angry_item``) is a one-shot episode: its alert is closed as
it fires but keeps ``open_subject``, so the same constraint guarantees an item never fires twice.

Delivery claims due alerts with a short lease in one transaction, posts outside any transaction, and
records every attempt; failures are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import email.utils
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import String, cast, exists, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from service import __version__
from service.analytics import touchpoint_metrics
from service.config import Settings
from service.db.models import (
    Alert,
    AlertDelivery,
    AlertRule,
    FeedbackEmotion,
    FeedbackItem,
    Source,
    Topic,
    utcnow,
)
from service.errors import FieldError, field_errors_from_pydantic
from service.feedback import Scope, emotion_scheme
from service.painpoints import list_pain_points
from service.touchpoints import active_taxonomy

logger = logging.getLogger("cxmine.alerts")

RuleKind = Literal["pain_point_trending", "negative_share", "angry_item"]
WebhookFormat = Literal["json", "slack"]
ITEMS_PER_PASS = 200


def _http_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if scheme.lower() not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


WebhookUrl = Annotated[str, Field(min_length=8, max_length=2000), AfterValidator(_http_url)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PainPointTrendingParams(_Params):
    """A pain point (a topic at a touchpoint) whose negatives trend beyond its history."""

    touchpoint: str | None = Field(default=None, description="Only this touchpoint.")
    topic_id: int | None = Field(default=None, ge=1, description="Only this topic.")
    location: str | None = Field(default=None, description="Only feedback from this location.")
    source: str | None = None
    language: str | None = None
    interval: Literal["hour", "day", "week"] = "week"
    window: int = Field(default=1, ge=1, le=52, description="Latest buckets tested.")
    baseline: int = Field(default=6, ge=1, le=104, description="Buckets before the window.")


class NegativeShareParams(_Params):
    """A touchpoint's share of negative sentences over the last days at or above a threshold."""

    touchpoint: str = Field(min_length=1)
    threshold: float = Field(gt=0, le=1, description="Negative share, e.g. 0.4.")
    min_sentences: int = Field(default=20, ge=1, description="Fewer sentences never fire.")
    window_days: int = Field(default=7, ge=1, le=365)
    location: str | None = None


class AngryItemParams(_Params):
    """Each newly scored item with an emotion (optionally with a metadata value, e.g. tier=vip)."""

    emotion: str = Field(
        default="anger", description="A CX emotion (anger, frustration...) or GoEmotions label."
    )
    metadata_key: str | None = Field(default=None, min_length=1, max_length=100)
    metadata_value: str | None = Field(default=None, max_length=500)
    source: str | None = None
    location: str | None = None

    @model_validator(mode="after")
    def _known_emotion_and_pair(self) -> AngryItemParams:
        if emotion_scheme(self.emotion) is None:
            raise ValueError(f"unknown emotion {self.emotion!r}: use a CX or GoEmotions label")
        if (self.metadata_key is None) != (self.metadata_value is None):
            raise ValueError("metadata_key and metadata_value go together")
        return self


PARAMS_MODELS: dict[str, type[_Params]] = {
    "pain_point_trending": PainPointTrendingParams,
    "negative_share": NegativeShareParams,
    "angry_item": AngryItemParams,
}


class RuleParamsError(ValueError):
    """A rule's params are not valid for its kind."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def validate_params(session: Session, *, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's params with defaults filled in; RuleParamsError names every bad field."""
    try:
        model = PARAMS_MODELS[kind].model_validate(dict(params))
    except ValidationError as exc:
        errors = field_errors_from_pydantic(exc.errors())
        raise RuleParamsError(
            [e.model_copy(update={"field": f"params.{e.field}".removesuffix(".(root)")}) for e in errors]
        ) from exc
    errors = []
    touchpoint = getattr(model, "touchpoint", None)
    if touchpoint is not None and active_taxonomy(session).get(touchpoint) is None:
        errors.append(
            FieldError(field="params.touchpoint", message=f"not in the taxonomy in force: {touchpoint}")
        )
    topic_id = getattr(model, "topic_id", None)
    if topic_id is not None and session.get(Topic, topic_id) is None:
        errors.append(FieldError(field="params.topic_id", message=f"no topic has id {topic_id}"))
    if errors:
        raise RuleParamsError(errors)
    return model.model_dump(mode="json")


@dataclass
class Finding:
    """A subject for which a rule's condition holds, with what to tell about it."""

    subject: str
    summary: str
    details: dict[str, Any]
    links: dict[str, str]

    def payload(self) -> dict[str, Any]:
        """The alert payload."""
        return {"summary": self.summary, "details": self.details, "links": self.links}


@dataclass
class RuleOutcome:
    """What evaluating one rule did."""

    rule_id: int
    fired: list[int] = field(default_factory=list)
    ongoing: int = 0
    resolved: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass
class EvaluationReport:
    """What one evaluation of the rules did."""

    rules: list[RuleOutcome] = field(default_factory=list)

    @property
    def fired(self) -> list[int]:
        """The ids of the alerts that fired."""
        return [alert_id for outcome in self.rules for alert_id in outcome.fired]

    @property
    def resolved(self) -> list[int]:
        """The ids of the alerts whose episode ended."""
        return [alert_id for outcome in self.rules for alert_id in outcome.resolved]

    @property
    def errors(self) -> dict[int, str]:
        """Rules that could not be evaluated, by id."""
        return {o.rule_id: o.error for o in self.rules if o.error is not None}


def _query(pairs: Sequence[tuple[str, Any]]) -> str:
    return urlencode([(k, v) for k, v in pairs if v is not None])


def _negative_share_findings(
    session: Session, *, params: NegativeShareParams, now: datetime
) -> list[Finding]:
    since = now - timedelta(days=params.window_days)
    scope = Scope(since=since, locations=(params.location,) if params.location else ())
    metrics = touchpoint_metrics(session, scope=scope).get(params.touchpoint)
    if metrics is None or metrics.sentences < params.min_sentences:
        return []
    share = metrics.negative_share or 0.0
    if share < params.threshold:
        return []
    touchpoint = active_taxonomy(session).get(params.touchpoint)
    name = touchpoint.name if touchpoint else params.touchpoint
    where = f" at {params.location}" if params.location else ""
    filters = [("since", since.isoformat()), ("location", params.location)]
    return [
        Finding(
            subject=f"touchpoint:{params.touchpoint}",
            summary=f"{share:.0%} of {metrics.sentences} sentences about {name}{where} in the last "
            f"{params.window_days} days are negative (threshold {params.threshold:.0%}).",
            details={
                "touchpoint": params.touchpoint,
                "touchpoint_name": name,
                "location": params.location,
                "since": since.isoformat(),
                "sentences": metrics.sentences,
                "negative_sentences": metrics.negative_sentences,
                "negative_share": round(share, 4),
                "threshold": params.threshold,
                "items": metrics.items,
            },
            links={
                "feedback": "/v1/feedback?" + _query([("touchpoint", params.touchpoint), *filters]),
                "negative_feedback": "/v1/feedback?"
                + _query(
                    [
                        ("touchpoint", params.touchpoint),
                        *filters,
                        ("sentiment", "negative"),
                        ("sentiment", "mixed"),
                    ]
                ),
                "touchpoints": "/v1/touchpoints?" + _query(filters),
            },
        )
    ]


def _trending_findings(session: Session, *, params: PainPointTrendingParams, now: datetime) -> list[Finding]:
    scope = Scope(
        locations=(params.location,) if params.location else (),
        sources=(params.source,) if params.source else (),
        languages=(params.language,) if params.language else (),
    )
    pain_points = list_pain_points(
        session,
        scope=scope,
        touchpoints=(params.touchpoint,) if params.touchpoint else None,
        topic_ids=(params.topic_id,) if params.topic_id else (),
        interval=params.interval,
        window=params.window,
        baseline=params.baseline,
        limit=1000,
        now=now,
    )
    taxonomy = active_taxonomy(session)
    where = f" at {params.location}" if params.location else ""
    findings = []
    for p in pain_points:
        if not p.trending:
            continue
        touchpoint = taxonomy.get(p.touchpoint)
        name = touchpoint.name if touchpoint else p.touchpoint
        subject = f"topic:{p.topic_id}@{p.touchpoint}" + (
            f"@loc:{params.location}" if params.location else ""
        )
        scope_filters = [
            ("location", params.location),
            ("source", params.source),
            ("language", params.language),
        ]
        findings.append(
            Finding(
                subject=subject[:300],
                summary=f"Trending pain point at {name}{where}: {p.label!r}, {p.current} negative sentences "
                f"in the latest {params.window} {params.interval}(s) where {p.expected:.1f} were expected.",
                details={
                    "topic_id": p.topic_id,
                    "touchpoint": p.touchpoint,
                    "touchpoint_name": name,
                    "label": p.label,
                    "keywords": list(p.keywords)[:10],
                    "current": p.current,
                    "negative": p.negative,
                    "sentences": p.sentences,
                    "negative_share": p.negative_share,
                    "expected": round(p.expected, 3),
                    "growth": round(p.growth, 3) if p.growth is not None else None,
                    "p_value": p.p_value,
                    "interval": params.interval,
                    "window": params.window,
                    "locations": dict(p.locations),
                    "quotes": [{"item_id": q.item_id, "text": q.text} for q in list(p.quotes)[:3]],
                    "first_seen": p.first_seen.isoformat() if p.first_seen else None,
                    "last_seen": p.last_seen.isoformat() if p.last_seen else None,
                },
                links={
                    "pain_point": "/v1/pain-points?"
                    + _query(
                        [
                            ("topic", p.topic_id),
                            ("touchpoint", p.touchpoint),
                            *scope_filters,
                            ("interval", params.interval),
                            ("window", params.window),
                            ("baseline", params.baseline),
                        ]
                    ),
                    "triage": f"/v1/pain-points/{p.topic_id}/{p.touchpoint}/triage",
                    "feedback": p.feedback_query
                    or "/v1/feedback?" + _query([("touchpoint", p.touchpoint), *scope_filters]),
                },
            )
        )
    return findings


def _insert(session: Session) -> Callable[[Any], Any]:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _new_alert(
    session: Session, *, rule_id: int, finding: Finding, now: datetime, one_shot: bool
) -> int | None:
    """Insert an alert unless its subject already has an open episode (or, one-shot, ever fired); its id."""
    statement = (
        _insert(session)(Alert)
        .values(
            rule_id=rule_id,
            subject=finding.subject,
            open_subject=finding.subject,
            status="resolved" if one_shot else "firing",
            payload=finding.payload(),
            fired_at=now,
            last_seen_at=now,
            closed_at=now if one_shot else None,
            delivery_status="pending",
            attempts=0,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing(index_elements=["rule_id", "open_subject"])
        .returning(Alert.id)
    )
    alert_id: int | None = session.execute(statement).scalar_one_or_none()
    return alert_id


def _angry_item_findings(
    session: Session, *, rule: AlertRule, params: AngryItemParams, limit: int
) -> list[Finding]:
    scheme = emotion_scheme(params.emotion)
    subject = literal("item:") + cast(FeedbackItem.id, String)
    query = select(FeedbackItem, FeedbackEmotion.probability).join(
        FeedbackEmotion,
        (FeedbackEmotion.item_id == FeedbackItem.id)
        & (FeedbackEmotion.scheme == scheme)
        & (FeedbackEmotion.label == params.emotion),
    )
    query = query.where(
        FeedbackItem.scored_at >= rule.created_at,
        ~exists().where(Alert.rule_id == rule.id, Alert.open_subject == subject),
    )
    if params.metadata_key is not None:
        query = query.where(FeedbackItem.meta[params.metadata_key].as_string() == params.metadata_value)
    if params.location:
        query = query.where(FeedbackItem.location == params.location)
    if params.source:
        query = query.where(FeedbackItem.source_id.in_(select(Source.id).where(Source.name == params.source)))
    rows = session.execute(query.order_by(FeedbackItem.id).limit(limit)).all()
    findings = []
    for item, probability in rows:
        tag = f" ({params.metadata_key}={params.metadata_value})" if params.metadata_key else ""
        where = f" at {item.location}" if item.location else ""
        excerpt = item.text if len(item.text) <= 300 else item.text[:299] + "…"
        findings.append(
            Finding(
                subject=f"item:{item.id}",
                summary=f"{params.emotion.capitalize()} feedback{tag} from {item.source.name}{where}: {excerpt}",
                details={
                    "item_id": item.id,
                    "text": item.text[:2000],
                    "emotion": params.emotion,
                    "probability": round(float(probability), 4),
                    "source": item.source.name,
                    "location": item.location,
                    "language": item.language,
                    "sentiment": item.sentiment_label,
                    "rating": {"value": item.rating_value, "scale": item.rating_scale}
                    if item.rating_scale
                    else None,
                    "created_at": item.created_at.isoformat(),
                    "metadata": {params.metadata_key: params.metadata_value} if params.metadata_key else {},
                },
                links={"item": f"/v1/feedback/{item.id}"},
            )
        )
    return findings


def evaluate_rule(session: Session, *, rule: AlertRule, now: datetime) -> RuleOutcome:
    """Evaluate one rule in the caller's transaction: fire new episodes, mark ongoing ones, resolve ended ones."""
    outcome = RuleOutcome(rule_id=rule.id)
    params = PARAMS_MODELS[rule.kind].model_validate(rule.params)
    if isinstance(params, AngryItemParams):
        for finding in _angry_item_findings(session, rule=rule, params=params, limit=ITEMS_PER_PASS):
            alert_id = _new_alert(session, rule_id=rule.id, finding=finding, now=now, one_shot=True)
            if alert_id is not None:
                outcome.fired.append(alert_id)
        return outcome
    if isinstance(params, NegativeShareParams):
        findings = _negative_share_findings(session, params=params, now=now)
    else:
        assert isinstance(params, PainPointTrendingParams)
        findings = _trending_findings(session, params=params, now=now)
    holding = {finding.subject: finding for finding in findings}
    open_alerts = session.scalars(
        select(Alert).where(Alert.rule_id == rule.id, Alert.status == "firing").with_for_update()
    ).all()
    for alert in open_alerts:
        if alert.subject in holding:
            alert.last_seen_at = now
            outcome.ongoing += 1
        else:
            alert.status = "resolved"
            alert.closed_at = now
            alert.open_subject = None
            outcome.resolved.append(alert.id)
    session.flush()
    still_open = {alert.subject for alert in open_alerts if alert.status == "firing"}
    for subject, finding in holding.items():
        if subject not in still_open:
            alert_id = _new_alert(session, rule_id=rule.id, finding=finding, now=now, one_shot=False)
            if alert_id is not None:
                outcome.fired.append(alert_id)
    return outcome


def evaluate_rules(
    session_factory: sessionmaker[Session],
    *,
    now: datetime | None = None,
    rule_ids: Sequence[int] | None = None,
) -> EvaluationReport:
    """Evaluate every enabled rule (or those of ``rule_ids``), each in its own transaction."""
    now = now or utcnow()
    report = EvaluationReport()
    with session_factory() as session:
        query = select(AlertRule.id).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)
        if rule_ids is not None:
            query = query.where(AlertRule.id.in_(rule_ids))
        ids = list(session.scalars(query))
    for rule_id in ids:
        try:
            with session_factory() as session, session.begin():
                rule = session.get(AlertRule, rule_id)
                if rule is None or not rule.enabled:
                    continue
                outcome = evaluate_rule(session, rule=rule, now=now)
        except Exception as exc:  # one broken rule must not stop the others
            logger.exception("alert rule evaluation failed", extra={"rule_id": rule_id})
            outcome = RuleOutcome(rule_id=rule_id, error=f"{type(exc).__name__}: {exc}")
        report.rules.append(outcome)
    if report.fired or report.resolved:
        logger.info(
            "alert rules evaluated",
            extra={"rules": len(report.rules), "fired": len(report.fired), "resolved": len(report.resolved)},
        )
    return report


def _absolute(links: Mapping[str, str], public_url: str | None) -> dict[str, str]:
    base = public_url.rstrip("/") if public_url else ""
    return {name: base + link if link.startswith("/") else link for name, link in links.items()}


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def json_body(*, alert: Alert, rule: AlertRule, public_url: str | None = None) -> dict[str, Any]:
    """The generic webhook body of an alert."""
    return {
        "type": "cxmine.alert",
        "event": "fired",
        "alert_id": alert.id,
        "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind},
        "subject": alert.subject,
        "status": alert.status,
        "fired_at": _iso(alert.fired_at),
        "closed_at": _iso(alert.closed_at),
        "summary": alert.payload.get("summary", ""),
        "details": alert.payload.get("details", {}),
        "links": _absolute(alert.payload.get("links", {}), public_url),
    }


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(*, alert: Alert, rule: AlertRule, public_url: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook body (text for notifications, blocks for the message)."""
    summary = str(alert.payload.get("summary", ""))
    links = _absolute(alert.payload.get("links", {}), public_url)
    link_text = " · ".join(
        f"<{url}|{_mrkdwn(name)}>" if url.startswith(("http://", "https://")) else f"{_mrkdwn(name)}: `{url}`"
        for name, url in links.items()
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f":rotating_light: *{_mrkdwn(rule.name)}*\n{_mrkdwn(summary)}"[:3000],
            },
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{_mrkdwn(rule.kind)} · `{_mrkdwn(alert.subject)}` · alert {alert.id} · "
                    f"fired {_iso(alert.fired_at)}",
                }
            ],
        },
    ]
    if link_text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": link_text[:3000]}})
    return {"text": f"cxmine alert: {rule.name}: {summary}"[:3000], "blocks": blocks}


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Job:
    alert_id: int
    attempt: int
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class _Attempt:
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after: float | None = None
    permanent: bool = False


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """The wait after failed attempt ``attempt`` (1-based): base * 2^(attempt-1), capped, with ±25 % jitter."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return float(delay * secrets.SystemRandom().uniform(0.75, 1.25))


def _post(client: httpx.Client, job: _Job, *, timeout: float, now: datetime) -> _Attempt:
    started = time.perf_counter()
    headers = {
        "User-Agent": f"cxmine/{__version__}",
        "X-Cxmine-Alert-Id": str(job.alert_id),
        "X-Cxmine-Delivery-Attempt": str(job.attempt),
    }
    try:
        response = client.post(job.url, json=job.body, headers=headers, timeout=timeout)
    except httpx.InvalidURL as exc:
        return _Attempt(None, f"invalid URL: {exc}", _ms(started), permanent=True)
    except httpx.HTTPError as exc:
        return _Attempt(None, f"{type(exc).__name__}: {exc}"[:1000], _ms(started))
    duration = _ms(started)
    code = response.status_code
    if 200 <= code < 300:
        return _Attempt(code, None, duration)
    error = f"HTTP {code}: {response.text[:500]}".strip()
    if code in (408, 429) or code >= 500:
        retry_after = (
            retry_after_seconds(response.headers.get("Retry-After"), now=now) if code == 429 else None
        )
        return _Attempt(code, error, duration, retry_after=retry_after)
    return _Attempt(code, error, duration, permanent=True)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def deliver_pending(
    session_factory: sessionmaker[Session],
    *,
    client: httpx.Client,
    now: datetime | None = None,
    timeout_seconds: float = 10.0,
    max_attempts: int = 5,
    retry_base_seconds: float = 30.0,
    retry_max_seconds: float = 3600.0,
    public_url: str | None = None,
    limit: int = 20,
    rule_ids: Sequence[int] | None = None,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Post every due alert of an enabled rule to its webhook once, recording the attempt and scheduling retries."""
    fixed_now = now

    def clock() -> datetime:
        return fixed_now or utcnow()

    now = clock()
    report = DeliveryReport()
    lease = now + timedelta(seconds=timeout_seconds + 60)
    due = or_(Alert.next_attempt_at.is_(None), Alert.next_attempt_at <= now)
    jobs: list[_Job] = []
    with session_factory() as session, session.begin():
        query = (
            select(Alert, AlertRule)
            .join(AlertRule, AlertRule.id == Alert.rule_id)
            .where(Alert.delivery_status == "pending", due, AlertRule.enabled.is_(True))
            .order_by(Alert.id)
            .limit(limit)
        )
        if rule_ids is not None:
            query = query.where(Alert.rule_id.in_(rule_ids))
        for alert, rule in session.execute(query).all():
            claimed = session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.delivery_status == "pending", due)
                .values(next_attempt_at=lease)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]  # another worker has it
                continue
            make_body = slack_body if rule.webhook_format == "slack" else json_body
            jobs.append(
                _Job(
                    alert_id=alert.id,
                    attempt=alert.attempts + 1,
                    url=rule.webhook_url,
                    body=make_body(alert=alert, rule=rule, public_url=public_url),
                )
            )
    for job in jobs:
        if stop is not None and stop.is_set():  # the unsent ones are retried once their lease ends
            break
        attempt = _post(client, job, timeout=timeout_seconds, now=clock())
        at = clock()
        report.attempted += 1
        values: dict[str, Any] = {"attempts": job.attempt, "last_error": attempt.error}
        if attempt.error is None:
            values.update(delivery_status="delivered", delivered_at=at, next_attempt_at=None)
            report.delivered += 1
        elif attempt.permanent or job.attempt >= max_attempts:
            values.update(delivery_status="failed", next_attempt_at=None)
            report.failed += 1
        else:
            wait = (
                min(attempt.retry_after, 86_400.0)
                if attempt.retry_after is not None
                else backoff_seconds(job.attempt, base=retry_base_seconds, cap=retry_max_seconds)
            )
            values.update(next_attempt_at=at + timedelta(seconds=wait))
            report.retrying += 1
        with session_factory() as session, session.begin():
            recorded = session.execute(
                update(Alert)
                .where(Alert.id == job.alert_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if recorded.rowcount == 1:  # type: ignore[attr-defined]  # else its rule was deleted meanwhile
                session.add(
                    AlertDelivery(
                        alert_id=job.alert_id,
                        attempt=job.attempt,
                        at=at,
                        status_code=attempt.status_code,
                        error=attempt.error,
                        duration_ms=attempt.duration_ms,
                    )
                )
        if attempt.error is not None:
            logger.warning(
                "alert webhook delivery failed",
                extra={"alert_id": job.alert_id, "attempt": job.attempt, "error": attempt.error},
            )
    return report


def webhook_client() -> httpx.Client:
    """An HTTP client for webhooks: no redirects followed (a moved webhook is a misconfigured one)."""
    return httpx.Client(follow_redirects=False)


def delivery_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of deliver_pending that come from the settings."""
    return {
        "timeout_seconds": settings.alert_delivery_timeout_seconds,
        "max_attempts": settings.alert_max_attempts,
        "retry_base_seconds": settings.alert_retry_base_seconds,
        "retry_max_seconds": settings.alert_retry_max_seconds,
        "public_url": settings.public_url,
    }
