"""A realistic, multilingual demo data set for the imaginary retail chain "Nova Market".

Nova Market sells through an app, a website, home delivery and eight physical stores (see ``STORES``).
``texts.jsonl`` holds hand-written feedback texts in English, Arabic, Persian and Thai, each labelled with
its touchpoints and polarity; :func:`demo_items` turns them into ``count`` feedback items in the
``FeedbackItemIn`` shape, spread over the 8 weeks before ``now``, from ten realistic sources (app stores,
Trustpilot, Google Business listings of the stores, NPS/CSAT/CES surveys, support e-mail, Reddit and X).

The data set is deterministic for a given ``(now, seed, count)``. Apart from steady background feedback it
carries four planted stories, which later features (trend and outlier detection, topic clustering across
languages) are expected to find:

(a) **Delivery delays at "Riyadh Olaya"**: in the last 2 weeks before ``now``, negative delivery feedback in
    Arabic and English located at the Riyadh Olaya store runs at several times (about 9x with the default
    count) its weekly volume of the 6 weeks before. Nowhere else is delivery feedback placed at Riyadh.
(b) **App crashes at checkout after app version 5.2.0**: 5.2.0 is released 3 weeks before ``now``; from then
    on Google Play and App Store reviews (metadata ``app_version`` "5.2.0") in all four languages complain
    that the app crashes at payment. No crash-at-checkout text appears before the release.
(c) **Rude staff at "Tehran Valiasr"**: negative staff feedback (mostly Persian) at Tehran Valiasr at a
    steady low level across all 8 weeks, spread evenly, so it is a pain point but not a trending one.
(d) **Nova Points loyalty programme**: launched 4 weeks before ``now``; every loyalty text is dated after
    the launch and most are positive (extra positive items on top of the background).

The same pain points recur in every language (late delivery, app crash at checkout, refund takes weeks,
rude staff, login OTP never arrives, promo code not applied), so that one theme spans languages.

Ratings agree with the text's polarity most of the time (negative: 1-2 stars, NPS 0-6, CSAT 1-2, CES 1-3;
positive: 4-5 stars, NPS 9-10, CSAT 4-5, CES 5-7); about 8% of rated items deliberately disagree (the
text wins, as in the field). Items carry no labels: evaluations
look texts up in ``texts.jsonl`` by their text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from importlib.resources import files
from typing import Any, Final

__all__ = [
    "APP_RELEASE_VERSION",
    "DEMO_SOURCE_PREFIX",
    "DEMO_SOURCE_TOUCHPOINTS",
    "DEMO_WEEKS",
    "LANGUAGES",
    "POLARITIES",
    "STORES",
    "TOUCHPOINTS",
    "DemoText",
    "StoryDates",
    "demo_items",
    "demo_texts",
    "story_dates",
]

DEMO_SOURCE_PREFIX: Final = "demo-"
DEMO_SOURCE_TOUCHPOINTS: Final = {
    "google-play": "mobile_app",
    "app-store": "mobile_app",
    "google-business": "store_branch",
    "csat-survey": "customer_support",
    "support-email": "customer_support",
    "ces-survey": "checkout_payment",
}
"""What each demo source is about when its text names no touchpoint (an app review is about the app)."""
"""Prefix of every demo item's ``external_id`` ("demo-0001", ...), so demo data can be found and removed."""

DEMO_WEEKS: Final = 8
APP_RELEASE_VERSION: Final = "5.2.0"

LANGUAGES: Final = ("en", "ar", "fa", "th")
POLARITIES: Final = ("negative", "positive", "neutral", "mixed")
TOUCHPOINTS: Final = (
    "website",
    "mobile_app",
    "search_discovery",
    "product_quality",
    "pricing_promotions",
    "checkout_payment",
    "delivery_shipping",
    "returns_refunds",
    "customer_support",
    "store_branch",
    "staff",
    "account_login",
    "communications",
    "loyalty_programme",
)

RIYADH_STORE: Final = "Riyadh Olaya"
TEHRAN_STORE: Final = "Tehran Valiasr"

