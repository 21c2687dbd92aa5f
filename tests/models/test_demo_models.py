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


def test_training_takes_one_thread_when_other_processes_fill_the_cores() -> None:
    """Two threads on busy cores trained ~10x slower (OpenMP spin): with every core kept busy by
    other processes, ``training_threads`` must ask for one."""
    import os
    import subprocess
    import sys

    cores = os.cpu_count() or 1
    spin = [sys.executable, "-c", "while True: pass"]
    hogs = [subprocess.Popen(spin) for _ in range(cores + 1)]
    try:
        assert demo.busy_cores(1.0) >= 0.5 * cores
        assert demo.training_threads() == 1
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert 0.0 <= demo.busy_cores(0.2) <= cores
