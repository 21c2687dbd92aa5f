"""Export a trained stage: ONNX FP32 (checked against PyTorch), ONNX INT8 (QDQ, calibrated on
real samples), and the FP16 graph TensorRT builds from (``models.export_tensorrt``).

Each export checks itself: ONNX must reproduce PyTorch within ``atol`` on a batch size other
than the one traced (which also proves the batch axis is dynamic), or ``ExportError`` is raised.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifact import ONNX, ONNX_FP16, ONNX_INT8, load_model, read_meta
from models.errors import ExportError

if TYPE_CHECKING:
    from torch import nn

INPUT, OUTPUT = "input", "logits"
QDQ_MIN_OPSET = 13


def export_onnx(
    stage_dir: Path,
    *,
    model: nn.Module | None = None,
    atol: float = 1e-3,
    fp16: bool = False,
    opset: int = 17,
) -> Path:
    """Write ``model.onnx`` (or ``model.fp16.onnx``) with a dynamic batch axis; returns its
    path after asserting max |ONNX - PyTorch| <= ``atol`` on logits (FP32 only)."""
    import torch

    meta = read_meta(stage_dir)
    model = (model if model is not None else load_model(stage_dir)).eval().cpu()
    size = meta.preprocess.size
    path = stage_dir / (ONNX_FP16 if fp16 else ONNX)
    traced = model.half() if fp16 else model
    example = torch.randn(2, 3, size, size, dtype=torch.float16 if fp16 else torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter: seconds instead of the dynamo exporter's ~20 s per model
        # on a CPU, and its graphs are accepted by ONNX Runtime's quantiser and TensorRT alike.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            traced,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    if fp16:
        model.float()
    else:
        diff = onnx_max_abs_diff(model, path, size)
        if diff > atol:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"ONNX export of stage {meta.stage} differs from PyTorch by {diff:.2e} > {atol:.0e}"
            )
    return path


def onnx_max_abs_diff(model: nn.Module, onnx_path: Path, size: int, batch: int = 3) -> float:
    """Max |logits| difference between PyTorch and ONNX Runtime on a seeded random batch."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT: x})
    return float(np.max(np.abs(np.asarray(got) - expected)))


