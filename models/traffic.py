"""The held-out, traffic-like set and what the cascade benchmark needs from the models.

Why a separate set: the training set is balanced and over-represents the hard bands (that is
what training wants); the cost of a cascade is decided by what uploads look like. This set is
drawn from ``models.synthetic.TRAFFIC`` at a realistic prevalence, from its own seed (no image
shared with training), all in one split named ``traffic``.

Compute prices come from measured seconds per image, measured the same way for every model
(ONNX Runtime FP32 on this machine, one batch size, best of a few rounds): the demo models that
produced the scores, and the *default preset's* models (random weights: speed does not depend
on them), whose ratio is the one a production deployment would pay.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import StageMeta, read_meta, save_weights, stage_dir, write_meta
from models.data import Split, cache_splits, load_split
from models.registry import create_model, preprocess_config_for, stage_spec
from models.synthetic import ensure_dataset

TRAFFIC_SPLIT = "traffic"
TRAFFIC_IMAGES = 20_000
TRAFFIC_PREVALENCE = 0.05
TRAFFIC_SEED = 1_000_003  # never the training set's seed
TIMING_BATCH = 16
SCORE_BATCH = 256


def ensure_traffic_set(
    out: Path, *, n: int = TRAFFIC_IMAGES, prevalence: float = TRAFFIC_PREVALENCE,
    seed: int = TRAFFIC_SEED,
) -> bool:  # fmt: skip
    """Generate the held-out traffic-like set unless the same one is there. True when it did."""
    return ensure_dataset(Path(out), n=n, seed=seed, prevalence=prevalence, mix="traffic",
                          split=TRAFFIC_SPLIT)  # fmt: skip


@dataclass(frozen=True)
class StageScores:
    """One stage's calibrated P(block) on every traffic image, and its measured speed."""

    model: str
    size: int
    probs: np.ndarray
    seconds_per_image: float


def seconds_per_image(engine: Any, inputs: np.ndarray, batch: int = TIMING_BATCH) -> float:
    """Best-of-rounds seconds per image at ``batch`` (``models.bench.images_per_second``)."""
    from models.bench import images_per_second

    return 1.0 / images_per_second(engine, inputs[:batch], batch, rounds=3, min_seconds=1.0)


def score_traffic(
    model_dir: Path, traffic_dir: Path, kind: str = "onnx"
) -> tuple[dict[int, StageScores], Split]:
    """Both stages' scores on the traffic set (every image through every stage, as the audit
    sample would be), with their measured speeds; the stage-1 split carries labels and bands."""
    from models.engines import load_engine

    metas = {s: read_meta(stage_dir(model_dir, s)) for s in (1, 2)}
    cache_splits(traffic_dir, [TRAFFIC_SPLIT], [m.preprocess for m in metas.values()])
    out, first = {}, None
    for stage, meta in metas.items():
        engine = load_engine(stage_dir(model_dir, stage), kind)
        split = load_split(traffic_dir, TRAFFIC_SPLIT, meta.preprocess)
        first = first or split
        # a slice at a time: 60,000 images at 128 px are 12 GB as float32 inputs, all at once
        probs = np.concatenate([
            engine.predict(split.inputs(meta.preprocess, slice(i, i + SCORE_BATCH)))
            for i in range(0, len(split), SCORE_BATCH)
        ])  # fmt: skip
        timing = split.inputs(meta.preprocess, slice(0, TIMING_BATCH))
        out[stage] = StageScores(meta.model_name, meta.preprocess.size,
                                 np.clip(probs.astype(np.float64), 0.0, 1.0),
                                 seconds_per_image(engine, timing))  # fmt: skip
    assert first is not None
    return out, first


def preset_seconds_per_image(preset: str = "default") -> dict[int, dict[str, Any]]:
    """Measured seconds per image of a preset's two stage models (random weights, exported to
    ONNX in a temporary folder), same engine, batch and method as :func:`score_traffic`."""
    from models.engines import load_engine
    from models.export import export_onnx

    out: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cascade-preset-") as tmp:
        for stage in (1, 2):
            spec = stage_spec(stage, preset)
            cfg = preprocess_config_for(spec.model_name, spec.size)
            directory = stage_dir(tmp, stage)
            model = create_model(spec.model_name, model_kwargs=spec.model_kwargs).eval()
            meta = StageMeta(model_name=spec.model_name, stage=stage, preprocess=cfg,
                             model_kwargs=dict(spec.model_kwargs),
                             metrics={"note": "random weights, for timing only"})  # fmt: skip
            write_meta(directory, meta)
            save_weights(directory, model)
            export_onnx(directory, model=model)
            x = (
                np.random.default_rng(stage)
                .standard_normal((TIMING_BATCH, 3, cfg.size, cfg.size))
                .astype(np.float32)
            )
            out[stage] = {"model": spec.model_name, "size": spec.size,
                          "seconds_per_image": seconds_per_image(load_engine(directory, "onnx"), x)}  # fmt: skip
    return out
