"""Every engine scores the same model the same way (the reference is PyTorch eager)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import read_meta
from models.engines import Engine, block_probability, load_engine
from models.errors import EngineUnavailable, ModelArtifactError


def batch(n: int, size: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("stage", [1, 2])
def test_torch_and_onnx_agree(tiny_model_dir: Path, stage: int) -> None:
    stage_dir = tiny_model_dir / f"stage{stage}"
    torch_engine = load_engine(stage_dir, "torch")
    onnx_engine = load_engine(stage_dir, "onnx")
    x = batch(7)
    np.testing.assert_allclose(onnx_engine.logits(x), torch_engine.logits(x), atol=1e-3)  # type: ignore[attr-defined]
    np.testing.assert_allclose(onnx_engine.predict(x), torch_engine.predict(x), atol=1e-4)


@pytest.mark.parametrize("kind", ["torch", "onnx", "onnx-int8"])
def test_engine_contract(tiny_model_dir: Path, kind: str) -> None:
    engine = load_engine(tiny_model_dir / "stage1", kind)
    assert isinstance(engine, Engine)
    assert (engine.kind, engine.device, engine.preprocess.size) == (kind, "cpu", 32)
    assert kind in engine.name
    scores = engine.predict(batch(5))
    assert scores.shape == (5,) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    assert engine.predict(np.zeros((0, 3, 32, 32), np.float32)).shape == (0,)


def test_int8_is_close_to_fp32(tiny_model_dir: Path) -> None:
    x = batch(8)
    fp32 = load_engine(tiny_model_dir / "stage1", "onnx").predict(x)
    int8 = load_engine(tiny_model_dir / "stage1", "onnx-int8").predict(x)
    assert not np.array_equal(fp32, int8)  # it really is another graph
    assert np.max(np.abs(fp32 - int8)) < 0.05


def test_wrong_input_shape_is_a_clear_error(tiny_model_dir: Path) -> None:
    engine = load_engine(tiny_model_dir / "stage1", "onnx")
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        engine.predict(batch(2, size=64))


def test_temperature_is_applied(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tiny_model_dir / "stage1"
    hot = tmp_path / "stage1"
    hot.mkdir()
    for name in ("model.onnx", "meta.json"):
        (hot / name).write_bytes((src / name).read_bytes())
    meta = json.loads((hot / "meta.json").read_text())
    meta["temperature"] = 0.01
    (hot / "meta.json").write_text(json.dumps(meta))
    x = batch(6)
    base = load_engine(src, "onnx")
    sharp = load_engine(hot, "onnx")
    logits = base.logits(x)  # type: ignore[attr-defined]
    np.testing.assert_allclose(sharp.predict(x), block_probability(logits, 0.01), atol=1e-6)
    assert np.std(sharp.predict(x)) > np.std(base.predict(x))


def test_block_probability_is_softmax() -> None:
    logits = np.array([[0.0, 0.0], [1.0, 3.0], [500.0, -500.0]], np.float32)
    expected = np.exp(logits[:, 1]) / np.exp(logits.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(block_probability(logits, 1.0), expected, atol=1e-6)
    np.testing.assert_allclose(block_probability(logits, 2.0)[1], 1 / (1 + np.exp(-1.0)), atol=1e-6)


def test_missing_files_are_explained(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ModelArtifactError, match="cascade demo"):
        load_engine(tmp_path / "nothing", "onnx")
    only_meta = tmp_path / "stage1"
    only_meta.mkdir()
    (only_meta / "meta.json").write_bytes((tiny_model_dir / "stage1" / "meta.json").read_bytes())
    with pytest.raises(ModelArtifactError, match="--int8"):
        load_engine(only_meta, "onnx-int8")
    assert read_meta(only_meta).stage == 1


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="onnx-int8"):
        load_engine("x", "openvino")


def require_tensorrt_gpu() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (optional extra [tensorrt])")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible (TensorRT engines run on a GPU only)")


# Tolerance on P(block) against ONNX Runtime FP32 on the CPU. FP32 is built without TF32, so it
# is held to FP32 rounding; FP16 and INT8 to what those precisions can keep on random weights.
TRT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_matches_onnx(tiny_model_dir: Path, tmp_path: Path, precision: str) -> None:
    require_tensorrt_gpu()
    import torch

    from models.export_tensorrt import build_engine

    stage = tmp_path / "stage1"
    stage.mkdir()
    for name in ("model.onnx", "model.pt", "meta.json"):
        (stage / name).write_bytes((tiny_model_dir / "stage1" / name).read_bytes())
    build_engine(stage, precision=precision, max_batch=16, calibration=batch(32, seed=5))
    engine = load_engine(stage, "tensorrt", "cuda")
    assert engine._stream != torch.cuda.default_stream()  # type: ignore[attr-defined]
    x = batch(21)  # more than max_batch: chunked
    got = engine.predict(x)
    np.testing.assert_allclose(
        got, load_engine(stage, "onnx").predict(x), atol=TRT_TOLERANCE[precision]
    )


@pytest.mark.gpu
def test_tensorrt_runs_an_imported_stage(tmp_path: Path) -> None:
    require_tensorrt_gpu()
    from models.export_tensorrt import build_engine
    from models.external import ImportSpec, InputSpec, OutputSpec
    from models.importer import import_onnx
    from tests.models.test_import import tiny_classifier

    source = tiny_classifier(tmp_path / "m.onnx", layout="NHWC", classes=3, size=32)
    spec = ImportSpec(InputSpec(size=32, layout="NHWC", channels="BGR"), OutputSpec(name="scores"))
    import_onnx(source, tmp_path / "models", stage=2, spec=spec)
    stage = tmp_path / "models" / "stage2"
    build_engine(stage, precision="fp32", max_batch=8)
    x = batch(5) * 60 + 120  # raw pixels, as the imported stage expects
    np.testing.assert_allclose(
        load_engine(stage, "tensorrt", "cuda").predict(x),
        load_engine(stage, "onnx").predict(x),
        atol=TRT_TOLERANCE["fp32"],
    )


def test_tensorrt_missing_is_a_clear_error(tiny_model_dir: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(EngineUnavailable, match="not installed"):
            load_engine(tiny_model_dir / "stage1", "tensorrt")
    else:
        pytest.skip("TensorRT is installed here; the missing-library path cannot be exercised")
