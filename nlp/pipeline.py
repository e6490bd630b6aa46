"""A pipeline of registered components, decided by config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nlp.registry import Registry, registry
from nlp.types import Component, Doc

StepConfig = str | Mapping[str, Any]

DEFAULT_TEXT_STEPS: list[StepConfig] = [
    {"name": "normalise.v1"},
    {"name": "language.fastlangdetect.v1", "min_confidence": 0.4},
    {"name": "sentences.multilingual.v1"},
]


class Pipeline:
    """Runs named components in order over a batch of docs."""

    def __init__(self, *, components: Sequence[tuple[str, Component]]) -> None:
        self._components = list(components)

    @classmethod
    def from_config(cls, steps: Sequence[StepConfig], *, using: Registry[Component] = registry) -> Pipeline:
        """Build from step names or {"name": ..., **config} dicts; components are shared per process."""
        components: list[tuple[str, Component]] = []
        for step in steps:
            if isinstance(step, str):
                name, config = step, {}
            else:
                config = dict(step)
                name = config.pop("name", None)
                if not isinstance(name, str):
                    raise ValueError(f"pipeline step {step!r} needs a string 'name'")
            components.append((name, using.create(name, **config)))
        return cls(components=components)

    @property
    def component_names(self) -> list[str]:
        """The names of the components, in run order."""
        return [name for name, _ in self._components]

    def get(self, name: str) -> Component:
        """The component registered under ``name`` in this pipeline."""
        for component_name, component in self._components:
            if component_name == name:
                return component
        raise KeyError(name)

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        for _, component in self._components:
            docs = component(docs)
        return docs


def make_docs(items: Sequence[tuple[str, str, str | None]]) -> list[Doc]:
    """Docs from (id, text, language or None) tuples; a given language is taken as certain."""
    return [Doc.new(id=doc_id, text=text, language=language) for doc_id, text, language in items]
