"""Text components: normalisation, language identification and sentence splitting."""

from __future__ import annotations

from nlp.text import language, normalise, sentences

__all__ = ["language", "normalise", "sentences"]
