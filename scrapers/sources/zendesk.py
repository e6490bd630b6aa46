"""Zendesk Support: what customers write in tickets, from the incremental export API.

A run has two phases, each resumable from its cursor:

1. Tickets: ``GET /api/v2/incremental/tickets/cursor.json`` (``start_time`` on the first run, then the
   ``after_cursor`` Zendesk returns) until ``end_of_stream``. Each ticket's subject and description (its
   first comment) is one record, ``ticket/<id>``; a CSAT comment on it is another, ``satisfaction/<id>``
   (good = 5, bad = 1 on the CSAT scale).
2. Comments: ``GET /api/v2/incremental/ticket_events.json?start_time=...&include=comment_events`` (time
   based: the next ``start_time`` is the page's ``end_time``). Customer comments become ``comment/<id>``.

Only the customer's words are kept. A comment counts when it is public, its author is the ticket's requester
(looked up with ``/api/v2/tickets/show_many.json``), and it is not the ticket's first comment (phase 1 has
that). Agent replies, private notes and comments by CC'd users are skipped. A description is skipped when
an agent opened the ticket in the agent interface (``via.channel`` "web" and submitter is not the requester).

Needs the account subdomain and an admin's API token (``email`` + ``api_token``) or OAuth access token
(``read`` scope); the incremental export is admin-only. Zendesk allows 10 incremental export requests a
minute, which is this source's default rate. Items changed in the last minute are exported on the next run.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from scrapers.base import HttpSource, HttpSourceConfig
from scrapers.contract import Cursor, Malformed, Page, Rating, RatingScale, Record
from scrapers.http import MalformedResponseError
from scrapers.parsing import Const, Join, Pick, RecordSpec, html_to_text, iso_datetime, text
from scrapers.registry import register_source

SHOW_MANY_LIMIT = 100
SATISFACTION_SCORES = {"good": 5.0, "bad": 1.0}


class ZendeskConfig(HttpSourceConfig):
    """Which Zendesk account, and how to sign in to it."""

    subdomain: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="The account's subdomain: 'acme' for acme.zendesk.com.",
    )
    email: str | None = Field(default=None, description="The admin's email, with api_token.")
    api_token: SecretStr | None = Field(
        default=None, description="An API token (Admin Center > Apps and integrations)."
    )
    oauth_token: SecretStr | None = Field(
        default=None, description="An OAuth access token instead of an API token."
    )
    start_date: date | None = Field(
        default=None, description="First run: export what changed since this day."
    )
    backfill_days: int = Field(
        default=30, ge=0, le=3650, description="First run without start_date: this many days back."
    )
    product: str | None = Field(default=None, description="Product name to file the tickets under.")
    requests_per_minute: float = Field(default=10.0, gt=0, le=700)

    @field_validator("subdomain", mode="before")
    @classmethod
    def _bare_subdomain(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower().removeprefix("https://").removeprefix("http://")
            value = value.split("/", 1)[0].removesuffix(".zendesk.com")
        return value

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> ZendeskConfig:
        if self.api_token is not None and self.oauth_token is not None:
            raise ValueError("give either api_token (with email) or oauth_token, not both")
        if self.api_token is None and self.oauth_token is None:
            raise ValueError("give api_token (with email) or oauth_token")
        if self.api_token is not None and not (self.email and "@" in self.email):
            raise ValueError("api_token needs the email of the admin it belongs to")
        return self


def _agent_url(subdomain: str) -> Callable[[Any], str | None]:
    def url(ticket: Any) -> str | None:
        ticket_id = ticket.get("id") if isinstance(ticket, Mapping) else None
        return f"https://{subdomain}.zendesk.com/agent/tickets/{ticket_id}" if ticket_id is not None else None

    return url


def _prefixed(prefix: str, path: str) -> Callable[[Any], str | None]:
    pick = Pick(path, convert=text)

    def external_id(raw: Any) -> str | None:
        value = pick(raw)
        return f"{prefix}/{value}" if value else None

    return external_id


def _ticket_metadata(prefix: str = "") -> dict[str, Pick]:
    return {
        "ticket_id": Pick(f"{prefix}id"),
        "subject": Pick(f"{prefix}subject"),
        "status": Pick(f"{prefix}status"),
        "priority": Pick(f"{prefix}priority"),
        "type": Pick(f"{prefix}type"),
        "tags": Pick(f"{prefix}tags"),
        "via_channel": Pick(f"{prefix}via.channel"),
        "brand_id": Pick(f"{prefix}brand_id"),
        "group_id": Pick(f"{prefix}group_id"),
        "organization_id": Pick(f"{prefix}organization_id"),
    }


def _first(*extractors: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def extract(raw: Any) -> Any:
        for extractor in extractors:
            value = extractor(raw)
            if value not in (None, ""):
                return value
        return None

    return extract


def _satisfaction_rating(raw: Any) -> Rating:
    score = SATISFACTION_SCORES.get(str(raw))
    if score is None:
        raise ValueError(f"{raw!r} is not a satisfaction score")
    return Rating(value=score, scale=RatingScale.CSAT)


def ticket_spec(subdomain: str, product: str | None) -> RecordSpec:
    """A ticket's subject and description, as the requester wrote them."""
    return RecordSpec(
        external_id=_prefixed("ticket", "id"),
        text=Join(Pick("subject"), Pick("description")),
        created_at=Pick("created_at", convert=iso_datetime),
        author=Pick("requester_id", convert=text),
        url=_agent_url(subdomain),
        product=Const(product) if product else None,
        metadata={**_ticket_metadata(), "satisfaction": Pick("satisfaction_rating.score")},
    )


