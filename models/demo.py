"""Build (or reuse) the demo models: synthetic data → train both stages → gate → export.

``cascade demo`` calls ``ensure_demo_models``. A second run is instant: each stage is reused when
its recorded recipe fingerprint (data set, preset, generator and recipe versions, and for stage 2
the stage-1 model it focused on) matches and its files are all there; anything else is rebuilt.
A stage the quality gate refuses stops the demo with the gate's reasons; it is never exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.artifact import META, ONNX, ONNX_INT8, WEIGHTS, ModelRefused, read_meta, stage_dir
from models.errors import ModelArtifactError
from models.registry import preprocess_config_for, stage_spec
from models.synthetic import GENERATOR_VERSION, dataset_fingerprint, ensure_dataset

DEMO_IMAGES = 12_000
DEMO_SEED = 0
# Bump when the training recipe changes in a way the preset does not show, so that models
# trained by an older recipe are retrained instead of reused.
RECIPE_VERSION = 7  # 7: soft targets on the undecidable band (models.data.Split.targets)


def ensure_demo_data(data_dir: Path, *, n: int = DEMO_IMAGES, seed: int = DEMO_SEED) -> bool:
    """Generate the balanced training set unless the same one is there. True when it did."""
    return ensure_dataset(Path(data_dir), n=n, seed=seed, prevalence=0.5, mix="training", split=None)  # fmt: skip


def recipe_fingerprint(
    data_dir: Path, stage: int, preset: str = "demo", *, after: str = "", train_seed: int = 0
) -> str:
    """What a stage's weights depend on; ``after`` names the stage-1 model stage 2 focused on."""
    spec = asdict(stage_spec(stage, preset))
    blob = json.dumps(
        [dataset_fingerprint(data_dir), spec, GENERATOR_VERSION, RECIPE_VERSION, after, train_seed],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def busy_cores(seconds: float = 0.5) -> float:
    """Cores kept busy by other processes, sampled from ``/proc/stat`` over ``seconds`` while
    this process sleeps (a load average would count our own previous stage for a minute).
    0.0 where ``/proc/stat`` is missing."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    spent = max(total1 - total0, 1)
    return (os.cpu_count() or 1) * (spent - (idle1 - idle0)) / spent


def training_threads() -> int:
    """torch intra-op threads for training a demo stage here (measured on a 2-core machine).

    With channels-last tensors (``models.train``) both stages gain from idle cores: a stage-1
    step ran at 861 images/s on two threads against 759 on one, stage 2 at 264 against 206.
    On busy cores they lose badly: OpenMP threads spin while they wait, and two threads at
    load average 6 trained about ten times slower than one. So a stage takes every core unless
    other processes keep more than half of them busy, then one (both stages alike)."""
    cores = os.cpu_count() or 1
    return cores if busy_cores() < 0.5 * cores else 1


def _reusable(directory: Path, recipe: str) -> bool:
    if not all((directory / f).is_file() for f in (META, WEIGHTS, ONNX, ONNX_INT8)):
        return False
    try:
        return read_meta(directory).metrics.get("recipe") == recipe
    except ModelArtifactError:
        return False


def ensure_demo_models(
    model_dir: Path,
    data_dir: Path,
    *,
    progress: bool = True,
    n: int = DEMO_IMAGES,
    threads: int | None = None,
    train_seed: int = 0,
) -> dict[str, Any]:
    """Make ``model_dir`` hold trained, gated, calibrated, exported demo models for both stages.

    Returns a summary per stage (reused or trained, seconds, held-out accuracy per band, ECE,
    INT8 delta) and the data step's seconds. Raises ``ModelRefused`` when the gate refuses a
    stage. ``threads``: torch's intra-op threads (default: ``training_threads``).
    ``train_seed``: the training's random seed (initial weights, order, augmentation); the data
    stay the demo's, so models of two seeds differ by the training's luck alone
    (``cascade bench seeds``).
    """
    from models.artifact import write_meta
    from models.data import cache_splits
    from models.export import export_stage
    from models.train import train_stage

    start = time.perf_counter()
    data_dir, model_dir = Path(data_dir), Path(model_dir)
    generated = ensure_demo_data(data_dir, n=n)
    specs = {s: stage_spec(s, "demo") for s in (1, 2)}
    cfgs = [preprocess_config_for(sp.model_name, sp.size) for sp in specs.values()]
    cache_splits(data_dir, ("train", "val", "test"), cfgs)  # one decode of each file, both sizes
    summary: dict[str, Any] = {"data_dir": str(data_dir), "data_generated": generated,
                               "data_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    after = ""
    for stage in (1, 2):
        directory = stage_dir(model_dir, stage)
        recipe = recipe_fingerprint(data_dir, stage, after=after, train_seed=train_seed)
        start = time.perf_counter()
        reused = _reusable(directory, recipe)
        if not reused:
            focus = stage_dir(model_dir, 1) if stage == 2 else None
            meta = train_stage(data_dir, model_dir, specs[stage], progress=progress,
                               threads=threads or training_threads(), focus=focus,
                               seed=train_seed)  # fmt: skip
            if not meta.metrics["quality"]["passed"]:
                reasons = "; ".join(meta.metrics["quality"]["reasons"])
                raise ModelRefused(f"demo stage {stage} refused by the quality gate: {reasons}")
            write_meta(directory, meta.with_(metrics=meta.metrics | {"recipe": recipe}))
            export_stage(directory, data_dir=data_dir, int8=True)
        after = read_meta(directory).created_at
        summary[f"stage{stage}"] = stage_summary(directory) | {
            "reused": reused,
            "seconds": round(time.perf_counter() - start, 1),
        }
    return summary


def stage_summary(directory: Path) -> dict[str, Any]:
    """The figures worth printing from a stage's ``meta.json``."""
    meta = read_meta(directory)
    m = meta.metrics
    cal = m.get("calibration_val", {})
    test = m.get("test", {})
    return {
        "model": meta.model_name,
        "size": meta.preprocess.size,
        "temperature": round(meta.temperature, 3),
        "train_seconds": m.get("train_seconds"),
        "epochs": m.get("epochs_run"),
        "best_epoch": m.get("best_epoch"),
        "test_accuracy": test.get("accuracy"),
        "test_by_band": test.get("by_band"),
        "max_confident_error_rate": test.get("max_confident_error_rate"),
        "ece_before": cal.get("ece_before"),
        "ece_after": cal.get("ece_after"),
        "int8_delta_points": m.get("export", {}).get("int8", {}).get("delta_points"),
    }
