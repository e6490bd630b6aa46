"""Import rate benchmark: N rows of a survey-style CSV into SQLite and (optionally) PostgreSQL.

It measures the code path of `cxmine import` (parse, validate, de-duplicate, insert in committed chunks
of 1,000: COPY into a staging table then one INSERT ... SELECT ... ON CONFLICT DO NOTHING on PostgreSQL,
one executemany on SQLite; then near-duplicate flagging) on a fresh database, then a second import of the
same file (every row a duplicate). Besides wall-clock rates it prints the CPU seconds spent by this
process and, for a PostgreSQL server on this machine, by its backend: on a shared machine the wall clock
is noisy, the CPU seconds much less so.

    .venv/bin/python scripts/bench_import.py --rows 100000 \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import text

from scrapers.contract import RatingScale
from scrapers.files import parse_mapping
from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.ingest.imports import ImportOptions, import_file

OPENINGS = [
    "The delivery came {n} days late and nobody told me why.",
    "Staff at the store were really helpful, thank you!",
    "App crashed twice at checkout, I had to pay on the website.",
    "Refund still not received after {n} weeks.",
    "التوصيل تأخر {n} أيام ولم يرد أحد على الهاتف",
    "الموظفين كانوا لطيفين جدا",
    "سفارش‌ها همیشه {n} روز دیر می‌رسند",
    "پشتیبانی خیلی خوب جواب داد، ممنون",
    "ส่งของช้ามาก รอ {n} วันแล้วค่ะ",
    "พนักงานบริการดีมากครับ",
]
CLOSINGS = ["", " Will not order again.", " Overall good value.", " Please fix the app.", " 👍", " 😡😡"]
STORES = ["Dubai Mall", "Riyadh Olaya", "Tehran Valiasr", "Bangkok Siam", "London Oxford St", ""]


def write_csv(path: Path, *, rows: int, seed: int = 1) -> None:
    """A survey export with an id, a local timestamp, an NPS score, a comment and a store."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("ResponseId,RecordedDate,NPS,Comment,Store\n")
        for index in range(rows):
            created = start + timedelta(minutes=rng.randrange(60 * 24 * 300))
            comment = rng.choice(OPENINGS).format(n=rng.randint(2, 9)) + rng.choice(CLOSINGS)
            handle.write(
                f'R_{index:07d},{created:%Y-%m-%d %H:%M:%S},{rng.randint(0, 10)},"{comment}",{rng.choice(STORES)}\n'
            )


def run_import(url: str, data: bytes) -> tuple[float, float, int, int]:
    """(seconds, CPU seconds, stored, duplicates) for one import of ``data`` into the database at ``url``.

    CPU seconds are this process's plus, for a PostgreSQL server on this machine, its backend's: on a
    shared machine they say more than the wall clock.
    """
    engine = make_engine(url)
    session = make_session_factory(engine)()
    options = ImportOptions(
        source="bench-survey",
        filename="bench.csv",
        mapping=parse_mapping(
            "text=Comment,created_at=RecordedDate,rating=NPS,external_id=ResponseId,location=Store"
        ),
        rating_scale=RatingScale.NPS,
        default_timezone="Asia/Dubai",
    )
    backend = session.scalar(text("SELECT pg_backend_pid()")) if engine.dialect.name == "postgresql" else None
    started, cpu_started = time.perf_counter(), time.process_time() + backend_cpu(backend)
    audit, _, _ = import_file(
        session,
        data=data,
        options=options,
        author_salt=b"bench",
        max_text_chars=10_000,
        chunk_rows=1_000,
        actor="bench",
    )
    elapsed = time.perf_counter() - started
    cpu = time.process_time() + backend_cpu(backend) - cpu_started
    session.close()
    engine.dispose()
    return elapsed, cpu, audit.stored, audit.duplicates


def backend_cpu(pid: int | None) -> float:
    """CPU seconds used so far by a local PostgreSQL backend (0 if it is not on this machine)."""
    stat = Path(f"/proc/{pid}/stat")
    if pid is None or not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """A one-line description of this machine."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=os.environ.get("CXMINE_TEST_POSTGRES_URL"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "bench.csv"
        write_csv(csv_path, rows=args.rows)
        data = csv_path.read_bytes()
        print(f"machine: {machine()}")
        print(
            f"file: {args.rows:,} rows, {len(data) / 1e6:.1f} MB CSV (UTF-8, Arabic/Persian/Thai/English)\n"
        )
        targets: list[tuple[str, str]] = [("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        schema = None
        if args.postgres_url:
            schema = f"cxmine_bench_{uuid.uuid4().hex[:8]}"
            admin = make_engine(args.postgres_url)
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                version = connection.execute(text("SHOW server_version")).scalar()
            separator = "&" if "?" in args.postgres_url else "?"
            targets.append(
                (
                    f"PostgreSQL {version}",
                    f"{args.postgres_url}{separator}options={quote(f'-csearch_path={schema}')}",
                )
            )
        print("| database | first import | rows/s | CPU s | re-import (all duplicates) | rows/s | CPU s |")
        print("|---|---|---|---|---|---|---|")
        try:
            for name, url in targets:
                migrate.upgrade(url)
                first_s, first_cpu, stored, _ = run_import(url, data)
                again_s, again_cpu, _, duplicates = run_import(url, data)
                if (stored, duplicates) != (args.rows, args.rows):
                    raise SystemExit(
                        f"{name}: expected {args.rows} stored and duplicate, got {stored}, {duplicates}"
                    )
                print(
                    f"| {name} | {first_s:.1f} s | {args.rows / first_s:,.0f} | {first_cpu:.1f} | "
                    f"{again_s:.1f} s | {args.rows / again_s:,.0f} | {again_cpu:.1f} |"
                )
        finally:
            if schema is not None:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