STORES: Final[dict[str, str]] = {
    "Dubai Mall": "Asia/Dubai",
    "Riyadh Olaya": "Asia/Riyadh",
    "Cairo Zamalek": "Africa/Cairo",
    "Tehran Valiasr": "Asia/Tehran",
    "Shiraz Zand": "Asia/Tehran",
    "Bangkok Siam": "Asia/Bangkok",
    "Chiang Mai Nimman": "Asia/Bangkok",
    "London Oxford St": "Europe/London",
}
"""The stores and the time zone each lies in."""

_CITIES: Final[dict[str, str]] = {
    "London": "Europe/London",
    "Manchester": "Europe/London",
    "Dubai": "Asia/Dubai",
    "Riyadh": "Asia/Riyadh",
    "Jeddah": "Asia/Riyadh",
    "Cairo": "Africa/Cairo",
    "Alexandria": "Africa/Cairo",
    "Tehran": "Asia/Tehran",
    "Isfahan": "Asia/Tehran",
    "Shiraz": "Asia/Tehran",
    "Mashhad": "Asia/Tehran",
    "Bangkok": "Asia/Bangkok",
    "Chiang Mai": "Asia/Bangkok",
    "Phuket": "Asia/Bangkok",
}
"""Delivery cities, used as the location of online-only feedback."""

# Where each language's customers shop (store, weight) and get deliveries; and the zone when unknown.
_LANGUAGE_STORES: Final[dict[str, tuple[tuple[str, int], ...]]] = {
    "en": (("London Oxford St", 6), ("Dubai Mall", 3), ("Bangkok Siam", 1)),
    "ar": (("Riyadh Olaya", 1), ("Dubai Mall", 1), ("Cairo Zamalek", 1)),
    "fa": (("Tehran Valiasr", 3), ("Shiraz Zand", 2)),
    "th": (("Bangkok Siam", 3), ("Chiang Mai Nimman", 2)),
}
_LANGUAGE_CITIES: Final[dict[str, tuple[str, ...]]] = {
    "en": ("London", "London", "Manchester", "Dubai"),
    "ar": ("Riyadh", "Jeddah", "Dubai", "Cairo", "Alexandria"),
    "fa": ("Tehran", "Tehran", "Isfahan", "Shiraz", "Mashhad"),
    "th": ("Bangkok", "Bangkok", "Chiang Mai", "Phuket"),
}
_LANGUAGE_ZONES: Final[dict[str, str]] = {
    "en": "Europe/London",
    "ar": "Asia/Riyadh",
    "fa": "Asia/Tehran",
    "th": "Asia/Bangkok",
}

# A text naming a place is always located at that store.
_STORE_HINTS: Final[dict[str, tuple[str, ...]]] = {
    "Riyadh Olaya": ("Riyadh", "Olaya", "الرياض", "العليا"),
    "Dubai Mall": ("Dubai", "دبي"),
    "Cairo Zamalek": ("Cairo", "Zamalek", "القاهرة", "الزمالك"),
    "Tehran Valiasr": ("Tehran", "Valiasr", "تهران", "ولیعصر"),
    "Shiraz Zand": ("Shiraz", "شیراز", "شعبه زند"),
    "Bangkok Siam": ("Bangkok", "Siam", "กรุงเทพ", "สยาม"),
    "Chiang Mai Nimman": ("Chiang Mai", "Nimman", "เชียงใหม่", "นิมมาน"),
    "London Oxford St": ("London", "Oxford St"),
}


@dataclass(frozen=True, slots=True)
class DemoText:
    """One hand-written text of ``texts.jsonl`` with its labels."""

    key: str
    language: str
    touchpoints: tuple[str, ...]
    polarity: str
    text: str

    @property
    def store_hint(self) -> str | None:
        """The store the text names, if any."""
        for store, hints in _STORE_HINTS.items():
            if any(hint in self.text for hint in hints):
                return store
        return None

    @property
    def is_app_crash(self) -> bool:
        """A complaint that the app crashes at checkout (story b)."""
        return {"mobile_app", "checkout_payment"} <= set(self.touchpoints) and self.polarity in {
            "negative",
            "mixed",
        }

    @property
    def is_delivery_complaint(self) -> bool:
        return "delivery_shipping" in self.touchpoints and self.polarity in {"negative", "mixed"}


