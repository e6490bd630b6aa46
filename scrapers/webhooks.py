"""Survey webhooks: check that a pushed payload really comes from the survey tool, then read its records.

Pure functions for the service's webhook endpoint; nothing here is polled, stored or registered.

Typeform
    Typeform POSTs each completed response as JSON (``event_type: "form_response"``) and, when the webhook
    has a secret, signs the raw body: ``Typeform-Signature: sha256=<base64 HMAC-SHA256(secret, body)>``.
    ``verify_typeform`` checks it; ``parse_typeform`` turns the response into one record (its free-text
    answers joined) or, with ``separate_records``, one record per free-text answer (external id
    ``<form id>:<token>:<field ref>``).

Qualtrics
    Two ways in. An event subscription (``surveyengine.completedResponse.<SurveyID>``) POSTs
    form-encoded ``Topic``, ``MSG`` (a JSON object: Status, SurveyID, ResponseID, CompletedDate, BrandID)
    and, when the subscription has a ``sharedKey``, ``HMAC``: the hex HMAC-SHA512 of ``MSG`` keyed with the
    shared key. The event names the response but carries no answers, so ``parse_qualtrics_event`` returns a
    notice, not records. A survey Workflow "web service" task instead POSTs a JSON body the survey owner
    writes with piped text (``{"responseId": "${e://Field/ResponseID}", "comment": "${q://QID2/ChoiceTextEntryValue}", ...}``);
    it cannot sign the body, but it can send a fixed API-key header, which ``verify_qualtrics_workflow``
    checks, and ``parse_qualtrics_workflow`` reads it through a configurable field mapping.

Every comparison of a secret is constant-time (``hmac.compare_digest``); no message repeats a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from scrapers.contract import Malformed, Rating, RatingScale, Record
from scrapers.files import FileFormatError, parse_datetime, parse_rating_value
from scrapers.parsing import iso_datetime

__all__ = [
    "QUALTRICS_WORKFLOW_DEFAULT_HEADER",
    "TYPEFORM_SIGNATURE_HEADER",
    "QualtricsEventConfig",
    "QualtricsFieldMapping",
    "QualtricsResponseEvent",
    "QualtricsWorkflowConfig",
    "TypeformWebhookConfig",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "parse_qualtrics_event",
    "parse_qualtrics_workflow",
    "parse_typeform",
    "qualtrics_record",
    "verify_qualtrics_event",
    "verify_qualtrics_workflow",
    "verify_typeform",
]

TYPEFORM_SIGNATURE_HEADER = "Typeform-Signature"
QUALTRICS_WORKFLOW_DEFAULT_HEADER = "X-API-Key"


class WebhookSignatureError(Exception):
    """The request is not provably from the survey tool; answer 401/403 and store nothing."""


class WebhookPayloadError(ValueError):
    """The payload as a whole cannot be read; answer 400 and store nothing."""


class _WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------------------- Typeform

_TYPEFORM_TEXT_FIELDS = frozenset({"long_text", "short_text"})
_TYPEFORM_SCORE_FIELDS = frozenset({"nps", "opinion_scale", "rating"})


class TypeformWebhookConfig(_WebhookConfig):
    """How one Typeform webhook is checked and read."""

    secret: SecretStr = Field(description="The webhook's secret, as set in Typeform (Connect > Webhooks).")
    forms: list[str] = Field(
        default=[], description="Form ids this webhook accepts; empty accepts every form."
    )
    text_fields: list[str] = Field(
        default=[],
        description="Refs (or ids) of the questions whose answers are the feedback text; "
        "empty takes every long_text answer.",
    )
    separate_records: bool = Field(
        default=False, description="One record per text answer instead of one per response."
    )
    rating_field: str | None = Field(
        default=None,
        description="Ref (or id) of the score question; by default the first nps, opinion_scale or "
        "rating answer.",
    )
    opinion_scale: RatingScale = Field(
        default=RatingScale.NPS, description="The scale of opinion_scale answers (a 0-10 scale is NPS)."
    )
    author_hidden_field: str | None = Field(
        default=None, description="Hidden field with the respondent's handle (e.g. user_id)."
    )
    location_hidden_field: str | None = Field(default=None, description="Hidden field with the location.")
    product_hidden_field: str | None = Field(default=None, description="Hidden field with the product.")
    language_hidden_field: str | None = Field(default=None, description="Hidden field with the language.")
    product: str | None = Field(default=None, description="Product to file the responses under.")

    @field_validator("secret")
    @classmethod
    def _secret_is_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the webhook secret is empty")
        return value


def verify_typeform(body: bytes, header: str | None, secret: str) -> None:
    """Check ``Typeform-Signature`` against the raw request body; raises ``WebhookSignatureError``."""
    if not secret:
        raise WebhookSignatureError("no Typeform webhook secret is configured; set the webhook's secret")
    if header is None or not header.strip():
        raise WebhookSignatureError(
            f"the request has no {TYPEFORM_SIGNATURE_HEADER} header; give the Typeform webhook a secret"
        )
    scheme, separator, signature = header.strip().partition("=")
    if not separator or scheme.strip().lower() != "sha256":
        raise WebhookSignatureError(f"{TYPEFORM_SIGNATURE_HEADER} is not of the form sha256=<base64 digest>")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature.strip().encode()):
        raise WebhookSignatureError(
            f"{TYPEFORM_SIGNATURE_HEADER} does not match the body: the secret differs from the one set "
            "in Typeform, or the body was changed on the way (verify the raw bytes, before any JSON parsing)"
        )


def parse_typeform(payload: Any, config: TypeformWebhookConfig) -> tuple[list[Record], list[Malformed]]:
    """The records of one ``form_response`` event; a response that cannot be read becomes ``Malformed``."""
    if not isinstance(payload, Mapping):
        raise WebhookPayloadError("a Typeform webhook body must be a JSON object")
    if payload.get("event_type") != "form_response":
        raise WebhookPayloadError(
            f"not a Typeform form_response event (event_type={payload.get('event_type')!r})"
        )
    response = payload.get("form_response")
    if not isinstance(response, Mapping):
        raise WebhookPayloadError("the Typeform event has no form_response object")
    form_id = str(response.get("form_id") or "")
    token = response.get("token")
    where = f"typeform/{form_id or '?'}"
    if not isinstance(token, str) or not token:
        return [], [Malformed(where=where, reason="the response has no token")]
    response_id = f"{form_id}:{token}"
    if config.forms and form_id not in config.forms:
        return [], [
            Malformed(
                where=where,
                reason=f"form {form_id!r} is not one this webhook accepts",
                external_id=response_id,
            )
        ]
    answers = response.get("answers")
    if not isinstance(answers, list):
        return [], [Malformed(where=where, reason="answers is not a list", external_id=response_id)]
    try:
        return _typeform_records(response, answers, form_id, response_id, config), []
    except ValueError as exc:
        return [], [Malformed(where=where, reason=str(exc), external_id=response_id)]


@dataclass
class _TypeformAnswers:
    texts: list[tuple[str, str]] = field(default_factory=list)  # (field key, text)
    score: tuple[str, float] | None = None  # (field type, value)
    others: dict[str, Any] = field(default_factory=dict)


def _typeform_records(
    response: Mapping[str, Any],
    answers: list[Any],
    form_id: str,
    response_id: str,
    config: TypeformWebhookConfig,
) -> list[Record]:
    titles = _typeform_titles(response)
    found = _TypeformAnswers()
    for index, answer in enumerate(answers):
        if not isinstance(answer, Mapping) or not isinstance(answer.get("field"), Mapping):
            raise ValueError(f"answers[{index}] has no field")
        question = answer["field"]
        key = str(question.get("ref") or question.get("id") or f"answer{index}")
        names = {str(question.get("ref")), str(question.get("id"))}
        field_type = question.get("type")
        if _is_feedback_text(field_type, names, config):
            text = answer.get("text")
            if not isinstance(text, str):
                raise ValueError(f"answer to {key!r} is a {field_type} question without text")
            if text.strip():
                found.texts.append((key, text.strip()))
        elif _is_score(field_type, names, config) and found.score is None:
            number = answer.get("number")
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ValueError(f"answer to {key!r} is a {field_type} question without a number")
            found.score = (str(field_type), float(number))
        else:
            found.others[key] = _typeform_value(answer)
    if not found.texts:
        raise ValueError("the response has no free-text answer")

    submitted = response.get("submitted_at")
    try:
        created_at = iso_datetime(submitted)
    except ValueError:
        raise ValueError(f"submitted_at {submitted!r} is not an ISO 8601 time") from None
    rating = _typeform_rating(found.score, config) if found.score else None
    raw_hidden = response.get("hidden")
    hidden: Mapping[str, Any] = raw_hidden if isinstance(raw_hidden, Mapping) else {}
    metadata: dict[str, Any] = {"form_id": form_id, "token": response.get("token")}
    for name in ("landed_at", "event_id"):
        if response.get(name):
            metadata[name] = response[name]
    if hidden:
        metadata["hidden"] = dict(hidden)
    calculated = response.get("calculated")
    if isinstance(calculated, Mapping) and calculated.get("score") is not None:
        metadata["score"] = calculated["score"]
    if found.others:
        metadata["answers"] = found.others
    common: dict[str, Any] = {
        "created_at": created_at,
        "rating": rating,
        "author": _hidden_text(hidden, config.author_hidden_field),
        "location": _hidden_text(hidden, config.location_hidden_field),
        "product": _hidden_text(hidden, config.product_hidden_field) or config.product,
        "language": _hidden_text(hidden, config.language_hidden_field),
    }
    if config.separate_records:
        return [
            Record(
                external_id=f"{response_id}:{key}",
                text=text,
                metadata={**metadata, "question": titles.get(key, key)},
                **common,
            )
            for key, text in found.texts
        ]
    questions = {key: titles.get(key, key) for key, _text in found.texts}
    return [
        Record(
            external_id=response_id,
            text="\n".join(text for _key, text in found.texts),
            metadata={**metadata, "questions": questions},
            **common,
        )
    ]


def _is_feedback_text(field_type: Any, names: set[str], config: TypeformWebhookConfig) -> bool:
    if config.text_fields:
        return field_type in _TYPEFORM_TEXT_FIELDS and bool(names & set(config.text_fields))
    return bool(field_type == "long_text")


def _is_score(field_type: Any, names: set[str], config: TypeformWebhookConfig) -> bool:
    if config.rating_field is not None:
        return config.rating_field in names
    return field_type in _TYPEFORM_SCORE_FIELDS


def _typeform_rating(score: tuple[str, float], config: TypeformWebhookConfig) -> Rating:
    field_type, value = score
    scale = {
        "nps": RatingScale.NPS,
        "rating": RatingScale.STARS,
        "opinion_scale": config.opinion_scale,
    }.get(field_type, config.opinion_scale)
    return Rating(value=value, scale=scale)


def _typeform_titles(response: Mapping[str, Any]) -> dict[str, str]:
    definition = response.get("definition")
    fields_ = definition.get("fields") if isinstance(definition, Mapping) else None
    titles: dict[str, str] = {}
    for question in fields_ if isinstance(fields_, list) else []:
        if isinstance(question, Mapping) and isinstance(question.get("title"), str):
            for name in ("ref", "id"):
                if question.get(name):
                    titles[str(question[name])] = question["title"]
    return titles


def _typeform_value(answer: Mapping[str, Any]) -> Any:
    kind = answer.get("type")
    value = answer.get(kind) if isinstance(kind, str) else None
    if isinstance(value, Mapping):
        if "label" in value:
            return value.get("label") or value.get("other")
        if "labels" in value:
            return value.get("labels")
    return value


def _hidden_text(hidden: Mapping[str, Any], name: str | None) -> str | None:
    if name is None:
        return None
    value = hidden.get(name)
    if value is None:
        return None
    return str(value).strip() or None


# ------------------------------------------------------------------------------ Qualtrics event subscription


class QualtricsEventConfig(_WebhookConfig):
    """How Qualtrics event-subscription posts are checked."""

    shared_key: SecretStr | None = Field(
        default=None,
        description="The sharedKey given when creating the event subscription; without it posts are unsigned.",
    )
    surveys: list[str] = Field(default=[], description="Survey ids accepted; empty accepts every survey.")


@dataclass(frozen=True, slots=True)
class QualtricsResponseEvent:
    """A Qualtrics event about one response: which survey and response, not its answers."""

    topic: str
    survey_id: str
    response_id: str
    status: str | None
    completed_at: datetime | None
    brand_id: str | None
    message: Mapping[str, Any]


def verify_qualtrics_event(body: bytes, shared_key: str) -> None:
    """Check the ``HMAC`` field (hex HMAC-SHA512 of ``MSG``) of a form-encoded event subscription post."""
    if not shared_key:
        raise WebhookSignatureError("no Qualtrics shared key is configured; set the subscription's sharedKey")
    form = _form_fields(body)
    supplied = form.get("HMAC")
    if not supplied:
        raise WebhookSignatureError(
            "the Qualtrics post has no HMAC field; create the event subscription with a sharedKey"
        )
    message = form.get("MSG")
    if message is None:
        raise WebhookSignatureError("the Qualtrics post has no MSG field to check the HMAC against")
    expected = hmac.new(shared_key.encode(), message.encode(), hashlib.sha512).hexdigest()
    if not hmac.compare_digest(expected.encode(), supplied.strip().lower().encode()):
        raise WebhookSignatureError(
            "the Qualtrics HMAC does not match the message: the shared key differs from the subscription's "
            "sharedKey, or the post was changed on the way"
        )


def parse_qualtrics_event(body: bytes, config: QualtricsEventConfig | None = None) -> QualtricsResponseEvent:
    """Read a completed-response event (form-encoded, with the fields in ``MSG`` or posted directly)."""
    form = _form_fields(body)
    if "MSG" in form:
        try:
            message = json.loads(form["MSG"])
        except json.JSONDecodeError:
            raise WebhookPayloadError("the Qualtrics MSG field is not JSON") from None
        if not isinstance(message, dict):
            raise WebhookPayloadError("the Qualtrics MSG field is not a JSON object")
    else:
        message = {key: value for key, value in form.items() if key != "Topic"}
    topic = form.get("Topic") or str(message.get("Topic") or "")
    survey_id = str(message.get("SurveyID") or "")
    response_id = str(message.get("ResponseID") or "")
    if not survey_id or not response_id:
        raise WebhookPayloadError("the Qualtrics event names no SurveyID or ResponseID")
    if config is not None and config.surveys and survey_id not in config.surveys:
        raise WebhookPayloadError(f"survey {survey_id} is not one this webhook accepts")
    completed = message.get("CompletedDate")
    completed_at = None
    if isinstance(completed, str) and completed.strip():
        try:
            # Qualtrics writes CompletedDate as "2024-03-01 10:05:01" in UTC.
            completed_at = parse_datetime(completed, default_timezone="UTC")
        except ValueError:
            raise WebhookPayloadError(f"CompletedDate {completed!r} is not a date") from None
    return QualtricsResponseEvent(
        topic=topic,
        survey_id=survey_id,
        response_id=response_id,
        status=_optional_text(message.get("Status")),
        completed_at=completed_at,
        brand_id=_optional_text(message.get("BrandID")),
        message=message,
    )


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookPayloadError("the Qualtrics post is not UTF-8 form data") from None
    parsed = parse_qs(text, keep_blank_values=True)
    if not parsed:
        raise WebhookPayloadError(
            "the Qualtrics post is not form-encoded (application/x-www-form-urlencoded)"
        )
    return {key: values[-1] for key, values in parsed.items()}


def _optional_text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# ---------------------------------------------------------------------------- Qualtrics workflow web service


class QualtricsFieldMapping(_WebhookConfig):
    """Which keys of the workflow's JSON body feed which record field (dotted paths work)."""

    response_id: str = "responseId"
    created_at: str = "recordedDate"
    text: list[str] = Field(default=["comment"], min_length=1, description="Joined in this order.")
    rating: str | None = "nps"
    location: str | None = "location"
    author: str | None = None
    language: str | None = "language"
    product: str | None = None
    survey_id: str | None = "surveyId"
    metadata: list[str] = Field(default=[], description="Keys copied into the record's metadata.")


