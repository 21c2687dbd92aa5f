"""The quality gate: a stage model that cannot be trusted is never exported or served.

Why a gate: a model that learned nothing (a constant output, shuffled labels, an early stop in
the warm-up) still exports, loads and returns plausible-looking probabilities; calibration error
does not catch it (a constant model is perfectly calibrated at the base rate). What catches it is
held-out evidence, measured on the test split after training and recorded in ``meta.json``:

1. **Better than chance, clearly**: the one-sided lower confidence bound of held-out accuracy
   must beat the majority class's share by a margin.
2. **Never confidently wrong on a bucket**: for each (difficulty band, label) bucket with enough
   images, the share scored >= 0.9 toward the wrong class (``confident_error_rate``) stays small.
   A model may be unsure on the ambiguous tail; thresholds can route "unsure" to a person, but
   nothing can route around confident mistakes.
3. **Calibration temperature inside its clip**: a temperature at the top of the search range
   means the logits carry no usable signal; at the bottom, no sensible scale (except when the
   validation split is perfectly separated, where the best temperature is 0).
4. **The schedule ran to its end**: a stopped run is not the recipe that was validated.

The verdict is stored as ``metrics.quality``; ``models.artifact.read_meta`` refuses to hand a
refused, un-forced model to an engine, so workers, benchmarks and the demo cannot load one.
``force`` records that a person accepted it anyway (``--force``, for experiments).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from models.artifact import read_meta, write_meta
from models.calibrate import TEMPERATURE_RANGE

CONFIDENT = 0.9  # a score this far toward a class is a confident answer


@dataclass(frozen=True)
class QualityBar:
    """What a model must show on its held-out split to be exported and served."""

    min_edge: float = 0.10  # accuracy lower bound above the majority share by at least this
    confidence: float = 0.99  # one-sided confidence of that lower bound
    max_confident_error_rate: float = 0.05
    min_bucket: int = 50  # smaller buckets are reported, not judged


@dataclass(frozen=True)
class Verdict:
    """The gate's answer; ``reasons`` says what failed, in words a person can act on."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    forced: bool = False

    @property
    def servable(self) -> bool:
        return self.passed or self.forced

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bucket_table(probs: np.ndarray, labels: np.ndarray, bands: np.ndarray) -> list[dict[str, Any]]:
    """Per (band, label): images, accuracy at 0.5, mean P(block), and the share scored at
    least ``CONFIDENT`` toward the wrong class."""
    probs, labels, bands = np.asarray(probs), np.asarray(labels), np.asarray(bands)
    rows = []
    for band in sorted(set(bands.tolist())):
        for label in (0, 1):
            sel = (bands == band) & (labels == label)
            n = int(sel.sum())
            if n == 0:
                continue
            p = probs[sel]
            wrong_conf = p >= CONFIDENT if label == 0 else p <= 1 - CONFIDENT
            rows.append({
                "band": band,
                "label": "block" if label else "allow",
                "n": n,
                "accuracy": round(float(np.mean((p >= 0.5) == bool(label))), 4),
                "mean_score": round(float(p.mean()), 4),
                "confident_error_rate": round(float(wrong_conf.mean()), 4),
            })  # fmt: skip
    return rows


def max_confident_error_rate(table: list[dict[str, Any]], min_bucket: int = 50) -> float | None:
    """The worst bucket's confident-error rate among buckets of at least ``min_bucket``."""
    rates = [r["confident_error_rate"] for r in table if r["n"] >= min_bucket]
    return max(rates) if rates else None


def accuracy_lower_bound(correct: int, n: int, confidence: float) -> float:
    """One-sided Clopper–Pearson lower bound on an accuracy."""
    if n <= 0 or correct <= 0:
        return 0.0
    return float(stats.beta.ppf(1.0 - confidence, correct, n - correct + 1))


def assess(metrics: dict[str, Any], temperature: float, bar: QualityBar | None = None) -> Verdict:
    """Judge one stage from its recorded training metrics (see ``models.train``)."""
    bar = bar or QualityBar()
    test, reasons = metrics.get("test", {}), []
    n, acc, majority = int(test.get("n", 0)), float(test.get("accuracy", 0.0)), float(test.get("majority_share", 1.0))  # fmt: skip
    low = accuracy_lower_bound(round(acc * n), n, bar.confidence)
    if low < majority + bar.min_edge:
        reasons.append(
            f"not clearly better than chance: held-out accuracy {acc:.1%} on {n} images "
            f"(its {bar.confidence:.0%} lower bound {low:.1%}) does not beat the majority "
            f"class's share {majority:.1%} by {bar.min_edge:.0%}"
        )
    for row in test.get("buckets", []):
        if (
            row["n"] >= bar.min_bucket
            and row["confident_error_rate"] > bar.max_confident_error_rate
        ):
            reasons.append(
                f"confidently wrong on {row['band']}/{row['label']}: "
                f"{row['confident_error_rate']:.1%} of {row['n']} images scored >= {CONFIDENT} "
                f"toward the wrong class (limit {bar.max_confident_error_rate:.0%})"
            )
    lo, hi = TEMPERATURE_RANGE
    separable = metrics.get("calibration_val", {}).get("accuracy") == 1.0
    if temperature >= hi / 1.01 or (temperature <= lo * 1.01 and not separable):
        reasons.append(
            f"calibration temperature {temperature:.3g} hit its clip [{lo}, {hi}]: the logits "
            "carry no usable signal (or no sensible scale)"
        )
    planned, ran = metrics.get("epochs_planned"), metrics.get("epochs_run")
    if planned is not None and ran is not None and ran < planned:
        reasons.append(f"training stopped at epoch {ran} of {planned}: the schedule did not end")
    return Verdict(passed=not reasons, reasons=reasons)


def verdict_of(directory: Path | str) -> Verdict | None:
    """The recorded verdict of a stage directory; None when it was never gated (a model made
    outside ``cascade train``, e.g. imported or a test fixture)."""
    record = read_meta(directory, refused_ok=True).metrics.get("quality")
    if record is None:
        return None
    return Verdict(bool(record["passed"]), list(record.get("reasons", [])), bool(record.get("forced", False)))  # fmt: skip


def force(directory: Path | str) -> Verdict:
    """Record that a person accepted a refused model anyway (experiments only)."""
    meta = read_meta(directory, refused_ok=True)
    record = dict(meta.metrics.get("quality", {"passed": False, "reasons": ["never gated"]}))
    record["forced"] = True
    write_meta(Path(directory), meta.with_(metrics=meta.metrics | {"quality": record}))
    verdict = verdict_of(directory)
    assert verdict is not None
    return verdict


def refusal_message(stage: int, verdict: Verdict) -> str:
    """What `cascade train` / `cascade export` print when the gate refuses a stage."""
    lines = [f"stage {stage} refused by the quality gate:"]
    lines += [f"  - {r}" for r in verdict.reasons]
    lines.append(
        "  No engine will load it. Fix the data or the recipe and retrain, or pass --force to "
        "accept it for an experiment."
    )
    return "\n".join(lines)
