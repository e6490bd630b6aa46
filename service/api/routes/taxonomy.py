"""The touchpoint taxonomy: read it, replace it (stored feedback is then re-labelled without re-encoding)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field

from nlp.touchpoints import STAGES, Taxonomy, TaxonomyError, parse_taxonomy
from service.api.deps import AdminDep, ReaderDep, SessionDep
from service.api.problems import ProblemError
from service.errors import FieldError
from service.touchpoints import (
    TouchpointLabeler,
    active_taxonomy,
    count_unlabelled,
    labelling_key,
    save_taxonomy,
    taxonomy_key,
)

router = APIRouter(prefix="/v1/taxonomy", tags=["touchpoints"])


class TaxonomyOut(BaseModel):
    key: str = Field(description="Names the exact taxonomy; each item records the key it was labelled with.")
    stages: list[str] = Field(description="The customer-journey stages a touchpoint may sit at.")
    taxonomy: dict[str, Any]
    pending_items: int = Field(description="Scored items not yet labelled with this taxonomy.")


def _out(request: Request, session: SessionDep, taxonomy: Taxonomy) -> TaxonomyOut:
    # Items are labelled with aspect sentiment wherever the scoring models run.
    aspects = request.app.state.analyzer is not None
    return TaxonomyOut(
        key=taxonomy_key(taxonomy),
        stages=list(STAGES),
        taxonomy=taxonomy.to_document(),
        pending_items=count_unlabelled(session, key=labelling_key(taxonomy, aspects=aspects)),
    )


@router.get("", summary="The touchpoint taxonomy in force")
def get_taxonomy(request: Request, session: SessionDep, _caller: ReaderDep) -> TaxonomyOut:
    """Touchpoints with their journey stages, descriptions and example phrases."""
    return _out(request, session, active_taxonomy(session))


@router.put("", summary="Replace the touchpoint taxonomy (admin)")
def put_taxonomy(
    request: Request,
    session: SessionDep,
    caller: AdminDep,
    document: dict[str, Any] = Body(
        description="name, version, description and touchpoints: [{id, name, stages, description, "
        "examples: {language: [phrases]}}]"
    ),
) -> TaxonomyOut:
    """Validate and store a new taxonomy; the background job re-labels stored feedback with it."""
    try:
        taxonomy = parse_taxonomy(document)
    except TaxonomyError as exc:
        raise ProblemError(
            422,
            str(exc),
            slug="invalid-taxonomy",
            title="The taxonomy is not valid",
            errors=[FieldError(field="body", message=str(exc))],
        ) from exc
    save_taxonomy(session, taxonomy=taxonomy, actor=f"key:{caller.name}")
    session.commit()
    analyzer = request.app.state.analyzer
    if analyzer is not None:
        request.app.state.labeler = TouchpointLabeler(
            taxonomy=taxonomy, encoder=analyzer.encoder, sentiment=analyzer.sentiment
        )
    return _out(request, session, taxonomy)
