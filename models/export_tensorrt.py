"""Build a TensorRT engine (``model.plan``) from a stage's ONNX graph, for TensorRT >= 10.

The network is *strongly typed*: precision comes from the ONNX graph itself, not from builder
flags (the FP16/INT8 builder flags are deprecated in TensorRT 10 and gone with strong typing).
So FP16 builds from an FP16-exported graph (``model.fp16.onnx``) and INT8 from a Q/DQ graph with
symmetric activations (TensorRT's explicit-quantization requirement). One optimisation profile
spans batch 1..``max_batch`` with its optimum at ``opt_batch``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.artifact import ONNX, PLAN, read_meta
from models.engines.tensorrt_engine import import_tensorrt
from models.errors import ExportError
from models.export import export_onnx, quantize_int8

PRECISIONS = ("fp32", "fp16", "int8")


def onnx_for_precision(stage_dir: Path, precision: str, calibration: np.ndarray | None) -> Path:
    """The ONNX graph whose tensor types give ``precision`` under strong typing."""
    if precision == "fp32":
        return stage_dir / ONNX
    if precision == "fp16":
        return export_onnx(stage_dir, fp16=True)
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("an INT8 TensorRT build needs calibration samples (the Q/DQ scales)")
        return quantize_int8(
            stage_dir, calibration, symmetric=True, out=stage_dir / "model.int8.trt.onnx"
        )
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


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
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
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
