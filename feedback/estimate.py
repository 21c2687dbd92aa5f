"""What a candidate threshold set would do to the traffic, estimated on the audit sample.

Definitions (all are fractions of *all* images of the traffic, the denominator the bound uses):

- ``stage1_share``: decided by stage 1 (allowed or blocked); ``stage2_share``: decided
  automatically by stage 2; ``human_share``: sent to a moderator. They sum to 1.
- ``miss_rate``: images a human labels *block* that the cascade *allows automatically*, divided
  by all images (not by the harmful ones: the business cost of misses scales with traffic, and
  the bound stays meaningful when harmful images are rare). Humans are taken as ground truth, so
  images sent to review are never misses.
- ``false_block_rate``: images labelled *allow* that the cascade blocks automatically, over all.
- ``cost``: dollars per image = stage-1 compute (every image) + stage-2 compute × share reaching
  stage 2 + human × human share + miss price × miss rate + false-block price × false-block rate.

Standard errors are design-based for Bernoulli sampling with the recorded ``p`` (variance of the
Horvitz–Thompson sum ``Σ (1-p)·w²·y²``; Hájek ratios use residuals ``y - mean``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cascade.policy import ALLOW_CODE, BLOCK_CODE, REVIEW_CODE, ThresholdSet, route_arrays
from feedback.costs import StageCosts
from feedback.sample import AuditSample, FloatArray

QUANTITIES = (
    "stage1_share",
    "stage2_share",
    "human_share",
    "reach_stage2",
    "miss_rate",
    "false_block_rate",
    "cost",
)


@dataclass(frozen=True)
class Estimate:
    """Point estimates (fractions of all images; ``cost`` in $/image) and their standard errors."""

    n: int
    stage1_share: float
    stage2_share: float
    human_share: float
    reach_stage2: float
    miss_rate: float
    false_block_rate: float
    cost: float
    se: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def per_image(sample: AuditSample, ts: ThresholdSet, costs: StageCosts) -> dict[str, FloatArray]:
    """Each image's indicators (and cost) under ``ts``: the terms the estimates average."""
    final, reached2 = route_arrays(sample.s1, sample.s2, ts)
    harmful = sample.label == 1
    human = final == REVIEW_CODE
    miss = harmful & (final == ALLOW_CODE)
    false_block = ~harmful & (final == BLOCK_CODE)
    terms = {
        "stage1_share": ~reached2,
        "stage2_share": reached2 & ~human,
        "human_share": human,
        "reach_stage2": reached2,
        "miss_rate": miss,
        "false_block_rate": false_block,
    }
    out = {name: values.astype(np.float64) for name, values in terms.items()}
    out["cost"] = (
        costs.stage1
        + costs.stage2 * out["reach_stage2"]
        + costs.human * out["human_share"]
        + costs.miss * out["miss_rate"]
        + costs.false_block * out["false_block_rate"]
    )
    return out


def weighted_mean(y: FloatArray, sample: AuditSample) -> tuple[float, float]:
    """Population mean of ``y`` and its standard error from a Bernoulli(p) sample.

    Horvitz–Thompson ``Σ w·y / N`` when the population size ``N`` is known, else Hájek
    ``Σ w·y / Σ w``.
    """
    if sample.n == 0:
        raise ValueError("cannot estimate from an empty audit sample")
    w = sample.weights
    finite = 1.0 - sample.p
    if sample.population is not None:
        total = float(sample.population)
        mean = float(np.sum(w * y) / total)
        return mean, float(np.sqrt(np.sum(finite * (w * y) ** 2)) / total)
    total = float(np.sum(w))
    mean = float(np.sum(w * y) / total)
    return mean, float(np.sqrt(np.sum(finite * (w * (y - mean)) ** 2)) / total)


def estimate(sample: AuditSample, ts: ThresholdSet, costs: StageCosts) -> Estimate:
    """Estimate shares, error rates and cost per image of ``ts`` over the traffic."""
    terms = per_image(sample, ts, costs)
    values: dict[str, float] = {}
    errors: dict[str, float] = {}
    for name in QUANTITIES:
        values[name], errors[name] = weighted_mean(terms[name], sample)
    return Estimate(n=sample.n, se=errors, **values)
