"""Sources, the import audit and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from service.api.deps import AdminDep, ReaderDep, SessionDep, require_unscoped
from service.api.problems import ProblemError
from service.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ImportAuditOut
from service.db.models import ImportAudit
from service.errors import FieldError
from service.ingest.edits import updated_counts
from service.keys import create_api_key, list_api_keys, revoke_api_key

router = APIRouter(prefix="/v1")


@router.get("/imports", tags=["imports"], summary="The import audit, newest first")
def get_imports(
    session: SessionDep, caller: ReaderDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ImportAuditOut]:
    """Recent ingestions: who sent what, and how many rows were stored, duplicate or rejected."""
    require_unscoped(caller, what="Imports (and their rejected rows)")
    audits = list(session.scalars(select(ImportAudit).order_by(ImportAudit.id.desc()).limit(limit)))
    updated = updated_counts(session, import_ids=[a.id for a in audits])
    return [
        ImportAuditOut.model_validate(a).model_copy(update={"updated": updated.get(a.id, 0)}) for a in audits
    ]


@router.get("/imports/{import_id}", tags=["imports"], summary="One ingestion")
def get_import(import_id: int, session: SessionDep, caller: ReaderDep) -> ImportAuditOut:
    """One ingestion's audit row."""
    require_unscoped(caller, what="Imports (and their rejected rows)")
    audit = session.get(ImportAudit, import_id)
    if audit is None:
        raise ProblemError(404, f"No import has id {import_id}.")
    updated = updated_counts(session, import_ids=[import_id]).get(import_id, 0)
    return ImportAuditOut.model_validate(audit).model_copy(update={"updated": updated})


@router.get("/keys", tags=["keys"], summary="API keys (never their secrets)")
def get_keys(session: SessionDep, _caller: AdminDep) -> list[ApiKeyOut]:
    """Every API key with its role, locations and last use."""
    return [ApiKeyOut.model_validate(k) for k in list_api_keys(session)]


@router.post("/keys", tags=["keys"], status_code=status.HTTP_201_CREATED, summary="Create an API key")
def post_key(body: ApiKeyCreate, session: SessionDep, _caller: AdminDep) -> ApiKeyCreated:
    """A new key (an analyst key may be limited to locations); its secret appears only in this response."""
    try:
        key, plaintext = create_api_key(session, name=body.name, role=body.role, locations=body.locations)
    except ValueError as exc:
        raise ProblemError(
            422,
            str(exc),
            slug="validation-error",
            title="Invalid request",
            errors=[FieldError(field="body.locations", message=str(exc))],
        ) from exc
    session.commit()
    return ApiKeyCreated.model_validate({**ApiKeyOut.model_validate(key).model_dump(), "key": plaintext})


@router.delete("/keys/{key_id}", tags=["keys"], summary="Revoke an API key")
def delete_key(key_id: int, session: SessionDep, caller: AdminDep) -> ApiKeyOut:
    """Revoke a key; requests with it get 401 from now on."""
    if key_id == caller.key_id:
        raise ProblemError(409, "A key cannot revoke itself; use another admin key.")
    key = revoke_api_key(session, key_id=key_id)
    if key is None:
        raise ProblemError(404, f"No API key has id {key_id}.")
    session.commit()
    return ApiKeyOut.model_validate(key)
