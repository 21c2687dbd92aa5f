"""`ensure_demo_models`: a stage the quality gate refuses stops the demo and is never exported;
a good one is trained, exported and then reused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from models import demo
from models.artifact import ModelRefused, stage_dir
from models.registry import StageSpec

TINY = {
    1: StageSpec(1, "mobilenetv3_small_050", 32, epochs=1, batch_size=16, lr=3e-3),
    2: StageSpec(2, "mobilenetv3_small_050", 48, epochs=1, batch_size=16, lr=3e-3),
}


def tiny_specs(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    specs = {s: replace(spec, **changes) for s, spec in TINY.items()}  # type: ignore[arg-type]
    monkeypatch.setattr(demo, "stage_spec", lambda stage, preset="demo": specs[stage])


def test_a_refused_stage_stops_the_demo_and_is_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_specs(monkeypatch, lr=0.0)  # nothing learned: a constant model
    with pytest.raises(ModelRefused, match="demo stage 1 refused by the quality gate"):
        demo.ensure_demo_models(tmp_path / "models", tmp_path / "data", n=60, progress=False)
    assert (stage_dir(tmp_path / "models", 1) / "model.pt").is_file()  # kept for inspection
    assert not (stage_dir(tmp_path / "models", 1) / "model.onnx").exists()
    assert not stage_dir(tmp_path / "models", 2).exists()


def test_recipe_fingerprint_changes_with_the_recipe_version_and_stage1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo.ensure_demo_data(tmp_path, n=8)
    a = demo.recipe_fingerprint(tmp_path, 2, after="stage-1 model A")
    assert a != demo.recipe_fingerprint(tmp_path, 2, after="stage-1 model B")
    monkeypatch.setattr(demo, "RECIPE_VERSION", demo.RECIPE_VERSION + 1)
    assert a != demo.recipe_fingerprint(tmp_path, 2, after="stage-1 model A")
