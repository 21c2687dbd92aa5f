"""Tighten freely, loosen on evidence (``CASCADE_SWITCH_SE``): when the retune may replace
the set in force.

Why: the retune picks the cheapest certified set by a smoothed model of ``P(harmful | scores)``
(:func:`feedback.ltt.harm_probability`), and on a few thousand labels the smallest cost in a
large grid is partly luck. The luck is worst where a new set allows more automatically: the
misses that would cost are rare ($5 each, one or two in 10,000 images) and a few thousand audit
labels hardly see them. `cascade bench loop` (the demo's loop replayed 100 times) measured it:
from the demo's initial set, a fresh pick cost more than the set it replaced in half the runs.

The rule, given the set in force (the *incumbent*) and the optimiser's pick (the *candidate*):

- a candidate that allows nothing the incumbent would not (both allow thresholds at most the
  incumbent's) is taken as it is: it can only miss less;
- a candidate that would allow more is taken only when the audit images themselves show it
  cheaper, paired image by image: ``d`` = an image's dollars under the candidate minus its
  dollars under the incumbent (compute, review, miss and false-block prices, as
  :func:`feedback.estimate.per_image` counts them), and the weighted mean of ``d`` must be below
  zero by more than ``switch_se`` standard errors. The standard error is that of
  :mod:`feedback.tiebreak` (linearised, paired, no finite-population factor: the question is the
  traffic still to come).

A symmetric rule (evidence for every switch) was tried and dropped: it kept a set that missed
too much in 38 % of the replays, because the misses that make it dear are the rare events the
labels hardly see (stop 30 in the README).

It never weakens the guarantee: the incumbent is kept only when the certificate covers it. A
certified allow pair ``(a, b)`` bounds the harmful mass with ``s1 < a`` or ``s2 < b``
(:func:`feedback.tables.miss_envelope`), and every harmful image a set allows has ``s1 < t1_lo``
or ``s2 < t2_lo``; so a set whose allow thresholds are at most a certified pair's has no more
misses. Likewise for false blocks: block thresholds at least a certified block pair's. An
incumbent the certificate does not cover (looser than anything certified, or over the review
limit) gives way to the candidate whatever it costs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.estimate import per_image
from feedback.ltt import Pair
from feedback.sample import AuditSample, FloatArray

__all__ = ["SWITCH_SE", "Comparison", "compare", "covering", "covering_blocks"]

SWITCH_SE = 1.0


@dataclass(frozen=True)
class Comparison:
    """The candidate's cost minus the incumbent's, $/image, on the audit images, and its
    standard error; ``looser``: whether the candidate would allow anything the incumbent would
    not; ``switch``: whether the rule takes the candidate."""

    candidate: ThresholdSet
    difference: float
    se: float
    looser: bool
    switch: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": {k: v for k, v in asdict(self.candidate).items() if k != "version"},
            "difference": self.difference,
            "se": self.se,
            "looser": self.looser,
            "switch": self.switch,
        }


def paired(d: FloatArray, weights: FloatArray) -> tuple[float, float]:
    """Weighted mean of per-image differences and its linearised standard error."""
    total = float(weights.sum())
    mean = float(np.sum(weights * d) / total)
    return mean, float(np.sqrt(np.sum((weights * (d - mean)) ** 2)) / total)


def compare(
    sample: AuditSample, candidate: ThresholdSet, incumbent: ThresholdSet, costs: StageCosts,
    switch_se: float = SWITCH_SE,
) -> Comparison:  # fmt: skip
    """The rule's verdict on two sets, with their paired difference on the audit images (see
    the module docstring)."""
    d = per_image(sample, candidate, costs)["cost"] - per_image(sample, incumbent, costs)["cost"]
    mean, se = paired(d, sample.weights)
    looser = candidate.t1_lo > incumbent.t1_lo or candidate.t2_lo > incumbent.t2_lo
    return Comparison(candidate, mean, se, looser, not looser or mean + switch_se * se < 0.0)


def covering(incumbent: ThresholdSet, values: FloatArray, allow: list[Pair]) -> list[Pair]:
    """The certified allow pairs (grid indices) whose bound covers ``incumbent``'s misses."""
    return [
        (i, k) for i, k in allow if incumbent.t1_lo <= values[i] and incumbent.t2_lo <= values[k]
    ]


def covering_blocks(incumbent: ThresholdSet, values: FloatArray, block: list[Pair]) -> list[Pair]:
    """The certified block pairs whose bound covers ``incumbent``'s false blocks."""
    return [
        (j, m) for j, m in block if incumbent.t1_hi >= values[j] and incumbent.t2_hi >= values[m]
    ]
