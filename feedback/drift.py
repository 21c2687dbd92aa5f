"""The drift guard: anytime-valid sequential tests on new audit labels against the window the
active set was certified on.

A certificate holds for traffic like its audit window. The guard watches the audit labels that
arrive after that window, in the order the images came in (never in the order they were
labelled, which could depend on the label), and fires when any of these e-processes crosses
its threshold:

- ``miss``: the active set's misses among the new audit images against ``alpha`` — the
  certificate's own claim, tested directly. A mixture of binomial likelihood ratios for rates
  above ``alpha``; each ratio is a supermartingale for every rate <= ``alpha``, so is the mix.
  Misses are rare, so this test is slow: it is the last line, not the early warning.
- ``harmful_scores_down``: harmful images scoring lower than in the window — the drift that
  turns into misses, visible in *every* harmful label rather than only in the rare miss. A
  conformal test martingale on ``logit s1 + logit s2`` of the harmful images: under "no drift"
  the window's and the new harmful images are exchangeable, so each new one's smoothed rank
  among all earlier ones is an exact, independent uniform p-value (Vovk); betting on it with a
  mixture of normal-shift likelihood ratios gives a martingale. The mixture puts half its
  weight on the shift that matters (``z`` moved by 0.4: a half-logit drift of both stages moves
  harmful images' ``z`` by about 0.45 in the demo world) and a quarter each on half and twice
  that, so smaller and larger drifts are still seen.
- ``prevalence``: more harmful images than in the window, by the same construction on the
  label (ties broken by a seeded draw).
- with a false-block bound in force, also ``false_block`` (against ``beta``),
  ``benign_scores_up`` and ``prevalence`` betting both ways.

The guard tests what the certificates in force claim, nothing else: a drift that can only lower
both error rates (harmful images scoring higher, say) does not fire it.

By Ville's inequality an e-process crosses ``1/(share × level)`` with probability at most
``share × level`` ever, however long it is watched. Each test gets a fixed share of the level
(``LEVEL_PARTS``, normalised over the tests in force) and fires at ``1/(share × level)``; the
shares sum to 1, so by the union bound — valid whatever the dependence between the tests — a
false alarm over the whole watch has probability at most ``level``. A restart (after a retune
or an alarm) starts a new watch with its own budget.

Why the split is uneven: a score test sees a drift in every label of its class, a rate test
only in the rare error itself, and a test's threshold grows only with ``log(1/share)``. So each
score test gets 8 parts and every other test 1: with ``alpha`` alone, 80 % of the level to
``harmful_scores_down`` and 10 % each to ``miss`` and ``prevalence`` (thresholds 125, 1,000 and
1,000 at level 0.01, where an even split gave 300 each); with ``beta`` too, 8/19 to each score
test and 1/19 to each of the other three. Measured on the decisions bench's drift case (harmful
scores half a logit lower, 1,000 draws over three seeds): within 4,000 new labels the miss test
never fired, the harmful-score test fired in all draws but one. Why not average the e-processes
instead: an average is an e-process when all are supermartingales in one filtration, and a
conformal martingale is one in the filtration of its own p-values, not the data's; the union
bound needs nothing of the kind.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp, ndtri

from cascade.policy import ALLOW_CODE, BLOCK_CODE, ThresholdSet, route_arrays
from feedback.sample import AuditSample, FloatArray

DRIFT_LEVEL = 0.01
RATE_MULTIPLES = (1.5, 2.0, 3.0, 5.0, 10.0)
SHIFTS = (0.2, 0.4, 0.8)
SHIFT_WEIGHTS = (0.25, 0.5, 0.25)  # half on the shift that matters; see the module docstring
LEVEL_PARTS = {"harmful_scores_down": 8, "benign_scores_up": 8, "miss": 1, "false_block": 1,
               "prevalence": 1}  # fmt: skip


def rate_log_evalues(events: npt.ArrayLike, limit: float) -> FloatArray:
    """Log e-process after each observation for H0 "event rate <= limit" (Bernoulli events):
    an equal mixture of likelihood ratios of rates ``limit × RATE_MULTIPLES`` against
    ``limit``. A ratio for a rate ``r > limit`` has expectation <= 1 under any rate <= limit."""
    x = np.asarray(events, dtype=np.float64)
    k, t = np.cumsum(x), np.arange(1, len(x) + 1)
    rates = np.minimum(limit * np.asarray(RATE_MULTIPLES), (1 + limit) / 2)
    logs = (
        k[None, :] * np.log(rates / limit)[:, None]
        + (t - k)[None, :] * np.log((1 - rates) / (1 - limit))[:, None]
    )
    return np.asarray(logsumexp(logs, axis=0) - np.log(len(rates)), dtype=np.float64)


def conformal_pvalues(
    reference: npt.ArrayLike, new: npt.ArrayLike, rng: np.random.Generator
) -> FloatArray:
    """Smoothed conformal p-values of each new value: the share of earlier values (the whole
    reference and the new values before it) below it, ties (itself included) counted by a
    uniform draw. Exactly i.i.d. uniform when all the values are exchangeable."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    x = np.asarray(new, dtype=np.float64)
    lo, hi = np.searchsorted(ref, x, "left"), np.searchsorted(ref, x, "right")
    u = rng.random(len(x))
    earlier: list[float] = []  # the new values so far, sorted
    out = np.empty(len(x))
    for t, value in enumerate(x.tolist()):
        below, above = bisect.bisect_left(earlier, value), bisect.bisect_right(earlier, value)
        ties = hi[t] - lo[t] + above - below + 1
        out[t] = (lo[t] + below + u[t] * ties) / (len(ref) + t + 1)
        bisect.insort(earlier, value)
    return out


