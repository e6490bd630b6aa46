"""Cursors of newest-first listings: walk back to what the previous run saw, then remember the newest.

Most review and social APIs list newest first and page backwards. A run reads pages until it meets a record
the previous run already had (or the listing ends); the cursor then keeps the newest time it saw, where the
next run stops. Mid-run, the cursor keeps the listing's own position (page number, token, offset), so a run
killed halfway resumes at the next page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from scrapers.contract import Cursor, Malformed, Page, Record
from scrapers.parsing import iso_datetime


def unseen(records: Sequence[Record], *, since: datetime | None) -> tuple[list[Record], bool]:
    """The records not older than ``since``, and whether the page reached older ones (the walk is over).

    Records exactly as old as ``since`` are kept: storage recognises the ones it has by their id.
    """
    fresh = [record for record in records if since is None or record.created_at >= since]
    return fresh, len(fresh) < len(records)


def newest_of(times: Sequence[datetime], newest: str | None) -> str | None:
    """The newest of ``times`` and the newest seen so far, as ISO 8601."""
    for moment in times:
        if newest is None or moment > iso_datetime(newest):
            newest = moment.isoformat()
    return newest


def listing_page(
    *,
    records: list[Record],
    malformed: list[Malformed],
    position: Cursor | None,
    since: datetime | None,
    newest: str | None,
) -> Page:
    """A page of one listing: ``position`` (e.g. ``{"token": ...}``) continues it; None ends the run, and the
    next run walks back to the newest record seen (or, when there was none, to the previous mark)."""
    if position is not None:
        state: Cursor = dict(position)
        if since is not None:
            state["since"] = since.isoformat()
        if newest is not None:
            state["newest"] = newest
        return Page(records=records, cursor=state, done=False, malformed=malformed)
    mark = newest or (since.isoformat() if since else None)
    return Page(records=records, cursor={"since": mark} if mark else {}, done=True, malformed=malformed)


def walk_page(
    *,
    records: list[Record],
    malformed: list[Malformed],
    key: str,
    targets: Sequence[str],
    index: int,
    since: Mapping[str, str],
    newest: str | None,
    position: Cursor | None,
) -> Page:
    """A page of a walk over several listings (locations, businesses, countries), each with its own mark.

    ``position`` continues the current listing; None moves to the next one, and after the last the run is
    done. The cursor names the current listing by its id under ``key``.
    """
    marks = dict(since)
    current = targets[index]
    if position is not None:
        state: Cursor = {"since": marks, key: current, **position}
        if newest is not None:
            state["newest"] = newest
        return Page(records=records, cursor=state, done=False, malformed=malformed)
    if newest is not None:
        marks[current] = newest
    if index + 1 < len(targets):
        return Page(
            records=records, cursor={"since": marks, key: targets[index + 1]}, done=False, malformed=malformed
        )
    return Page(records=records, cursor={"since": marks}, done=True, malformed=malformed)


def walk_index(targets: Sequence[str], current: object) -> int:
    """Where a walk's cursor says to continue; a target since removed from the config restarts the walk."""
    return targets.index(current) if isinstance(current, str) and current in targets else 0
