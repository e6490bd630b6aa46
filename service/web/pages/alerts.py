"""Alerts (admins): the alert rules with "evaluate now" and enable/disable, and the recent alerts they fired.

Reads and writes go through the API's own route functions, so the page shows exactly what ``/v1/alerts``
and ``/v1/alert-rules`` answer and "evaluate now" is the same call as ``POST /v1/alert-rules/{id}/evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from nlp.datasets import CX_EMOTION_ROLLUP
from nlp.touchpoints import Taxonomy
from service.access import known_locations
from service.api.deps import SessionDep, SettingsDep
from service.api.problems import ProblemError
from service.api.routes.alerts import (
    AlertOut,
    AlertRuleIn,
    AlertRuleOut,
    AlertRulePatch,
    EvaluationOut,
    get_alert_rule,
    get_alert_rules,
    get_alerts,
    patch_alert_rule,
    post_alert_rule,
    post_evaluate_rule,
)
from service.api.routes.sources import SchedulerRunOut, get_scheduler_runs
from service.errors import field_errors_from_pydantic
from service.touchpoints import active_taxonomy
from service.web.auth import AdminPostSessionDep, AdminSessionDep, PageError, WebSession
from service.web.templating import render

router = APIRouter(include_in_schema=False)
ALERTS_SHOWN = 50
AlertStatus = Literal["firing", "resolved"]
STATUSES: dict[str, AlertStatus] = {"firing": "firing", "resolved": "resolved"}


@dataclass(frozen=True)
class AlertFilters:
    """The alert list's filters, kept in the URL: status and rule."""

    status: AlertStatus | None = None
    rule_id: int | None = None

    def query(self) -> str:
        pairs = [("status", self.status), ("rule", self.rule_id)]
        kept = urlencode([(k, v) for k, v in pairs if v is not None])
        return "?" + kept if kept else ""


def alert_filters(
    status: Annotated[str | None, Query()] = None, rule: Annotated[str | None, Query()] = None
) -> AlertFilters:
    """The filters of ``/alerts`` (a 422 page for values the list cannot take)."""
    if status and status not in STATUSES:
        raise PageError(422, f"Unknown alert status {status!r}; use firing or resolved.")
    if rule and not rule.isdigit():
        raise PageError(422, f"Unknown alert rule {rule!r}; pick one from the list.")
    return AlertFilters(status=STATUSES[status] if status else None, rule_id=int(rule) if rule else None)


@dataclass(frozen=True)
class RuleView:
    """A rule as the page shows it: its condition in words and its webhook with the secret parts masked."""

    rule: AlertRuleOut
    condition: str
    target: str
    last_evaluated: datetime | None


@dataclass(frozen=True)
class AlertView:
    """An alert as the page shows it: what fired in words and dashboard links to the rows behind it."""

    alert: AlertOut
    subject: str
    links: list[tuple[str, str]]