class _Batches:
    """ONNX Runtime's CalibrationDataReader over preprocessed samples."""

    def __init__(self, samples: np.ndarray, batch_size: int = 16) -> None:
        self._iter: Iterator[np.ndarray] = (
            samples[i : i + batch_size] for i in range(0, len(samples), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(
    stage_dir: Path,
    calibration: np.ndarray,
    *,
    tensorrt: bool = False,
    out: Path | None = None,
) -> Path:
    """Static INT8 quantization, QDQ format, per-channel weights, activation ranges calibrated
    on ``calibration`` (preprocessed real samples ``[N, 3, H, W]``, a few hundred suffice).

    ONNX Runtime on CPU gets unsigned asymmetric activations (U8S8, VNNI-friendly) and INT32
    biases. ``tensorrt=True`` gives the graph TensorRT's explicit quantization accepts: signed
    zero-point-0 activations, and float biases (``QuantizeBias: False``): an INT32 bias feeding a
    DequantizeLinear cannot be built, since TensorRT's dequantize layer takes INT8/FP8/INT4/FP4
    only (ONNX Runtime #14229, #17738; TensorRT #4542). TensorRT fuses the float bias itself.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("INT8 calibration needs at least one sample")
    out = out or stage_dir / ONNX_INT8
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds constants and infers shapes so the quantiser sees fused Conv+BN graphs.
        quant_pre_process(str(stage_dir / ONNX), str(prepared), skip_symbolic_shape=True)
        upgrade_opset(prepared, QDQ_MIN_OPSET)
        quantize_static(
            str(prepared),
            str(out),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # Only the heavy ops: Q/DQ pairs around HardSwish/SE multiplies cost more than they
            # save on CPU (measured: all-op INT8 ran ~3x slower than FP32, this ~0.9x).
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=quantize_options(tensorrt),
        )
    return out


def upgrade_opset(path: Path, opset: int) -> None:
    """Per-channel Q/DQ (an ``axis`` on DequantizeLinear) needs opset 13; an imported graph may
    be older (open_nsfw's is opset 9). Only the graph being quantized is converted; the FP32
    ``model.onnx`` stays exactly as imported."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current < opset:
        onnx.save(version_converter.convert_version(model, opset), str(path))


def quantize_options(tensorrt: bool) -> dict[str, Any]:
    """``quantize_static``'s extra options for a CPU or a TensorRT-bound Q/DQ graph."""
    return {"ActivationSymmetric": tensorrt, "WeightSymmetric": True, "QuantizeBias": not tensorrt}


def int32_dequantize_inputs(model: Any) -> list[str]:
    """Names of INT32 tensors (initializers or typed values) feeding a DequantizeLinear: empty
    for a graph TensorRT can build."""
    from onnx import TensorProto
    from onnx.shape_inference import infer_shapes

    graph = infer_shapes(model).graph
    int32 = {t.name for t in graph.initializer if t.data_type == TensorProto.INT32}
    for value in [*graph.value_info, *graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.INT32:
            int32.add(value.name)
    for node in graph.node:
        if node.op_type == "Constant" and any(
            a.t.data_type == TensorProto.INT32 for a in node.attribute
        ):
            int32.update(node.output)
    return [
        node.input[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in int32
    ]


def accuracy_of(engine: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> float:
    """Accuracy at P(block) >= 0.5 of any ``Engine`` on preprocessed samples."""
    if len(x) == 0:
        return float("nan")
    scores = np.concatenate(
        [engine.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )
    return float(np.mean((scores >= 0.5).astype(np.int64) == y))


def export_stage(
    stage_dir: Path,
    *,
    data_dir: Path | None = None,
    int8: bool = True,
    calibration_samples: int = 256,
) -> dict[str, Any]:
    """ONNX FP32 (+ INT8 calibrated on the training split, its accuracy delta measured on the
    test split); the results are recorded in ``meta.json`` under ``metrics.export``."""
    from models.artifact import write_meta
    from models.data import load_split
    from models.engines.onnx_engine import OnnxEngine
    from models.ood import fit_for_stage

    stage_dir = Path(stage_dir)
    meta = read_meta(stage_dir)
    if "import" in meta.metrics:
        raise ExportError(
            f"{stage_dir} holds an imported model: its model.onnx was written by "
            "`cascade models import`, and there is no PyTorch model to export again."
        )
    model = load_model(stage_dir)
    path = export_onnx(stage_dir, model=model)
    report: dict[str, Any] = {
        "onnx": path.name,
        "onnx_max_abs_diff": onnx_max_abs_diff(model, path, meta.preprocess.size),
    }
    if int8:
        data_dir = data_dir or _recorded_data_dir(meta.metrics)
        cfg = meta.preprocess
        train = load_split(data_dir, "train", cfg)
        pick = np.random.default_rng(0).permutation(len(train))[:calibration_samples]
        quantize_int8(stage_dir, train.inputs(cfg)[pick])
        test = load_split(data_dir, "test", cfg)
        x = test.inputs(cfg)
        fp32 = accuracy_of(OnnxEngine(stage_dir), x, test.labels)
        q = accuracy_of(OnnxEngine(stage_dir, int8=True), x, test.labels)
        report["int8"] = {
            "file": ONNX_INT8,
            "calibration_samples": len(pick),
            "test_accuracy_fp32": round(fp32, 4),
            "test_accuracy_int8": round(q, 4),
            "delta_points": round(100 * (q - fp32), 2),
        }
    write_meta(stage_dir, meta.with_(metrics=meta.metrics | {"export": report}))
    ood_data = data_dir or meta.metrics.get("data_dir")
    if ood_data and Path(ood_data).is_dir():  # the out-of-distribution gate's reference
        report["ood"] = fit_for_stage(stage_dir, Path(ood_data))
    return report


def _recorded_data_dir(metrics: dict[str, Any]) -> Path:
    recorded = metrics.get("data_dir")
    if not recorded or not Path(recorded).is_dir():
        raise ValueError(
            "INT8 calibration needs real samples: pass the data set directory (--data DIR), "
            "or --no-int8."
        )
    return Path(recorded)