class QualtricsWorkflowConfig(_WebhookConfig):
    """How a Qualtrics Workflow web-service task's posts are checked and read."""

    token: SecretStr = Field(description="The API key the web-service task sends in ``token_header``.")
    token_header: str = Field(default=QUALTRICS_WORKFLOW_DEFAULT_HEADER, min_length=1)
    fields: QualtricsFieldMapping = Field(default_factory=QualtricsFieldMapping)
    rating_scale: RatingScale = Field(default=RatingScale.NPS, description="The scale of the rating field.")
    default_timezone: str = Field(
        default="UTC", description="Zone of piped dates without an offset (the survey's time zone)."
    )
    product: str | None = Field(default=None, description="Product to file the responses under.")

    @field_validator("token")
    @classmethod
    def _token_is_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the web-service token is empty")
        return value


def verify_qualtrics_workflow(header: str | None, token: str) -> None:
    """Check the fixed API key a Workflow web-service task sends (its body cannot be signed)."""
    if not token:
        raise WebhookSignatureError("no Qualtrics web-service token is configured")
    if header is None or not header.strip():
        raise WebhookSignatureError(
            "the request has no API-key header; add it to the Qualtrics web-service task's headers"
        )
    if not hmac.compare_digest(header.strip().encode(), token.encode()):
        raise WebhookSignatureError(
            "the API-key header does not match the configured token; check the web-service task's header"
        )


