"""Triage of pain points (a topic at a touchpoint): acknowledge, assign, comment, resolve, reopen, with history."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.models import PainPointEvent, PainPointState, Topic, utcnow
from service.touchpoints import active_taxonomy

Status = Literal["open", "acknowledged", "resolved"]
Action = Literal["acknowledge", "assign", "comment", "resolve", "reopen"]

ACTIONS: tuple[Action, ...] = ("acknowledge", "assign", "comment", "resolve", "reopen")
PAST_TENSE = {
    "acknowledge": "acknowledged",
    "assign": "assigned",
    "comment": "commented",
    "resolve": "resolved",
    "reopen": "reopened",
}


class UnknownPainPointError(LookupError):
    """The topic does not exist, or the touchpoint is not in the taxonomy in force."""


class InvalidTransitionError(ValueError):
    """The action is not allowed in the pain point's current status."""


def _next_status(action: str, status: str, *, owner: str | None, current_owner: str | None) -> str:
    """The status after ``action``, or InvalidTransitionError saying why it is not allowed."""
    if action == "comment":
        return status
    if action == "reopen":
        if status != "resolved":
            raise InvalidTransitionError(f"Only a resolved pain point can be reopened; this one is {status}.")
        return "open"
    if status == "resolved":
        raise InvalidTransitionError(
            f"The pain point is resolved; reopen it before it can be {PAST_TENSE[action]}."
        )
    if action == "acknowledge":
        if status == "acknowledged":
            raise InvalidTransitionError("The pain point is already acknowledged.")
        return "acknowledged"
    if action == "assign":
        if owner == current_owner:
            raise InvalidTransitionError(f"The pain point is already assigned to {owner!r}.")
        return "acknowledged"
    return "resolved"


def check_pain_point(session: Session, *, topic_id: int, touchpoint: str) -> None:
    """Raise UnknownPainPointError unless the topic exists and the touchpoint is in the taxonomy in force."""
    if session.get(Topic, topic_id) is None:
        raise UnknownPainPointError(f"No topic has id {topic_id}.")
    if active_taxonomy(session).get(touchpoint) is None:
        raise UnknownPainPointError(
            f"The taxonomy in force has no touchpoint {touchpoint!r}; see GET /v1/taxonomy."
        )


def triage_states(
    session: Session, *, keys: Iterable[tuple[int, str]] | None = None
) -> dict[tuple[int, str], PainPointState]:
    """The triage state of every triaged pain point, or of those among ``keys`` (topic id, touchpoint)."""
    query = select(PainPointState)
    if keys is not None:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        query = query.where(tuple_(PainPointState.topic_id, PainPointState.touchpoint).in_(wanted))
    return {(state.topic_id, state.touchpoint): state for state in session.scalars(query)}


def triage_history(
    session: Session, *, topic_id: int, touchpoint: str
) -> tuple[PainPointState | None, list[PainPointEvent]]:
    """A pain point's triage state (None if never triaged) and its events, oldest first."""
    state = session.scalar(
        select(PainPointState).where(
            PainPointState.topic_id == topic_id, PainPointState.touchpoint == touchpoint
        )
    )
    if state is None:
        return None, []
    events = session.scalars(
        select(PainPointEvent)
        .where(PainPointEvent.pain_point_id == state.id)
        .order_by(PainPointEvent.at, PainPointEvent.id)
    )
    return state, list(events)


def _state_for_update(session: Session, *, topic_id: int, touchpoint: str, now: datetime) -> PainPointState:
    """The pain point's state row, created on first use, locked until the transaction ends (PostgreSQL)."""
    query = (
        select(PainPointState)
        .where(PainPointState.topic_id == topic_id, PainPointState.touchpoint == touchpoint)
        .with_for_update()
    )
    state = session.scalar(query)
    if state is not None:
        return state
    dialect = session.get_bind().dialect.name
    insert: Callable[[Any], Any] = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(  # a concurrent first action may have created it meanwhile
        insert(PainPointState)
        .values(topic_id=topic_id, touchpoint=touchpoint, status="open", created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["topic_id", "touchpoint"])
    )
    return session.scalars(query).one()


def apply_action(
    session: Session,
    *,
    topic_id: int,
    touchpoint: str,
    action: Action,
    actor: str,
    owner: str | None = None,
    comment: str | None = None,
    now: datetime | None = None,
) -> PainPointState:
    """Apply one triage action and append it to the history (the caller commits)."""
    now = now or utcnow()
    check_pain_point(session, topic_id=topic_id, touchpoint=touchpoint)
    if action == "assign" and not owner:
        raise ValueError("assign needs an owner")
    if action == "comment" and not comment:
        raise ValueError("comment needs a comment")
    state = _state_for_update(session, topic_id=topic_id, touchpoint=touchpoint, now=now)
    before = state.status
    state.status = _next_status(action, before, owner=owner, current_owner=state.owner)
    if action == "assign":
        state.owner = owner
    state.updated_at = now
    session.add(
        PainPointEvent(
            pain_point_id=state.id,
            action=PAST_TENSE[action],
            actor=actor,
            owner=owner if action == "assign" else None,
            comment=comment or None,
            from_status=before,
            to_status=state.status,
            at=now,
        )
    )
    session.flush()
    return state
