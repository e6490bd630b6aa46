"""normalise.v1: build the text the models see, with a map back to the original text.

The original text is scanned once with one regex. Characters that need no change are copied in runs and map
to themselves; a URL, e-mail or @handle becomes one placeholder whose characters all map to the whole
replaced range; a whitespace run becomes one space (or one newline when it held a line break, since line
breaks separate clauses in reviews); dropped characters (controls, format characters, tatweel, harakat)
emit nothing and widen the preceding character's range so a span ending there still covers them. NFKC
runs first, per grapheme-like cluster only when the text is not already NFKC, and its map is composed in.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from nlp.registry import registry
from nlp.types import Component, Doc, OffsetMap

# One canonical spelling for letters that Arabic and Persian keyboards type differently.
LETTER_MAP = str.maketrans({"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9"})

URL_PATTERN = r"(?:https?://|ftp://|www\.)\S+?(?=[.,;:!?)\]}>'\"»”’]*(?:\s|$))"
EMAIL_PATTERN = r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
HANDLE_PATTERN = r"(?<![\w@])@\w+(?:@[\w-]+(?:\.[\w-]+)+)?"

URL_PLACEHOLDER = "http"
EMAIL_PLACEHOLDER = "@email"
HANDLE_PLACEHOLDER = "@user"
PLACEHOLDERS = (URL_PLACEHOLDER, EMAIL_PLACEHOLDER, HANDLE_PLACEHOLDER)

# Control (Cc, less whitespace) and format (Cf) characters except ZWNJ/ZWJ (Persian words, emoji) and the
# tag characters of emoji subdivision flags; plus Arabic tatweel and harakat.
_DROP_CLASS = (
    "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\u0640\u064b-\u0652"
)
_SCAN_RE = re.compile(
    rf"(?P<url>{URL_PATTERN})|(?P<email>{EMAIL_PATTERN})|(?P<handle>{HANDLE_PATTERN})"
    rf"|(?P<ws>\s+)|(?P<drop>[{_DROP_CLASS}]+)"
)
_REPLACEMENTS = {"url": URL_PLACEHOLDER, "email": EMAIL_PLACEHOLDER, "handle": HANDLE_PLACEHOLDER}
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _nfkc_with_map(text: str) -> tuple[str, list[int], list[int]]:
    """NFKC per cluster (a starter and its combining marks) so each output char maps to its source."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        piece = unicodedata.normalize("NFKC", text[i:j])
        out.append(piece)
        starts.extend([i] * len(piece))
        ends.extend([j] * len(piece))
        i = j
    return "".join(out), starts, ends


def normalise_text(text: str) -> tuple[str, OffsetMap | None]:
    """Return the model text and its offset map (None when model text and original align 1:1)."""
    base = text
    base_starts: Sequence[int] = range(len(text))
    base_ends: Sequence[int] = range(1, len(text) + 1)
    identity = True
    if not unicodedata.is_normalized("NFKC", text):
        base, base_starts, base_ends = _nfkc_with_map(text)
        identity = False
    base = base.translate(LETTER_MAP)

    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    last_ws = False
    for match in _SCAN_RE.finditer(base):
        begin, stop = match.span()
        if begin > pos:
            pieces.append(base[pos:begin])
            starts.extend(base_starts[pos:begin])
            ends.extend(base_ends[pos:begin])
            last_ws = False
        kind = match.lastgroup
        if kind == "drop":
            if ends:
                ends[-1] = base_ends[stop - 1]
        elif kind == "ws":
            space = "\n" if not _LINE_BREAKS.isdisjoint(match.group()) else " "
            if last_ws:
                if space == "\n":
                    pieces[-1] = "\n"
                ends[-1] = base_ends[stop - 1]
            elif pieces:
                pieces.append(space)
                starts.append(base_starts[begin])
                ends.append(base_ends[stop - 1])
                last_ws = True
        else:
            placeholder = _REPLACEMENTS[kind or ""]
            pieces.append(placeholder)
            starts.extend([base_starts[begin]] * len(placeholder))
            ends.extend([base_ends[stop - 1]] * len(placeholder))
            last_ws = False
        pos = stop
    if pos < len(base):
        pieces.append(base[pos:])
        starts.extend(base_starts[pos:])
        ends.extend(base_ends[pos:])
    elif last_ws:
        pieces.pop()
        starts.pop()
        ends.pop()
    model_text = "".join(pieces)
    if identity and model_text == base:
        return model_text, None
    return model_text, OffsetMap(starts=starts, ends=ends, original_length=len(text))


def normalise(docs: list[Doc]) -> list[Doc]:
    """Set each doc's model_text and offsets from its original text."""
    for doc in docs:
        doc.model_text, doc.offsets = normalise_text(doc.text)
    return docs


@registry.register("normalise.v1")
def make_normalise() -> Component:
    """Factory for normalise.v1 (no config)."""
    return normalise
