"""The two risks the certificate can bound, how the error budget is split between them, how
precisely each is known, and how much audit data a certificate needs.

- **miss rate** (harmful allowed / all images) at level ``alpha``: always certified;
- **false-block rate** (benign blocked / all images) at level ``beta``: optional.

With both, the error budget ``delta`` (the chance that a certificate is wrong) is split by
Bonferroni: ``delta·miss_share`` for misses, the rest for false blocks; both certificates then
hold together with probability at least ``1 - delta``. The default share is one half: neither
risk is privileged unless the operator says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

HOURS_PER_WEEK = 24 * 7


@dataclass(frozen=True)
class Budget:
    """Levels of the two sequences; ``false_block`` is 0 when no false-block bound is asked."""

    miss: float
    false_block: float


def split_budget(delta: float, beta: float | None, miss_share: float = 0.5) -> Budget:
    """All of ``delta`` to misses without ``beta``; else ``delta·miss_share`` and the rest."""
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta} must lie in (0, 1)")
    if beta is None:
        return Budget(delta, 0.0)
    if not 0 < beta < 1:
        raise ValueError(f"beta={beta} must lie in (0, 1)")
    if not 0 < miss_share < 1:
        raise ValueError(f"miss_share={miss_share} must lie in (0, 1)")
    return Budget(delta * miss_share, delta * (1 - miss_share))


def rate_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided exact (Clopper–Pearson) interval for a binomial rate from ``k`` of ``n``."""
    if n <= 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    lo = 0.0 if k <= 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k >= n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def critical_count(n: int, limit: float, level: float) -> int:
    """Largest count ``k`` with ``P(Binomial(n, limit) <= k) <= level``; -1 when none."""
    if n <= 0:
        return -1
    k = int(stats.binom.ppf(level, n, limit))
    while k >= 0 and stats.binom.cdf(k, n, limit) > level:
        k -= 1
    return k


def size_of_test_part(room: int, limit: float, level: float) -> int:
    """How many of ``room`` available i.i.d. images to test on: the fewest that reach the
    critical count ``room`` would reach. At a fixed critical count, fewer images mean fewer
    expected events, so a set passes more easily; the rest are better spent on ordering."""
    target = critical_count(room, limit, level)
    if target < 0:
        return room
    lo, hi = 1, room  # critical_count(hi) >= target; find the smallest such n
    while lo < hi:
        mid = (lo + hi) // 2
        if critical_count(mid, limit, level) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def labels_needed(limit: float, level: float, rate: float = 0.0) -> int:
    """Smallest testing-sample size at which a set whose count sits at its expectation for the
    true ``rate`` passes (``rate = 0``: even a set with no events needs this many)."""
    if rate <= 0:
        return math.ceil(math.log(level) / math.log1p(-limit))
    if rate >= limit:
        raise ValueError(f"a rate of {rate} can never be certified below {limit}")
    n = labels_needed(limit, level)
    while critical_count(n, limit, level) < math.floor(n * rate):
        n = max(n + 1, int(n * 1.02))
    return n


@dataclass(frozen=True)
class AuditNeed:
    """Audit labels a certificate needs, and the audit rate that collects them in a week."""

    at_least: int  # even if the set made no errors at all
    useful: int  # for a set that uses half the budget
    audit_rate: float | None  # for ``useful`` labels in a week; None without traffic figures

    def as_dict(self) -> dict[str, object]:
        return {"at_least": self.at_least, "useful": self.useful, "audit_rate": self.audit_rate}


def audit_need(
    limit: float, level: float, test_share: float, traffic_per_hour: float | None = None
) -> AuditNeed:
    """Labelled audit images needed to certify at ``limit`` when ``test_share`` of them test."""
    at_least = math.ceil(labels_needed(limit, level) / test_share)
    useful = math.ceil(labels_needed(limit, level, limit / 2) / test_share)
    rate = None
    if traffic_per_hour:
        rate = min(1.0, useful / (traffic_per_hour * HOURS_PER_WEEK))
    return AuditNeed(at_least, useful, rate)