@cache
def demo_texts() -> tuple[DemoText, ...]:
    """The texts of ``texts.jsonl``, in file order."""
    raw = (files("service.demo") / "texts.jsonl").read_text(encoding="utf-8")
    texts: list[DemoText] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        text = DemoText(
            key=str(row["key"]),
            language=str(row["language"]),
            touchpoints=tuple(str(t) for t in row["touchpoints"]),
            polarity=str(row["polarity"]),
            text=str(row["text"]),
        )
        if text.language not in LANGUAGES or text.polarity not in POLARITIES:
            raise ValueError(f"texts.jsonl line {number}: unknown language or polarity")
        if not text.touchpoints or not set(text.touchpoints) <= set(TOUCHPOINTS):
            raise ValueError(f"texts.jsonl line {number}: unknown touchpoint in {text.touchpoints}")
        texts.append(text)
    return tuple(texts)


@dataclass(frozen=True, slots=True)
class StoryDates:
    """The window of the data set and the dates of its planted stories, all in UTC."""

    start: datetime
    now: datetime
    riyadh_spike_start: datetime
    app_release: datetime
    loyalty_launch: datetime


def _normalise_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if now.utcoffset() is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def story_dates(now: datetime | None = None) -> StoryDates:
    """When the data set starts and each planted story begins, for a given ``now`` (see the module doc)."""
    end = _normalise_now(now)
    return StoryDates(
        start=end - timedelta(weeks=DEMO_WEEKS),
        now=end,
        riyadh_spike_start=end - timedelta(weeks=2),
        app_release=end - timedelta(weeks=3),
        loyalty_launch=end - timedelta(weeks=4),
    )


# --- time zones (fixed rules, so the output does not depend on the machine's tz database) ---


def _last_weekday(year: int, month: int, weekday: int) -> datetime:
    """Midnight UTC of the last ``weekday`` (Monday is 0) of the month."""
    first_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    day = first_next - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - weekday) % 7)


def _utc_offset(zone: str, instant: datetime) -> timedelta:
    if zone == "Europe/London":  # BST: last Sunday of March to last Sunday of October, 01:00 UTC
        begin = _last_weekday(instant.year, 3, 6) + timedelta(hours=1)
        end = _last_weekday(instant.year, 10, 6) + timedelta(hours=1)
        return timedelta(hours=1) if begin <= instant < end else timedelta(0)
    if zone == "Africa/Cairo":  # summer time since 2023: last Friday of April to last Thursday of October
        begin = _last_weekday(instant.year, 4, 4) - timedelta(hours=2)
        end = _last_weekday(instant.year, 10, 3) + timedelta(hours=21)
        return timedelta(hours=3) if begin <= instant < end else timedelta(hours=2)
    fixed = {"Asia/Riyadh": 3 * 60, "Asia/Dubai": 4 * 60, "Asia/Tehran": 3 * 60 + 30, "Asia/Bangkok": 7 * 60}
    return timedelta(minutes=fixed[zone])


def _local_iso(instant: datetime, zone: str) -> str:
    return instant.astimezone(timezone(_utc_offset(zone, instant))).isoformat(timespec="seconds")


# --- sources, ratings ---


@dataclass(frozen=True, slots=True)
class _Source:
    scale: str | None
    channel: str
    languages: frozenset[str] = frozenset(LANGUAGES)


_SOURCES: Final[dict[str, _Source]] = {
    "google-play": _Source("stars", "app"),
    "app-store": _Source("stars", "app"),
    "trustpilot": _Source("stars", "web", frozenset({"en", "ar"})),
    "google-business": _Source("stars", "maps"),
    "nps-survey": _Source("nps", "survey"),
    "csat-survey": _Source("csat", "survey"),
    "ces-survey": _Source("ces", "survey"),
    "support-email": _Source(None, "email"),
    "reddit": _Source(None, "social", frozenset({"en"})),
    "x": _Source(None, "social"),
}
_APP_SOURCES: Final = frozenset({"google-play", "app-store"})
_SURVEY_NAMES: Final[dict[str, str]] = {
    "nps-survey": "post-purchase NPS",
    "csat-survey": "support CSAT",
    "ces-survey": "checkout CES",
}

