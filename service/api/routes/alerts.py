"""Alert rules (admin) and the alerts they fired (analyst), with their webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.alerts import (
    AngryItemParams,
    NegativeShareParams,
    PainPointTrendingParams,
    RuleKind,
    RuleParamsError,
    WebhookFormat,
    WebhookUrl,
    deliver_pending,
    delivery_options,
    evaluate_rules,
    validate_params,
)
from service.api.deps import AdminDep, ReaderDep, SessionDep, SettingsDep, require_unscoped
from service.api.problems import ProblemError, require_utc_offsets
from service.db.models import Alert, AlertDelivery, AlertRule, utcnow

router = APIRouter(prefix="/v1", tags=["alerts"])

Name = Annotated[str, Field(min_length=1, max_length=200)]


class _RuleIn(BaseModel):
    name: Name
    webhook_url: WebhookUrl = Field(description="Where alerts are posted (http or https).")
    webhook_format: WebhookFormat = Field(
        default="json", description="json (the generic body) or slack (a Slack incoming webhook)."
    )
    enabled: bool = True


class PainPointTrendingRuleIn(_RuleIn):
    kind: Literal["pain_point_trending"]
    params: PainPointTrendingParams = Field(default_factory=PainPointTrendingParams)


class NegativeShareRuleIn(_RuleIn):
    kind: Literal["negative_share"]
    params: NegativeShareParams


class AngryItemRuleIn(_RuleIn):
    kind: Literal["angry_item"]
    params: AngryItemParams = Field(default_factory=AngryItemParams)


AlertRuleIn = Annotated[
    PainPointTrendingRuleIn | NegativeShareRuleIn | AngryItemRuleIn, Field(discriminator="kind")
]


class AlertRulePatch(BaseModel):
    name: Name | None = None
    enabled: bool | None = None
    params: dict[str, Any] | None = Field(
        default=None, description="Merged into the rule's params (null removes an optional one)."
    )
    webhook_url: WebhookUrl | None = None
    webhook_format: WebhookFormat | None = None


class AlertRuleOut(BaseModel):
    id: int
    name: str
    kind: RuleKind
    params: dict[str, Any]
    webhook_url: str
    webhook_format: WebhookFormat
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    firing: int = Field(description="Alerts of this rule whose condition still holds.")


class DeliveryOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float | None


class AlertOut(BaseModel):
    id: int
    rule_id: int
    rule_name: str
    kind: str
    subject: str = Field(description="What fired: touchpoint:<id>, topic:<id>@<touchpoint>, item:<id>.")
    status: Literal["firing", "resolved"] = Field(description="Items are one-shot: resolved as they fire.")
    summary: str
    details: dict[str, Any]
    links: dict[str, str] = Field(description="API calls that list the rows behind the alert.")
    fired_at: datetime
    last_seen_at: datetime
    closed_at: datetime | None
    delivery_status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    deliveries: list[DeliveryOut] = Field(description="Every webhook attempt, oldest first.")


class EvaluationOut(BaseModel):
    rule_id: int
    fired: list[AlertOut]
    ongoing: int = Field(description="Open alerts whose condition still holds (not sent again).")
    resolved: list[int] = Field(description="Alerts whose episode ended.")
    delivered: int
    failed: int
    retrying: int


def _rule_out(session: Session, rule: AlertRule) -> AlertRuleOut:
    firing = session.scalar(
        select(func.count()).select_from(Alert).where(Alert.rule_id == rule.id, Alert.status == "firing")
    )
    return AlertRuleOut.model_validate({**_columns(rule), "firing": firing or 0})


def _columns(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def _alerts_out(session: Session, alerts: list[tuple[Alert, AlertRule]]) -> list[AlertOut]:
    ids = [alert.id for alert, _ in alerts]
    deliveries: dict[int, list[DeliveryOut]] = {alert_id: [] for alert_id in ids}
    if ids:
        for d in session.scalars(
            select(AlertDelivery)
            .where(AlertDelivery.alert_id.in_(ids))
            .order_by(AlertDelivery.alert_id, AlertDelivery.attempt, AlertDelivery.id)
        ):
            deliveries[d.alert_id].append(DeliveryOut.model_validate(d, from_attributes=True))
    return [
        AlertOut.model_validate(
            {
                **_columns(alert),
                "rule_name": rule.name,
                "kind": rule.kind,
                "summary": alert.payload.get("summary", ""),
                "details": alert.payload.get("details", {}),
                "links": alert.payload.get("links", {}),
                "deliveries": deliveries[alert.id],
            }
        )
        for alert, rule in alerts
    ]


def _rule(session: Session, rule_id: int) -> AlertRule:
    rule = session.get(AlertRule, rule_id)
    if rule is None:
        raise ProblemError(404, f"No alert rule has id {rule_id}.")
    return rule


def _validated(session: Session, *, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_params(session, kind=kind, params=params)
    except RuleParamsError as exc:
        raise ProblemError(
            422,
            f"The params are not valid for a {kind} rule.",
            slug="validation-error",
            title="Invalid request",
            errors=[e.model_copy(update={"field": f"body.{e.field}"}) for e in exc.errors],
        ) from exc


@router.post("/alert-rules", status_code=status.HTTP_201_CREATED, summary="Create an alert rule (admin)")
def post_alert_rule(body: AlertRuleIn, session: SessionDep, caller: AdminDep) -> AlertRuleOut:
    """A rule that fires to its webhook once per episode: a trending pain point, a negative share over a
    threshold at a touchpoint, or each new item with an emotion (e.g. anger from a VIP customer)."""
    params = _validated(session, kind=body.kind, params=body.params.model_dump())
    now = utcnow()
    rule = AlertRule(
        name=body.name,
        kind=body.kind,
        params=params,
        webhook_url=body.webhook_url,
        webhook_format=body.webhook_format,
        enabled=body.enabled,
        created_by=f"key:{caller.name}",
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.commit()
    return _rule_out(session, rule)


@router.get("/alert-rules", summary="Alert rules (admin)")
def get_alert_rules(session: SessionDep, _caller: AdminDep) -> list[AlertRuleOut]:
    """Every alert rule, oldest first, with how many of its alerts are firing."""
    return [_rule_out(session, rule) for rule in session.scalars(select(AlertRule).order_by(AlertRule.id))]


@router.get("/alert-rules/{rule_id}", summary="One alert rule (admin)")
def get_alert_rule(rule_id: int, session: SessionDep, _caller: AdminDep) -> AlertRuleOut:
    """One alert rule."""
    return _rule_out(session, _rule(session, rule_id))


@router.patch("/alert-rules/{rule_id}", summary="Change an alert rule (admin)")
def patch_alert_rule(
    rule_id: int, body: AlertRulePatch, session: SessionDep, _caller: AdminDep
) -> AlertRuleOut:
    """Enable or disable, rename, change params (merged) or the webhook; the kind stays."""
    rule = _rule(session, rule_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "enabled", "webhook_url", "webhook_format"):
        if changes.get(name) is not None:
            setattr(rule, name, changes[name])
    if body.params is not None:
        rule.params = _validated(session, kind=rule.kind, params={**rule.params, **body.params})
    rule.updated_at = utcnow()
    session.commit()
    return _rule_out(session, rule)


@router.delete(
    "/alert-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an alert rule and its alerts (admin)",
)
def delete_alert_rule(rule_id: int, session: SessionDep, _caller: AdminDep) -> Response:
    """Delete the rule with its alerts and their deliveries; disable it instead to keep the history."""
    session.delete(_rule(session, rule_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/alert-rules/{rule_id}/evaluate", summary="Evaluate an alert rule now (admin)")
def post_evaluate_rule(
    rule_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _caller: AdminDep,
    deliver: Annotated[bool, Query(description="Also post its due alerts to the webhook now.")] = True,
) -> EvaluationOut:
    """Evaluate the rule as the background job would, and (by default) deliver what is due."""
    rule = _rule(session, rule_id)
    if not rule.enabled:
        raise ProblemError(409, f"Alert rule {rule_id} is disabled; enable it first (PATCH enabled=true).")
    session.rollback()  # end this read transaction: the alerts written below must be visible to it
    factory = request.app.state.session_factory
    report = evaluate_rules(factory, rule_ids=[rule_id])
    outcome = report.rules[0] if report.rules else None
    if outcome is not None and outcome.error is not None:
        raise ProblemError(500, f"The rule could not be evaluated: {outcome.error}")
    delivery = None
    if deliver:
        delivery = deliver_pending(
            factory,
            client=request.app.state.webhook_client,
            rule_ids=[rule_id],
            **delivery_options(settings),
        )
    fired = outcome.fired if outcome else []
    rows = session.execute(
        select(Alert, AlertRule).join(AlertRule).where(Alert.id.in_(fired)).order_by(Alert.id)
    ).all()
    return EvaluationOut(
        rule_id=rule_id,
        fired=_alerts_out(session, [(a, r) for a, r in rows]),
        ongoing=outcome.ongoing if outcome else 0,
        resolved=outcome.resolved if outcome else [],
        delivered=delivery.delivered if delivery else 0,
        failed=delivery.failed if delivery else 0,
        retrying=delivery.retrying if delivery else 0,
    )


@router.get("/alerts", summary="Alerts fired by the rules, newest first")
def get_alerts(
    session: SessionDep,
    caller: ReaderDep,
    rule_id: Annotated[int | None, Query(description="Only this rule's alerts.")] = None,
    status_: Annotated[
        Literal["firing", "resolved"] | None, Query(alias="status", description="firing or resolved.")
    ] = None,
    delivery: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(description="Webhook delivery status.")
    ] = None,
    since: Annotated[datetime | None, Query(description="Fired at or after (ISO 8601 with offset).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[AlertOut]:
    """Each alert with its summary, details, links to the rows behind it and its webhook deliveries."""
    require_unscoped(caller, what="Alerts")
    require_utc_offsets(since=since)
    query = select(Alert, AlertRule).join(AlertRule, AlertRule.id == Alert.rule_id)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if status_ is not None:
        query = query.where(Alert.status == status_)
    if delivery is not None:
        query = query.where(Alert.delivery_status == delivery)
    if since is not None:
        query = query.where(Alert.fired_at >= since)
    rows = session.execute(query.order_by(Alert.fired_at.desc(), Alert.id.desc()).limit(limit)).all()
    return _alerts_out(session, [(a, r) for a, r in rows])
