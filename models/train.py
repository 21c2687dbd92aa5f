"""Train one stage: a recipe that runs its whole schedule and cannot silently collapse.

- **The schedule always runs to its end** (AdamW under a one-cycle learning rate: warm-up, then
  cosine decay). There is no early stopping: stopping on a validation loss that creeps up
  during the warm-up once kept the epoch-1 weights of a run, a constant model.
- **The best epoch is kept**: after every epoch the validation split is scored, a temperature is
  fitted and the *calibrated* NLL compared (raw NLL punishes growing confidence that the
  temperature will fix anyway); the best weights are restored at the end.
- **Stage 2 learns what stage 1 leaves to it** (``focus``): each epoch samples the training
  split with weight ``floor + (1 - floor) * 4 p (1 - p)``, ``p`` stage 1's calibrated score,
  so images the screener is sure of are still seen, and the ones it escalates dominate.
- **A screener weighs a missed harm above a false alarm** (``StageSpec.positive_weight``, 2 for
  the demo's stage 1; see ``models.registry`` for why not 4): the cascade can let stage 1 allow
  only what scores below its lowest-scored harmful images, so those images' scores matter more
  than any benign one's. The loss weights
  harmful terms by ``w``; that moves the fitted logit by ``log w``, which the head's bias gives
  back after training (``_undo_weight``), before the temperature is fitted.
- **Undecidable images are trained toward their base rate** (``models.data.Split.targets``):
  hard labels on the ambiguous tail are coin flips given the image, and fitting them taught the
  models noise (scores spread over 0.06-0.78 where one value is right for every such image).
  A stage does the same on a band it cannot read at its resolution (``StageSpec.undecidable``:
  the demo's stage 1 on the medium band, whose signs it sees but cannot tell apart at 64 px).
- **Augmentation keeps the cue** (``models.data.augment``: flips and quarter turns).
- **Channels-last tensors** (NHWC) while training and scoring: on this 2-core CPU a training step
  ran 1.9x faster for stage 1 (374 -> 713 images/s on one thread) and 1.4x for stage 2 (122 ->
  172); the weights are saved in the default layout.

Afterwards the temperature is fitted on the validation split, the untouched test split is
measured per (band, label) bucket, and the quality gate (``models.quality``) records its verdict
in ``meta.json``. Inputs come from ``models.data`` (the serving decoder and resize).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifact import (
    StageMeta,
    load_model,
    read_meta,
    remove_exports,
    save_weights,
    stage_dir,
    write_meta,
)
from models.calibrate import calibration_report, expected_calibration_error, fit_temperature, nll
from models.data import Split, augment, cache_splits, load_split
from models.engines.base import block_probability
from models.preprocess import PreprocessConfig, normalize
from models.progress import Progress
from models.quality import assess, bucket_table, max_confident_error_rate
from models.registry import StageSpec, create_model, preprocess_config_for
from models.synthetic import dataset_fingerprint

if TYPE_CHECKING:
    from torch import nn

FOCUS_FLOOR = 0.25


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    val_nll: float  # after temperature scaling on the validation split
    val_accuracy: float
    temperature: float
    seconds: float


def predict_logits(model: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Eval-mode logits ``[N, 2]`` for float32 inputs ``[N, 3, S, S]``."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            out.append(model(_nhwc(torch.from_numpy(inputs[i : i + batch_size]))).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def _nhwc(x):  # type: ignore[no-untyped-def]
    """A ``[N, 3, S, S]`` batch in channels-last memory (module docstring: why)."""
    import torch

    return x.contiguous(memory_format=torch.channels_last)


def weighted_cross_entropy(logits, target, positive_weight: float = 1.0):  # type: ignore[no-untyped-def]
    """Cross-entropy against soft targets ``P(block)`` (``[N]``), harmful terms weighted by
    ``positive_weight``, normalised by the batch's total weight: with hard targets it equals
    ``torch.nn.functional.cross_entropy(logits, labels, weight=[1, w])``."""
    import torch

    logp = torch.nn.functional.log_softmax(logits, dim=1)
    weighted = torch.stack([1.0 - target, positive_weight * target], dim=1)
    return -(weighted * logp).sum() / weighted.sum()


def _run_epoch(model, opt, sched, train: Split, spec, cfg, order, rng, bar_on) -> float:  # type: ignore[no-untyped-def]
    import torch

    model.train()
    targets = torch.from_numpy(train.targets(spec.undecidable))
    batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    losses = []
    # A bar on a terminal, a plain line every few seconds in a log (models.progress).
    bar = (
        Progress(total=len(batches), desc=f"stage{spec.stage} train", unit="batch")
        if bar_on
        else None
    )
    for idx in batches:
        x = _nhwc(torch.from_numpy(normalize(augment(train.pixels[idx], rng), cfg)))
        loss = weighted_cross_entropy(model(x), targets[idx], spec.positive_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)  # from-scratch runs spike early
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return float(np.mean(losses))


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    spec: StageSpec,
    cfg: PreprocessConfig,
    *,
    weights: np.ndarray | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> tuple[list[EpochResult], int]:
    """Train in place for the whole schedule; on return ``model`` holds the weights of the best
    epoch (lowest calibrated validation NLL). Returns the history and the best epoch."""
    import torch

    rng = np.random.default_rng(seed)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.02)
    steps_per_epoch = -(-len(train) // spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=max(spec.epochs * steps_per_epoch, 1),
        pct_start=spec.warmup,
    )  # fmt: skip
    p = None if weights is None else weights / weights.sum()
    val_x = val.inputs(cfg)
    history: list[EpochResult] = []
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    bar_on = log is not None and sys.stderr.isatty()
    for epoch in range(1, spec.epochs + 1):
        start = time.perf_counter()
        order = (
            rng.permutation(len(train)) if p is None else rng.choice(len(train), len(train), p=p)
        )
        train_loss = _run_epoch(model, opt, sched, train, spec, cfg, order, rng, bar_on)
        logits = predict_logits(model, val_x)
        logits[:, 1] -= np.log(spec.positive_weight)  # as the head will be (_undo_weight)
        t = fit_temperature(logits, val.labels)
        result = EpochResult(
            epoch, train_loss, nll(logits, val.labels, t),
            float(np.mean(logits.argmax(1) == val.labels)), t, time.perf_counter() - start,
        )  # fmt: skip
        history.append(result)
        if log is not None:
            log(f"stage{spec.stage} epoch {epoch}/{spec.epochs}: train_loss={train_loss:.4f} "
                f"val_nll={result.val_nll:.4f} val_acc={result.val_accuracy:.4f} "
                f"T={t:.2f} ({result.seconds:.0f}s)")  # fmt: skip
        if result.val_nll < best[0]:
            best = (result.val_nll, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    _undo_weight(model, spec.positive_weight)
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return history, best[1]


def _undo_weight(model: nn.Module, positive_weight: float) -> None:
    """Take the prior shift of a class-weighted loss out of the head: weighting harmful images
    by ``w`` moves the optimal logit of "block" by ``log w``, so the bias gives it back and the
    scores are probabilities at the training prior again (the temperature is fitted after)."""
    import torch

    if positive_weight == 1.0:
        return
    head = model.get_classifier()  # type: ignore[operator]  # timm's models have one
    with torch.no_grad():
        head.bias[1] -= float(np.log(positive_weight))


def held_out_metrics(logits: np.ndarray, split: Split, temperature: float) -> dict[str, Any]:
    """Accuracy overall and per band, the per-(band, label) table the quality gate reads, ECE."""
    probs = block_probability(logits, temperature)
    correct = (probs >= 0.5) == (split.labels == 1)
    bands = split.bands
    table = bucket_table(probs, split.labels, bands)
    share = float(np.mean(split.labels == 1)) if len(split) else 0.0
    return {
        "n": len(split),
        "accuracy": round(float(correct.mean()), 4),
        "majority_share": round(max(share, 1 - share), 4),
        "ece": round(expected_calibration_error(probs, split.labels), 4),
        "ece_uncalibrated": round(
            expected_calibration_error(block_probability(logits, 1.0), split.labels), 4
        ),
        "by_band": {
            b: {
                "n": int((bands == b).sum()),
                "accuracy": round(float(correct[bands == b].mean()), 4),
            }
            for b in sorted(set(bands.tolist()))
        },
        "buckets": table,
        "max_confident_error_rate": max_confident_error_rate(table),
    }


def focus_weights(stage1: Path, data_dir: Path, split: str = "train") -> np.ndarray:
    """Sampling weights that put stage 2's training where stage 1 is unsure (module docstring)."""
    meta = read_meta(stage1)
    images = load_split(data_dir, split, meta.preprocess)
    p = block_probability(predict_logits(load_model(stage1), images.inputs(meta.preprocess)),
                          meta.temperature)  # fmt: skip
    return FOCUS_FLOOR + (1 - FOCUS_FLOOR) * 4 * p * (1 - p)


