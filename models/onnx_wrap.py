"""Compile an import spec around an external ONNX graph: Cascade's input in, 2-class logits out.

The wrapped graph takes ``input`` = raw RGB pixels 0..255, float32 ``[N, 3, S, S]`` (what the
host half of ``models.external.InputSpec`` produces), applies the model's channel order, scale,
mean/std and layout, runs the original graph unchanged (its names prefixed ``src/``), picks
P(harmful) from the chosen output, optionally maps it through an isotonic calibration, and ends
in ``logits`` ``[N, 2]`` whose difference is the log-odds of harmful. That is the contract of
every trained stage, so every engine kind (ONNX Runtime CPU/CUDA, TensorRT) runs it as it is.

Only ops whose semantics are the same from opset 7 to today are used (Gather, Add, Mul, Sub,
Transpose, Reshape, Exp, Log, Neg, Max, Min, Concat; ReduceSum in both its forms), so
the original graph keeps its own opset: no version conversion touches the model's numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.errors import ModelImportError
from models.external import ImportSpec
from models.isotonic import IsotonicMap

INPUT, OUTPUT, PREFIX = "input", "logits", "src/"
_MIN_OPSET = 7


class _Graph:
    """Nodes and constants under construction, each named ``cascade/…``."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        name = f"cascade/const{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or f"cascade/{op_type.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def take(self, x: str, columns: list[int]) -> str:
        """Columns of a ``[N, K]`` tensor, rank kept."""
        return self.op("Gather", [x, self.const(columns, np.int64)], axis=1)

    def row_sum(self, x: str) -> str:
        if self.opset >= 13:
            return self.op("ReduceSum", [x, self.const([1], np.int64)], keepdims=1)
        return self.op("ReduceSum", [x], axes=[1], keepdims=1)


def wrap(
    source: onnx.ModelProto,
    spec: ImportSpec,
    *,
    width: int,
    isotonic: IsotonicMap | None = None,
) -> onnx.ModelProto:
    """The wrapped model. ``width``: the number of columns of the chosen output (measured by the
    importer on a real run, since many exported graphs leave it symbolic)."""
    opset = _default_opset(source)
    src = onnx.compose.add_prefix(source, PREFIX)
    src_input = _single_input(src)
    _check_input(src_input, spec)
    g = _Graph(opset)
    _pre(g, spec, src_input.name)
    pre_nodes = len(g.nodes)
    src_output = _chosen_output(src, spec)
    z = _harmful_log_odds(g, src_output, spec, width)
    if isotonic is not None:
        z = _isotonic(g, z, isotonic)
    half = g.op("Mul", [z, g.const(0.5)])
    g.op("Concat", [g.op("Neg", [half]), half], out=OUTPUT, axis=1)
    return _assemble(src, g, pre_nodes, spec.input.size, source.graph.name)


def check_source(model: onnx.ModelProto, spec: ImportSpec) -> None:
    """Refuse, with the option to change, a graph the spec cannot feed: run before anything
    executes it, so the message names the fix instead of an ONNX Runtime shape error."""
    _default_opset(model)
    _check_input(_single_input(model, prefix=""), spec)


def _default_opset(model: onnx.ModelProto) -> int:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        raise ModelImportError(
            f"the model uses ONNX opset {opset}; opset >= {_MIN_OPSET} is needed "
            "(convert it with onnx.version_converter first)"
        )
    return opset


def _single_input(model: onnx.ModelProto, prefix: str = PREFIX) -> onnx.ValueInfoProto:
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelImportError(
            f"an image classifier has one input; this graph has {len(inputs)}: "
            f"{[i.name[len(prefix) :] for i in inputs]}"
        )
    return inputs[0]


def _check_input(value: onnx.ValueInfoProto, spec: ImportSpec) -> None:
    """Static dims must agree with the spec's size and layout; a wrong --layout is the usual
    mistake and would otherwise fail deep inside the first convolution."""
    tensor = value.type.tensor_type
    if tensor.elem_type != TensorProto.FLOAT:
        raise ModelImportError(
            f"the model's input is {TensorProto.DataType.Name(tensor.elem_type)}; float32 is needed"
        )
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    s = spec.input.size
    want = [None, 3, s, s] if spec.input.layout == "NCHW" else [None, s, s, 3]
    if len(dims) != 4 or any(
        d is not None and w is not None and d != w for d, w in zip(dims, want, strict=True)
    ):
        shown = ["N" if d is None else d for d in dims]
        raise ModelImportError(
            f"the model's input is {shown}; the spec says {spec.input.layout} at {s} px "
            f"({['N', *want[1:]]}). Set --size and --layout to match the model."
        )


def _pre(g: _Graph, spec: ImportSpec, target: str) -> None:
    inp = spec.input
    x = INPUT
    if inp.channels == "BGR":
        x = g.take(x, [2, 1, 0])
    a, b = inp.affine()  # in the model's channel order, as the spec states mean and std
    if any(v != 1.0 for v in a):
        x = g.op("Mul", [x, g.const(np.reshape(a, (1, 3, 1, 1)))])
    if any(v != 0.0 for v in b):
        x = g.op("Add", [x, g.const(np.reshape(b, (1, 3, 1, 1)))])
    if inp.layout == "NHWC":
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    g.op("Identity", [x], out=target)


def _chosen_output(model: onnx.ModelProto, spec: ImportSpec) -> onnx.ValueInfoProto:
    outputs = list(model.graph.output)
    if spec.output.name is None:
        return outputs[0]
    for out in outputs:
        if out.name == PREFIX + spec.output.name:
            return out
    names = [o.name[len(PREFIX) :] for o in outputs]
    raise ModelImportError(f"the model has no output {spec.output.name!r}; it has {names}")


def _harmful_log_odds(g: _Graph, output: onnx.ValueInfoProto, spec: ImportSpec, width: int) -> str:
    """``[N, 1]`` log-odds of the harmful class, computed without forming 1 - p where avoidable
    (so probabilities near 1 keep their precision)."""
    k, act = spec.output.harmful_index, spec.output.activation
    if k >= width:
        raise ModelImportError(f"harmful index {k} is out of range: the output has {width} columns")
    if act == "softmax" and width < 2:
        raise ModelImportError(
            "a softmax output needs at least 2 columns; use --activation sigmoid"
        )
    y = output.name
    if len(output.type.tensor_type.shape.dim) != 2:
        y = g.op("Reshape", [y, g.const([0, -1], np.int64)])
    pick = g.take(y, [k])
    others = [j for j in range(width) if j != k]
    if act == "sigmoid":
        return pick
    if act == "softmax":
        if len(others) == 1:
            return g.op("Sub", [pick, g.take(y, others)])
        spread = g.op("Exp", [g.op("Sub", [g.take(y, others), pick])])
        return g.op("Neg", [g.op("Log", [g.row_sum(spread)])])
    if not others:
        rest = g.op("Sub", [g.const(1.0), pick])
    elif len(others) == 1:
        rest = g.take(y, others)
    else:
        rest = g.row_sum(g.take(y, others))
    return g.op("Sub", [g.op("Log", [pick]), g.op("Log", [rest])])


def _isotonic(g: _Graph, z: str, iso: IsotonicMap) -> str:
    lo, hi, slope, y0 = iso.segments()
    t = g.op("Sub", [g.op("Min", [g.op("Max", [z, g.const([lo])]), g.const([hi])]), g.const([lo])])
    q = g.op("Add", [g.row_sum(g.op("Mul", [t, g.const([slope])])), g.const(y0)])
    q = g.op("Min", [g.op("Max", [q, g.const(1e-6)]), g.const(1 - 1e-6)])
    return g.op("Sub", [g.op("Log", [q]), g.op("Log", [g.op("Sub", [g.const(1.0), q])])])


def _assemble(
    src: onnx.ModelProto, g: _Graph, pre_nodes: int, size: int, name: str
) -> onnx.ModelProto:
    """Pre-processing nodes, the original nodes, then ours; no value_info is carried over (the
    original's may pin a batch size of 1; ONNX Runtime infers shapes again)."""
    graph = helper.make_graph(
        [*g.nodes[:pre_nodes], *src.graph.node, *g.nodes[pre_nodes:]],
        f"cascade({name or 'model'})",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 2])],
        initializer=[*src.graph.initializer, *g.constants],
        sparse_initializer=list(src.graph.sparse_initializer),
    )
    model = helper.make_model(
        graph,
        opset_imports=list(src.opset_import),
        ir_version=max(src.ir_version, 4),
        producer_name="cascade models import",
        functions=list(src.functions),
    )
    onnx.checker.check_model(model)
    return model
