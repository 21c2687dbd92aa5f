"""Build a TensorRT engine (``model.plan``) from a stage's ONNX graph, for TensorRT 10.x and 11.x.

The network is *strongly typed*: precision comes from the ONNX graph itself, not from builder
flags (the FP16/INT8 builder flags are deprecated in TensorRT 10 and removed in 11, where strong
typing is always on and the creation flag is kept only for compatibility). So FP16 builds from an
FP16 graph and INT8 from a Q/DQ graph with symmetric activations and float biases
(``models.export.quantize_int8(tensorrt=True)``). For FP32 the ``TF32`` builder flag, on by default
in both versions, is cleared: an "fp32" engine that rounds matmul inputs to 10-bit mantissas is
not the FP32 reference it claims to be. One optimisation profile spans batch 1..``max_batch``
with its optimum at ``opt_batch``.

Checked against TensorRT's Python binding sources (NVIDIA/TensorRT python/src/infer/pyCore.cpp,
tags v10.8.0, v10.16 and v11.1): ``BuilderFlag.TF32``, ``NetworkDefinitionCreationFlag.
STRONGLY_TYPED``, ``MemoryPoolType.WORKSPACE``, ``OnnxParser.parse/num_errors/get_error`` and
``build_serialized_network`` exist with these signatures in all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import ONNX, ONNX_FP16, PLAN, read_meta
from models.engines.tensorrt_engine import import_tensorrt
from models.errors import ExportError
from models.export import export_onnx, quantize_int8

PRECISIONS = ("fp32", "fp16", "int8")


def onnx_for_precision(stage_dir: Path, precision: str, calibration: np.ndarray | None) -> Path:
    """The ONNX graph whose tensor types give ``precision`` under strong typing."""
    if precision == "fp32":
        return stage_dir / ONNX
    if precision == "fp16":
        if "import" in read_meta(stage_dir).metrics:
            return fp16_from_onnx(stage_dir)
        return export_onnx(stage_dir, fp16=True)
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("an INT8 TensorRT build needs calibration samples (the Q/DQ scales)")
        return quantize_int8(
            stage_dir, calibration, tensorrt=True, out=stage_dir / "model.int8.trt.onnx"
        )
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def fp16_from_onnx(stage_dir: Path) -> Path:
    """FP16 graph of an imported stage (no PyTorch model to export from): ONNX Runtime's float16
    converter, with float32 input and output kept so the engine's I/O does not change, and
    Cascade's own pre/post nodes (``cascade/…``: mean subtraction, log-odds) left in float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(stage_dir / ONNX))
    ours = [n.name for n in model.graph.node if n.name.startswith("cascade/")]
    model = convert_float_to_float16(model, keep_io_types=True, node_block_list=ours)
    sort_nodes(model.graph)  # the converter appends its Cast nodes out of order
    onnx.checker.check_model(model)
    out = stage_dir / ONNX_FP16
    onnx.save(model, str(out))
    return out


def sort_nodes(graph: Any) -> None:
    """Topological order (Kahn), stable for nodes that are already in order."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ExportError("the FP16 graph has a cycle or an undefined input")
        for node in runnable:
            ready.update(node.output)
        ordered += runnable
        pending = [n for n in pending if all(n is not r for r in runnable)]
    graph.ClearField("node")
    graph.node.extend(ordered)


def builder_config(trt: Any, builder: Any, precision: str, workspace_gib: int) -> Any:
    """The build configuration: workspace limit, and no TF32 in an FP32 engine."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    return config


def build_engine(
    stage_dir: Path,
    *,
    precision: str = "fp16",
    max_batch: int = 256,
    opt_batch: int = 32,
    workspace_gib: int = 4,
    calibration: np.ndarray | None = None,
) -> Path:
    """Parse the graph, build and serialize the engine to ``<stage_dir>/model.plan``."""
    trt = import_tensorrt()
    stage_dir = Path(stage_dir)
    size = read_meta(stage_dir).preprocess.size
    onnx_path = onnx_for_precision(stage_dir, precision, calibration)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder_config(trt, builder, precision, workspace_gib)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    opt = min(opt_batch, max_batch)
    profile.set_shape(name, (1, 3, size, size), (opt, 3, size, size), (max_batch, 3, size, size))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see log above)")
    out = stage_dir / PLAN
    out.write_bytes(bytes(plan))
    return out
