"""What a refit tells readers about each topic: a short name, keywords without place names, distinct quotes."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nlp.representation import (
    NUMBER_WORDS,
    PhraseExtractor,
    SpacyPhrases,
    TopicText,
    describe_topics,
    location_bound_words,
    name_topics,
    name_words,
)
from nlp.topics import MultilingualTokenizer, TopicFit
from service.db.models import FeedbackItem, Topic, utcnow
from service.touchpoints import TouchpointRef, active_taxonomy

MAIN_TOUCHPOINT_SHARE = 0.3
"""A topic is named after a touchpoint when at least this share of its sentences are at that touchpoint."""

_tokenizer = MultilingualTokenizer()


@dataclass(frozen=True)
class CurrentName:
    """An active topic's name as stored, and whether a refit may change it."""

    label: str
    source: str


@functools.cache
def english_phrases() -> PhraseExtractor | None:
    """spaCy's English phrase extractor (its model loads on first use); None when the model is not installed."""
    return SpacyPhrases() if SpacyPhrases.available() else None


def excluded_words(
    session: Session,
    *,
    texts: Sequence[str],
    languages: Sequence[str | None],
    locations: Sequence[str | None],
) -> frozenset[str]:
    """Words no keyword or name may use: places (in any language), brand and product names, number words.

    Places are the stored locations' own words plus the words that occur almost only at one location
    (``location_bound_words``: "الرياض" at Riyadh). Product names lose only their words that the taxonomy
    itself uses ("app" in "Nova app" is a touchpoint's word; "Nova" is the brand).
    """
    runs = _tokenizer.runs
    places = set(
        session.scalars(select(FeedbackItem.location).where(FeedbackItem.location.is_not(None)).distinct())
    )
    products = set(
        session.scalars(select(FeedbackItem.product).where(FeedbackItem.product.is_not(None)).distinct())
    )
    taxonomy = active_taxonomy(session)
    generic = name_words(
        [phrase for touchpoint in taxonomy.touchpoints for phrase in touchpoint.all_examples]
        + [touchpoint.name for touchpoint in taxonomy.touchpoints],
        runs,
    )
    sentence_words = [
        {w for run in runs(text, language) for w in run}
        for text, language in zip(texts, languages, strict=True)
    ]
    return (
        name_words(places, runs)
        | (name_words(products, runs) - generic)
        | location_bound_words(sentence_words, locations, languages)
        | name_words(NUMBER_WORDS, runs)
    )


def describe_fit(
    session: Session,
    *,
    fit: TopicFit,
    texts: Sequence[str],
    languages: Sequence[str | None],
    locations: Sequence[str | None],
    negative: Sequence[bool],
) -> list[TopicText]:
    """Keywords, name candidates and distinct representative sentences of every topic of a fit."""
    excluded = excluded_words(session, texts=texts, languages=languages, locations=locations)
    return describe_topics(
        fit.labels,
        fit.similarities,
        texts,
        languages,
        runs=_tokenizer.runs,
        excluded=excluded,
        locations=locations,
        negative=negative,
        phrases=english_phrases(),
    )


def current_names(session: Session) -> dict[int, CurrentName]:
    """Every active topic's stored name and its source (``generated`` or ``admin``)."""
    return {
        topic_id: CurrentName(label=label, source=source)
        for topic_id, label, source in session.execute(
            select(Topic.id, Topic.label, Topic.label_source).where(Topic.status == "active")
        )
    }


def main_touchpoint_names(
    session: Session, *, labels: np.ndarray, touchpoints: Sequence[Sequence[TouchpointRef]], topics: int
) -> dict[int, str]:
    """Each topic's main touchpoint's display name, where one touchpoint holds enough of its sentences."""
    names = {touchpoint.id: touchpoint.name for touchpoint in active_taxonomy(session).touchpoints}
    counts: list[Counter[str]] = [Counter() for _ in range(topics)]
    sizes = Counter(int(label) for label in labels.tolist() if label >= 0)
    for label, sentence_touchpoints in zip(labels.tolist(), touchpoints, strict=True):
        if label >= 0:
            counts[label].update({ref.touchpoint for ref in sentence_touchpoints})
    result = {}
    for topic, counter in enumerate(counts):
        if counter:
            touchpoint, n = counter.most_common(1)[0]
            if n >= MAIN_TOUCHPOINT_SHARE * sizes[topic] and touchpoint in names:
                result[topic] = names[touchpoint]
    return result


def assign_names(
    described: Sequence[TopicText],
    *,
    kept: Mapping[int, int],
    current: Mapping[int, CurrentName],
    fallback: Mapping[int, str],
) -> None:
    """Name the topics of a refit: an admin's name stays, a continued topic keeps its name while it fits.

    ``kept`` maps a topic of the fit to the stored topic it continues. Names of stored topics that do not
    continue are free again.
    """
    fixed = {
        index: current[topic_id].label
        for index, topic_id in kept.items()
        if current.get(topic_id) and current[topic_id].source == "admin"
    }
    previous = {
        index: current[topic_id].label
        for index, topic_id in kept.items()
        if current.get(topic_id) and current[topic_id].source != "admin"
    }
    name_topics(described, previous=previous, fixed=fixed, fallback=fallback)


MAX_NAME_LENGTH = 80


class TopicNameError(ValueError):
    """A rename that cannot be done; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def rename_topic(session: Session, *, topic_id: int, name: str | None, actor: str) -> Topic:
    """Give an active topic an admin's name (kept across refits), or give it back to the refit (``None``)."""
    topic = session.get(Topic, topic_id, with_for_update=True)
    if topic is None:
        raise TopicNameError(404, f"No topic has id {topic_id}; see GET /v1/topics.")
    if topic.status != "active":
        raise TopicNameError(409, f"Topic {topic_id} is {topic.status}; only an active topic can be renamed.")
    if name is None:
        topic.label_source = "generated"  # the next refit names it again
        topic.renamed_by, topic.renamed_at = actor, utcnow()
        return topic
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise TopicNameError(422, f"A topic name has 1 to {MAX_NAME_LENGTH} characters.")
    clash = session.scalar(
        select(Topic.id).where(
            Topic.status == "active", Topic.id != topic_id, func.lower(Topic.label) == cleaned.lower()
        )
    )
    if clash is not None:
        raise TopicNameError(409, f"Topic {clash} is already called {cleaned!r}; topic names are unique.")
    topic.label, topic.label_source = cleaned, "admin"
    topic.renamed_by, topic.renamed_at = actor, utcnow()
    return topic
