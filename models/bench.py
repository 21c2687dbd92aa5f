"""Engine benchmark, the measuring part: images/s per engine and batch size, accuracy per engine
on held-out data. The report and the ``cascade bench engines`` command are in
``services.bench.engines`` (this part stays here so that ``models`` code can time engines too).

Throughput is measured on real held-out inputs (tiled to the batch size) after warm-up, as the
best of a few timed rounds (the least disturbed by other processes on a shared machine). The
report states the machine and thread settings, because the numbers mean nothing without them.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import stage_dir
from models.data import load_split
from models.engines import ENGINE_KINDS, Engine, load_engine
from models.errors import EngineUnavailable, ModelArtifactError
from models.export import accuracy_of

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def images_per_second(
    engine: Engine, inputs: np.ndarray, batch: int, *, rounds: int = 3, min_seconds: float = 0.5
) -> float:
    """Best-of-``rounds`` throughput; each round repeats the batch until ``min_seconds``."""
    reps = -(-batch // len(inputs))
    x = np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch])
    engine.predict(x)  # warm-up: allocations, kernel selection
    best = 0.0
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while True:
            engine.predict(x)
            n += batch
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, n / elapsed)
    return best


def engine_plan(requested: Sequence[str] | None, device: str) -> list[tuple[str, str]]:
    """(kind, device) pairs to try; TensorRT always on CUDA (it is skipped where absent)."""
    return [(k, "cuda" if k == "tensorrt" else device) for k in (requested or ENGINE_KINDS)]


def bench_stage(
    model_dir: Path,
    data_dir: Path,
    stage: int,
    *,
    kinds: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCHES,
    rounds: int = 3,
    min_seconds: float = 0.5,
    device: str = "cpu",
    eval_limit: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """One stage: every available engine's throughput curve and test accuracy. ``threads``
    gives torch and ONNX Runtime the same CPU thread count (a fair comparison)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    directory = stage_dir(model_dir, stage)
    results: dict[str, Any] = {}
    test = None
    for kind, dev in engine_plan(kinds, device):
        try:
            engine = load_engine(directory, kind, dev, threads=threads)
        except (EngineUnavailable, ModelArtifactError) as exc:
            results[kind] = {"skipped": str(exc)}
            continue
        if test is None:
            test = load_split(data_dir, "test", engine.preprocess, limit=eval_limit)
            x = test.inputs(engine.preprocess)
        results[kind] = {
            "name": engine.name,
            "device": engine.device,
            "accuracy": round(accuracy_of(engine, x, test.labels), 4),
            "images_per_s": {
                str(b): round(
                    images_per_second(engine, x[:256], b, rounds=rounds, min_seconds=min_seconds), 1
                )
                for b in batch_sizes
            },
        }
    return {"stage": stage, "n_test": len(test) if test is not None else 0, "engines": results}


def machine_info(threads: int | None = None) -> dict[str, Any]:
    import onnxruntime
    import torch

    from models.engines.onnx_engine import default_threads

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_threads": threads or default_threads(),
    }


def summarise(stages: list[dict[str, Any]], focus_batch: int = 32) -> list[str]:
    """Headline ratios: best ONNX precision vs PyTorch eager at ``focus_batch``; INT8 deltas."""
    lines = []
    for s in stages:
        eng = s["engines"]
        torch_ips = eng.get("torch", {}).get("images_per_s", {}).get(str(focus_batch))
        onnx_best = max(
            (
                eng[k]["images_per_s"].get(str(focus_batch), 0.0)
                for k in ("onnx", "onnx-int8")
                if "images_per_s" in eng.get(k, {})
            ),
            default=None,
        )
        if torch_ips and onnx_best:
            lines.append(
                f"stage {s['stage']}: best ONNX Runtime / PyTorch eager at batch {focus_batch} = {onnx_best / torch_ips:.2f}x"
            )
        if "accuracy" in eng.get("onnx", {}) and "accuracy" in eng.get("onnx-int8", {}):
            delta = 100 * (eng["onnx-int8"]["accuracy"] - eng["onnx"]["accuracy"])
            lines.append(f"stage {s['stage']}: INT8 accuracy - FP32 accuracy = {delta:+.2f} points")
    return lines
