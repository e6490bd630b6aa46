"""A registry of named, versioned pipeline component factories."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from nlp.types import Component

ProductT = TypeVar("ProductT")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*\.v[0-9]+$")
# Modules whose import registers the built-in components; loaded on first lookup so the registry never
# imports them at module import time (they import this module).
_BUILTIN_MODULES = ("nlp.text", "nlp.encoders", "nlp.scorers")


class UnknownComponentError(KeyError):
    """Raised for a component name that no factory is registered under."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown pipeline component {self.name!r}; known components: {', '.join(self.known)}"


class Registry(Generic[ProductT]):
    """Named factories ("<stage>.<impl>.v<N>") that take keyword config and return a component."""

    def __init__(self, *, builtin_modules: tuple[str, ...] = ()) -> None:
        self._factories: dict[str, Callable[..., ProductT]] = {}
        self._instances: dict[tuple[str, str], ProductT] = {}
        self._builtin_modules = builtin_modules
        self._builtins_loaded = False
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[Callable[..., ProductT]], Callable[..., ProductT]]:
        """Register the decorated factory under ``name``."""
        if not _NAME_RE.match(name):
            raise ValueError(f"component name {name!r} must look like '<stage>.<impl>.v<N>'")

        def decorator(factory: Callable[..., ProductT]) -> Callable[..., ProductT]:
            existing = self._factories.get(name)
            if existing is not None and existing.__qualname__ != factory.__qualname__:
                raise ValueError(f"component {name!r} is already registered to {existing.__qualname__}")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., ProductT]:
        """Return the factory registered under ``name``."""
        self._load_builtins()
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownComponentError(name, self.names()) from None

    def names(self) -> list[str]:
        """Return the registered component names, sorted."""
        self._load_builtins()
        return sorted(self._factories)

    def create(self, name: str, **config: Any) -> ProductT:
        """Return the component for ``name`` and ``config``, constructed once per process."""
        factory = self.get(name)
        key = (name, json.dumps(config, sort_keys=True, default=repr))
        with self._lock:
            component = self._instances.get(key)
            if component is None:
                try:
                    inspect.signature(factory).bind(**config)
                except TypeError as exc:
                    raise ValueError(f"bad config for component {name!r}: {exc}") from exc
                component = factory(**config)
                self._instances[key] = component
        return component

    def clear_instances(self) -> None:
        """Forget constructed components (tests; frees their models)."""
        with self._lock:
            self._instances.clear()

    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)


registry = Registry[Component](builtin_modules=_BUILTIN_MODULES)
