"""Survey webhooks: signatures checked over the raw bytes, recorded payloads read into records."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from pydantic import ValidationError

from scrapers.contract import RatingScale
from scrapers.webhooks import (
    QualtricsEventConfig,
    QualtricsFieldMapping,
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
from tests.scrapers.replay import load_bytes, load_json

KIND = "webhooks"
SECRET = "tf-webhook-secret-7d1e"


def typeform_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def typeform_config(**settings: Any) -> TypeformWebhookConfig:
    return TypeformWebhookConfig.model_validate({"secret": SECRET, **settings})


# --- Typeform signature ----------------------------------------------------------------------------


def test_a_valid_typeform_signature_passes() -> None:
    body = load_bytes(KIND, "typeform_form_response.json")
    verify_typeform(body, typeform_signature(body), SECRET)


def test_a_typeform_signature_over_other_bytes_is_rejected_without_leaking_the_secret() -> None:
    body = load_bytes(KIND, "typeform_form_response.json")
    reformatted = json.dumps(json.loads(body)).encode()
    with pytest.raises(WebhookSignatureError, match="does not match the body") as caught:
        verify_typeform(reformatted, typeform_signature(body), SECRET)
    assert SECRET not in str(caught.value)


def test_a_typeform_signature_made_with_another_secret_is_rejected() -> None:
    body = load_bytes(KIND, "typeform_form_response.json")
    with pytest.raises(WebhookSignatureError, match="secret differs"):
        verify_typeform(body, typeform_signature(body, "another-secret"), SECRET)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "has no Typeform-Signature header"),
        ("   ", "has no Typeform-Signature header"),
        ("sha1=abc", "not of the form sha256="),
        ("no-scheme-at-all", "not of the form sha256="),
    ],
)
def test_a_missing_or_odd_typeform_signature_header_is_rejected(header: str | None, message: str) -> None:
    with pytest.raises(WebhookSignatureError, match=message):
        verify_typeform(b"{}", header, SECRET)


def test_a_typeform_webhook_needs_a_secret() -> None:
    with pytest.raises(WebhookSignatureError, match="no Typeform webhook secret"):
        verify_typeform(b"{}", "sha256=abc", "")
    with pytest.raises(ValidationError, match="secret"):
        TypeformWebhookConfig.model_validate({})
    with pytest.raises(ValidationError, match="the webhook secret is empty"):
        TypeformWebhookConfig.model_validate({"secret": "  "})
    assert SECRET not in repr(typeform_config())


# --- Typeform payloads -----------------------------------------------------------------------------


def test_a_typeform_response_becomes_one_record_with_its_long_text_answers() -> None:
    config = typeform_config(
        author_hidden_field="user_id", location_hidden_field="store", language_hidden_field="lang"
    )
    records, malformed = parse_typeform(load_json(KIND, "typeform_form_response.json"), config)
    assert malformed == []
    [record] = records
    assert record.external_id == "kT7pQz2R:01HV8Q4Z3K6M9T2XN5R7B1C0DE"
    assert record.text == (
        "Die Kasse war 20 Minuten lang nicht besetzt und niemand hat sich entschuldigt.\n"
        "Mehr Personal am Samstag, bitte."
    )
    assert record.created_at == datetime(2026, 3, 14, 9, 15, 2, tzinfo=UTC)
    assert record.rating is not None
    assert (record.rating.value, record.rating.scale) == (3.0, RatingScale.NPS)
    assert record.author == "cust-48213"
    assert record.location == "Berlin Mitte"
    assert record.language == "de"
    assert record.metadata["questions"] == {
        "why_score": "Was ist der wichtigste Grund für Ihre Bewertung?",
        "improve": "Was können wir besser machen?",
    }
    assert record.metadata["answers"] == {
        "first_name": "Jana",
        "visit_reason": "Rückgabe",
        "contact_ok": False,
    }
    assert record.metadata["hidden"]["store"] == "Berlin Mitte"


def test_typeform_text_fields_and_separate_records_are_configurable() -> None:
    payload = load_json(KIND, "typeform_form_response.json")
    config = typeform_config(text_fields=["improve", "first_name"], separate_records=True, product="Filiale")
    records, malformed = parse_typeform(payload, config)
    assert malformed == []
    assert [(record.external_id, record.text) for record in records] == [
        ("kT7pQz2R:01HV8Q4Z3K6M9T2XN5R7B1C0DE:improve", "Mehr Personal am Samstag, bitte."),
        ("kT7pQz2R:01HV8Q4Z3K6M9T2XN5R7B1C0DE:first_name", "Jana"),
    ]
    assert records[0].metadata["question"] == "Was können wir besser machen?"
    assert {record.product for record in records} == {"Filiale"}
    assert all(record.rating is not None and record.rating.value == 3.0 for record in records)


def test_an_opinion_scale_answer_uses_the_configured_scale() -> None:
    payload = load_json(KIND, "typeform_opinion_scale_thai.json")
    [record], _ = parse_typeform(payload, typeform_config())
    assert record.text == "พนักงานบริการดีมาก แต่ที่จอดรถไม่พอ"
    assert record.rating is not None and record.rating.scale is RatingScale.NPS
    [rescaled], malformed = parse_typeform(payload, typeform_config(rating_field="nonexistent"))
    assert rescaled.rating is None and malformed == []
    _, malformed = parse_typeform(payload, typeform_config(opinion_scale="csat"))
    assert "csat ratings run from 1 to 5; got 9" in malformed[0].reason


def test_malformed_typeform_answers_are_reported_not_stored() -> None:
    records, malformed = parse_typeform(load_json(KIND, "typeform_malformed.json"), typeform_config())
    assert records == []
    assert malformed[0].external_id == "kT7pQz2R:f0e1d2c3b4a5968778695a4b3c2d1e0f"
    assert "nps ratings run from 0 to 10; got 14" in malformed[0].reason

    payload = load_json(KIND, "typeform_form_response.json")
    response = payload["form_response"]
    response["answers"] = [answer for answer in response["answers"] if answer["type"] != "text"]
    _, malformed = parse_typeform(payload, typeform_config())
    assert malformed[0].reason == "the response has no free-text answer"

    response["answers"] = [{"type": "text", "text": "orphan"}]
    _, malformed = parse_typeform(payload, typeform_config())
    assert malformed[0].reason == "answers[0] has no field"

    response["answers"] = [{"type": "text", "field": {"id": "x", "type": "long_text", "ref": "why"}}]
    _, malformed = parse_typeform(payload, typeform_config())
    assert "without text" in malformed[0].reason

    response["answers"] = [{"type": "text", "text": "fine", "field": {"id": "x", "type": "long_text"}}]
    response["submitted_at"] = "14/03/2026"
    _, malformed = parse_typeform(payload, typeform_config())
    assert "submitted_at '14/03/2026' is not an ISO 8601 time" in malformed[0].reason

    del response["token"]
    _, malformed = parse_typeform(payload, typeform_config())
    assert malformed[0].reason == "the response has no token"


def test_a_typeform_response_of_another_form_is_not_stored() -> None:
    records, malformed = parse_typeform(
        load_json(KIND, "typeform_form_response.json"), typeform_config(forms=["otherForm"])
    )
    assert records == []
    assert "form 'kT7pQz2R' is not one this webhook accepts" in malformed[0].reason


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"event_type": "form_partial"}, "not a Typeform form_response event"),
        ({"event_type": "form_response"}, "no form_response object"),
    ],
)
def test_a_payload_that_is_not_a_typeform_response_is_an_error(payload: Any, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        parse_typeform(payload, typeform_config())


# --- Qualtrics event subscriptions -----------------------------------------------------------------

SHARED_KEY = "qx-shared-key-2026"


def signed_event_body(key: str = SHARED_KEY) -> bytes:
    fields = parse_qs(load_bytes(KIND, "qualtrics_event_body.txt").decode())
    message = fields["MSG"][0]
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha512).hexdigest()
    return urlencode({"Topic": fields["Topic"][0], "HMAC": digest, "MSG": message}).encode()


def test_a_qualtrics_event_with_a_matching_hmac_passes_and_names_the_response() -> None:
    body = signed_event_body()
    verify_qualtrics_event(body, SHARED_KEY)
    event = parse_qualtrics_event(body, QualtricsEventConfig.model_validate({"shared_key": SHARED_KEY}))
    assert event.topic == "surveyengine.completedResponse.SV_3kLmN8pQrS2tUvW"
    assert (event.survey_id, event.response_id) == ("SV_3kLmN8pQrS2tUvW", "R_1a2B3c4D5e6F7g8")
    assert event.completed_at == datetime(2026, 3, 14, 9, 15, 2, tzinfo=UTC)
    assert (event.status, event.brand_id) == ("Complete", "acmeretail")


def test_a_qualtrics_event_signed_with_another_key_or_unsigned_is_rejected() -> None:
    with pytest.raises(WebhookSignatureError, match="shared key differs") as caught:
        verify_qualtrics_event(signed_event_body("wrong-key"), SHARED_KEY)
    assert SHARED_KEY not in str(caught.value)
    with pytest.raises(WebhookSignatureError, match="has no HMAC field"):
        verify_qualtrics_event(load_bytes(KIND, "qualtrics_event_body.txt"), SHARED_KEY)
    tampered = signed_event_body().replace(b"R_1a2B3c4D5e6F7g8", b"R_999999999999999")
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_qualtrics_event(tampered, SHARED_KEY)


def test_qualtrics_events_posted_as_plain_fields_are_read_too() -> None:
    body = urlencode(
        {
            "Topic": "surveyengine.completedResponse.SV_3kLmN8pQrS2tUvW",
            "Status": "Complete",
            "SurveyID": "SV_3kLmN8pQrS2tUvW",
            "ResponseID": "R_5zzzzzzzzzzzzzz",
            "CompletedDate": "2026-03-14 10:00:00",
            "BrandID": "acmeretail",
        }
    ).encode()
    event = parse_qualtrics_event(body)
    assert event.response_id == "R_5zzzzzzzzzzzzzz"


def test_unreadable_qualtrics_events_are_errors() -> None:
    with pytest.raises(WebhookPayloadError, match="not form-encoded"):
        parse_qualtrics_event(b"")
    with pytest.raises(WebhookPayloadError, match="MSG field is not JSON"):
        parse_qualtrics_event(b"Topic=x&MSG=%7Bnot+json")
    with pytest.raises(WebhookPayloadError, match="no SurveyID or ResponseID"):
        parse_qualtrics_event(b"Topic=x&MSG=%7B%7D")
    with pytest.raises(WebhookPayloadError, match="not one this webhook accepts"):
        parse_qualtrics_event(signed_event_body(), QualtricsEventConfig(surveys=["SV_other"]))


# --- Qualtrics workflow web service ----------------------------------------------------------------


def workflow_config(**settings: Any) -> QualtricsWorkflowConfig:
    return QualtricsWorkflowConfig.model_validate({"token": "qx-api-key", **settings})


def test_the_workflow_api_key_header_is_checked_in_constant_time() -> None:
    verify_qualtrics_workflow("qx-api-key", "qx-api-key")
    with pytest.raises(WebhookSignatureError, match="does not match the configured token") as caught:
        verify_qualtrics_workflow("guess", "qx-api-key")
    assert "qx-api-key" not in str(caught.value)
    with pytest.raises(WebhookSignatureError, match="no API-key header"):
        verify_qualtrics_workflow(None, "qx-api-key")


def test_workflow_posts_become_records_and_bad_ones_are_reported() -> None:
    config = workflow_config(
        fields={"text": ["comment", "improve"], "metadata": ["branch"]}, default_timezone="Asia/Riyadh"
    )
    records, malformed = parse_qualtrics_workflow(load_json(KIND, "qualtrics_workflow.json"), config)
    arabic, persian = records
    assert arabic.external_id == "R_2xYz9AbCdEfGh01"
    assert arabic.text == "التوصيل تأخر ثلاثة أيام ولم يرد أحد على الهاتف."
    assert arabic.created_at.utcoffset() == timedelta(hours=3)
    assert arabic.rating is not None and (arabic.rating.value, arabic.rating.scale) == (2.0, RatingScale.NPS)
    assert (arabic.location, arabic.language) == ("Riyadh", "AR")
    assert arabic.metadata == {"survey_id": "SV_3kLmN8pQrS2tUvW", "branch": "Olaya"}
    assert persian.text == "کیفیت محصول عالی بود\nFaster checkout at the Tehran branch"
    assert persian.created_at.utcoffset() == timedelta(hours=3, minutes=30)
    assert persian.rating is not None and persian.rating.value == 10.0
    reasons = {report.external_id: report.reason for report in malformed}
    assert reasons == {
        "R_0brokenDate0001": "recordedDate 'yesterday' is not a date",
        "R_0nothingWritten": "no feedback text in comment, improve",
        "R_0npsOutOfRange1": "nps ratings run from 0 to 10; got 11",
    }


def test_a_single_workflow_object_and_a_custom_mapping() -> None:
    payload = {"rid": "R_abc", "when": "2026-03-01T08:00:00Z", "body": {"text": "Sehr gut"}, "csat": "4"}
    config = workflow_config(
        fields=QualtricsFieldMapping(
            response_id="rid", created_at="when", text=["body.text"], rating="csat", location=None
        ),
        rating_scale="csat",
        product="Webshop",
    )
    [record], malformed = parse_qualtrics_workflow(payload, config)
    assert malformed == []
    assert (record.text, record.product) == ("Sehr gut", "Webshop")
    assert record.rating is not None and record.rating.scale is RatingScale.CSAT


def test_a_workflow_body_that_is_not_objects_is_an_error() -> None:
    with pytest.raises(WebhookPayloadError, match="JSON object or a list of objects"):
        parse_qualtrics_workflow("text", workflow_config())
    with pytest.raises(WebhookPayloadError):
        parse_qualtrics_workflow([], workflow_config())


def test_workflow_config_needs_a_token_and_forbids_unknown_settings() -> None:
    with pytest.raises(ValidationError, match="token"):
        QualtricsWorkflowConfig.model_validate({})
    with pytest.raises(ValidationError, match="the web-service token is empty"):
        QualtricsWorkflowConfig.model_validate({"token": ""})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        workflow_config(secret="x")
