"""Readable topics: place names out of keywords in every language, distinct quotes, short unique names."""

from __future__ import annotations

import numpy as np
import pytest

from nlp.representation import (
    QuoteCandidate,
    SpacyPhrases,
    TopicText,
    describe_topics,
    distinct_quotes,
    location_bound_words,
    name_topics,
    name_words,
    terms_of,
)
from nlp.topics import MultilingualTokenizer

TOKENIZER = MultilingualTokenizer()


def _words(text: str, language: str) -> set[str]:
    return {word for run in TOKENIZER.runs(text, language) for word in run}


def test_phrases_keep_adjacent_words_and_break_at_stop_words_and_excluded_names() -> None:
    runs = TOKENIZER.runs("The Oxford St store is spotless, but the guy at the returns desk was rude.", "en")
    terms = terms_of(runs, excluded={"oxford", "st"}, max_words=3)
    assert "returns desk" in terms and "rude" in terms
    assert not {t for t in terms if "oxford" in t or " st" in t}, "a place name neither counts nor joins"
    assert "spotless guy" not in terms, "punctuation and stop words end a phrase"


# Feedback about four stores, each naming its own store in its own language, and a theme at every store.
STORES = {
    "Riyadh Olaya": ("ar", "الرياض", "التوصيل في الرياض متأخر {n} أيام"),
    "Tehran Valiasr": ("fa", "ولیعصر", "فروشگاه ولیعصر شلوغ بود بار {n}"),
    "Bangkok Siam": ("th", "สยาม", "สาขาสยามคนเยอะมาก ครั้งที่ {n}"),
    "London Oxford St": ("en", "oxford", "Oxford Street store was packed, visit {n}"),
}
EVERYWHERE = {
    "ar": "التطبيق يتعطل عند الدفع",
    "fa": "اپلیکیشن موقع پرداخت بسته شد",
    "th": "แอปเด้งออกตอนจ่ายเงิน",
    "en": "The app crashes at checkout",
}


def test_place_names_in_four_languages_are_bound_to_their_location_and_shared_words_are_not() -> None:
    texts, languages, locations = [], [], []
    for store, (language, _, template) in STORES.items():
        for n in range(6):
            texts.append(template.format(n=n))
            languages.append(language)
            locations.append(store)
        for visit, other in enumerate(STORES):  # the app theme is everywhere, in the store's language
            texts.append(f"{EVERYWHERE[language]} {visit + 1}")
            languages.append(language)
            locations.append(other)
    bound = location_bound_words(
        [_words(t, lang) for t, lang in zip(texts, languages, strict=True)], locations, languages
    )
    for language, name, _ in STORES.values():
        assert _words(name, language) <= bound, f"{name} ({language}) names a place"
    for language, text in EVERYWHERE.items():
        assert not (_words(text, language) & bound), f"{language}: words said at every store are kept"

    excluded = bound | name_words(STORES, TOKENIZER.runs)
    assert {"london", "oxford", "st", "riyadh", "olaya", "siam"} <= excluded
    labels = np.array([0 if text[:-2] in EVERYWHERE.values() else 1 for text in texts])
    described = describe_topics(
        labels, np.ones(len(texts), np.float32), texts, languages, runs=TOKENIZER.runs, excluded=excluded
    )
    keywords = " ".join(term for topic in described for term, _ in topic.keywords)
    by_language = " ".join(
        w for topic in described for words in topic.keywords_by_language.values() for w in words
    )
    for language, name, _ in STORES.values():
        for word in _words(name, language):
            assert word not in keywords.split() and word not in by_language.split(), word
    assert described[0].keywords_by_language.keys() >= {"ar", "fa", "th", "en"}
    assert "تطبيق يتعطل" in described[0].keywords_by_language["ar"], (
        "Arabic keywords in Arabic letters (ي, not ی)"
    )


def test_quotes_are_distinct_spread_over_stores_and_complete() -> None:
    pool = [
        QuoteCandidate("The guy at the returns desk was rude to me.", 0.95, "London", "en"),
        QuoteCandidate("the guy at the returns desk was RUDE to me!!", 0.94, "London", "en"),
        QuoteCandidate("The guy at the returns desk was rude to me today.", 0.93, "Dubai Mall", "en"),
        QuoteCandidate("Rude.", 0.92, "Dubai Mall", "en"),
        QuoteCandidate("Staff at the returns counter shouted at my mother.", 0.90, "London", "en"),
        QuoteCandidate("موظف الاسترجاع كان وقحا جدا معي ومع أمي", 0.85, "Riyadh Olaya", "ar"),
    ]
    chosen = [pool[i] for i in distinct_quotes(pool, 3)]
    assert chosen[0] is pool[0], "the most representative complete sentence comes first"
    keys = {" ".join(q.text.casefold().split()) for q in chosen}
    assert len(keys) == 3
    assert pool[1] not in chosen and pool[2] not in chosen, "no copy and no near-copy"
    assert pool[3] not in chosen, "a one-word exclamation is not a quote while sentences remain"
    assert {q.location for q in chosen} == {"London", "Riyadh Olaya", "Dubai Mall"} or len(
        {q.location for q in chosen}
    ) >= 2


