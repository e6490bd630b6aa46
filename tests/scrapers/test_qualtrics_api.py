"""Reading a Qualtrics response that a signed event names, replayed from the API's recorded format."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from scrapers.contract import RatingScale
from scrapers.http import BadCredentialsError, MalformedResponseError, NotFoundError, TransientError
from scrapers.qualtrics import QualtricsEventSourceConfig, fetch_response
from scrapers.webhooks import QualtricsResponseEvent
from tests.scrapers.replay import FakeSleep, ReplayTransport, Route, json_response, load_json, raw_response

KIND = "qualtrics_api"
PATH = r"/API/v3/surveys/SV_3kLmN8pQrS2tUvW/responses/R_1a2B3c4D5e6F7g8$"
EVENT = QualtricsResponseEvent(
    topic="surveyengine.completedResponse.SV_3kLmN8pQrS2tUvW",
    survey_id="SV_3kLmN8pQrS2tUvW",
    response_id="R_1a2B3c4D5e6F7g8",
    status="Complete",
    completed_at=datetime(2026, 3, 14, 9, 15, 2, tzinfo=UTC),
    brand_id="acmeretail",
    message={},
)


def config(**fields: object) -> QualtricsEventSourceConfig:
    return QualtricsEventSourceConfig.model_validate(
        {"shared_key": "k", "api_token": "qx-api-token", "datacenter": "fra1", **fields}
    )


def fetch(
    transport: ReplayTransport, settings: QualtricsEventSourceConfig | None = None
) -> tuple[list, list]:  # type: ignore[type-arg]
    return fetch_response(EVENT, settings or config(), transport=transport, sleep=FakeSleep())


def test_the_named_response_becomes_a_record() -> None:
    transport = ReplayTransport(Route("GET", PATH, [json_response(load_json(KIND, "response.json"))]))
    settings = config(
        fields={
            "text": ["QID2_TEXT"],
            "rating": "QID1",
            "location": "labels.QID3",
            "language": "userLanguage",
        }
    )
    (record,), malformed = fetch(transport, settings)
    assert malformed == []
    assert record.external_id == "R_1a2B3c4D5e6F7g8"
    assert record.text.startswith("الطلب وصل متأخر يومين")
    assert record.rating is not None and record.rating.value == 3 and record.rating.scale is RatingScale.NPS
    assert record.location == "Riyadh Olaya" and record.language == "AR"
    assert record.created_at == datetime(2026, 3, 14, 9, 15, 2, 145000, tzinfo=UTC)
    assert record.metadata["survey_id"] == "SV_3kLmN8pQrS2tUvW"
    request = transport.requests[0]
    assert request.url.host == "fra1.qualtrics.com" and request.headers["X-API-TOKEN"] == "qx-api-token"


def test_a_bad_token_is_a_clear_error_without_the_token() -> None:
    transport = ReplayTransport(Route("GET", PATH, [json_response(load_json(KIND, "bad_token.json"), 401)]))
    with pytest.raises(BadCredentialsError) as caught:
        fetch(transport)
    assert "Invalid API token." in str(caught.value) and "qx-api-token" not in str(caught.value)


def test_an_unknown_response_is_not_found() -> None:
    body = {
        "meta": {
            "httpStatus": "404 - Not Found",
            "error": {"errorMessage": "Response not found", "errorCode": "RESP_1"},
        }
    }
    with pytest.raises(NotFoundError, match="Response not found"):
        fetch(ReplayTransport(Route("GET", PATH, [json_response(body, 404)])))


def test_a_429_and_a_5xx_are_retried_briefly() -> None:
    transport = ReplayTransport(
        Route(
            "GET",
            PATH,
            [
                json_response({}, 429, {"Retry-After": "1"}),
                raw_response("", 503),
                json_response(load_json(KIND, "response.json")),
            ],
        )
    )
    records, _ = fetch(transport)
    assert len(records) == 1 and len(transport.requests) == 3


def test_a_timeout_gives_up_after_three_attempts() -> None:
    transport = ReplayTransport(Route("GET", PATH, [httpx.ReadTimeout("slow") for _ in range(3)]))
    with pytest.raises(TransientError):
        fetch(transport)
    assert len(transport.requests) == 3


def test_malformed_answers() -> None:
    with pytest.raises(MalformedResponseError, match=r"without result\.values"):
        fetch(ReplayTransport(Route("GET", PATH, [json_response({"meta": {}})])))
    body = load_json(KIND, "response.json")
    del body["result"]["values"]["QID2_TEXT"]
    records, malformed = fetch(ReplayTransport(Route("GET", PATH, [json_response(body)])))
    assert records == [] and "no feedback text in QID2_TEXT" in malformed[0].reason


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="datacenter"):
        config(datacenter="https://x")
    assert config(base_url="http://127.0.0.1:9/").api_root == "http://127.0.0.1:9"
