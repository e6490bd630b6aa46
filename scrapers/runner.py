"""The one loop that drives every source: fetch a page, hand it to the sink with its cursor, repeat."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from scrapers.contract import Cursor, Malformed, Page, Source

logger = logging.getLogger("cxmine.scrapers")


class PageSink(Protocol):
    """Where pages go: stores a page's records and its cursor in one transaction, or neither."""

    def write(self, page: Page) -> None: ...


@dataclass
class CollectResult:
    """What one run fetched."""

    pages: int = 0
    records: int = 0
    malformed: list[Malformed] = field(default_factory=list)
    cursor: Cursor | None = None
    done: bool = False
    stopped: bool = False


def collect(
    source: Source,
    *,
    cursor: Cursor | None,
    sink: PageSink,
    default_touchpoint: str | None = None,
    max_pages: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_page: Callable[[CollectResult], None] | None = None,
) -> CollectResult:
    """Fetch pages from ``cursor`` until the source is done, ``max_pages`` or a stop request.

    A ``SourceError`` propagates to the caller after the pages before it were written: their records and
    cursor are kept, so the next run resumes after them.
    """
    limit = max_pages if max_pages is not None else source.config.max_pages_per_run
    result = CollectResult(cursor=cursor)
    while result.pages < limit:
        if should_stop():
            result.stopped = True
            break
        page = source.fetch_page(result.cursor)
        if default_touchpoint:
            page = dataclasses.replace(
                page,
                records=[
                    record
                    if record.touchpoint
                    else dataclasses.replace(record, touchpoint=default_touchpoint)
                    for record in page.records
                ],
            )
        sink.write(page)
        result.pages += 1
        result.records += len(page.records)
        result.malformed.extend(page.malformed)
        result.cursor = page.cursor
        if on_page is not None:
            on_page(result)
        if page.done:
            result.done = True
            break
    return result
