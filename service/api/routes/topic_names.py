"""Theme names: an admin renames a topic, and the name survives every refit until given back."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.api.deps import AdminDep, SessionDep
from service.api.problems import ProblemError
from service.topic_text import MAX_NAME_LENGTH, TopicNameError, rename_topic

router = APIRouter(prefix="/v1/topics", tags=["topics"])


class TopicNameIn(BaseModel):
    name: str | None = Field(
        max_length=MAX_NAME_LENGTH,
        description="The theme's new name (unique among active themes); null gives naming back to the refit.",
        examples=["Rude staff at the returns desk"],
    )


class TopicNameOut(BaseModel):
    id: int
    label: str = Field(description="The name readers see.")
    label_source: str = Field(description="generated (each refit names it) or admin (kept across refits).")
    renamed_by: str | None = Field(description="The API key that last renamed it.")
    renamed_at: datetime | None


@router.patch("/{topic_id}", summary="Rename a theme (admin); the name survives refits")
def patch_topic_name(topic_id: int, body: TopicNameIn, session: SessionDep, caller: AdminDep) -> TopicNameOut:
    """Rename an active topic; 409 when another active topic has that name."""
    try:
        topic = rename_topic(session, topic_id=topic_id, name=body.name, actor=caller.name)
    except TopicNameError as exc:
        raise ProblemError(exc.status, str(exc)) from exc
    session.commit()
    return TopicNameOut(
        id=topic.id,
        label=topic.label,
        label_source=topic.label_source,
        renamed_by=topic.renamed_by,
        renamed_at=topic.renamed_at,
    )
