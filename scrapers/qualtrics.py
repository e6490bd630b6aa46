"""Qualtrics event subscriptions: a signed event names a completed response; its answers are fetched from
the Qualtrics API (``GET /API/v3/surveys/{SurveyID}/responses/{ResponseID}``, ``X-API-TOKEN``).

Qualtrics signs event-subscription posts (HMAC-SHA512 of ``MSG`` with the subscription's ``sharedKey``; see
``scrapers.webhooks``) but does not put the answers in them; a Workflow web-service task sends answers but
cannot sign them. This path gets both: the signed event, then the response read with an API token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from scrapers.contract import Malformed, RatingScale, Record
from scrapers.http import HttpPolicy, MalformedResponseError, PoliteClient
from scrapers.webhooks import QualtricsFieldMapping, QualtricsResponseEvent, qualtrics_record


def _response_fields() -> QualtricsFieldMapping:
    return QualtricsFieldMapping(
        response_id="responseId",
        created_at="recordedDate",
        text=["QID2_TEXT"],
        rating="QID1",
        location=None,
        language="userLanguage",
        survey_id="surveyId",
    )


class QualtricsEventSourceConfig(BaseModel):
    """A Qualtrics event subscription (``surveyengine.completedResponse.<SurveyID>``) and the API to read
    its responses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shared_key: SecretStr = Field(description="The sharedKey the event subscription was created with.")
    api_token: SecretStr = Field(description="A Qualtrics API token (Account Settings > Qualtrics IDs).")
    datacenter: str = Field(
        pattern=r"^[a-z]{2,4}[0-9]?$", description="Your datacenter id, e.g. iad1, fra1, ca1, syd1."
    )
    base_url: str = Field(default="", description="Overrides https://<datacenter>.qualtrics.com.")
    surveys: list[str] = Field(default=[], description="Survey ids accepted; empty accepts every survey.")
    fields: QualtricsFieldMapping = Field(
        default_factory=_response_fields,
        description="Which keys of the response's values feed which record field (QID2_TEXT, QID1, ...).",
    )
    rating_scale: RatingScale = Field(default=RatingScale.NPS, description="The scale of the rating field.")
    default_timezone: str = Field(default="UTC", description="Zone of dates written without an offset.")
    product: str | None = Field(default=None, description="Product to file the responses under.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @property
    def api_root(self) -> str:
        return (self.base_url or f"https://{self.datacenter}.qualtrics.com").rstrip("/")


def fetch_response(
    event: QualtricsResponseEvent,
    config: QualtricsEventSourceConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Record], list[Malformed]]:
    """The record of the response an event names, read from the Qualtrics API; raises ``SourceError``."""
    client = PoliteClient(
        # The survey tool waits for our answer: retry briefly, never sleep long.
        policy=HttpPolicy(
            timeout_seconds=config.timeout_seconds,
            max_attempts=3,
            max_wait_seconds=5,
            requests_per_minute=500,
        ),
        transport=transport,
        sleep=sleep,
        service_name="the Qualtrics API",
    )
    try:
        url = (
            f"{config.api_root}/API/v3/surveys/{quote(event.survey_id, safe='')}"
            f"/responses/{quote(event.response_id, safe='')}"
        )
        body = client.get_json(url, headers={"X-API-TOKEN": config.api_token.get_secret_value()})
    finally:
        client.close()
    result = body.get("result") if isinstance(body, dict) else None
    values = result.get("values") if isinstance(result, dict) else None
    if not isinstance(result, dict) or not isinstance(values, dict):
        raise MalformedResponseError("the Qualtrics API answered without result.values for the response")
    labels = result.get("labels")
    item: dict[str, Any] = {
        **values,
        # Choice questions hold numbers in values; their texts are reachable as labels.QID3 and so on.
        "labels": labels if isinstance(labels, dict) else {},
        "responseId": result.get("responseId") or event.response_id,
        "surveyId": event.survey_id,
    }
    try:
        record = qualtrics_record(
            item,
            config.fields,
            rating_scale=config.rating_scale,
            default_timezone=config.default_timezone,
            product=config.product,
        )
    except ValueError as exc:
        return [], [
            Malformed(where=f"qualtrics/{event.survey_id}", reason=str(exc), external_id=event.response_id)
        ]
    return [record], []
