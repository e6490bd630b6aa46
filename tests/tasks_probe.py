"""A `cxmine worker` process for the tests whose collection and topic bodies only record when they ran.

python -m tests.tasks_probe OUT_FILE SOURCES [cxmine worker options]

The worker is the real one (service.cli's command, procrastinate, the real task definitions, locks and
periodic schedules); ``service.jobs``'s collection and topic functions are replaced by probes that sleep
and append '<kind> <name> <start> <end> <pid>' to OUT_FILE, and every name in SOURCES (comma-separated)
is always due.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import service.jobs
from service.cli import app

PROBE_SECONDS = 0.8


def _record(out: Path, kind: str, name: str) -> None:
    start = time.time()
    time.sleep(PROBE_SECONDS)
    with out.open("a", encoding="utf-8") as handle:
        handle.write(f"{kind} {name} {start:.6f} {time.time():.6f} {os.getpid()}\n")


def main() -> None:
    out, sources = Path(sys.argv[1]), [name for name in sys.argv[2].split(",") if name]

    def collect_source(*, name: str, **_: Any) -> None:
        _record(out, "collect", name)

    def due_sources(**_: Any) -> list[str]:
        return list(sources)

    def make_topic_maintenance(**_: Any) -> Any:
        def topics(_stop: threading.Event) -> None:
            _record(out, "topics", "-")

        return topics

    service.jobs.collect_source = collect_source
    service.jobs.due_sources = due_sources
    service.jobs.make_topic_maintenance = make_topic_maintenance
    app(["worker", *sys.argv[3:]])


if __name__ == "__main__":
    main()
