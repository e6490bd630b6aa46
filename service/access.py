"""Location-scoped access: what a caller limited to some locations may see.

A key may be limited to a set of locations (a store manager sees only their store). Every function
here takes the caller's ``allowed`` locations; an empty ``allowed`` means every location (unscoped),
and then nothing is restricted or hidden.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nlp.representation import MAX_NAME_WORDS
from service.db.models import FeedbackItem, Topic
from service.feedback import FeedbackFilter, Scope

_TOKEN = re.compile(r"\w+")
LABEL_KEYWORDS = 3


class LocationForbiddenError(PermissionError):
    """A scoped caller asked for a location outside their set."""

    def __init__(self, location: str, allowed: Sequence[str]) -> None:
        super().__init__(
            f"This key may only see the locations {', '.join(repr(a) for a in allowed)}; not {location!r}."
        )
        self.location = location
        self.allowed = tuple(allowed)


def _restricted(requested: tuple[str, ...], allowed: Sequence[str]) -> tuple[str, ...]:
    """The locations to select: those requested (each must be allowed), or every allowed one."""
    for location in requested:
        if location not in allowed:
            raise LocationForbiddenError(location, allowed)
    return requested or tuple(allowed)


def restrict_scope(scope: Scope, *, allowed: Sequence[str]) -> Scope:
    """``scope`` limited to the ``allowed`` locations; LocationForbiddenError for another location."""
    if not allowed:
        return scope
    return dataclasses.replace(scope, locations=_restricted(scope.locations, allowed))


def restrict_filter(filters: FeedbackFilter, *, allowed: Sequence[str]) -> FeedbackFilter:
    """``filters`` limited to the ``allowed`` locations; LocationForbiddenError for another location."""
    if not allowed:
        return filters
    return dataclasses.replace(filters, locations=_restricted(filters.locations, allowed))


def can_see_location(location: str | None, *, allowed: Sequence[str]) -> bool:
    """Whether a caller may see an item at ``location`` (scoped callers never see one without a location)."""
    return not allowed or (location is not None and location in allowed)


def visible_location_rows(rows: list[dict[str, Any]], *, allowed: Sequence[str]) -> list[dict[str, Any]]:
    """A location comparison's rows the caller may see: a scoped caller only their own locations'."""
    if not allowed:
        return rows
    return [row for row in rows if can_see_location(row.get("location"), allowed=allowed)]


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.casefold()))


def _names_a_location(keyword: str, *, names: set[str], tokens: set[str]) -> bool:
    """A keyword that is a location name, or has a word of one (``olaya`` of ``Riyadh Olaya``)."""
    folded = keyword.casefold().strip()
    return folded in names or bool(_tokens(folded) & tokens)


def public_topic_text(
    *,
    label: str,
    keywords: list[str],
    representative: str | None,
    known_locations: Collection[str],
    allowed: Sequence[str],
) -> tuple[str, list[str], str | None]:
    """A topic's label, keywords and representative sentence as the caller may see them."""
    # The representative is a customer sentence that may come from any store: a scoped caller never sees
    # it, nor a label that is one (an old refit's). Names and keywords are built without place names; any that still names a location (an old
    # refit's sentence label, an admin's name) gives way to the keywords naming no location.
    if not allowed:
        return label, keywords, representative
    names = {name.casefold().strip() for name in known_locations if name}
    tokens = set().union(*(_tokens(name) for name in names)) if names else set()
    kept = [k for k in keywords if not _names_a_location(k, names=names, tokens=tokens)]
    if len(label.split()) <= MAX_NAME_WORDS and not _names_a_location(label, names=names, tokens=tokens):
        return label, kept, None
    return ", ".join(kept[:LABEL_KEYWORDS]), kept, None


def public_keywords_by_language(
    keywords: dict[str, list[str]], *, known_locations: Collection[str], allowed: Sequence[str]
) -> dict[str, list[str]]:
    """A topic's keywords per language as the caller may see them: a scoped caller, none naming a location."""
    if not allowed:
        return {language: list(words) for language, words in keywords.items()}
    names = {name.casefold().strip() for name in known_locations if name}
    tokens = set().union(*(_tokens(name) for name in names)) if names else set()
    kept = {
        language: [w for w in words if not _names_a_location(w, names=names, tokens=tokens)]
        for language, words in keywords.items()
    }
    return {language: words for language, words in kept.items() if words}


def known_locations(session: Session) -> set[str]:
    """Every location stored feedback names."""
    return set(
        session.scalars(select(FeedbackItem.location).where(FeedbackItem.location.is_not(None)).distinct())
    )


def public_topic_labels(
    session: Session, *, topic_ids: Collection[int], allowed: Sequence[str]
) -> dict[int, tuple[str, list[str]]]:
    """Each topic's (label, keywords) as the caller may see them (see ``public_topic_text``)."""
    if not topic_ids:
        return {}
    topics = session.scalars(select(Topic).where(Topic.id.in_(sorted(set(topic_ids)))))
    known = known_locations(session) if allowed else set()
    result = {}
    for topic in topics:
        label, keywords, _ = public_topic_text(
            label=topic.label,
            keywords=list(topic.keywords),
            representative=None,
            known_locations=known,
            allowed=allowed,
        )
        result[topic.id] = (label, keywords)
    return result