def _topic(*candidates: str, tone: str = "problems") -> TopicText:
    return TopicText(
        name="", keywords=[(c, 1.0) for c in candidates], name_candidates=list(candidates), tone=tone
    )


def test_names_are_unique_admins_names_stay_and_a_continued_name_is_kept_while_it_fits() -> None:
    topics = [_topic("late delivery", "courier"), _topic("late delivery", "missed slot"), _topic("app")]
    name_topics(topics)
    assert [t.name for t in topics] == ["Late delivery", "Missed slot", "App problems"]

    again = [_topic("late delivery"), _topic("courier"), _topic("app")]
    name_topics(again, fixed={1: "Late delivery"}, previous={2: "App problems"})
    assert again[1].name == "Late delivery", "an admin's name is never changed"
    assert again[0].name != "Late delivery", "and no other theme takes it"
    assert again[2].name == "App problems"
    assert len({t.name.casefold() for t in again}) == 3

    gone = [_topic("checkout")]
    name_topics(gone, previous={0: "App problems"})
    assert gone[0].name == "Checkout problems", "a previous name that no longer fits gives way"

    foreign = [TopicText(name="", keywords=[("توصیل", 1.0)], tone="problems")]
    name_topics(foreign, fallback={0: "Delivery and shipping"})
    assert foreign[0].name == "Delivery and shipping problems", "no English phrase: its touchpoint names it"


@pytest.mark.skipif(not SpacyPhrases.available(), reason="spaCy's English model is not installed")
def test_english_phrases_say_what_is_wrong_with_what() -> None:
    phrases = SpacyPhrases()(
        ["The cashier was really rude.", "The app keeps crashing at checkout.", "Cold food again"],
        excluded={"siam"},
    )
    assert "rude cashier" in phrases[0]
    assert "app crashing" in phrases[1]
    assert "cold food" in phrases[2]


@pytest.mark.skipif(not SpacyPhrases.available(), reason="spaCy's English model is not installed")
def test_verbs_without_object_are_judgements_and_negation_or_mere_tone_is_not() -> None:
    phrases = SpacyPhrases()(
        [
            "Since the update the app freezes.",
            "The staff were not rude.",
            "Great points, love them.",
            "Updated the app today, the home screen looks different.",
        ],
        excluded=set(),
    )
    assert phrases[0].get("app freezes") == "freeze", "pooled by its lemma"
    assert "rude staff" not in phrases[1], "a negated judgement says the opposite"
    assert phrases[2].get("great points", "absent") is None, "'great' is tone, not what is wrong"
    assert "home screen looks" not in phrases[3], "a light verb with a complement says nothing itself"


@pytest.mark.skipif(not SpacyPhrases.available(), reason="spaCy's English model is not installed")
def test_a_theme_is_named_by_what_customers_say_of_it_not_by_what_they_mention() -> None:
    rude = [
        "London Oxford St store is always spotless, but the guy at the returns desk was so rude to me.",
        "The Bangkok Siam store is beautiful but the cashier was really rude.",
        "Staff were rude and just ignored me at the counter.",
        "Dubai Mall store is a mess on weekends.",
        "Cashier at the store rolled her eyes when I asked for a bag.",
    ]
    other = ["The app crashes at checkout.", "The app freezes on the payment screen.", "Login fails."]
    texts = rude + other
    labels = np.array([0] * len(rude) + [1] * len(other))
    described = describe_topics(
        labels,
        np.linspace(1.0, 0.5, len(texts)).astype(np.float32),
        texts,
        ["en"] * len(texts),
        runs=TOKENIZER.runs,
        excluded={"london", "oxford", "st", "bangkok", "siam", "dubai", "mall"},
        phrases=SpacyPhrases(),
        negative=[True] * len(texts),
    )
    name_topics(described)
    assert described[0].name == "Rude cashier", [t.name_candidates for t in described]
    assert not described[0].candidates_said_once, "'rude' is said three times, of three nouns"


def test_a_phrase_no_two_customers_share_gives_way_to_the_touchpoint() -> None:
    once = TopicText(name="", keywords=[], name_candidates=["asleep kids"], candidates_said_once=True)
    once.tone = "problems"
    name_topics([once], fallback={0: "Product quality"})
    assert once.name == "Product quality problems"
    shared = _topic("cold food")
    name_topics([shared], fallback={0: "Product quality"})
    assert shared.name == "Cold food", "a phrase several customers say still names the theme"


def test_thai_loanwords_of_feedback_stay_whole() -> None:
    words = _words("อัปเดตแอปแล้วกดจ่ายเงินทีไรแอปเด้งออก แอปแครชตลอด", "th")
    assert {"แอป", "แครช"} <= words and "แอ" not in words, words
