"""Rebuilding the daily pain-point rollups from the facts, and checking that the triggers kept them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Date, String, cast, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from service.db.models import PainPointDay, PainPointDimensionDay, PainPointFact, PainPointRollupControl
from service.rollups import SUMS, fact_sums


def _grouped_facts(session: Session, dimension: str | None) -> Any:
    """The facts summed per UTC day, (topic, touchpoint) and, with ``dimension``, its value."""
    postgres = session.get_bind().dialect.name == "postgresql"
    created = PainPointFact.created_at
    day = cast(func.timezone("UTC", created), Date) if postgres else func.date(created)
    keys: list[Any] = [PainPointFact.topic_id, PainPointFact.touchpoint]
    if dimension == "location":
        keys = [literal(dimension), PainPointFact.location, *keys]
    elif dimension == "source":
        keys = [literal(dimension), cast(PainPointFact.source_id, String), *keys]
    elif dimension == "language":
        keys = [literal(dimension), func.coalesce(PainPointFact.language, ""), *keys]
    query = select(
        *keys[:-2],
        day,
        *keys[-2:],
        *fact_sums(PainPointFact),
    ).group_by(*keys[1:-2], day, *keys[-2:])
    return query.where(PainPointFact.location.is_not(None)) if dimension == "location" else query


DIMENSION_KEYS = ["dimension", "value", "day", "topic_id", "touchpoint"]


def rebuild_rollups(session: Session) -> None:
    """Recompute the rollups from the facts (after a bulk load that bypassed the triggers)."""
    session.execute(delete(PainPointDay))
    session.execute(delete(PainPointDimensionDay))
    days = insert(PainPointDay).from_select(
        ["day", "topic_id", "touchpoint", *SUMS], _grouped_facts(session, None)
    )
    session.execute(days)
    for dimension in ("location", "source", "language"):
        rows = _grouped_facts(session, dimension)
        session.execute(insert(PainPointDimensionDay).from_select([*DIMENSION_KEYS, *SUMS], rows))


def rollup_drift(session: Session) -> list[tuple[Any, ...]]:
    """The rollup rows (dimension or None, [value,] day, topic, touchpoint) that disagree with the facts."""
    drift: list[tuple[Any, ...]] = []
    for dimension in (None, "location", "source", "language"):
        if dimension is None:
            table: Any = PainPointDay
            stored_rows = session.execute(select(table.day, table.topic_id, table.touchpoint, *_sums(table)))
        else:
            table = PainPointDimensionDay
            stored_rows = session.execute(
                select(
                    table.dimension, table.value, table.day, table.topic_id, table.touchpoint, *_sums(table)
                ).where(table.dimension == dimension)
            )
        day_at = 0 if dimension is None else 2
        stored = {_key(row[:-4], day_at): tuple(row[-4:]) for row in stored_rows}
        facts = session.execute(_grouped_facts(session, dimension))
        computed = {_key(row[:-4], day_at): tuple(row[-4:]) for row in facts}
        for key in stored.keys() | computed.keys():
            have, want = stored.get(key), computed.get(key)
            if have is None or want is None or not _close(have, want):
                drift.append((dimension, *key))
    return drift


def _sums(table: Any) -> list[Any]:
    return [getattr(table, name) for name in SUMS]


def _key(values: Sequence[Any], day_at: int) -> tuple[Any, ...]:
    """A row's key with its day as a date (SQLite returns ``date()`` as text)."""
    return tuple(_as_date(v) if i == day_at else v for i, v in enumerate(values))


def _close(have: Sequence[Any], want: Sequence[Any]) -> bool:
    return all(abs(float(a or 0) - float(b or 0)) <= 1e-6 for a, b in zip(have, want, strict=True))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def suspend_rollups(session: Session) -> None:
    """Turn the rollup triggers off for the rest of this transaction, before rewriting many facts.

    Only ever inside one transaction that ends with ``resume_rollups``, so no other transaction sees the
    triggers off or the rollups half rebuilt; a refit rewrites every fact about three times faster this way
    (scripts/bench_rollup_writes.py)."""
    if not session.execute(update(PainPointRollupControl).values(suspended=True)).rowcount:  # type: ignore[attr-defined]
        session.add(PainPointRollupControl(id=1, suspended=True))
        session.flush()


def resume_rollups(session: Session) -> None:
    """Turn the rollup triggers back on and rebuild the rollups from the facts, set-based."""
    session.execute(update(PainPointRollupControl).values(suspended=False))
    rebuild_rollups(session)
