"""``cascade distill``: a cheap stage-1 screener learned from a stage-2 teacher, without labels.

Why: a team with one good model (an imported one, or a trained stage 2) and no labelled data
still wants a cascade. Unlabelled images are plentiful (a folder, or the blobs of past traffic);
the teacher's calibrated P(block) on each is a soft label. The student is trained to reproduce
it (cross-entropy against the soft target), so it learns *where the teacher is sure*, which is
what a screener must know to decide the easy majority and pass the rest on.

Splits are by position in a seeded permutation: train (the student learns), val (the best epoch
is kept; the temperature is fitted), test (the report). Calibration uses the **audit sample**,
the labelled images outside train (human labels on a uniform sample, in production); without
enough of them the temperature is fitted to the teacher's own scores instead, and the report
says which. Agreement with the teacher is reported on test, and where labels exist, accuracy of
student and teacher on the same images.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifact import StageMeta, read_meta, save_weights, stage_dir, write_meta
from models.calibrate import fit_temperature
from models.engines.base import block_probability
from models.preprocess import PreprocessConfig, normalize
from models.registry import StageSpec, create_model, preprocess_config_for
from models.samples import Sample, decode_samples

if TYPE_CHECKING:
    from torch import nn

SPLIT = (0.7, 0.15)  # train, val; the rest is test
WARMUP = 0.15  # share of the one-cycle schedule spent warming the learning rate up
MIN_AUDIT_LABELS = 20


def distill(
    samples: Sequence[Sample],
    teacher_dir: Path | str,
    model_dir: Path | str,
    spec: StageSpec,
    *,
    teacher_kind: str = "onnx",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> StageMeta:
    """Train ``<model_dir>/stage<spec.stage>`` from ``teacher_dir``'s scores on ``samples``,
    export it to ONNX, and return its meta (the report is ``metrics["distill"]``)."""
    import torch

    from models.engines import load_engine

    start = time.perf_counter()
    torch.manual_seed(seed)
    teacher = load_engine(teacher_dir, teacher_kind)
    cfg = preprocess_config_for(spec.model_name, spec.size)
    (t_pixels, s_pixels), kept = decode_samples(samples, [teacher.preprocess, cfg])
    if len(kept) < 20:
        raise ValueError(f"distillation needs at least 20 decodable images; got {len(kept)}")
    soft = score(teacher.predict, normalize_batches(t_pixels, teacher.preprocess))
    labels = np.asarray([-1 if samples[i].label is None else samples[i].label for i in kept])
    train, val, test = split_indices(len(kept), seed)
    model = create_model(spec.model_name, model_kwargs=spec.model_kwargs)
    history = fit_student(model, s_pixels, soft, train, val, spec, cfg, seed=seed, log=log)
    logits = predict(model, s_pixels, cfg)
    temperature, calibrated_on = calibrate_student(logits, soft, labels, val, test)
    report = {
        "teacher": _teacher_info(teacher_dir, teacher_kind),
        "n_images": len(kept),
        "n_unreadable": len(samples) - len(kept),
        "split": {"train": len(train), "val": len(val), "test": len(test)},
        "epochs": spec.epochs,
        "best_epoch": int(np.argmin([h["val_loss"] for h in history])) + 1,
        "history": history,
        "temperature": round(temperature, 4),
        "calibrated_on": calibrated_on,
        "test": compare(block_probability(logits[test], temperature), soft[test], labels[test]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return write_student(model, spec, cfg, temperature, report, Path(model_dir), samples, kept)


def normalize_batches(
    pixels: np.ndarray, cfg: PreprocessConfig, size: int = 64
) -> list[np.ndarray]:
    return [normalize(pixels[i : i + size], cfg) for i in range(0, len(pixels), size)]


def score(predict_fn: Callable[[np.ndarray], np.ndarray], batches: list[np.ndarray]) -> np.ndarray:
    out = [predict_fn(b) for b in batches]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    a, b = round(n * SPLIT[0]), round(n * (SPLIT[0] + SPLIT[1]))
    return np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])


def fit_student(
    model: nn.Module,
    pixels: np.ndarray,
    soft: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    spec: StageSpec,
    cfg: PreprocessConfig,
    *,
    seed: int,
    log: Callable[[str], None] | None,
) -> list[dict[str, float]]:
    """AdamW + one-cycle schedule run to its end; the epoch with the lowest validation loss
    against the teacher is kept. Augmentation: horizontal flips only (a cue is as harmful
    mirrored; rotations would change what a real-content teacher saw)."""
    import torch

    rng = np.random.default_rng(seed)
    targets = torch.from_numpy(np.stack([1 - soft, soft], axis=1).astype(np.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.02)
    steps = spec.epochs * max(1, -(-len(train) // spec.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=steps, pct_start=WARMUP
    )
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, Any]] = (float("inf"), copy.deepcopy(model.state_dict()))
    for epoch in range(1, spec.epochs + 1):
        model.train()
        losses = []
        for idx in np.array_split(
            rng.permutation(train), max(1, -(-len(train) // spec.batch_size))
        ):
            batch = pixels[idx]
            flip = rng.random(len(idx)) < 0.5
            batch[flip] = batch[flip, :, ::-1]
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(normalize(batch, cfg))), targets[idx]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        val_logits = torch.from_numpy(predict(model, pixels[val], cfg))
        val_loss = float(torch.nn.functional.cross_entropy(val_logits, targets[val]))
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(float(np.mean(losses)), 5),
                "val_loss": round(val_loss, 5),
            }
        )
        if log:
            log(
                f"distill epoch {epoch}/{spec.epochs}: train_loss={np.mean(losses):.4f} val_loss={val_loss:.4f}"
            )
        if val_loss < best[0]:
            best = (val_loss, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    return history


def predict(model: nn.Module, pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    import torch

    model.eval()
    with torch.inference_mode():
        out = [model(torch.from_numpy(b)).float().numpy() for b in normalize_batches(pixels, cfg)]
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def calibrate_student(
    logits: np.ndarray, soft: np.ndarray, labels: np.ndarray, val: np.ndarray, test: np.ndarray
) -> tuple[float, str]:
    """Temperature on the audit sample (labelled images outside train) when it has enough labels
    of both classes, else on the teacher's scores over the validation split."""
    audit = np.concatenate([val, test])
    audit = audit[labels[audit] >= 0]
    if len(audit) >= MIN_AUDIT_LABELS and len(set(labels[audit].tolist())) == 2:
        return fit_temperature(logits[audit], labels[audit]), f"audit labels ({len(audit)} images)"
    return fit_temperature(logits[val], soft[val]), f"teacher scores ({len(val)} validation images)"


