"""A scheduler process for the tests: one 'probe' job a second that appends '<pid> <tick>' to a file.

python -m tests.scheduler_probe DATABASE_URL DATA_DIR OUT_FILE
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from service.config import Settings
from service.db.engine import make_engine, make_session_factory
from service.scheduler import CURRENT_TICK, JobSpec, Scheduler


def main() -> None:
    database_url, data_dir, out_file = sys.argv[1:4]
    settings = Settings(
        database_url=database_url,
        data_dir=Path(data_dir),
        author_salt="probe",
        scheduler_leader_poll_seconds=0.3,
    )
    engine = make_engine(database_url)
    out = Path(out_file)

    def probe(_stop: threading.Event) -> None:
        tick = CURRENT_TICK.get()
        assert tick is not None
        with out.open("a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {tick.isoformat()}\n")

    scheduler = Scheduler(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        jobs=[JobSpec("probe", probe, interval_seconds=1)],
        collect=False,
    )

    def shut_down(_signal: int, _frame: Any) -> None:
        scheduler.stop_soon()

    signal.signal(signal.SIGTERM, shut_down)
    scheduler.start()
    print("started", flush=True)
    scheduler.wait()


if __name__ == "__main__":
    main()