def masked_webhook(url: str) -> str:
    """A webhook URL with its path, query and credentials hidden (they often carry the secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    hidden = parts.path.strip("/") or parts.query or parts.username
    return f"{parts.scheme}://{host}{port}/{'•••' if hidden else ''}"


def _where(params: dict[str, Any]) -> str:
    bits = [f"at {params['location']}" if params.get("location") else ""]
    bits += [f"from {params['source']}" if params.get("source") else ""]
    bits += [f"in language {params['language']}" if params.get("language") else ""]
    return "".join(" " + b for b in bits if b)


def _count(number: int, unit: str) -> str:
    return f"{unit}" if number == 1 else f"{number} {unit}s"


def rule_condition(rule: AlertRuleOut, taxonomy: Taxonomy) -> str:
    """What a rule watches for, as a sentence."""
    params = rule.params

    def touchpoint_name(tp: str | None) -> str:
        found = taxonomy.get(tp) if tp else None
        return found.name if found else (tp or "any touchpoint")

    if rule.kind == "negative_share":
        return (
            f"Negative share of sentences about {touchpoint_name(params.get('touchpoint'))}{_where(params)} "
            f"reaches {params.get('threshold', 0):.0%} over the last {params.get('window_days')} days "
            f"(at least {params.get('min_sentences')} sentences)."
        )
    if rule.kind == "pain_point_trending":
        what = f"theme #{params['topic_id']}" if params.get("topic_id") else "Any theme"
        at = f" at {touchpoint_name(params['touchpoint'])}" if params.get("touchpoint") else ""
        unit = str(params.get("interval", "week"))
        return (
            f"{what[0].upper() + what[1:]}{at}{_where(params)} trends: its negatives in the latest "
            f"{_count(params.get('window', 1), unit)} are significantly above what the "
            f"{_count(params.get('baseline', 6), unit)} before predict."
        )
    tag = f" with {params['metadata_key']} = {params['metadata_value']}" if params.get("metadata_key") else ""
    return f"Each newly scored item showing {params.get('emotion', 'anger')}{tag}{_where(params)}."


def subject_in_words(alert: AlertOut) -> str:
    """What an alert is about: a touchpoint, a theme at a touchpoint, or one feedback item."""
    details = alert.details
    if alert.subject.startswith("item:"):
        where = f" at {details['location']}" if details.get("location") else ""
        return f"Feedback #{details.get('item_id', alert.subject[5:])} ({details.get('emotion', '')}){where}"
    where = f" at {details['location']}" if details.get("location") else ""
    if alert.subject.startswith("topic:"):
        where = f", {alert.subject.split('@loc:', 1)[1]}" if "@loc:" in alert.subject else ""
        return f"“{details.get('label', alert.subject)}” at {details.get('touchpoint_name', '')}{where}"
    return f"{details.get('touchpoint_name', alert.subject)}{where}"


def _link(path: str, pairs: list[tuple[str, Any]]) -> str:
    kept = urlencode([(k, v) for k, v in pairs if v not in (None, "")])
    return path + ("?" + kept if kept else "")


def dashboard_links(alert: AlertOut) -> list[tuple[str, str]]:
    """The dashboard pages behind an alert (the payload's links are API calls a browser cannot follow)."""
    d = alert.details
    if alert.subject.startswith("item:"):
        return [("Feedback item", f"/feedback/{d.get('item_id', alert.subject[5:])}")]
    if alert.subject.startswith("topic:"):
        location = alert.subject.split("@loc:", 1)[1] if "@loc:" in alert.subject else None
        pain_point = f"{d.get('topic_id')}:{d.get('touchpoint')}"
        return [
            (
                "Theme",
                _link(
                    f"/themes/{d.get('topic_id')}", [("focus", d.get("touchpoint")), ("location", location)]
                ),
            ),
            ("Negative feedback", _link("/feedback", [("pain_point", pain_point), ("location", location)])),
            (
                "Pain points",
                _link("/pain-points", [("touchpoint", d.get("touchpoint")), ("location", location)]),
            ),
        ]
    since = str(d.get("since", ""))[:10] or None
    scope = [("touchpoint", d.get("touchpoint")), ("location", d.get("location")), ("since", since)]
    return [
        (
            "Negative feedback",
            _link("/feedback", [*scope, ("sentiment", "negative"), ("sentiment", "mixed")]),
        ),
        ("All feedback", _link("/feedback", scope)),
        ("Journey", _link("/journey", [("location", d.get("location")), ("since", since)])),
    ]


def _alert_views(alerts: list[AlertOut]) -> list[AlertView]:
    return [AlertView(alert=a, subject=subject_in_words(a), links=dashboard_links(a)) for a in alerts]


def last_evaluation(
    session: Session, web: WebSession, *, rule: AlertRuleOut, last_pass: SchedulerRunOut | None
) -> datetime | None:
    """When the rule was last evaluated as far as stored rows tell: the scheduler's last pass over the enabled
    rules, or the last time one of its open alerts was seen holding (every evaluation touches those)."""
    times = (
        [last_pass.started_at]
        if rule.enabled and last_pass and last_pass.started_at >= rule.created_at
        else []
    )
    firing = get_alerts(
        session, web.caller, rule_id=rule.id, status_="firing", delivery=None, since=None, limit=1
    )
    return max([*times, *(alert.last_seen_at for alert in firing)], default=None)


def _rule_view(
    session: Session,
    web: WebSession,
    rule: AlertRuleOut,
    *,
    taxonomy: Taxonomy,
    last_pass: SchedulerRunOut | None,
) -> RuleView:
    return RuleView(
        rule=rule,
        condition=rule_condition(rule, taxonomy),
        target=masked_webhook(rule.webhook_url),
        last_evaluated=last_evaluation(session, web, rule=rule, last_pass=last_pass),
    )


def _last_pass(session: Session, web: WebSession) -> SchedulerRunOut | None:
    runs = get_scheduler_runs(session, web.caller, job="alerts.evaluate", limit=1)
    return runs[0] if runs else None


T = TypeVar("T")


def _api(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call an API route function; its problem becomes the dashboard's error page."""
    try:
        return call(*args, **kwargs)
    except ProblemError as exc:
        raise PageError(exc.status, exc.detail) from None


AlertFiltersDep = Annotated[AlertFilters, Depends(alert_filters)]
KINDS = {
    "negative_share": "Negative share",
    "pain_point_trending": "Trending theme",
    "angry_item": "Emotional item",
}


@dataclass
class RuleForm:
    """The "new rule" form's values and the errors of its last submission."""

    values: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


def _form_choices(session: Session, taxonomy: Taxonomy) -> dict[str, Any]:
    return {
        "kinds": KINDS,
        "touchpoint_choices": [(t.id, t.name) for t in taxonomy.touchpoints],
        "location_choices": sorted(known_locations(session)),
        "emotion_choices": [e for e in CX_EMOTION_ROLLUP if e != "neutral"],
    }


def _page(
    request: Request,
    session: Session,
    web: WebSession,
    filters: AlertFilters,
    form: RuleForm,
    status_code: int,
    created_id: int | None = None,
) -> HTMLResponse:
    taxonomy, last_pass = active_taxonomy(session), _last_pass(session, web)
    rules = [
        _rule_view(session, web, rule, taxonomy=taxonomy, last_pass=last_pass)
        for rule in get_alert_rules(session, web.caller)
    ]
    if filters.rule_id is not None and all(view.rule.id != filters.rule_id for view in rules):
        raise PageError(404, f"No alert rule has id {filters.rule_id}.")
    alerts = get_alerts(
        session, web.caller, rule_id=filters.rule_id, status_=filters.status, delivery=None, since=None,
        limit=ALERTS_SHOWN,
    )  # fmt: skip
    settings = request.app.state.settings
    return render(
        request,
        "pages/alerts.html",
        web=web,
        page="alerts",
        rules=rules,
        rule_names={view.rule.id: view.rule.name for view in rules},
        alerts=_alert_views(alerts),
        alert_filters=filters,
        alerts_shown=ALERTS_SHOWN,
        last_pass=last_pass,
        scheduler_on=settings.scheduler_enabled and settings.alerts_enabled,
        every_seconds=settings.alert_evaluation_interval_seconds,
        form=form,
        created_id=created_id,
        status_code=status_code,
        **_form_choices(session, taxonomy),
    )


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    session: SessionDep,
    web: AdminSessionDep,
    filters: AlertFiltersDep,
    created: Annotated[str | None, Query(description="The rule the form just created.")] = None,
) -> HTMLResponse:
    """The rules and the recent alerts (the list is re-fetched live when an alert fires)."""
    created_id = int(created) if created and created.isdigit() else None
    return _page(request, session, web, filters, RuleForm(), 200, created_id=created_id)


def _rule_card(
    request: Request, session: Session, web: WebSession, rule: AlertRuleOut, **context: Any
) -> HTMLResponse:
    view = _rule_view(
        session, web, rule, taxonomy=active_taxonomy(session), last_pass=_last_pass(session, web)
    )
    return render(request, "partials/alerts_rule.html", web=web, view=view, **context)


@router.post("/alerts/rules/{rule_id}/evaluate", response_class=HTMLResponse)
def evaluate_rule_now(
    rule_id: int, request: Request, session: SessionDep, settings: SettingsDep, web: AdminPostSessionDep
) -> HTMLResponse:
    """Evaluate one rule and deliver what it fired, as ``POST /v1/alert-rules/{id}/evaluate`` does."""
    _api(get_alert_rule, rule_id, session, web.caller)
    evaluation: EvaluationOut | None = None
    problem = None
    try:
        evaluation = post_evaluate_rule(rule_id, request, session, settings, web.caller, deliver=True)
    except ProblemError as exc:  # a disabled rule (409) or one whose params no longer evaluate (500)
        problem = exc.detail
    rule = _api(get_alert_rule, rule_id, session, web.caller)
    response = _rule_card(
        request, session, web, rule, evaluation=evaluation, problem=problem, evaluated_at=datetime.now(UTC),
        fired=_alert_views(evaluation.fired) if evaluation else [],
    )  # fmt: skip
    if evaluation is not None and (evaluation.fired or evaluation.resolved):
        response.headers["HX-Trigger"] = "alerts-changed"
    return response


@router.post("/alerts/rules/{rule_id}/toggle", response_class=HTMLResponse)
def toggle_rule(
    rule_id: int,
    request: Request,
    session: SessionDep,
    web: AdminPostSessionDep,
    enabled: Annotated[bool, Form()],
) -> HTMLResponse:
    """Enable or disable a rule (``PATCH /v1/alert-rules/{id}`` with ``enabled``); the card re-rendered."""
    rule = _api(patch_alert_rule, rule_id, AlertRulePatch(enabled=enabled), session, web.caller)
    return _rule_card(request, session, web, rule)


RULE_FORM_FIELDS = (
    "name", "kind", "webhook_url", "webhook_format", "touchpoint", "threshold", "window_days", "min_sentences",
    "interval", "window", "baseline", "emotion", "metadata_key", "metadata_value", "location",
)  # fmt: skip
PARAMS_OF_KIND = {
    "negative_share": ("touchpoint", "threshold", "window_days", "min_sentences", "location"),
    "pain_point_trending": ("touchpoint", "interval", "window", "baseline", "location"),
    "angry_item": ("emotion", "metadata_key", "metadata_value", "location"),
}
_RULE_IN: TypeAdapter[Any] = TypeAdapter(AlertRuleIn)


def rule_body(values: dict[str, str]) -> dict[str, Any]:
    """The ``POST /v1/alert-rules`` body a filled-in form stands for (blank fields left to their defaults)."""
    kind = values.get("kind", "")
    params: dict[str, Any] = {}
    for name in PARAMS_OF_KIND.get(kind, ()):
        value = values.get(name, "").strip()
        if not value:
            continue
        params[name] = float(value) / 100 if name == "threshold" and _is_number(value) else value
    return {
        "name": values.get("name", "").strip(),
        "kind": kind,
        "webhook_url": values.get("webhook_url", "").strip(),
        "webhook_format": values.get("webhook_format") or "json",
        "params": params,
    }


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _messages(errors: list[Any], kind: str) -> list[str]:
    readable = []
    for error in errors:
        where = error.field.removeprefix(f"{kind}.").removeprefix("body.").removeprefix("params.")
        readable.append(f"{where.replace('_', ' ')}: {error.message}")
    return readable


async def rule_form_values(request: Request) -> dict[str, str]:
    """The new-rule form's fields as submitted (blank when absent)."""
    form = await request.form()
    return {name: str(form.get(name) or "") for name in RULE_FORM_FIELDS}


@router.post("/alerts/rules", response_class=HTMLResponse)
def create_rule(
    request: Request,
    session: SessionDep,
    web: AdminPostSessionDep,
    values: Annotated[dict[str, str], Depends(rule_form_values)],
) -> Response:
    """A new rule from the form (``POST /v1/alert-rules``); the form again with its errors when invalid."""
    try:
        body = _RULE_IN.validate_python(rule_body(values))
        rule = post_alert_rule(body, session, web.caller)
    except ValidationError as exc:
        errors = _messages(field_errors_from_pydantic(exc.errors()), values["kind"])
        return _form_again(request, session, web, RuleForm(values, errors or ["Check the fields."]))
    except ProblemError as exc:
        errors = _messages(exc.errors or [], values["kind"]) or [exc.detail]
        return _form_again(request, session, web, RuleForm(values, errors))
    target = f"/alerts?created={rule.id}#rule-{rule.id}"
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _form_again(request: Request, session: Session, web: WebSession, form: RuleForm) -> HTMLResponse:
    if not request.headers.get("HX-Request"):
        return _page(request, session, web, AlertFilters(), form, 422)
    choices = _form_choices(session, active_taxonomy(session))
    return render(request, "partials/alerts_form.html", web=web, form=form, **choices)
