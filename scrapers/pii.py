"""Personal data out of feedback text before it is stored: e-mail addresses, phone numbers, card numbers."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

EMAIL_TOKEN = "[email]"  # noqa: S105 - a placeholder, not a password
PHONE_TOKEN = "[phone]"  # noqa: S105
CARD_TOKEN = "[card]"  # noqa: S105

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])", re.UNICODE)
# 13-19 digits, optionally grouped by single spaces or dashes: every card scheme's length.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# A leading + or 0 or a bracketed area code, then 8 to 15 digits with common separators.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+|00|\(0?\d{1,4}\)|0)(?:[ .\-/]?\(?\d\)?){7,14}(?!\d)"
    r"|(?<![\w+])\d{3}[ .\-]\d{3}[ .\-]\d{4}(?!\d)"
)
_TRANSLATE_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹๐๑๒๓๔๕๖๗๘๙", "0123456789" * 3)


@dataclass(frozen=True)
class Redaction:
    """The redacted text and how many of each kind were removed."""

    text: str
    counts: dict[str, int]

    @property
    def changed(self) -> bool:
        return bool(self.counts)


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn check every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        number = int(char)
        if position % 2:
            number *= 2
            if number > 9:
                number -= 9
        total += number
    return total % 10 == 0


def redact_pii(text: str) -> Redaction:
    """Replace e-mail addresses, payment card numbers (Luhn-checked) and phone numbers with tokens."""
    counts: Counter[str] = Counter()
    # Arabic-Indic, Persian and Thai digits are matched as ASCII; positions do not move (1:1 mapping).
    ascii_digits = text.translate(_TRANSLATE_DIGITS)

    spans: list[tuple[int, int, str]] = []

    def claim(pattern: re.Pattern[str], token: str, accept: object = None) -> None:
        for match in pattern.finditer(ascii_digits):
            start, end = match.span()
            if any(start < taken_end and taken_start < end for taken_start, taken_end, _ in spans):
                continue
            if accept is not None and not accept(match.group()):  # type: ignore[operator]
                continue
            spans.append((start, end, token))
            counts[token.strip("[]")] += 1

    claim(_EMAIL, EMAIL_TOKEN)
    claim(_CARD, CARD_TOKEN, lambda found: luhn_valid(re.sub(r"\D", "", found)))
    claim(_PHONE, PHONE_TOKEN, lambda found: 8 <= len(re.sub(r"\D", "", found)) <= 15)
    if not spans:
        return Redaction(text=text, counts={})
    pieces: list[str] = []
    cursor = 0
    for start, end, token in sorted(spans):
        pieces.append(text[cursor:start])
        pieces.append(token)
        cursor = end
    pieces.append(text[cursor:])
    return Redaction(text="".join(pieces), counts=dict(counts))
