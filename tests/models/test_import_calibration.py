"""Calibrating an imported model on labelled samples: temperature and isotonic, in the graph."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from models.engines import block_probability, load_engine
from models.errors import ModelImportError
from models.external import ImportSpec, InputSpec, OutputSpec
from models.import_calibration import log_odds
from models.importer import import_onnx
from models.isotonic import fit_isotonic
from models.samples import decode_samples, folder_samples


def redness_model(path: Path, gain: float) -> Path:
    """logits = [0, gain * (mean R - mean B)] on 0..1 pixels: an over-confident toy classifier."""
    weights = np.zeros((3, 2), np.float32)
    weights[0, 1], weights[2, 1] = gain, -gain
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
        ],
        "redness",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def labelled_folder(root: Path, n: int = 160, seed: int = 0) -> Path:
    """allow/ and block/ images whose redness overlaps between classes (so 0/1 is not certain)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = "block" if i % 2 else "allow"
        shift = rng.normal(0.08 if label == "block" else -0.08, 0.12)
        img = rng.uniform(0.3, 0.6, (16, 16, 3))
        img[..., 0] += shift / 2
        img[..., 2] -= shift / 2
        (root / label).mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(buf, format="PNG")
        (root / label / f"{i:04d}.png").write_bytes(buf.getvalue())
    return root


SPEC = ImportSpec(
    InputSpec(size=16, scale=1 / 255, mean=(0, 0, 0), std=(1, 1, 1)),
    OutputSpec(name="logits", harmful_index=1, activation="softmax"),
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("calib")
    return redness_model(root / "red.onnx", gain=60.0), labelled_folder(root / "labelled")


def raw_scores(source: Path, tmp: Path, data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uncalibrated logits, the inputs and the labels, from an import without calibration."""
    import_onnx(source, tmp / "raw", stage=2, spec=SPEC)
    engine = load_engine(tmp / "raw" / "stage2", "onnx")
    samples = folder_samples(data)
    (pixels,), kept = decode_samples(samples, [engine.preprocess])
    from models.preprocess import normalize

    x = normalize(pixels, engine.preprocess)
    labels = np.asarray([samples[i].label for i in kept])
    return engine.logits(x), x, labels  # type: ignore[attr-defined]


def test_temperature_calibration_softens_an_over_confident_model(setup, tmp_path: Path) -> None:
    source, data = setup
    raw, x, _ = raw_scores(source, tmp_path, data)
    meta = import_onnx(source, tmp_path / "m", stage=2, spec=SPEC, calibration=folder_samples(data))
    report = meta.metrics["import"]["calibration"]
    assert report["method"] == "temperature" and report["n"] == 160 and report["n_block"] == 80
    assert meta.temperature > 1.5
    assert report["ece_after_cross_fitted"] < report["ece_before"]
    got = load_engine(tmp_path / "m" / "stage2", "onnx").predict(x)
    np.testing.assert_allclose(got, block_probability(raw, meta.temperature), atol=1e-6)


def test_isotonic_calibration_is_compiled_into_the_graph(setup, tmp_path: Path) -> None:
    source, data = setup
    raw, x, labels = raw_scores(source, tmp_path, data)
    meta = import_onnx(
        source,
        tmp_path / "m",
        stage=2,
        spec=SPEC,
        calibration=folder_samples(data),
        method="isotonic",
    )
    report = meta.metrics["import"]["calibration"]
    assert meta.temperature == 1.0 and report["knots"] >= 2
    assert report["ece_after_cross_fitted"] < report["ece_before"]
    z = log_odds(raw)
    expected = fit_isotonic(z, labels)(z)
    got = load_engine(tmp_path / "m" / "stage2", "onnx").predict(x)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    order = np.argsort(z, kind="stable")
    assert np.all(np.diff(got[order]) >= -1e-6)  # monotone: thresholds keep their meaning


def test_calibration_needs_both_classes(setup, tmp_path: Path) -> None:
    source, data = setup
    only_allow = [s for s in folder_samples(data) if s.label == 0]
    with pytest.raises(ModelImportError, match="both classes"):
        import_onnx(source, tmp_path / "m", stage=2, spec=SPEC, calibration=only_allow)
    assert not (tmp_path / "m" / "stage2").exists()


def test_isotonic_map_is_the_interpolation_the_graph_computes() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(0, 3, 300).round(1)  # log-odds, with ties on purpose
    labels = (rng.uniform(0, 1, 300) < 1 / (1 + np.exp(-scores / 2))).astype(int)
    iso = fit_isotonic(scores, labels)
    assert np.all(np.diff(iso.x) > 0) and np.all(np.diff(iso.y) >= 0)
    p = rng.normal(0, 5, 500)
    lo, hi, slope, y0 = iso.segments()
    by_segments = y0 + np.sum(slope * (np.clip(p[:, None], lo, hi) - lo), axis=1)
    np.testing.assert_allclose(np.clip(by_segments, 1e-6, 1 - 1e-6), iso(p), atol=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        fit_isotonic(scores, np.zeros_like(labels))