# Which sources fit a text, by its most telling touchpoint (first match wins): (source, weight) pairs.
_SOURCE_FIT: Final[tuple[tuple[frozenset[str], tuple[tuple[str, int], ...]], ...]] = (
    (frozenset({"mobile_app"}), (("google-play", 4), ("app-store", 3), ("x", 1), ("reddit", 1))),
    (frozenset({"store_branch", "staff"}), (("google-business", 6), ("nps-survey", 3), ("x", 1))),
    (frozenset({"customer_support"}), (("csat-survey", 4), ("support-email", 3), ("x", 1))),
    (frozenset({"checkout_payment"}), (("ces-survey", 4), ("trustpilot", 2), ("x", 1))),
    (
        frozenset({"returns_refunds"}),
        (("support-email", 3), ("trustpilot", 3), ("nps-survey", 1), ("x", 1), ("reddit", 1)),
    ),
    (
        frozenset({"account_login"}),
        (("support-email", 3), ("google-play", 2), ("app-store", 1), ("x", 1)),
    ),
    (
        frozenset({"delivery_shipping"}),
        (("nps-survey", 3), ("trustpilot", 3), ("support-email", 1), ("x", 2), ("reddit", 1)),
    ),
    (
        frozenset({"loyalty_programme"}),
        (("nps-survey", 2), ("x", 3), ("reddit", 1), ("trustpilot", 1)),
    ),
)
_DEFAULT_FIT: Final = (("trustpilot", 3), ("nps-survey", 3), ("x", 2), ("reddit", 1))
_CRASH_FIT: Final = (("google-play", 3), ("app-store", 2))
_RIYADH_FIT: Final = (
    ("nps-survey", 3),
    ("google-business", 2),
    ("trustpilot", 2),
    ("x", 2),
    ("support-email", 1),
)
_TEHRAN_FIT: Final = (("google-business", 3), ("nps-survey", 2), ("x", 1))

# Rating values that agree with a polarity, per scale (repeats weight the draw).
_AGREEING: Final[dict[str, dict[str, tuple[int, ...]]]] = {
    "stars": {
        "negative": (1, 1, 1, 2, 2),
        "neutral": (3,),
        "mixed": (2, 3, 3, 4),
        "positive": (4, 4, 5, 5, 5),
    },
    "nps": {
        "negative": (0, 0, 1, 2, 3, 4, 5, 6),
        "neutral": (7, 8),
        "mixed": (5, 6, 7, 8),
        "positive": (9, 9, 10, 10, 10),
    },
    "csat": {"negative": (1, 1, 2), "neutral": (3,), "mixed": (2, 3, 4), "positive": (4, 5, 5)},
    "ces": {"negative": (1, 2, 2, 3), "neutral": (4, 5), "mixed": (3, 4, 5), "positive": (5, 6, 7, 7)},
}
_DISAGREEMENT_RATE: Final = 0.1  # of negative and positive texts: about 8% of all rated items


def _rating(scale: str, polarity: str, rng: random.Random) -> dict[str, Any]:
    if polarity in {"negative", "positive"} and rng.random() < _DISAGREEMENT_RATE:
        polarity = "positive" if polarity == "negative" else "negative"  # mis-click, sarcasm, habit
    return {"value": rng.choice(_AGREEING[scale][polarity]), "scale": scale}


def _weighted(options: Sequence[tuple[str, int]], rng: random.Random) -> str:
    names = [name for name, _ in options]
    return rng.choices(names, weights=[weight for _, weight in options])[0]


def _fitting(options: Sequence[tuple[str, int]], language: str) -> list[tuple[str, int]]:
    fitting = [(name, w) for name, w in options if language in _SOURCES[name].languages]
    return fitting or [("x", 1)]


def _pick_source(text: DemoText, rng: random.Random) -> str:
    touchpoints = set(text.touchpoints)
    for wanted, options in _SOURCE_FIT:
        if touchpoints & wanted:
            return _weighted(_fitting(options, text.language), rng)
    return _weighted(_fitting(_DEFAULT_FIT, text.language), rng)


# --- planning ---


@dataclass(frozen=True, slots=True)
class _Slot:
    """A text to place at a random time within ``[begin, end)``."""

    text: DemoText
    begin: datetime
    end: datetime
    story: str | None = None