def satisfaction_spec(subdomain: str, product: str | None) -> RecordSpec:
    """The comment a customer left with a CSAT rating."""
    return RecordSpec(
        external_id=_prefixed("satisfaction", "satisfaction_rating.id"),
        text=Pick("satisfaction_rating.comment"),
        created_at=Pick("satisfaction_rating.updated_at", "updated_at", convert=iso_datetime),
        rating=Pick("satisfaction_rating.score", convert=_satisfaction_rating),
        author=Pick("requester_id", convert=text),
        url=_agent_url(subdomain),
        product=Const(product) if product else None,
        metadata={**_ticket_metadata(), "satisfaction_reason": Pick("satisfaction_rating.reason")},
    )


def comment_spec(subdomain: str, product: str | None) -> RecordSpec:
    """A customer comment; the raw item is ``{"comment": child event, "event": audit, "ticket": ticket}``."""
    ticket_url = _agent_url(subdomain)
    return RecordSpec(
        external_id=_prefixed("comment", "comment.id"),
        text=_first(
            Pick("comment.plain_body", "comment.body", convert=text),
            Pick("comment.html_body", convert=html_to_text),
        ),
        created_at=Pick("comment.created_at", "event.created_at", convert=iso_datetime),
        author=Pick("comment.author_id", convert=text),
        url=lambda raw: ticket_url(raw.get("ticket")),
        product=Const(product) if product else None,
        metadata={
            **_ticket_metadata("ticket."),
            "audit_id": Pick("comment.audit_id", "event.id"),
            "event_via": Pick("event.via"),
        },
    )


