"""API keys: generated once, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import ApiKey, Role, utcnow

KEY_PREFIX = "cxm_"
_LAST_USED_GRANULARITY = timedelta(minutes=1)


def hash_key(plaintext: str) -> str:
    """The stored form of a key; keys are 256-bit random, so a plain SHA-256 suffices."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_locations(locations: Sequence[str]) -> list[str]:
    """Location names stripped, blanks dropped and duplicates removed, in the order given."""
    return list(dict.fromkeys(name.strip() for name in locations if name.strip()))


def create_api_key(
    session: Session, *, name: str, role: Role, locations: Sequence[str] = ()
) -> tuple[ApiKey, str]:
    """Create a key (an analyst key may be limited to ``locations``) and return it with its plaintext."""
    names = key_locations(locations)
    if locations and not names:
        raise ValueError(
            "the locations are all blank; name at least one location, or give none for every location"
        )
    if names and role != Role.ANALYST:
        raise ValueError(
            f"only analyst keys may be limited to locations; a {role.value} key sees every location"
        )
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        role=role.value,
        prefix=plaintext[:12],
        key_hash=hash_key(plaintext),
        locations=names or None,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate(session: Session, *, plaintext: str) -> ApiKey | None:
    """The active key matching ``plaintext``, recording its use; None if unknown or revoked."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_GRANULARITY:
        key.last_used_at = now
        session.commit()
    return key


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, newest first, revoked ones included."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))


def revoke_api_key(session: Session, *, key_id: int) -> ApiKey | None:
    """Revoke a key by id; None if there is no such key."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key
