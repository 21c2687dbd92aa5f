"""Build (or reuse) the demo models: synthetic data → train both stages → calibrate → export.

``cascade demo`` calls ``ensure_demo_models``. A second run is instant: each stage is reused when
its recorded recipe fingerprint (data set + preset + generator version) matches and its files
are all there; anything else is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.artifact import META, ONNX, ONNX_INT8, WEIGHTS, read_meta, stage_dir
from models.errors import ModelArtifactError
from models.registry import stage_spec
from models.synthetic import GENERATOR_VERSION, dataset_fingerprint, generate_dataset

DEMO_IMAGES = 2000
DEMO_SEED = 0


def ensure_demo_data(data_dir: Path, *, n: int = DEMO_IMAGES, seed: int = DEMO_SEED) -> bool:
    """Generate the data set unless the same one (n, seed, generator version) is there.
    Returns True when it generated."""
    wanted = {"generator_version": GENERATOR_VERSION, "n": n, "seed": seed, "block_rate": 0.5}
    info = Path(data_dir) / "dataset.json"
    if info.is_file() and (Path(data_dir) / "manifest.jsonl").is_file():
        try:
            if json.loads(info.read_text()) == wanted:
                return False
        except ValueError:
            pass
    generate_dataset(Path(data_dir), n=n, seed=seed)
    return True


def recipe_fingerprint(data_dir: Path, stage: int, preset: str = "demo") -> str:
    spec = asdict(stage_spec(stage, preset))
    blob = json.dumps([dataset_fingerprint(data_dir), spec, GENERATOR_VERSION], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    threads: int | None = 1,
) -> dict[str, Any]:
    """Make ``model_dir`` hold trained, calibrated, exported demo models for both stages.

    Returns a summary per stage: reused or trained, seconds, held-out accuracy, ECE before and
    after calibration, INT8 accuracy delta. ``threads=1`` by default: the demo usually shares
    the CPU with its own workers, where more torch threads are slower (see ``train_stage``).
    """
    from models.artifact import write_meta
    from models.export import export_stage
    from models.train import train_stage

    generated = ensure_demo_data(Path(data_dir), n=n)
    summary: dict[str, Any] = {"data_dir": str(data_dir), "data_generated": generated}
    for stage in (1, 2):
        directory = stage_dir(model_dir, stage)
        recipe = recipe_fingerprint(Path(data_dir), stage)
        start = time.perf_counter()
        reused = _reusable(directory, recipe)
        if not reused:
            meta = train_stage(
                Path(data_dir), Path(model_dir), stage_spec(stage, "demo"), progress=progress
            )
            write_meta(directory, meta.with_(metrics=meta.metrics | {"recipe": recipe}))
            export_stage(directory, data_dir=Path(data_dir), int8=True)
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
    return {
        "model": meta.model_name,
        "size": meta.preprocess.size,
        "temperature": round(meta.temperature, 3),
        "train_seconds": m.get("train_seconds"),
        "test_accuracy": m.get("test", {}).get("accuracy"),
        "test_by_difficulty": m.get("test", {}).get("by_difficulty"),
        "ece_before": cal.get("ece_before"),
        "ece_after": cal.get("ece_after"),
        "int8_delta_points": m.get("export", {}).get("int8", {}).get("delta_points"),
    }