@register_source
class ZendeskSource(HttpSource):
    """Ticket descriptions, CSAT comments and public customer comments of one Zendesk account."""

    kind: ClassVar[str] = "zendesk.v1"
    config_model = ZendeskConfig
    channel: ClassVar[str] = "support"
    service_name: ClassVar[str] = "Zendesk"
    config: ZendeskConfig

    @property
    def base_url(self) -> str:
        configured = self.config.base_url or f"https://{self.config.subdomain}.zendesk.com"
        return configured.rstrip("/")

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """Tickets first (cursor export), then comments (ticket events); the cursor says which and where."""
        state = dict(cursor or {})
        if "events_start" not in state:
            state = {"phase": "tickets", "tickets_cursor": None, "events_start": self._first_start_time()}
        if state.get("phase") == "comments":
            return self._comments_page(state)
        return self._tickets_page(state)

    # ------------------------------------------------------------------------------------------ tickets

    def _tickets_page(self, state: Cursor) -> Page:
        after: str | None = state.get("tickets_cursor")
        params = {"cursor": after} if after else {"start_time": str(state["events_start"])}
        params["exclude_deleted"] = "true"
        body = self._get("/api/v2/incremental/tickets/cursor.json", params)
        tickets = body.get("tickets")
        if not isinstance(tickets, list):
            raise MalformedResponseError("Zendesk's ticket export answered without a 'tickets' list")
        records, malformed = self._ticket_records(tickets)
        next_cursor = body.get("after_cursor") or after
        if body.get("end_of_stream") is True:
            # The comments phase follows in the same run; the next run resumes the ticket export here.
            next_state = {
                "phase": "comments",
                "tickets_cursor": next_cursor,
                "events_start": state["events_start"],
            }
        else:
            if not body.get("after_cursor"):
                raise MalformedResponseError(
                    "Zendesk's ticket export is not at its end but gave no after_cursor"
                )
            next_state = {**state, "phase": "tickets", "tickets_cursor": next_cursor}
        return Page(records=records, cursor=next_state, done=False, malformed=malformed)

    def _ticket_records(self, tickets: list[Any]) -> tuple[list[Record], list[Malformed]]:
        subdomain, product = self.config.subdomain, self.config.product
        by_customer = [ticket for ticket in tickets if _written_by_requester(ticket)]
        records, malformed = ticket_spec(subdomain, product).parse_all(by_customer, where="tickets")
        rated = [ticket for ticket in tickets if _has_satisfaction_comment(ticket)]
        satisfaction, bad_satisfaction = satisfaction_spec(subdomain, product).parse_all(
            rated, where="tickets.satisfaction_rating"
        )
        return records + satisfaction, malformed + bad_satisfaction

    # ----------------------------------------------------------------------------------------- comments

    def _comments_page(self, state: Cursor) -> Page:
        start = int(state["events_start"])
        body = self._get(
            "/api/v2/incremental/ticket_events.json",
            {"start_time": str(start), "include": "comment_events"},
        )
        events = body.get("ticket_events")
        end_time = body.get("end_time")
        if not isinstance(events, list):
            raise MalformedResponseError(
                "Zendesk's ticket event export answered without a 'ticket_events' list"
            )
        if isinstance(end_time, bool) or not isinstance(end_time, int):
            raise MalformedResponseError("Zendesk's ticket event export answered without an 'end_time'")
        candidates = list(_later_public_comments(events))
        tickets = self._tickets_by_id({item["ticket_id"] for item in candidates})
        customer_comments = [
            {**item, "ticket": tickets[item["ticket_id"]]}
            for item in candidates
            if item["ticket_id"] in tickets
            and str(item["comment"].get("author_id")) == str(tickets[item["ticket_id"]].get("requester_id"))
        ]
        records, malformed = comment_spec(self.config.subdomain, self.config.product).parse_all(
            customer_comments, where="ticket_events.child_events"
        )
        done = body.get("end_of_stream") is True
        # Over 1000 events in one second would give end_time == start_time forever; step past that second.
        next_start = end_time if done or end_time > start else start + 1
        phase = "tickets" if done else "comments"
        next_state = {
            "phase": phase,
            "tickets_cursor": state.get("tickets_cursor"),
            "events_start": next_start,
        }
        return Page(records=records, cursor=next_state, done=done, malformed=malformed)

    def _tickets_by_id(self, ticket_ids: Iterable[Any]) -> dict[Any, Mapping[str, Any]]:
        """The tickets still there (deleted ones are left out), for their requester and details."""
        wanted = sorted({str(ticket_id) for ticket_id in ticket_ids})
        found: dict[Any, Mapping[str, Any]] = {}
        for start in range(0, len(wanted), SHOW_MANY_LIMIT):
            chunk = wanted[start : start + SHOW_MANY_LIMIT]
            body = self._get("/api/v2/tickets/show_many.json", {"ids": ",".join(chunk)})
            tickets = body.get("tickets")
            if not isinstance(tickets, list):
                raise MalformedResponseError("Zendesk's tickets/show_many answered without a 'tickets' list")
            for ticket in tickets:
                if isinstance(ticket, Mapping) and ticket.get("id") is not None:
                    found[ticket["id"]] = ticket
        return found

    # ---------------------------------------------------------------------------------------- plumbing

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        body = self.http.get_json(f"{self.base_url}{path}", params=dict(params), headers=self._auth_headers())
        if not isinstance(body, dict):
            raise MalformedResponseError(f"Zendesk answered {path} with JSON that is not an object")
        return body

    def _auth_headers(self) -> dict[str, str]:
        if self.config.oauth_token is not None:
            return {"Authorization": f"Bearer {self.config.oauth_token.get_secret_value()}"}
        assert self.config.api_token is not None  # the config validator guarantees one of the two
        pair = f"{self.config.email}/token:{self.config.api_token.get_secret_value()}"
        return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}

    def _first_start_time(self) -> int:
        if self.config.start_date is not None:
            return int(datetime.combine(self.config.start_date, datetime.min.time(), tzinfo=UTC).timestamp())
        now = datetime.fromtimestamp(self.wall_clock(), tz=UTC)
        return int((now - timedelta(days=self.config.backfill_days)).timestamp())


def _written_by_requester(ticket: Any) -> bool:
    if not isinstance(ticket, Mapping) or ticket.get("status") == "deleted":
        return False
    via = ticket.get("via")
    channel = via.get("channel") if isinstance(via, Mapping) else None
    submitter, requester = ticket.get("submitter_id"), ticket.get("requester_id")
    opened_by_agent = channel == "web" and submitter is not None and submitter != requester
    return not opened_by_agent


def _has_satisfaction_comment(ticket: Any) -> bool:
    if not isinstance(ticket, Mapping) or ticket.get("status") == "deleted":
        return False
    rating = ticket.get("satisfaction_rating")
    return (
        isinstance(rating, Mapping)
        and rating.get("score") in SATISFACTION_SCORES
        and isinstance(rating.get("comment"), str)
        and bool(rating["comment"].strip())
    )


def _later_public_comments(events: list[Any]) -> Iterable[dict[str, Any]]:
    """Public comments of each update, except those of a ticket's creation (its description)."""
    for event in events:
        if not isinstance(event, Mapping):
            continue
        children = event.get("child_events")
        if not isinstance(children, list):
            continue
        if any(isinstance(child, Mapping) and child.get("event_type") == "Create" for child in children):
            continue
        for child in children:
            if (
                isinstance(child, Mapping)
                and child.get("event_type") == "Comment"
                and child.get("public") is True
                and event.get("ticket_id") is not None
            ):
                yield {"comment": child, "event": event, "ticket_id": event["ticket_id"]}