def _focus_record(focus: Path | None) -> dict[str, Any] | None:
    return None if focus is None else {"stage1": str(Path(focus).resolve()), "floor": FOCUS_FLOOR}


def train_stage(
    data_dir: Path,
    model_dir: Path,
    spec: StageSpec,
    *,
    init: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
    focus: Path | None = None,
) -> StageMeta:
    """Train, calibrate, gate and write ``<model_dir>/stage<N>/{model.pt,meta.json}``.

    ``focus``: a trained stage-1 directory whose doubts stage 2 should learn from.
    ``threads`` sets torch's intra-op threads; on a CPU shared with other busy processes fewer
    threads than cores can be faster (OpenMP workers spin while they wait).
    The verdict is in ``metrics["quality"]``: read it, the command line exits on a refusal.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    log = print if progress else None
    start = time.perf_counter()
    cfg = preprocess_config_for(spec.model_name, spec.size)
    cache_splits(data_dir, ("train", "val", "test"), [cfg])
    train, val = load_split(data_dir, "train", cfg), load_split(data_dir, "val", cfg)
    weights = focus_weights(focus, data_dir) if focus is not None else None
    load_seconds = time.perf_counter() - start
    model = create_model(spec.model_name, init=init, model_kwargs=spec.model_kwargs)
    history, best_epoch = fit(model, train, val, spec, cfg, weights=weights, seed=seed, log=log)
    train_seconds = time.perf_counter() - start - load_seconds
    val_logits = predict_logits(model, val.inputs(cfg))
    temperature = fit_temperature(val_logits, val.labels)
    test = load_split(data_dir, "test", cfg)
    metrics = {
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(load_seconds, 1),
        "n_train": len(train),
        "epochs_planned": spec.epochs,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "history": [asdict(h) for h in history],
        "calibration_val": calibration_report(val_logits, val.labels, temperature),
        "test": held_out_metrics(predict_logits(model, test.inputs(cfg)), test, temperature),
        "init": str(init) if init else "random",
        "focus": _focus_record(focus),
        "data_dir": str(Path(data_dir).resolve()),
        "torch_threads": torch.get_num_threads(),
    }
    metrics["quality"] = assess(metrics, temperature).as_dict()
    meta = StageMeta(
        model_name=spec.model_name,
        stage=spec.stage,
        preprocess=cfg,
        temperature=temperature,
        metrics=metrics,
        data_fingerprint=dataset_fingerprint(data_dir),
        model_kwargs=dict(spec.model_kwargs),
    )
    out = stage_dir(model_dir, spec.stage)
    remove_exports(out)
    save_weights(out, model)
    write_meta(out, meta)
    return meta
