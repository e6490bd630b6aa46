"""Source kinds by name ('app_store.v1'), and building a configured source from stored settings."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from scrapers.contract import Source, SourceConfig

SourceT = TypeVar("SourceT", bound=type[Source])

_KINDS: dict[str, type[Source]] = {}
_builtins_loaded = threading.Event()
_lock = threading.Lock()


class UnknownSourceKindError(KeyError):
    """No source is registered under this kind."""

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.known = known

    def __str__(self) -> str:
        return f"unknown source kind {self.kind!r}; known kinds: {', '.join(self.known)}"


class SourceConfigError(ValueError):
    """A source's settings are invalid; the message lists each problem."""


def register_source(cls: SourceT) -> SourceT:
    """Register a ``Source`` subclass under its ``kind``."""
    existing = _KINDS.get(cls.kind)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"source kind {cls.kind!r} is already registered to {existing.__qualname__}")
    _KINDS[cls.kind] = cls
    return cls


def _load_builtins() -> None:
    with _lock:
        if _builtins_loaded.is_set():
            return
        package = importlib.import_module("scrapers.sources")
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"scrapers.sources.{module.name}")
        _builtins_loaded.set()


def source_kinds() -> list[str]:
    """Every registered source kind, sorted."""
    _load_builtins()
    return sorted(_KINDS)


def source_class(kind: str) -> type[Source]:
    """The source registered under ``kind``; an unknown kind fails listing the known ones."""
    _load_builtins()
    try:
        return _KINDS[kind]
    except KeyError:
        raise UnknownSourceKindError(kind, sorted(_KINDS)) from None


def resolve_env_refs(value: Any, environ: Mapping[str, str]) -> Any:
    """Replace each ``{"env": "NAME"}`` in a stored config with that environment variable's value."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            name = value["env"]
            if name not in environ:
                raise SourceConfigError(f"environment variable {name} is not set")
            return environ[name]
        return {key: resolve_env_refs(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(item, environ) for item in value]
    return value


def validate_config(kind: str, raw: Mapping[str, Any], *, environ: Mapping[str, str]) -> SourceConfig:
    """The source's config validated, secrets resolved from the environment; errors are listed by field."""
    config = validate_model(source_class(kind).config_model, raw, environ=environ, label=kind)
    assert isinstance(config, SourceConfig)
    return config


def validate_model(
    model: type[BaseModel], raw: Mapping[str, Any], *, environ: Mapping[str, str], label: str
) -> BaseModel:
    """``raw`` validated against ``model`` after resolving env references; a ``SourceConfigError`` lists every
    problem by field."""
    resolved = resolve_env_refs(dict(raw), environ)
    try:
        return model.model_validate(resolved)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(config)'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise SourceConfigError(f"invalid {label} config: {problems}") from None


def check_config_shape(kind: str, raw: Mapping[str, Any]) -> None:
    """Validate a config before storing it, without needing its secrets to be set in this environment."""
    validate_config(kind, raw, environ=placeholder_environ(raw))


def env_references(value: Any) -> list[str]:
    """The environment variable names a config refers to with ``{"env": NAME}``."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return [value["env"]]
        return [name for item in value.values() for name in env_references(item)]
    if isinstance(value, list):
        return [name for item in value for name in env_references(item)]
    return []


def placeholder_environ(raw: Any) -> dict[str, str]:
    """An environment that sets every variable ``raw`` refers to, for checking a config's shape."""
    return dict.fromkeys(env_references(raw), "placeholder")


def masked_config(kind: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The stored config fit to show: literal secrets replaced by '********', env references kept."""
    return mask_secrets(source_class(kind).config_model, raw)


def mask_secrets(model: type[BaseModel], raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with the values of the model's ``SecretStr`` fields masked, unless they are env references."""
    secret_fields = {
        name for name, info in model.model_fields.items() if info.annotation in (SecretStr, SecretStr | None)
    }
    shown: dict[str, Any] = {}
    for key, value in raw.items():
        is_reference = isinstance(value, dict) and set(value) == {"env"}
        shown[key] = "********" if key in secret_fields and value is not None and not is_reference else value
    return shown


def build_source(kind: str, raw: Mapping[str, Any], *, environ: Mapping[str, str], **options: Any) -> Source:
    """A ready source of ``kind``; ``options`` (transport, sleep) go to its constructor."""
    config = validate_config(kind, raw, environ=environ)
    factory: Callable[..., Source] = source_class(kind)
    return factory(config, **options)
