"""Live updates: Server-Sent Events telling open pages that new feedback was scored or an alert fired.

Events carry no data from the database beyond "something changed": each page then re-fetches its own
fragments over HTMX, scoped to its user, so a location-scoped user never receives another store's numbers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from service.db.models import Alert, FeedbackSentence
from service.web.auth import WebSessionDep

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Watermark:
    """What the feed has already announced: the newest scored sentence and the newest alert."""

    sentence_id: int | None
    alert_id: int | None


def watermark(session: Session) -> Watermark:
    """The newest scored sentence's id (scoring writes every item's sentences) and the newest alert's id.

    Both are primary-key maxima, so the look-up stays instant at millions of rows.
    """
    sentence = session.scalar(select(func.max(FeedbackSentence.id)))
    alert = session.scalar(select(func.max(Alert.id)))
    return Watermark(sentence_id=sentence, alert_id=alert)


class SharedWatermark:
    """One database read per poll interval for the whole process, however many pages are open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = -1.0
        self._value = Watermark(sentence_id=None, alert_id=None)

    def current(self, factory: sessionmaker[Session], *, max_age: float) -> Watermark:
        with self._lock:
            if time.monotonic() - self._read_at >= max_age:
                with factory() as session:
                    self._value = watermark(session)
                self._read_at = time.monotonic()
            return self._value


shared_watermark = SharedWatermark()


def _read(factory: sessionmaker[Session], max_age: float = 0.0) -> Watermark:
    return shared_watermark.current(factory, max_age=max_age)


async def change_events(
    request: Request, *, factory: sessionmaker[Session], poll_seconds: float, alerts_visible: bool
) -> AsyncIterator[dict[str, str]]:
    """Yield ``scored`` and ``alert`` events whenever the watermark moves, until the client leaves."""
    seen = await run_in_threadpool(_read, factory)
    yield {"event": "hello", "data": datetime.now(UTC).strftime("%H:%M:%S")}
    while not await request.is_disconnected():
        await asyncio.sleep(poll_seconds)
        now = await run_in_threadpool(_read, factory, poll_seconds * 0.9)
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        if now.sentence_id != seen.sentence_id:
            yield {"event": "scored", "data": f"New feedback scored at {stamp} UTC"}
        if alerts_visible and now.alert_id != seen.alert_id:
            yield {"event": "alert", "data": f"An alert fired at {stamp} UTC"}
        seen = now


@router.get("/events")
async def events(request: Request, web: WebSessionDep) -> EventSourceResponse:
    """The live feed of the signed-in user's pages."""
    settings = request.app.state.settings
    return EventSourceResponse(
        change_events(
            request,
            factory=request.app.state.session_factory,
            poll_seconds=settings.dashboard_events_poll_seconds,
            alerts_visible=not web.caller.locations,
        ),
        ping=15,
    )