def compare(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Agreement of decisions at 0.5, score distance, and accuracy where labels exist."""
    known = labels >= 0
    out: dict[str, Any] = {
        "n": len(student),
        "agreement": round(float(np.mean((student >= 0.5) == (teacher >= 0.5))), 4),
        "mean_abs_diff": round(float(np.mean(np.abs(student - teacher))), 4),
        "teacher_block_share": round(float(np.mean(teacher >= 0.5)), 4),
        "n_labelled": int(known.sum()),
    }
    if known.any():
        truth = labels[known] == 1
        out["accuracy_student"] = round(float(np.mean((student[known] >= 0.5) == truth)), 4)
        out["accuracy_teacher"] = round(float(np.mean((teacher[known] >= 0.5) == truth)), 4)
    return out


def _teacher_info(teacher_dir: Path | str, kind: str) -> dict[str, Any]:
    meta = read_meta(teacher_dir)
    return {
        "dir": str(Path(teacher_dir).resolve()),
        "model_name": meta.model_name,
        "stage": meta.stage,
        "kind": kind,
    }


def write_student(
    model: nn.Module,
    spec: StageSpec,
    cfg: PreprocessConfig,
    temperature: float,
    report: dict[str, Any],
    model_dir: Path,
    samples: Sequence[Sample],
    kept: list[int],
) -> StageMeta:
    """The stage as training writes one (``model.pt``, ``model.onnx``, ``meta.json``), built
    aside and swapped in whole."""
    from models.export import export_onnx
    from models.importer import swap_in

    target = stage_dir(model_dir, spec.stage)
    scratch = target.with_name(f".{target.name}.distill")
    shutil.rmtree(scratch, ignore_errors=True)
    fingerprint = hashlib.sha256("\n".join(samples[i].name for i in kept).encode()).hexdigest()[:16]
    meta = StageMeta(
        model_name=spec.model_name,
        stage=spec.stage,
        preprocess=cfg,
        temperature=temperature,
        metrics={"distill": report},
        data_fingerprint=fingerprint,
        model_kwargs=dict(spec.model_kwargs),
    )
    try:
        save_weights(scratch, model)
        write_meta(scratch, meta)
        export_onnx(scratch, model=model)
        swap_in(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return read_meta(target)
