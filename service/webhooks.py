"""Survey webhooks: sources that survey tools push responses to, verified, parsed and stored once."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from scrapers.contract import Malformed, Record
from scrapers.http import SourceError
from scrapers.qualtrics import QualtricsEventSourceConfig, fetch_response
from scrapers.registry import SourceConfigError, placeholder_environ, validate_model
from scrapers.webhooks import (
    TYPEFORM_SIGNATURE_HEADER,
    QualtricsEventConfig,
    QualtricsWorkflowConfig,
    TypeformWebhookConfig,
    WebhookPayloadError,
    WebhookSignatureError,
    parse_qualtrics_event,
    parse_qualtrics_workflow,
    parse_typeform,
    verify_qualtrics_event,
    verify_qualtrics_workflow,
    verify_typeform,
)
from service.collectors import CollectorError, store_records
from service.config import Settings
from service.db.models import ImportAudit, Source, utcnow
from service.ingest.edits import updated_counts

Headers = Mapping[str, str]


Parsed = tuple[list[Record], list[Malformed]]


@dataclass(frozen=True)
class WebhookKind:
    """How one survey tool's pushes are checked and read (``read`` gets the raw body, the config and the
    options for outbound HTTP)."""

    config_model: type[BaseModel]
    verify: Callable[[bytes, Headers, Any], None]
    read: Callable[[bytes, Any, Mapping[str, Any]], Parsed]
    description: str


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CollectorError(f"the body is not JSON: {exc}", status=400) from None


def _read_typeform(body: bytes, config: TypeformWebhookConfig, _options: Mapping[str, Any]) -> Parsed:
    return parse_typeform(_json_body(body), config)


def _read_qualtrics_workflow(
    body: bytes, config: QualtricsWorkflowConfig, _options: Mapping[str, Any]
) -> Parsed:
    return parse_qualtrics_workflow(_json_body(body), config)


def _verify_qualtrics_event(body: bytes, _headers: Headers, config: QualtricsEventSourceConfig) -> None:
    verify_qualtrics_event(body, config.shared_key.get_secret_value())


def _read_qualtrics_event(
    body: bytes, config: QualtricsEventSourceConfig, options: Mapping[str, Any]
) -> Parsed:
    event = parse_qualtrics_event(
        body, QualtricsEventConfig(shared_key=config.shared_key, surveys=config.surveys)
    )
    try:
        return fetch_response(event, config, **options)
    except SourceError as exc:
        # A non-2xx answer makes Qualtrics send the event again later.
        raise CollectorError(
            f"could not read response {event.response_id} from Qualtrics: {exc}", status=502
        ) from None


def _verify_typeform(body: bytes, headers: Headers, config: TypeformWebhookConfig) -> None:
    verify_typeform(body, headers.get(TYPEFORM_SIGNATURE_HEADER), config.secret.get_secret_value())


def _verify_qualtrics(_body: bytes, headers: Headers, config: QualtricsWorkflowConfig) -> None:
    verify_qualtrics_workflow(headers.get(config.token_header), config.token.get_secret_value())


WEBHOOK_KINDS: dict[str, WebhookKind] = {
    "typeform.webhook.v1": WebhookKind(
        TypeformWebhookConfig,
        _verify_typeform,
        _read_typeform,
        "Typeform form responses, signed with the webhook's secret (Typeform-Signature).",
    ),
    "qualtrics.event.v1": WebhookKind(
        QualtricsEventSourceConfig,
        _verify_qualtrics_event,
        _read_qualtrics_event,
        "Qualtrics completed-response events, signed with the subscription's sharedKey; answers read by API.",
    ),
    "qualtrics.workflow.v1": WebhookKind(
        QualtricsWorkflowConfig,
        _verify_qualtrics,
        _read_qualtrics_workflow,
        "Qualtrics survey responses posted by a Workflow web-service task, with a fixed API-key header.",
    ),
}


def check_webhook_config(kind: str, config: Mapping[str, Any]) -> None:
    """Validate a webhook source's config before storing it (env references need not be set here)."""
    _validated(kind, config, environ=placeholder_environ(config))


def _validated(kind: str, config: Mapping[str, Any], *, environ: Mapping[str, str]) -> Any:
    try:
        return validate_model(WEBHOOK_KINDS[kind].config_model, config, environ=environ, label=kind)
    except SourceConfigError as exc:
        raise CollectorError(str(exc)) from None


@dataclass(frozen=True)
class WebhookOutcome:
    """What became of one push."""

    import_id: int
    received: int
    stored: int
    duplicates: int
    malformed: int
    updated: int = 0


def receive_webhook(
    session: Session,
    *,
    name: str,
    body: bytes,
    headers: Headers,
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    source_options: Mapping[str, Any] | None = None,
) -> WebhookOutcome:
    """Verify a push to webhook source ``name``, store its records once, and audit it."""
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None or source.kind not in WEBHOOK_KINDS:
        raise CollectorError(f"no webhook source is named {name!r}", status=404)
    if not source.enabled:
        raise CollectorError(f"webhook source {name!r} is paused", status=409)
    kind = WEBHOOK_KINDS[source.kind]
    try:
        config = _validated(source.kind, source.config, environ=os.environ if environ is None else environ)
    except CollectorError as exc:
        raise CollectorError(f"webhook source {name!r} is misconfigured: {exc}", status=503) from None
    try:
        kind.verify(body, headers, config)
    except WebhookSignatureError as exc:
        raise CollectorError(str(exc), status=401) from None
    try:
        records, malformed = kind.read(body, config, source_options or {})
    except WebhookPayloadError as exc:
        raise CollectorError(str(exc), status=422) from None
    run = ImportAudit(
        kind="webhook",
        actor=f"webhook:{name}",
        source_name=name,
        source_id=source.id,
        trigger="webhook",
        status="running",
        error_sample=[],
    )
    session.add(run)
    session.flush()
    default_touchpoint = source.default_touchpoint
    records = [
        record
        if record.touchpoint or not default_touchpoint
        else _with_touchpoint(record, default_touchpoint)
        for record in records
    ]
    stored = store_records(
        session,
        run=run,
        records=records,
        malformed=malformed,
        source_name=name,
        channel="survey",
        author_salt=settings.author_salt_bytes(),
        redact=source.redact_pii,
        max_text_chars=settings.max_text_chars,
        change_source="webhook",
    )
    run.pages = 1
    run.status = "completed"
    run.finished_at = utcnow()
    source.items_collected = (source.items_collected or 0) + stored
    source.last_run_at = source.last_success_at = run.finished_at
    session.commit()
    return WebhookOutcome(
        import_id=run.id,
        received=run.received,
        stored=run.stored,
        duplicates=run.duplicates,
        malformed=run.malformed,
        updated=updated_counts(session, import_ids=[run.id]).get(run.id, 0),
    )


def _with_touchpoint(record: Record, touchpoint: str) -> Record:
    return dataclasses.replace(record, touchpoint=touchpoint)