def _deck(pool: Sequence[DemoText], rng: random.Random) -> Iterator[DemoText]:
    """Endless draws that use every text once before any is used again."""
    while True:
        order = list(pool)
        rng.shuffle(order)
        yield from order


def _uniform(begin: datetime, end: datetime, rng: random.Random) -> datetime:
    seconds = int((end - begin).total_seconds())
    return begin + timedelta(seconds=rng.randrange(max(seconds, 1)))


def _slices(n: int, begin: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[begin, end)`` cut into ``n`` equal slices, to spread ``n`` items evenly."""
    width = (end - begin) / max(n, 1)
    return [(begin + i * width, begin + (i + 1) * width) for i in range(n)]


def _waking_time(begin: datetime, end: datetime, zone: str, rng: random.Random) -> datetime:
    """A random instant in ``[begin, end)``, preferring 07:00-23:59 local time, as people write by day."""
    # The retries draw from their own generator: how many are needed depends on the hour the demo is loaded,
    # and the shared one must not drift with it (the data set would then change with the time of day).
    own = random.Random(rng.getrandbits(64))  # noqa: S311 - demo data, not security
    when = _uniform(begin, end, own)
    for _ in range(4):
        if (when + _utc_offset(zone, when)).hour >= 7:
            break
        when = _uniform(begin, end, own)
    return when


def _plan(count: int, dates: StoryDates, rng: random.Random) -> list[_Slot]:
    texts = demo_texts()
    crash = [t for t in texts if t.is_app_crash]
    riyadh = [
        t
        for t in texts
        if t.language in {"ar", "en"}
        and t.polarity == "negative"
        and "delivery_shipping" in t.touchpoints
        and t.store_hint in {None, RIYADH_STORE}
    ]
    tehran = [
        t
        for t in texts
        if "staff" in t.touchpoints
        and t.polarity == "negative"
        and (t.store_hint == TEHRAN_STORE or (t.store_hint is None and t.language == "fa"))
    ]
    loyalty = [t for t in texts if "loyalty_programme" in t.touchpoints and t.polarity == "positive"]
    reserved = {t.key for t in crash} | {t.key for t in tehran}
    reserved |= {t.key for t in riyadh if t.store_hint == RIYADH_STORE}
    background = [t for t in texts if t.key not in reserved]

    n_spike, n_base = round(count * 0.045), round(count * 0.015)
    n_crash, n_tehran, n_loyalty = round(count * 0.075), round(count * 0.03), round(count * 0.06)
    n_background = max(count - (n_spike + n_base + n_crash + n_tehran + n_loyalty), 0)

    slots: list[_Slot] = []
    riyadh_deck = _deck(riyadh, rng)
    for _ in range(n_spike):
        slots.append(_Slot(next(riyadh_deck), dates.riyadh_spike_start, dates.now, "riyadh-delivery"))
    for begin, end in _slices(n_base, dates.start, dates.riyadh_spike_start):
        slots.append(_Slot(next(riyadh_deck), begin, end, "riyadh-delivery"))
    crash_deck = _deck(crash, rng)
    for _ in range(n_crash):
        slots.append(_Slot(next(crash_deck), dates.app_release, dates.now, "app-crash"))
    tehran_deck = _deck(tehran, rng)
    for begin, end in _slices(n_tehran, dates.start, dates.now):
        slots.append(_Slot(next(tehran_deck), begin, end, "tehran-staff"))
    loyalty_deck = _deck(loyalty, rng)
    for _ in range(n_loyalty):
        slots.append(_Slot(next(loyalty_deck), dates.loyalty_launch, dates.now, "loyalty"))
    background_deck = _deck(background, rng)
    for _ in range(n_background):
        text = next(background_deck)
        begin = dates.loyalty_launch if "loyalty_programme" in text.touchpoints else dates.start
        slots.append(_Slot(text, begin, dates.now))
    return slots[:count]


def _pick_location(slot: _Slot, source: str, rng: random.Random) -> str | None:
    text = slot.text
    if slot.story == "riyadh-delivery":
        return RIYADH_STORE
    if slot.story == "tehran-staff":
        return TEHRAN_STORE
    if text.store_hint is not None:
        return text.store_hint
    # Only the planted story puts delivery complaints at Riyadh.
    avoid = {RIYADH_STORE, "Riyadh"} if text.is_delivery_complaint else set()
    if source in _APP_SOURCES:
        return None
    if source == "google-business" or {"store_branch", "staff"} & set(text.touchpoints):
        stores = [(s, w) for s, w in _LANGUAGE_STORES[text.language] if s not in avoid]
        return _weighted(stores, rng)
    if rng.random() < 0.55:
        return None
    return rng.choice([c for c in _LANGUAGE_CITIES[text.language] if c not in avoid])


def _app_metadata(
    slot: _Slot, when: datetime, source: str, dates: StoryDates, rng: random.Random
) -> dict[str, Any]:
    if slot.story == "app-crash":
        version = APP_RELEASE_VERSION
    elif when >= dates.app_release:
        version = _weighted(((APP_RELEASE_VERSION, 4), ("5.1.0", 1)), rng)
    else:
        version = _weighted((("5.1.0", 4), ("5.0.4", 1)), rng)
    if source == "google-play":
        device = rng.choice(("Android 14", "Android 13", "Android 15"))
    else:
        device = rng.choice(("iOS 17.5", "iOS 18.1", "iOS 18.2"))
    return {"app_version": version, "os": device}


def demo_items(*, now: datetime | None = None, seed: int = 7, count: int = 400) -> list[dict[str, Any]]:
    """``count`` demo feedback items in the ``FeedbackItemIn`` shape, oldest first, over 8 weeks to ``now``.

    ``now`` defaults to the current UTC time truncated to the hour (a naive ``now`` is taken as UTC); the
    result depends only on ``(now, seed, count)``. External ids run "demo-0001", "demo-0002", ... in time
    order. The planted stories are described in the module docstring.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    dates = story_dates(now)
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    handles = iter(rng.sample(range(100, 100 + max(99_900, 10 * count)), count))
    authors_by_language: dict[str, list[str]] = {language: [] for language in LANGUAGES}
    used: set[tuple[str, str]] = set()  # (text key, author): a customer writes a given text once

    items: list[tuple[datetime, dict[str, Any]]] = []
    for slot in _plan(count, dates, rng):
        text = slot.text
        if slot.story == "app-crash":
            source = _weighted(_CRASH_FIT, rng)
        elif slot.story == "riyadh-delivery":
            source = _weighted(_fitting(_RIYADH_FIT, text.language), rng)
        elif slot.story == "tehran-staff":
            source = _weighted(_TEHRAN_FIT, rng)
        else:
            source = _pick_source(text, rng)
        spec = _SOURCES[source]
        location = _pick_location(slot, source, rng)
        zone = STORES.get(location or "") or _CITIES.get(location or "") or _LANGUAGE_ZONES[text.language]
        when = _waking_time(slot.begin, slot.end, zone, rng)

        regulars = [a for a in authors_by_language[text.language] if (text.key, a) not in used]
        if regulars and rng.random() < 0.12:
            author = rng.choice(regulars)  # a repeat customer
        else:
            author = f"demo-user-{next(handles)}"
            authors_by_language[text.language].append(author)
        used.add((text.key, author))

        metadata: dict[str, Any] = {}
        item: dict[str, Any] = {
            "text": text.text,
            "source": source,
            "created_at": _local_iso(when, zone),
        }
        if spec.scale is not None:
            item["rating"] = _rating(spec.scale, text.polarity, rng)
        item["location"] = location
        if source in _APP_SOURCES:
            item["product"] = "Nova app"
            metadata.update(_app_metadata(slot, when, source, dates, rng))
        else:
            item["product"] = None
        if source in _SURVEY_NAMES:
            metadata["survey"] = _SURVEY_NAMES[source]
        if source in _SURVEY_NAMES or source == "support-email":
            metadata["order_id"] = f"NM-{rng.randrange(1_000_000, 10_000_000)}"
        item["channel"] = spec.channel
        item["language"] = text.language
        item["author"] = author
        item["metadata"] = metadata
        items.append((when, item))

    items.sort(key=lambda pair: (pair[0], pair[1]["author"], pair[1]["text"]))
    result: list[dict[str, Any]] = []
    for number, (_, item) in enumerate(items, start=1):
        result.append({"external_id": f"{DEMO_SOURCE_PREFIX}{number:04d}", **item})
    return result