def parse_qualtrics_workflow(
    payload: Any, config: QualtricsWorkflowConfig
) -> tuple[list[Record], list[Malformed]]:
    """Records from a workflow post: one JSON object per response, or a list of them."""
    items = payload if isinstance(payload, list) else [payload]
    if not items or not all(isinstance(item, Mapping) for item in items):
        raise WebhookPayloadError("a Qualtrics web-service body must be a JSON object or a list of objects")
    records: list[Record] = []
    malformed: list[Malformed] = []
    for index, item in enumerate(items):
        response_id = _piped(item, config.fields.response_id)
        try:
            records.append(
                qualtrics_record(
                    item,
                    config.fields,
                    rating_scale=config.rating_scale,
                    default_timezone=config.default_timezone,
                    product=config.product,
                )
            )
        except ValueError as exc:
            malformed.append(Malformed(where=f"qualtrics[{index}]", reason=str(exc), external_id=response_id))
    return records, malformed


def qualtrics_record(
    item: Mapping[str, Any],
    mapping: QualtricsFieldMapping,
    *,
    rating_scale: RatingScale,
    default_timezone: str,
    product: str | None,
) -> Record:
    """One Qualtrics response (a workflow body, or the values of a fetched response) as a record."""
    response_id = _piped(item, mapping.response_id)
    if response_id is None:
        raise ValueError(f"{mapping.response_id} (the response id) is missing")
    texts = [text for key in mapping.text if (text := _piped(item, key))]
    if not texts:
        raise ValueError(f"no feedback text in {', '.join(mapping.text)}")
    created = _piped(item, mapping.created_at)
    if created is None:
        raise ValueError(f"{mapping.created_at} (the response time) is missing")
    try:
        created_at = parse_datetime(created, default_timezone=default_timezone)
    except (ValueError, FileFormatError):
        raise ValueError(f"{mapping.created_at} {created!r} is not a date") from None
    rating = None
    if mapping.rating is not None and (raw_rating := _piped(item, mapping.rating)) is not None:
        try:
            number = parse_rating_value(raw_rating)
        except ValueError:
            raise ValueError(f"{mapping.rating} {raw_rating!r} is not a number") from None
        if number is not None:
            rating = Rating(value=number, scale=rating_scale)
    metadata: dict[str, Any] = {}
    if mapping.survey_id and (survey_id := _piped(item, mapping.survey_id)):
        metadata["survey_id"] = survey_id
    for key in mapping.metadata:
        if (value := _piped(item, key)) is not None:
            metadata[key] = value
    return Record(
        external_id=response_id,
        text="\n".join(texts),
        created_at=created_at,
        rating=rating,
        author=_piped(item, mapping.author),
        location=_piped(item, mapping.location),
        language=_piped(item, mapping.language),
        product=_piped(item, mapping.product) or product,
        metadata=metadata,
    )


def _piped(item: Mapping[str, Any], path: str | None) -> str | None:
    """A piped-text value; an unanswered question pipes in as an empty string."""
    if path is None:
        return None
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).strip()
    return text or None
