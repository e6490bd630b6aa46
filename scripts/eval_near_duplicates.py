"""Near-duplicate detection across sources: the shipped word fingerprint against SimHash.

Texts: real dev-split reviews and posts (English, Arabic, Thai, Persian and the XLM-T languages), at least 24
characters after normalisation, de-duplicated. For each method it reports
- copies found: the share of 1,000 texts whose cross-posted copy is flagged, by kind of copy (the same text
  with other case, punctuation, a link or an @handle added, as aggregators and retweets make it; and a text
  lightly edited: a word dropped, a character dropped, a sentence appended);
- false pairs: pairs of different texts among all of them that the method would flag;
- cost per text.

    .venv/bin/python scripts/eval_near_duplicates.py
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.ingest.service import normalised_words, text_fingerprint

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DATASETS = (
    "en_mams_atsa",
    "en_semeval2014_absa_restaurants",
    "arabic_restaurant_reviews_elsahar",
    "wisesight_sentiment_th",
    "persian_deepsentipers",
    "xlmt_umsab_multilingual_sentiment",
)
SIMHASH_MAX_DISTANCE = 3  # what 4 bands of 16 bits can find with an index lookup per band


def load_texts(limit: int) -> list[str]:
    texts: list[str] = []
    for name in DATASETS:
        with (DATA / name / "dev.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                text = row.get("text") or row.get("sentence") or ""
                if text_fingerprint(text) is not None:
                    texts.append(text)
    unique = list({normalised_words(text): text for text in texts}.values())
    random.Random(1).shuffle(unique)
    return unique[:limit]


def simhash(text: str, k: int = 4) -> int:
    """64-bit SimHash of the character 4-grams of the normalised words (works for unspaced Thai too)."""
    normalised = normalised_words(text)
    weights = [0] * 64
    for gram in {normalised[i : i + k] for i in range(max(1, len(normalised) - k + 1))}:
        value = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "big")
        for bit in range(64):
            weights[bit] += 1 if (value >> bit) & 1 else -1
    return sum(1 << bit for bit in range(64) if weights[bit] > 0)


def reformatted(text: str, rng: random.Random) -> str:
    return f"@{rng.choice(['acme', 'shopfan'])} {text.upper()}!!! https://t.co/x1"


def word_dropped(text: str, rng: random.Random) -> str:
    words = text.split()
    gone = rng.randrange(len(words))
    return " ".join(word for index, word in enumerate(words) if index != gone)


def character_dropped(text: str, rng: random.Random) -> str:
    gone = rng.randrange(len(text))
    return text[:gone] + text[gone + 1 :]


def sentence_appended(text: str, _rng: random.Random) -> str:
    return text + " Thanks for reading!"


COPIES: dict[str, Callable[[str, random.Random], str]] = {
    "reformatted (case, punctuation, link, @handle)": reformatted,
    "a word dropped": word_dropped,
    "a character dropped": character_dropped,
    "a sentence appended": sentence_appended,
}


def main() -> None:
    texts = load_texts(6000)
    rng = random.Random(7)
    started = time.perf_counter()
    fingerprints = [text_fingerprint(text) for text in texts]
    fingerprint_ms = (time.perf_counter() - started) * 1000 / len(texts)
    started = time.perf_counter()
    hashes = [simhash(text) for text in texts]
    simhash_ms = (time.perf_counter() - started) * 1000 / len(texts)

    found: dict[str, dict[str, float]] = {"fingerprint": {}, "simhash": {}}
    for kind, make_copy in COPIES.items():
        hits = {"fingerprint": 0, "simhash": 0}
        sample = texts[:1000]
        for original, fingerprint, hashed in zip(sample, fingerprints, hashes, strict=False):
            copy = make_copy(original, rng)
            hits["fingerprint"] += text_fingerprint(copy) == fingerprint
            hits["simhash"] += bin(simhash(copy) ^ hashed).count("1") <= SIMHASH_MAX_DISTANCE
        for method, count in hits.items():
            found[method][kind] = round(count / len(sample), 3)

    false_fingerprint = sum(
        count * (count - 1) // 2 for count in collections.Counter(fingerprints).values() if count > 1
    )
    bands: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for index, hashed in enumerate(hashes):
        for band in range(4):
            bands[(band, (hashed >> (16 * band)) & 0xFFFF)].append(index)
    candidates = {pair for members in bands.values() for pair in itertools.combinations(members, 2)}
    false_simhash = sum(
        1 for a, b in candidates if bin(hashes[a] ^ hashes[b]).count("1") <= SIMHASH_MAX_DISTANCE
    )
    print(
        json.dumps(
            {
                "texts": len(texts),
                "copies_found": found,
                "false_pairs": {"fingerprint": false_fingerprint, "simhash": false_simhash},
                "ms_per_text": {"fingerprint": round(fingerprint_ms, 3), "simhash": round(simhash_ms, 3)},
            },
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
