"""Train one stage: AdamW + cosine schedule, validation every epoch, early stopping on validation
loss, the best weights checkpointed as they improve, then temperature calibration on the
validation split and final metrics on the untouched test split.

Inputs come from ``models.data`` (the serving decoder and resize), so what the model learns is
what the workers will feed it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifact import StageMeta, save_weights, stage_dir, write_meta
from models.calibrate import calibration_report, expected_calibration_error, fit_temperature
from models.data import Split, augment, load_split
from models.engines.base import block_probability
from models.preprocess import PreprocessConfig, normalize
from models.registry import StageSpec, create_model, preprocess_config_for
from models.synthetic import dataset_fingerprint

if TYPE_CHECKING:
    from torch import nn

DIFFICULTY_BANDS = (("easy", 0.0, 0.33), ("medium", 0.33, 0.66), ("hard", 0.66, 1.01))


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


def predict_logits(model: nn.Module, inputs: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Eval-mode logits ``[N, 2]`` for float32 inputs ``[N, 3, S, S]``."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            out.append(model(torch.from_numpy(inputs[i : i + batch_size])).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def _run_epoch(model, opt, sched, train: Split, spec, cfg, rng, progress) -> float:  # type: ignore[no-untyped-def]
    import torch
    from tqdm import tqdm

    model.train()
    order = rng.permutation(len(train))
    batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    losses = []
    bar = tqdm(batches, desc=f"stage{spec.stage} train", leave=False, disable=not progress)
    for idx in bar:
        x = torch.from_numpy(normalize(augment(train.pixels[idx], rng), cfg))
        y = torch.from_numpy(train.labels[idx])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)  # from-scratch runs spike early
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return float(np.mean(losses))


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    spec: StageSpec,
    cfg: PreprocessConfig,
    *,
    checkpoint: Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[EpochResult]:
    """Train in place; on return ``model`` holds the weights of the best validation epoch."""
    import torch

    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.02)
    steps = spec.epochs * -(-len(train) // spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=max(steps, 1), pct_start=0.15
    )
    val_x = val.inputs(cfg)
    history: list[EpochResult] = []
    best_loss, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, spec.epochs + 1):
        start = time.perf_counter()
        train_loss = _run_epoch(model, opt, sched, train, spec, cfg, rng, progress)
        logits = predict_logits(model, val_x)
        val_loss = float(
            torch.nn.functional.cross_entropy(
                torch.from_numpy(logits), torch.from_numpy(val.labels)
            )
        )
        val_acc = float(np.mean(logits.argmax(1) == val.labels))
        history.append(
            EpochResult(epoch, train_loss, val_loss, val_acc, time.perf_counter() - start)
        )
        if progress:
            print(
                f"stage{spec.stage} epoch {epoch}/{spec.epochs}: train_loss={train_loss:.4f} val_loss={val_loss:.4f} val_acc={val_acc:.4f} ({history[-1].seconds:.0f}s)"
            )
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
            if checkpoint is not None:
                torch.save(best_state, checkpoint)
        else:
            stale += 1
            if stale >= spec.patience:
                break
    model.load_state_dict(best_state)
    return history


def held_out_metrics(logits: np.ndarray, split: Split, temperature: float) -> dict[str, Any]:
    """Accuracy overall and per difficulty band, ECE after calibration, on a held-out split."""
    probs = block_probability(logits, temperature)
    correct = (probs >= 0.5) == (split.labels == 1)
    by_band = {}
    for name, lo, hi in DIFFICULTY_BANDS:
        sel = (split.difficulty >= lo) & (split.difficulty < hi)
        by_band[name] = {
            "n": int(sel.sum()),
            "accuracy": round(float(correct[sel].mean()), 4) if sel.any() else None,
        }
    return {
        "n": len(split),
        "accuracy": round(float(correct.mean()), 4),
        "ece": round(expected_calibration_error(probs, split.labels), 4),
        "ece_uncalibrated": round(
            expected_calibration_error(block_probability(logits, 1.0), split.labels), 4
        ),
        "by_difficulty": by_band,
    }


def train_stage(
    data_dir: Path,
    model_dir: Path,
    spec: StageSpec,
    *,
    init: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> StageMeta:
    """Train, calibrate and write ``<model_dir>/stage<N>/{model.pt,meta.json}``.

    ``threads`` sets torch's intra-op threads. On a CPU shared with other busy processes use 1:
    OpenMP workers spin while waiting, and with more threads than free cores a step can be
    several times *slower* (measured here: 40 vs 5 images/s for the demo's stage 1).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = time.perf_counter()
    cfg = preprocess_config_for(spec.model_name, spec.size)
    train, val = load_split(data_dir, "train", cfg), load_split(data_dir, "val", cfg)
    load_seconds = time.perf_counter() - start
    model = create_model(spec.model_name, init=init, model_kwargs=spec.model_kwargs)
    out = stage_dir(model_dir, spec.stage)
    out.mkdir(parents=True, exist_ok=True)
    history = fit(
        model, train, val, spec, cfg, checkpoint=out / "checkpoint.pt", seed=seed, progress=progress
    )
    train_seconds = time.perf_counter() - start - load_seconds
    val_logits = predict_logits(model, val.inputs(cfg))
    temperature = fit_temperature(val_logits, val.labels)
    test = load_split(data_dir, "test", cfg)
    metrics = {
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(load_seconds, 1),
        "n_train": len(train),
        "epochs_run": len(history),
        "history": [vars(h) for h in history],
        "calibration_val": calibration_report(val_logits, val.labels, temperature),
        "test": held_out_metrics(predict_logits(model, test.inputs(cfg)), test, temperature),
        "init": str(init) if init else "random",
        "data_dir": str(Path(data_dir).resolve()),
        "torch_threads": torch.get_num_threads(),
    }
    meta = StageMeta(
        model_name=spec.model_name,
        stage=spec.stage,
        preprocess=cfg,
        temperature=temperature,
        metrics=metrics,
        data_fingerprint=dataset_fingerprint(data_dir),
        model_kwargs=dict(spec.model_kwargs),
    )
    save_weights(out, model)
    write_meta(out, meta)
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return meta
