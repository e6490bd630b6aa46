"""Topic refit benchmark: time and peak memory of `service.topics.refit_topics` on N real feedback items.

1. Build a SQLite database of N items (default 100,000) of real texts drawn (seeded, de-duplicated, at
   most ~500 characters) from the train splits of ../shared/data in every language there (en, ar, fa, th,
   and the other xlmt languages), spread over 26 weeks, a few sources and locations. They go in through
   `ingest_batch` (batches of 1,000) and are scored by `score_pending` with the real pipeline (ONNX
   encoder, language id, sentence splitting, heads): slow (100,000 items took 100 min at 17 items/s on a
   shared 2-core machine), so `--reuse` keeps a database that already holds enough scored items (and
   resumes the scoring of one that does not).
2. Copy it (the built database is never refitted, so a rerun starts from the same state), then run two
   refits, each in a fresh process so that peak RSS is the refit's own: the first with no previous model,
   the second on top of the first (topic matching and lineage). Each reports the start, duration and
   memory of every stage (load, align, reduce, cluster, merge, assign, represent, match, write).
3. Print markdown tables and the machine.

    .venv/bin/python scripts/bench_refit.py --items 5000
    nice -n 10 .venv/bin/python scripts/bench_refit.py               # 100,000 items, var/bench/refit-100000.db
    nice -n 10 .venv/bin/python scripts/bench_refit.py --reuse       # refits only, on the database built before
    nice -n 10 .venv/bin/python scripts/bench_refit.py --reuse --engine topics.engine.bertopic.v1  # BERTopic
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from nlp.datasets import data_root
from service.config import Settings
from service.db import migrate
from service.db.engine import make_engine, make_session_factory
from service.db.models import FeedbackItem, FeedbackSentence
from service.ingest.service import ingest_batch
from service.pipeline import load_analyzer
from service.scoring import score_pending

REPO = Path(__file__).resolve().parent.parent
ENCODER = "onnx:var/models/e5-small-onnx"
MAX_CHARS = 500
WEEKS = 26
INGEST_BATCH = 1_000
STAGES = ("load", "align", "reduce", "cluster", "merge", "assign", "represent", "match", "write")
RESULT_MARK = "BENCH_REFIT_RESULT "
SOURCES = (
    ("Google Reviews", 30),
    ("App Store", 15),
    ("NPS survey", 25),
    ("Support emails", 15),
    ("X mentions", 15),
)
LOCATIONS = {
    "ar": ("Dubai Mall", "Riyadh Olaya"),
    "fa": ("Tehran Valiasr",),
    "th": ("Bangkok Siam",),
    "en": ("London Oxford St", "Dubai Mall"),
}
OTHER_LOCATIONS = ("London Oxford St", "Dubai Mall", "Riyadh Olaya")


# ------------------------------------------------------------------------------------------ the data


def capped(text: str) -> str:
    """``text`` cut to at most MAX_CHARS characters, at a space when there is one in the last 40%."""
    if len(text) <= MAX_CHARS:
        return text
    cut = text[:MAX_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space >= MAX_CHARS * 0.6 else cut).rstrip()


def draw_texts(count: int, *, seed: int) -> list[tuple[str, str, str]]:
    """``count`` distinct (text, language, dataset) from every train split, in a seeded random order."""
    seen: set[str] = set()
    pool: list[tuple[str, str, str]] = []
    for folder in sorted(data_root().iterdir()):
        path = folder / "train.jsonl"
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                text = capped(str(row.get("text") or "").strip())
                key = " ".join(text.casefold().split())
                if len(key) < 2 or key in seen:
                    continue
                seen.add(key)
                pool.append((text, str(row.get("lang") or "und"), folder.name))
    if count > len(pool):
        raise SystemExit(f"only {len(pool):,} distinct train texts under {data_root()}; asked for {count:,}")
    random.Random(seed).shuffle(pool)
    return pool[:count]


def raw_items(texts: list[tuple[str, str, str]], *, seed: int) -> list[dict[str, Any]]:
    """Batch-API items: the texts over the last WEEKS weeks, a few sources and locations, no language."""
    rng = random.Random(seed)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    names = [name for name, _ in SOURCES]
    weights = [weight for _, weight in SOURCES]
    items = []
    for index, (text, language, _) in enumerate(texts):
        item: dict[str, Any] = {
            "text": text,
            "source": rng.choices(names, weights)[0],
            "external_id": f"bench-{index:07d}",
            "created_at": (end - timedelta(seconds=rng.randrange(WEEKS * 7 * 86_400))).isoformat(),
        }
        if rng.random() < 0.9:
            item["location"] = rng.choice(LOCATIONS.get(language, OTHER_LOCATIONS))
        items.append(item)
    return items


# ----------------------------------------------------------------------------------------- the build


def counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    """(items, scored items, sentences) in the database."""
    with factory() as session:
        items = session.scalar(select(func.count()).select_from(FeedbackItem)) or 0
        scored = (
            session.scalar(
                select(func.count()).select_from(FeedbackItem).where(FeedbackItem.scored_at.is_not(None))
            )
            or 0
        )
        sentences = session.scalar(select(func.count()).select_from(FeedbackSentence)) or 0
    return items, scored, sentences


def remove_database(path: Path) -> None:
    """Delete a SQLite file and its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def build(path: Path, *, items: int, seed: int, batch_size: int, reuse: bool) -> dict[str, Any]:
    """Make sure ``path`` holds at least ``items`` scored items; return what was done and how fast."""
    url = f"sqlite:///{path}"
    done: dict[str, Any] = {"ingest_s": None, "ingested": 0, "score_s": None, "scored_now": 0}
    if path.exists() and not reuse:
        remove_database(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    stored, scored, _ = counts(factory)
    if stored < items:
        texts = draw_texts(items, seed=seed)
        share = Counter(language for _, language, _ in texts)
        print(
            f"drawn {len(texts):,} texts: "
            + ", ".join(f"{lang} {n:,}" for lang, n in share.most_common())
            + f"; from {len({d for _, _, d in texts})} train splits",
            flush=True,
        )
        batch = raw_items(texts, seed=seed)
        started = time.perf_counter()
        for start in range(0, len(batch), INGEST_BATCH):
            with factory() as session:
                audit, _ = ingest_batch(
                    session,
                    raw_items=batch[start : start + INGEST_BATCH],
                    author_salt=b"bench-refit",
                    max_text_chars=10_000,
                    actor="bench",
                )
                if audit.rejected:
                    raise SystemExit(f"{audit.rejected} items rejected: {audit.error_sample}")
                done["ingested"] += audit.stored
        done["ingest_s"] = time.perf_counter() - started
        print(
            f"ingested {done['ingested']:,} items in {done['ingest_s']:.1f} s "
            f"({done['ingested'] / done['ingest_s']:,.0f} items/s)",
            flush=True,
        )
    stored, scored, _ = counts(factory)
    pending = stored - scored
    if pending:
        analyzer = load_analyzer(Settings(encoder=ENCODER))
        print(f"scoring {pending:,} items with {analyzer.version}", flush=True)
        progress = {"done": 0, "printed": 0.0}
        started = time.perf_counter()

        def on_progress(n: int) -> None:
            progress["done"] += n
            now = time.perf_counter() - started
            if now - progress["printed"] >= 30 or progress["done"] >= pending:
                progress["printed"] = now
                rate = progress["done"] / now
                eta = (pending - progress["done"]) / rate if rate else 0.0
                print(
                    f"  scored {progress['done']:,}/{pending:,} ({100 * progress['done'] / pending:.0f}%) "
                    f"{rate:.0f} items/s, {now / 60:.1f} min, eta {eta / 60:.1f} min",
                    flush=True,
                )

        run = score_pending(factory, analyzer=analyzer, batch_size=batch_size, on_progress=on_progress)
        done["score_s"] = time.perf_counter() - started
        done["scored_now"] = run.scored
        print(
            f"scored {run.scored:,} items in {done['score_s']:.0f} s ({run.scored / done['score_s']:.0f} items/s)",
            flush=True,
        )
    stored, scored, sentences = counts(factory)
    with factory() as session:
        languages: Counter[str] = Counter(
            {
                str(language): n
                for language, n in session.execute(
                    select(FeedbackItem.language, func.count()).group_by(FeedbackItem.language)
                ).all()
            }
        )
    engine.dispose()
    if scored < items:
        raise SystemExit(f"{path} has {scored:,} scored items, fewer than {items:,}")
    done.update(items=stored, scored=scored, sentences=sentences, languages=dict(languages.most_common()))
    return done


# ------------------------------------------------------------------------------------------ a refit


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident set (or, with ``VmHWM``, its peak so far), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class StageTracker:
    """Records when each refit stage starts, its CPU time, and the memory before, during and after it.

    CPU seconds (user + system, all threads) say more than wall seconds on a shared machine.
    """

    def __init__(self, *, interval: float = 0.05) -> None:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.load_start = os.getloadavg()[0]
        self.stages: list[dict[str, Any]] = []
        self._base_rss = rss_mib()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def on_progress(self, stage: str, _done: int, _total: int) -> None:
        with self._lock:
            if any(s["stage"] == stage for s in self.stages):
                return
            now = time.perf_counter() - self.started
            rss = rss_mib()
            self._close(now)
            # The first stage (load) starts with the refit: its first report comes after its first chunk.
            first = not self.stages
            self.stages.append(
                {
                    "stage": stage,
                    "start": 0.0 if first else now,
                    "cpu_start": self.cpu_started if first else time.process_time(),
                    "rss_start": self._base_rss if first else rss,
                    "rss_max": max(rss, self._base_rss) if first else rss,
                }
            )

    def finish(self) -> float:
        """Close the last stage; the refit's seconds as seen from here."""
        self._stop.set()
        self._sampler.join()
        with self._lock:
            now = time.perf_counter() - self.started
            self._close(now)
        return now

    def _close(self, now: float) -> None:
        if self.stages:
            last = self.stages[-1]
            last["seconds"] = now - last["start"]
            last["cpu"] = time.process_time() - last["cpu_start"]
            last["rss_max"] = max(last["rss_max"], rss_mib())
            last["hwm_end"] = rss_mib("VmHWM")

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            rss = rss_mib()
            with self._lock:
                if self.stages:
                    self.stages[-1]["rss_max"] = max(self.stages[-1]["rss_max"], rss)


def child_refit(url: str, topic_engine: dict[str, Any] | None = None) -> None:
    """One refit in this (fresh) process; prints its figures as one JSON line."""
    began = time.perf_counter()
    import sklearn.cluster  # noqa: F401
    import umap  # noqa: F401

    from nlp.topics import TopicConfig
    from service.topics import refit_topics

    config = TopicConfig(engine=topic_engine) if topic_engine else TopicConfig()
    if topic_engine and topic_engine["name"] == "topics.engine.bertopic.v1":
        importlib.import_module("bertopic")  # counted with the imports: it brings torch and transformers

    imports_s = time.perf_counter() - began
    engine = make_engine(url)
    factory = make_session_factory(engine)
    tracker = StageTracker()
    report = refit_topics(factory, config=config, on_progress=tracker.on_progress)
    wall = tracker.finish()
    engine.dispose()
    result = {
        "imports_s": imports_s,
        "rss_before_mib": tracker._base_rss,
        "wall_s": wall,
        "cpu_s": time.process_time() - tracker.cpu_started,
        "load": [tracker.load_start, os.getloadavg()[0]],
        "seconds": report.seconds,
        "peak_rss_mib": report.peak_rss_mib,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "hwm_mib": rss_mib("VmHWM"),
        "model_id": report.model_id,
        "sentences": report.sentences,
        "fitted_on": report.fitted_on,
        "topics": report.topics,
        "outliers": report.outliers,
        "outliers_reduced": report.outliers_reduced,
        "events": report.events,
        "stages": tracker.stages,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def umap_probe() -> None:
    """UMAP as the default reducer runs it, twice on 2,000 random points: the first call pays numba's JIT."""
    import numpy as np

    began = time.perf_counter()
    import umap

    imported = time.perf_counter() - began
    points = np.random.default_rng(0).standard_normal((2_000, 384)).astype(np.float32)
    calls = []
    for _ in range(2):
        began, cpu = time.perf_counter(), time.process_time()
        umap.UMAP(
            n_components=5, n_neighbors=15, metric="cosine", min_dist=0.0, random_state=0
        ).fit_transform(points)
        calls.append((time.perf_counter() - began, time.process_time() - cpu))
    print(RESULT_MARK + json.dumps({"import_s": imported, "first": calls[0], "second": calls[1]}))


def in_child(*arguments: str, echo: bool = False) -> dict[str, Any]:
    """Run this script with ``arguments`` in a fresh Python process; the JSON result it printed.

    The parent stays small (it never loads the models or the refit's arrays): Linux carries a parent's
    RSS at fork into the child's ru_maxrss, so a child of a big parent would report the parent's peak.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    result: dict[str, Any] | None = None
    tail: list[str] = []
    for line in process.stdout:
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
        elif echo:
            print(line, end="", flush=True)
        else:
            tail = [*tail[-50:], line]
    if process.wait() != 0 or result is None:
        sys.stderr.write("".join(tail))
        raise SystemExit(f"{' '.join(arguments[:1])} failed with exit status {process.returncode}")
    result["process_s"] = time.perf_counter() - started
    return result


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (WAL included)."""
    remove_database(target)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


# ------------------------------------------------------------------------------------------ reporting


def machine() -> str:
    """CPU model, cores, memory, Python and SQLite versions, and the load when the benchmark started."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = next(
        int(line.split()[1]) / 1024**2
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, nproc {os.cpu_count()}, {memory:.1f} GiB RAM, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, load average {load}"
    )


def code_version() -> str:
    """The commit the refit code comes from, and whether its modules have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "nlp", "service"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1::2]
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def libraries() -> str:
    """Versions of the numeric libraries the refit runs on."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in (
        "numpy",
        "scikit-learn",
        "umap-learn",
        "numba",
        "SQLAlchemy",
        "onnxruntime",
        "bertopic",
        "torch",
    ):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def print_tables(
    built: dict[str, Any], path: Path, refits: list[dict[str, Any]], probe: dict[str, Any] | None
) -> None:
    print("\n### Database\n")
    print("| items | scored | sentences | sentences/item | languages (detected) | ingest | scoring | file |")
    print("|---|---|---|---|---|---|---|---|")
    languages = ", ".join(f"{lang or 'und'} {n:,}" for lang, n in list(built["languages"].items())[:8])
    ingest = (
        f"{built['ingest_s']:.1f} s ({built['ingested'] / built['ingest_s']:,.0f}/s)"
        if built["ingest_s"]
        else "reused"
    )
    scoring = (
        f"{built['score_s'] / 60:.1f} min ({built['scored_now'] / built['score_s']:.0f}/s)"
        if built["score_s"]
        else "reused"
    )
    print(
        f"| {built['items']:,} | {built['scored']:,} | {built['sentences']:,} | "
        f"{built['sentences'] / max(built['items'], 1):.2f} | {languages} | {ingest} | {scoring} | "
        f"{path.stat().st_size / 1024**2:,.0f} MiB |"
    )

    names = ["refit 1 (no previous model)", "refit 2 (previous model: match + lineage)"][: len(refits)]
    print("\n### Refits (default TopicConfig, each in a fresh process)\n")
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(refits))
    rows: list[tuple[str, Any]] = [
        ("total seconds (RefitReport.seconds)", lambda r: f"{r['seconds']:.1f}"),
        ("CPU seconds (user + system, all threads)", lambda r: f"{r['cpu_s']:.1f}"),
        ("load average (1 min) at start / end", lambda r: f"{r['load'][0]:.1f} / {r['load'][1]:.1f}"),
        ("peak RSS of the refit process (VmHWM), MiB", lambda r: f"{r['hwm_mib']:,.0f}"),
        ("RefitReport.peak_rss_mib (ru_maxrss), MiB", lambda r: f"{r['peak_rss_mib']:,.0f}"),
        ("RSS before the refit (after imports), MiB", lambda r: f"{r['rss_before_mib']:,.0f}"),
        ("imports before the refit (numpy, sklearn, umap), s", lambda r: f"{r['imports_s']:.1f}"),
        ("process wall incl. start-up, s", lambda r: f"{r['process_s']:.1f}"),
        ("sentences", lambda r: f"{r['sentences']:,}"),
        ("fitted_on", lambda r: f"{r['fitted_on']:,}"),
        ("topics", lambda r: f"{r['topics']:,}"),
        (
            "outliers",
            lambda r: f"{r['outliers']:,} ({100 * r['outliers'] / max(r['sentences'], 1):.1f}%)",
        ),
        ("outliers_reduced", lambda r: f"{r['outliers_reduced']:,}"),
        ("lineage events", lambda r: f"{sum(r['events'].values()):,}"),
        (
            "events by kind",
            lambda r: ", ".join(f"{k} {v:,}" for k, v in sorted(r["events"].items())) or "none",
        ),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(r) for r in refits) + " |")

    print(
        "\n### Stages (start: seconds since the refit began; share: of wall time; "
        "RSS in MiB: sampled max in the stage, and the process peak at its end)\n"
    )
    header = " | ".join(
        f"r{n} start | r{n} wall s | r{n} CPU s | r{n} share | r{n} RSS max | r{n} peak so far"
        for n in range(1, len(refits) + 1)
    )
    print(f"| stage | {header} |")
    print("|---|" + "---|" * (6 * len(refits)))
    for stage in STAGES:
        cells = []
        for refit in refits:
            found = next((s for s in refit["stages"] if s["stage"] == stage), None)
            if found is None:
                cells.append(" | | | | | ")
                continue
            cells.append(
                f"{found['start']:.1f} | {found['seconds']:.1f} | {found['cpu']:.1f} | "
                f"{100 * found['seconds'] / refit['wall_s']:.0f}% | "
                f"{found['rss_max']:,.0f} | {found['hwm_end']:,.0f}"
            )
        print(f"| {stage} | " + " | ".join(cells) + " |")
    if probe is not None:
        print("\n### UMAP alone, fresh process, 2,000 random 384-d points (default reducer settings)\n")
        print("| import umap | first fit_transform (numba JIT + fit) | second fit_transform (fit only) |")
        print("|---|---|---|")
        print(
            f"| {probe['import_s']:.1f} s | {probe['first'][0]:.1f} s wall, {probe['first'][1]:.1f} s CPU | "
            f"{probe['second'][0]:.1f} s wall, {probe['second'][1]:.1f} s CPU |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--db", type=Path, help="default var/bench/refit-<items>.db")
    parser.add_argument("--reuse", action="store_true", help="keep an existing database (resume its scoring)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64, help="scoring batch size")
    parser.add_argument("--refits", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument("--keep", action="store_true", help="keep the refitted copy (<db>.refit.db)")
    parser.add_argument("--no-umap-probe", action="store_true", help="skip the UMAP JIT probe")
    parser.add_argument("--child-build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-refit", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument(
        "--engine",
        default="topics.engine.cxmine.v1",
        help="TopicConfig.engine: a name, or a JSON object such as "
        '\'{"name": "topics.engine.bertopic.v1", "merge": "none"}\' (BERTopic needs the topics extra)',
    )
    parser.add_argument("--child-umap-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.chdir(REPO)
    path = (args.db or Path(f"var/bench/refit-{args.items}.db")).resolve()
    engine = json.loads(args.engine) if args.engine.startswith("{") else {"name": args.engine}
    if args.child_refit:
        child_refit(args.child_refit, engine)
        return
    if args.child_umap_probe:
        umap_probe()
        return
    if args.child_build:
        built = build(path, items=args.items, seed=args.seed, batch_size=args.batch_size, reuse=args.reuse)
        print(RESULT_MARK + json.dumps(built), flush=True)
        return

    print(
        f"machine: {machine()}\nlibraries: {libraries()}\ncode: {code_version()}\ndatabase: {path}\n"
        f"engine: {json.dumps(engine)}\n",
        flush=True,
    )
    options = ["--db", str(path), "--items", str(args.items), "--seed", str(args.seed)]
    options += ["--batch-size", str(args.batch_size), *(["--reuse"] if args.reuse else [])]
    built = in_child("--child-build", *options, echo=True)
    work = path.with_suffix(".refit.db")
    copy_database(path, work)
    work_url = f"sqlite:///{work}"
    migrate.upgrade(work_url)
    refits = []
    for n in range(1, args.refits + 1):
        print(f"refit {n} ...", flush=True)
        refits.append(in_child("--child-refit", work_url, "--engine", json.dumps(engine)))
        print(
            f"refit {n}: {refits[-1]['seconds']:.1f} s, peak {refits[-1]['hwm_mib']:,.0f} MiB, "
            f"{refits[-1]['topics']} topics",
            flush=True,
        )
    probe = None if args.no_umap_probe else in_child("--child-umap-probe")
    print_tables(built, path, refits, probe)
    print(f"\nmachine: {machine()}\nlibraries: {libraries()}\ncode: {code_version()}")
    if not args.keep:
        remove_database(work)


if __name__ == "__main__":
    main()
