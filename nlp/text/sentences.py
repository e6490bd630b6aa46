"""sentences.multilingual.v1: sentences with offsets into the original text.

Sentences are found on the model text (line breaks kept, URLs masked so their dots do not end sentences) and
mapped back to the original through the doc's offset map. Line breaks and bullets always separate; within a
line, spaCy's rule-based sentencizer splits most languages and pythainlp's CRFCut splits Thai.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from nlp.registry import registry
from nlp.types import Doc, Sentence

if TYPE_CHECKING:
    from spacy.language import Language

# "؛" (Arabic semicolon) joins clauses, so it is deliberately not an ender.
EXTRA_PUNCT_CHARS = ("\u061f", "\u06d4", ".")
NOT_PUNCT_CHARS = ("\u061b",)
THAI_ENGINE = "crfcut"

_BLOCK_RE = re.compile(r"[^\n•●○◦▪▫‣∙⁃]+")
_LIST_MARKER_RE = re.compile(r"\s*(?:[-*–—>]+|\d{1,2}[.)])\s+")
_ALNUM_RE = re.compile(r"[^\W_]")
_GLUED_ENDER_RE = re.compile(r"[\u061f\u06d4]+(?=[^\W\d_])")

ModelSpan = tuple[int, int]


def load_spacy(lang: str) -> Language:
    """A blank spaCy pipeline for ``lang`` (multilingual "xx" when unsupported) with a sentencizer."""
    import spacy
    from spacy.pipeline import Sentencizer

    try:
        nlp = spacy.blank(lang)
    except Exception:  # unsupported language, or its tokenizer needs a missing package
        nlp = spacy.blank("xx")
    punct = (set(Sentencizer.default_punct_chars) | set(EXTRA_PUNCT_CHARS)) - set(NOT_PUNCT_CHARS)
    nlp.add_pipe("sentencizer", config={"punct_chars": sorted(punct)})
    return nlp


def load_thai_splitter() -> Callable[[str], list[str]]:
    """pythainlp's CRFCut sentence segmenter, whose model ships inside the package."""
    os.environ.setdefault("PYTHAINLP_OFFLINE", "1")
    from pythainlp.tokenize import sent_tokenize

    def split(text: str) -> list[str]:
        result = sent_tokenize(text, engine=THAI_ENGINE, keep_whitespace=True)
        return [str(segment) for segment in result]

    return split


class SentenceSplitter:
    """Splits docs into sentences; models are loaded on first use per language and kept."""

    def __init__(
        self,
        *,
        short_text_chars: int = 16,
        spacy_loader: Callable[[str], Language] | None = None,
        thai_loader: Callable[[], Callable[[str], list[str]]] | None = None,
    ) -> None:
        self.short_text_chars = short_text_chars
        self._spacy_loader = spacy_loader
        self._thai_loader = thai_loader
        self._spacy: dict[str, Language] = {}
        self._thai: Callable[[str], list[str]] | None = None
        self._lock = threading.Lock()

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        for doc in docs:
            doc.sentences = self.split(doc)
        return docs

    def split(self, doc: Doc) -> list[Sentence]:
        """Sentences of one doc, trimmed, with offsets into doc.text."""
        model_text = doc.model_text
        spans: list[ModelSpan] = []
        for block in _BLOCK_RE.finditer(model_text):
            start, end = block.span()
            marker = _LIST_MARKER_RE.match(model_text, start, end)
            if marker:
                start = marker.end()
            spans.extend(self._split_block(model_text, start, end, doc.language))
        sentences: list[Sentence] = []
        for start, end in _merge_fragments(model_text, spans):
            span = doc.to_original(start, end)
            begin, stop = span.start, span.end
            while begin < stop and doc.text[begin].isspace():
                begin += 1
            while stop > begin and doc.text[stop - 1].isspace():
                stop -= 1
            if begin < stop:
                sentences.append(
                    Sentence(
                        text=doc.text[begin:stop], start=begin, end=stop, model_text=model_text[start:end]
                    )
                )
        return sentences

    def _split_block(self, text: str, start: int, end: int, language: str | None) -> list[ModelSpan]:
        block = text[start:end]
        if len(block.strip()) < self.short_text_chars:
            return _trimmed(text, [(start, end)])
        if language == "th":
            pieces: list[ModelSpan] = []
            cursor = 0
            for segment in self._thai_split()(block):
                found = block.find(segment, cursor)
                if found < 0 or not segment.strip():
                    continue
                pieces.append((start + found, start + found + len(segment)))
                cursor = found + len(segment)
            return _trimmed(text, pieces)
        nlp = self._nlp(language or "xx")
        spans = [(start + s.start_char, start + s.end_char) for s in nlp(block).sents]
        return _trimmed(text, _split_glued_enders(text, spans))

    def _nlp(self, language: str) -> Language:
        nlp = self._spacy.get(language)
        if nlp is None:
            with self._lock:
                nlp = self._spacy.get(language)
                if nlp is None:
                    nlp = (self._spacy_loader or load_spacy)(language)
                    self._spacy[language] = nlp
        return nlp

    def _thai_split(self) -> Callable[[str], list[str]]:
        if self._thai is None:
            with self._lock:
                if self._thai is None:
                    self._thai = (self._thai_loader or load_thai_splitter)()
        return self._thai


def _split_glued_enders(text: str, spans: list[ModelSpan]) -> list[ModelSpan]:
    """Split after "؟" or "۔" typed with no space before the next word, which tokenizers keep attached."""
    result: list[ModelSpan] = []
    for span_start, end in spans:
        start = span_start
        for ender in _GLUED_ENDER_RE.finditer(text, span_start, end):
            result.append((start, ender.end()))
            start = ender.end()
        result.append((start, end))
    return result


def _trimmed(text: str, spans: list[ModelSpan]) -> list[ModelSpan]:
    """Spans with surrounding whitespace removed; empty ones dropped."""
    result: list[ModelSpan] = []
    for start, end in spans:
        piece = text[start:end]
        begin = start + len(piece) - len(piece.lstrip())
        stop = end - (len(piece) - len(piece.rstrip()))
        if begin < stop:
            result.append((begin, stop))
    return result


def _merge_fragments(text: str, spans: list[ModelSpan]) -> list[ModelSpan]:
    """Attach fragments with no letter or digit (an emoji, "!!!") to the sentence before them."""
    merged: list[ModelSpan] = []
    pending_start: int | None = None
    for start, end in spans:
        if not _ALNUM_RE.search(text, start, end):
            if merged:
                merged[-1] = (merged[-1][0], end)
            elif pending_start is None:
                pending_start = start
            continue
        merged.append((start if pending_start is None else pending_start, end))
        pending_start = None
    if pending_start is not None:
        merged.append((pending_start, spans[-1][1]))
    return merged


@registry.register("sentences.multilingual.v1")
def make_sentences(*, short_text_chars: int = 16) -> SentenceSplitter:
    """Factory for sentences.multilingual.v1."""
    return SentenceSplitter(short_text_chars=short_text_chars)
