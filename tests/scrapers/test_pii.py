"""Personal data redaction on the way in."""

from __future__ import annotations

import pytest

from scrapers.pii import luhn_valid, redact_pii


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("mail me at john.doe+x@example.co.uk please", "mail me at [email] please", {"email": 1}),
        ("call +1 (415) 555-0132 now", "call [phone] now", {"phone": 1}),
        ("my number is 415.555.0132", "my number is [phone]", {"phone": 1}),
        ("call 0912 345 6789", "call [phone]", {"phone": 1}),
        ("card 4111 1111 1111 1111 charged twice", "card [card] charged twice", {"card": 1}),
        ("card 5500-0000-0000-0004", "card [card]", {"card": 1}),
        ("رقمي ٠٥٠١٢٣٤٥٦٧ شكرا", "رقمي [phone] شكرا", {"phone": 1}),
        ("โทร 081-234-5678 ครับ", "โทร [phone] ครับ", {"phone": 1}),
        ("ایمیل من ali@example.ir است", "ایمیل من [email] است", {"email": 1}),
    ],
)
def test_redacts(text: str, expected: str, counts: dict[str, int]) -> None:
    result = redact_pii(text)
    assert result.text == expected
    assert result.counts == counts


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123 is late",  # 13 digits that fail the Luhn check: an order number
        "on 2024-05-01 at 10:30 I paid 1500",
        "version 10.2.3 build 20240501",
        "rated 5/5, 100% would buy",
        "ราคา 1,299 บาท",
    ],
)
def test_leaves_other_numbers_alone(text: str) -> None:
    assert redact_pii(text).text == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
