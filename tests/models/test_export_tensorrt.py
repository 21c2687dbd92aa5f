"""What TensorRT is given, checked on the CPU (TensorRT itself runs only in the `gpu` tests).

TensorRT's dequantize layer takes INT8/FP8/INT4/FP4 input only, so a Q/DQ graph whose Conv/Gemm
biases are INT32 initializers feeding DequantizeLinear cannot be built (ONNX Runtime #14229,
#17738; TensorRT #4542). The TensorRT-bound graph must quantize no bias; the CPU graph may.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from models.export import int32_dequantize_inputs, quantize_int8
from models.export_tensorrt import builder_config, fp16_from_onnx


def calibration(size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)


def copy_stage(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("model.onnx", "model.pt", "meta.json"):
        shutil.copy(src / name, dst / name)
    return dst


def test_tensorrt_bound_qdq_graph_feeds_no_int32_to_dequantize(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    stage = copy_stage(tiny_model_dir / "stage1", tmp_path / "stage1")
    trt_graph = onnx.load(
        str(quantize_int8(stage, calibration(), tensorrt=True, out=tmp_path / "trt.onnx"))
    )
    cpu_graph = onnx.load(str(quantize_int8(stage, calibration(), out=tmp_path / "cpu.onnx")))
    assert any(n.op_type == "DequantizeLinear" for n in trt_graph.graph.node)
    assert int32_dequantize_inputs(trt_graph) == []
    # The check can fail: the CPU graph keeps ONNX Runtime's default and quantizes its biases.
    assert int32_dequantize_inputs(cpu_graph)
    # Signed, zero-point-0 activations (TensorRT's explicit quantization is symmetric).
    zero_points = [
        init
        for init in trt_graph.graph.initializer
        if init.name.endswith("_zero_point") and init.data_type != TensorProto.INT8
    ]
    assert zero_points == []
    assert all(
        not onnx.numpy_helper.to_array(init).any()
        for init in trt_graph.graph.initializer
        if init.name.endswith("_zero_point")
    )


class FakeConfig:
    """Records what the build configuration is told (pure logic; no TensorRT here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.calls.append(("pool", (pool, size)))

    def clear_flag(self, flag: Any) -> None:
        self.calls.append(("clear", flag))


class FakeTrt:
    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class BuilderFlag:
        TF32 = "TF32"


class FakeBuilder:
    def create_builder_config(self) -> FakeConfig:
        return FakeConfig()


@pytest.mark.parametrize(
    ("precision", "tf32_cleared"), [("fp32", True), ("fp16", False), ("int8", False)]
)
def test_fp32_engines_are_built_without_tf32(precision: str, tf32_cleared: bool) -> None:
    config = builder_config(FakeTrt, FakeBuilder(), precision, workspace_gib=2)
    assert (
        ("clear", "TF32") in config.calls if tf32_cleared else ("clear", "TF32") not in config.calls
    )
    assert ("pool", ("WORKSPACE", 2 << 30)) in config.calls


def test_fp16_graph_of_an_imported_stage_keeps_float32_io_and_our_nodes(tmp_path: Path) -> None:
    from models.external import ImportSpec, InputSpec, OutputSpec
    from models.importer import import_onnx
    from tests.models.test_import import tiny_classifier

    source = tiny_classifier(tmp_path / "m.onnx", layout="NHWC", classes=2, size=32)
    spec = ImportSpec(InputSpec(size=32, layout="NHWC", channels="BGR"), OutputSpec(name="scores"))
    import_onnx(source, tmp_path / "models", stage=1, spec=spec)
    model = onnx.load(str(fp16_from_onnx(tmp_path / "models" / "stage1")))
    onnx.checker.check_model(model)
    io = [*model.graph.input, *model.graph.output]
    assert {v.type.tensor_type.elem_type for v in io} == {TensorProto.FLOAT}
    halves = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert halves and not any(i.name.startswith("cascade/") for i in halves)


def test_an_old_opset_imported_graph_quantizes_for_tensorrt(tmp_path: Path) -> None:
    """Per-channel Q/DQ needs opset 13; an imported opset-11 graph is converted for the INT8
    graph only, and the result loads and keeps no INT32 bias."""
    import onnxruntime as ort

    from models.external import ImportSpec, InputSpec, OutputSpec
    from models.importer import import_onnx
    from tests.models.test_import import tiny_classifier

    source = tiny_classifier(tmp_path / "m.onnx", layout="NCHW", classes=2, size=32, opset=11)
    import_onnx(
        source,
        tmp_path / "models",
        stage=2,
        spec=ImportSpec(InputSpec(size=32), OutputSpec(name="scores")),
    )
    stage = tmp_path / "models" / "stage2"
    x = calibration() * 60 + 120  # raw pixels, as the imported stage expects
    out = quantize_int8(stage, x, tensorrt=True, out=tmp_path / "trt.onnx")
    assert int32_dequantize_inputs(onnx.load(str(out))) == []
    (logits,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    assert np.asarray(logits).shape == (8, 2)
    assert onnx.load(str(stage / "model.onnx")).opset_import[0].version == 11  # FP32 untouched
