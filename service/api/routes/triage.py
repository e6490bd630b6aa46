"""Triage of pain points: acknowledge, assign, comment, resolve and reopen, with the full history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.orm import Session

from service.api.deps import ReaderDep, SessionDep
from service.api.problems import ProblemError
from service.triage import (
    Action,
    InvalidTransitionError,
    Status,
    UnknownPainPointError,
    apply_action,
    check_pain_point,
    triage_history,
)

router = APIRouter(prefix="/v1/pain-points", tags=["triage"])


class TriageActionIn(BaseModel):
    action: Action = Field(
        description="acknowledge (open to acknowledged), assign (needs owner; an open one becomes "
        "acknowledged), comment (needs comment), resolve, reopen (a resolved one becomes open)."
    )
    owner: str | None = Field(
        default=None, min_length=1, max_length=200, description="For assign: an e-mail, a name or a team."
    )
    comment: str | None = Field(default=None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> TriageActionIn:
        if self.action == "assign" and not (self.owner and self.owner.strip()):
            raise ValueError("assign needs an owner")
        if self.action != "assign" and self.owner is not None:
            raise ValueError("owner is only for assign")
        if self.action == "comment" and not (self.comment and self.comment.strip()):
            raise ValueError("comment needs a comment")
        return self


class TriageEventOut(BaseModel):
    id: int
    action: str = Field(description="acknowledged, assigned, commented, resolved or reopened.")
    actor: str = Field(description="Who did it: key:<API key name>.")
    owner: str | None
    comment: str | None
    from_status: str | None
    to_status: str | None
    at: datetime


class TriageOut(BaseModel):
    topic_id: int
    touchpoint: str
    status: Status = Field(description="open, acknowledged or resolved; never triaged is open.")
    owner: str | None
    updated_at: datetime | None = Field(description="The last action; null when never triaged.")
    history: list[TriageEventOut] = Field(description="Every action, oldest first.")


TopicId = Annotated[int, Path(description="The topic's id.")]
Touchpoint = Annotated[str, Path(description="A touchpoint id of the taxonomy in force.")]


def _triage_out(session: Session, *, topic_id: int, touchpoint: str) -> TriageOut:
    state, events = triage_history(session, topic_id=topic_id, touchpoint=touchpoint)
    return TriageOut(
        topic_id=topic_id,
        touchpoint=touchpoint,
        status=state.status if state else "open",
        owner=state.owner if state else None,
        updated_at=state.updated_at if state else None,
        history=[TriageEventOut.model_validate(event, from_attributes=True) for event in events],
    )


@router.get("/{topic_id}/{touchpoint}/triage", summary="A pain point's triage status, owner and history")
def get_triage(
    topic_id: TopicId, touchpoint: Touchpoint, session: SessionDep, _caller: ReaderDep
) -> TriageOut:
    """Status, owner and every triage action so far (a pain point never triaged is open)."""
    try:
        check_pain_point(session, topic_id=topic_id, touchpoint=touchpoint)
    except UnknownPainPointError as exc:
        raise ProblemError(404, str(exc)) from exc
    return _triage_out(session, topic_id=topic_id, touchpoint=touchpoint)


@router.post("/{topic_id}/{touchpoint}/actions", summary="Triage a pain point")
def post_triage_action(
    topic_id: TopicId, touchpoint: Touchpoint, body: TriageActionIn, session: SessionDep, caller: ReaderDep
) -> TriageOut:
    """Acknowledge, assign, comment on, resolve or reopen a pain point; the action joins its history."""
    try:
        apply_action(
            session,
            topic_id=topic_id,
            touchpoint=touchpoint,
            action=body.action,
            actor=f"key:{caller.name}",
            owner=body.owner.strip() if body.owner else None,
            comment=body.comment.strip() if body.comment else None,
        )
    except UnknownPainPointError as exc:
        raise ProblemError(404, str(exc)) from exc
    except InvalidTransitionError as exc:
        raise ProblemError(409, str(exc), slug="invalid-transition", title="Invalid triage action") from exc
    session.commit()
    return _triage_out(session, topic_id=topic_id, touchpoint=touchpoint)
