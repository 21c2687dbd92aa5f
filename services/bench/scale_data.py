"""Generated traffic for `cascade bench scale` and the dashboard tests, as arrays.

Decisions over ``[start, end)`` with a daily cycle, three threshold-set activations that shift the
share decided at stage 1, scores and a hidden truth, an audit sample whose older part is
labelled (the retune's sample) and newer part waits in the review queue, one image per
submission with a random 64-bit perceptual hash. ``services.bench.scale_load`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

DECIDERS = np.array(["cache", "stage1", "stage2", "human"])
# Share decided by cache / stage1 / stage2 / human under threshold versions 1, 2, 3.
SHARES = {1: (0.05, 0.70, 0.18, 0.07), 2: (0.05, 0.78, 0.13, 0.04), 3: (0.05, 0.84, 0.09, 0.02)}
LATENCY_S = {"cache": (0.01, 0.3), "stage1": (0.12, 0.4), "stage2": (0.6, 0.4), "human": (900, 0.8)}
STAGE1_DEVICE_S, STAGE2_DEVICE_S = 0.004, 0.03  # per image
PREVALENCE = 0.03  # harmful share
LABELLED_SHARE = 0.5  # the older half of the audits is labelled, the newer half waits

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Generated:
    """Decisions as arrays (times in epoch microseconds, as the database stores them)."""

    first_id: int
    created_us: I64
    decided_us: I64
    decider_code: npt.NDArray[np.int8]  # index into DECIDERS
    audit: npt.NDArray[np.bool_]
    labelled: npt.NDArray[np.bool_]  # audits with a done review item (older ones)
    harmful: npt.NDArray[np.bool_]
    s1: npt.NDArray[np.float64]
    s2: npt.NDArray[np.float64]  # NaN where stage 2 did not run
    version: npt.NDArray[np.int8]
    phash: I64
    changes: list[float]  # activation times of versions 1, 2, 3 (epoch seconds)

    @property
    def n(self) -> int:
        return int(self.created_us.size)

    @property
    def decider(self) -> npt.NDArray[np.str_]:
        return DECIDERS[self.decider_code]

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return np.arange(self.first_id, self.first_id + self.n, dtype=np.int64)

    @property
    def decision_block(self) -> npt.NDArray[np.bool_]:
        score = np.where(np.isnan(self.s2), self.s1, self.s2)
        return score >= 0.5


def generate(
    *,
    n: int,
    start: datetime,
    end: datetime,
    seed: int = 0,
    first_id: int = 0,
    audit_rate: float = 0.02,
    changes: list[float] | None = None,
) -> Generated:
    """``n`` decisions created in ``[start, end)``, busier by day than by night.

    ``changes`` (threshold activations) default to the start and the thirds of the span.
    """
    rng = np.random.default_rng(seed)
    t0, t1 = start.timestamp(), end.timestamp()
    created_s = _daily_cycle(rng, n, t0, t1)
    changes = changes or [t0, t0 + (t1 - t0) / 3, t0 + 2 * (t1 - t0) / 3]
    version = (1 + (created_s >= changes[1]) + (created_s >= changes[2])).astype(np.int8)
    code = np.empty(n, dtype=np.int8)
    for v, shares in SHARES.items():
        mask = version == v
        code[mask] = rng.choice(len(DECIDERS), size=int(mask.sum()), p=shares)
    latency = np.empty(n)
    for i, (median, sigma) in enumerate(LATENCY_S[str(d)] for d in DECIDERS):
        mask = code == i
        latency[mask] = rng.lognormal(np.log(median), sigma, size=int(mask.sum()))
    created_us = np.round(created_s * 1e6).astype(np.int64)
    decided_us = np.minimum(created_us + np.round(latency * 1e6).astype(np.int64), int(t1 * 1e6))
    audit = (rng.uniform(size=n) < audit_rate) & (code != 0)
    harmful = rng.uniform(size=n) < PREVALENCE
    s1 = np.where(harmful, rng.beta(8, 2, n), rng.beta(2, 8, n))
    s2_ran = np.isin(code, [2, 3]) | audit
    s2 = np.where(s2_ran, np.where(harmful, rng.beta(12, 1.5, n), rng.beta(1.5, 12, n)), np.nan)
    audits = np.flatnonzero(audit)
    labelled = np.zeros(n, dtype=bool)
    labelled[audits[: int(len(audits) * LABELLED_SHARE)]] = True
    phash = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=n, dtype=np.int64)
    return Generated(first_id, created_us, decided_us, code, audit, labelled, harmful,
                     s1, s2, version, phash, changes)  # fmt: skip


def _daily_cycle(rng: np.random.Generator, n: int, t0: float, t1: float) -> np.ndarray:
    """Sorted times in [t0, t1) with rate ∝ 1 + 0.6·sin(2π·hour/24) (rejection sampling)."""
    parts, have = [], 0
    while have < n:
        t = rng.uniform(t0, t1, size=max(2 * (n - have), 16))
        keep = t[rng.uniform(0, 1.6, size=t.size) < 1 + 0.6 * np.sin(2 * np.pi * t / 86400)]
        parts.append(keep)
        have += keep.size
    return np.sort(np.concatenate(parts)[:n])


def ledger_minutes(gen: Generated, settings_prices: dict[str, float]) -> list[dict[str, object]]:
    """Per-minute ledger rows implied by the decisions: every non-cache image is screened when
    it arrives; escalated and audited ones run stage 2; human decisions and labelled audits are
    paid for; one audit in fifty finds a miss. ``settings_prices``: stage1/stage2 $ per hour,
    human $ per label, miss $ per error."""
    screened = gen.decider_code != 0
    stage2 = np.isin(gen.decider_code, [2, 3]) | gen.audit
    labelled = (gen.decider_code == 3) | gen.labelled
    missed = gen.labelled & (gen.ids % 50 == 0)
    p = settings_prices
    per_bucket = {
        "stage1": (gen.created_us, screened, STAGE1_DEVICE_S, p["stage1"] * STAGE1_DEVICE_S / 3600),
        "stage2": (gen.created_us, stage2, STAGE2_DEVICE_S, p["stage2"] * STAGE2_DEVICE_S / 3600),
        "human": (gen.decided_us, labelled, 0.0, p["human"]),
        "error": (gen.decided_us, missed, 0.0, p["miss"]),
    }
    rows: list[dict[str, object]] = []
    for bucket, (at_us, mask, dev_s, dollars_each) in per_bucket.items():
        minutes, counts = np.unique(at_us[mask] // 60_000_000, return_counts=True)
        for minute, count in zip(minutes.tolist(), counts.tolist(), strict=True):
            rows.append({"minute_s": minute * 60, "bucket": bucket, "images": count,
                         "device_seconds": count * dev_s, "dollars": count * dollars_each})  # fmt: skip
    return rows