def shift_log_evalues(pvalues: npt.ArrayLike, direction: int) -> FloatArray:
    """Log e-process betting that p-values are small (``direction=-1``: new values lower) or
    large (``+1``), ``direction=0`` both: a mixture of normal-shift likelihood ratios of
    ``z = Φ⁻¹(p)``, each ``exp(s·d·z - d²/2)`` with expectation 1 under uniform p, weighted by
    ``SHIFT_WEIGHTS`` (split evenly between the signs): weights summing to 1 keep it a
    martingale."""
    z = ndtri(np.clip(np.asarray(pvalues, dtype=np.float64), 1e-12, 1 - 1e-12))
    signs = (-1, 1) if direction == 0 else (direction,)
    bets = [
        (s, d, w / len(signs)) for s in signs for d, w in zip(SHIFTS, SHIFT_WEIGHTS, strict=True)
    ]
    logs = np.array([np.cumsum(s * d * z - d * d / 2) + np.log(w) for s, d, w in bets])
    return np.asarray(logsumexp(logs, axis=0), dtype=np.float64)


def score_statistic(sample: AuditSample) -> FloatArray:
    """``logit s1 + logit s2``: one number per image that moves when either stage's does."""
    out = np.zeros(sample.n)
    for s in (sample.s1, sample.s2):
        c = np.clip(s, 1e-6, 1 - 1e-6)
        out += np.log(c / (1 - c))
    return out


@dataclass(frozen=True)
class Alarm:
    """One test of the guard: its final e-value, threshold, and when (if ever) it fired."""

    test: str
    evalue: float
    threshold: float
    fired_at: int | None  # the number of new audit labels seen when it first crossed
    observations: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """All tests of one watch. ``fired_at``: labels seen when the first test crossed."""

    alarms: list[Alarm]
    labels: int
    level: float

    @property
    def fired(self) -> list[Alarm]:
        return [a for a in self.alarms if a.fired_at is not None]

    @property
    def fired_at(self) -> int | None:
        times = [a.fired_at for a in self.fired if a.fired_at is not None]
        return min(times) if times else None

    def reason(self) -> str:
        """Plain words for the record: which tests fired, when, with what evidence."""
        if not self.fired:
            return "no drift"
        parts = [f"{a.test} (e={a.evalue:.3g} >= {a.threshold:.3g} after {a.fired_at} labels)"
                 for a in self.fired]  # fmt: skip
        return "drift: " + "; ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {"labels": self.labels, "level": self.level, "fired_at": self.fired_at,
                "reason": self.reason(), "alarms": [a.as_dict() for a in self.alarms]}  # fmt: skip


def _alarm(test: str, log_e: FloatArray, at: npt.NDArray[np.int64], threshold: float) -> Alarm:
    """``at[i]``: how many new labels had been seen at the i-th observation of this test."""
    crossed = np.flatnonzero(log_e >= np.log(threshold))
    fired = int(at[crossed[0]]) if crossed.size else None
    final = float(np.exp(min(log_e[-1], 700.0))) if log_e.size else 1.0
    return Alarm(test, final, threshold, fired, int(log_e.size))


def watch(
    reference: AuditSample,
    new: AuditSample,
    active: ThresholdSet,
    *,
    alpha: float,
    beta: float | None = None,
    level: float = DRIFT_LEVEL,
    seed: int = 0,
) -> DriftReport:
    """Run every test of the guard over ``new`` (audit labels after the ``reference`` window,
    in arrival order) for the ``active`` set. Pure: the same inputs give the same report."""
    rng = np.random.default_rng([seed, 0xD81F7])
    final, _ = route_arrays(new.s1, new.s2, active)
    harmful = new.label == 1
    seen = np.arange(1, new.n + 1)
    stat_ref, stat_new = score_statistic(reference), score_statistic(new)

    def shift(lab: int, direction: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        mask = new.label == lab
        p = conformal_pvalues(stat_ref[reference.label == lab], stat_new[mask], rng)
        return shift_log_evalues(p, direction), seen[mask]

    tests = [
        ("miss", rate_log_evalues(harmful & (final == ALLOW_CODE), alpha), seen),
        ("harmful_scores_down", *shift(1, -1)),
    ]
    if beta is not None:
        fb = ~harmful & (final == BLOCK_CODE)
        tests += [
            ("false_block", rate_log_evalues(fb, beta), seen),
            ("benign_scores_up", *shift(0, 1)),
        ]
    # More harmful images means more misses; fewer means more benign ones to block wrongly.
    p_lab = conformal_pvalues(reference.label, new.label, rng)
    tests.append(("prevalence", shift_log_evalues(p_lab, 1 if beta is None else 0), seen))
    parts = sum(LEVEL_PARTS[name] for name, _, _ in tests)
    alarms = [_alarm(name, e, at, parts / (LEVEL_PARTS[name] * level)) for name, e, at in tests]
    return DriftReport(alarms, new.n, level)
