"""The cost dashboard's numbers: windowed figures over the roll-ups and the raw tail.

Every function takes the session first and keyword arguments after, and returns plain dicts
and lists (JSON-ready). They stay fast at ten million decisions because the per-slot series
come from the roll-up tables (``cascade.series``, ``cascade.rollup``): a slot's figures are a
few roll-up rows whatever the traffic, plus raw rows only for the newest few minutes. What a cold
look at every window costs at that size is measured by ``cascade bench scale``.

**Denominator of cost per image: images decided in the slot** (``submissions.decided_at``),
not the ledger's stage-1 image counts. A cache hit is a moderated image that cost nothing and
must lower the cost per image; stage-1 counts miss it. A stage-1 batch that is retried after a
crash is billed (it used the device) but its images are decided once; stage-1 counts would
count them twice. Dollars and decisions of one image can fall in different slots (the screen
now, the human label an hour later), so a slot's ratio is a flow ratio: exact over long
windows, noisy over a few minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cascade import sketch
from cascade.backlog import counts as backlog_counts
from cascade.backlog import oldest as oldest_waiting
from cascade.cost import BUCKETS
from cascade.db.schema import (
    ReviewState,
    ThresholdSetRow,
    ThresholdStatus,
)
from cascade.series import (
    DECIDERS,
    Window,
    decision_series,
    latency_sketches,
    ledger_series,
)
from cascade.series import make_window as make_window  # the dashboard's one way to cut windows
from cascade.thresholds import load_active

COMPUTE_BUCKETS = ("stage1", "stage2")
SECONDS_PER_MONTH = 30 * 86400
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def cost_per_image(dollars: float, images: int) -> float | None:
    """Dollars per decided image; None (not 0, not infinity) when nothing was decided."""
    return dollars / images if images > 0 else None


def monthly_projection(dollars: float, seconds: float) -> float:
    """What 30 days cost at the rate of ``dollars`` per ``seconds``."""
    return dollars / seconds * SECONDS_PER_MONTH if seconds > 0 else 0.0


def cost_and_volume(session: Session, *, window: Window) -> dict[str, Any]:
    """Cost per image over time split into compute / human / error, images per second, share
    resolved at each stage, escalation and audit rates — per slot and over the window."""
    ledger = ledger_series(session, window=window)
    decisions = decision_series(session, window=window)
    slots = window.slots
    zeros = [0.0] * len(slots)
    parts = {
        "compute": [
            sum(v)
            for v in zip(*(ledger.get(f"{b}_dollars", zeros) for b in COMPUTE_BUCKETS), strict=True)
        ],
        "human": ledger.get("human_dollars", zeros),
        "error": ledger.get("error_dollars", zeros),
    }
    decided = decisions["decided"]
    per_image = {
        k: [cost_per_image(d, n) for d, n in zip(v, decided, strict=True)] for k, v in parts.items()
    }
    seconds = [(b - a).total_seconds() for a, b in slots]
    total_images = sum(decided)
    totals = {k: sum(v) for k, v in parts.items()}
    return {
        "t": [int(a.timestamp()) for a, _ in slots],
        "step_s": window.step_s,
        "cost_per_image": per_image,
        "images_per_s": [n / s for n, s in zip(decided, seconds, strict=True)],
        "screened_per_s": [
            n / s for n, s in zip(ledger.get("stage1_images", zeros), seconds, strict=True)
        ],
        "share": {d: _ratios(decisions[d], decided) for d in DECIDERS},
        "escalation_rate": _ratios(_add(decisions["stage2"], decisions["human"]), decided),
        "human_rate": _ratios(decisions["human"], decided),
        "audit_rate": _ratios(decisions["audit"], decided),
        "totals": {
            "images": total_images,
            "dollars": totals,
            "cost_per_image": cost_per_image(sum(totals.values()), total_images),
            "share": {d: _ratio(sum(decisions[d]), total_images) for d in DECIDERS},
            "escalation_rate": _ratio(
                sum(decisions["stage2"]) + sum(decisions["human"]), total_images
            ),
            "audit_rate": _ratio(sum(decisions["audit"]), total_images),
        },
    }


def latency(session: Session, *, window: Window) -> dict[str, Any]:
    """Upload-to-decision latency p50/p95/p99 per slot and over the window, from the latency
    sketches of every decision (within ``sketch.RELATIVE_ERROR`` of the exact quantiles)."""
    slots = latency_sketches(session, window=window)
    pooled = sketch.merge(slots)
    series = {name: [sketch.quantile(s, q) for s in slots] for name, q in QUANTILES}
    return {
        "t": [int(a.timestamp()) for a, _ in window.slots],
        **series,
        "summary": {name: sketch.quantile(pooled, q) for name, q in QUANTILES},
        "samples": sketch.count(pooled),
    }


def spend_summary(
    session: Session, *, window: Window, dollars: float, decided: int, rate_span_s: int = 3600
) -> dict[str, Any]:
    """Cost per 1,000 images over the window (its ``dollars`` and ``decided`` images, from
    ``cost_and_volume``), and a monthly projection at the current rate: the spend of the last
    ``rate_span_s`` seconds before the window's end."""
    total = dollars
    recent_window = Window(
        start=window.end - timedelta(seconds=rate_span_s), end=window.end, step_s=rate_span_s
    )
    ledger = ledger_series(session, window=recent_window)
    recent = sum(ledger[f"{bucket}_dollars"][0] for bucket in BUCKETS)
    per_image = cost_per_image(total, decided)
    return {
        "dollars": total,
        "images": decided,
        "cost_per_1000": per_image * 1000 if per_image is not None else None,
        "rate_dollars_per_hour": recent / rate_span_s * 3600,
        "monthly_projection": monthly_projection(recent, rate_span_s),
    }


def threshold_changes(session: Session, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Threshold sets activated inside [start, end), for marking on the time axis."""
    rows = session.scalars(
        select(ThresholdSetRow)
        .where(ThresholdSetRow.activated_at >= start, ThresholdSetRow.activated_at < end)
        .order_by(ThresholdSetRow.activated_at)
    )
    return [
        {
            "version": r.version,
            "t": int(r.activated_at.timestamp()),
            "by": r.activated_by,
            "reason": r.reason,
        }
        for r in rows
        if r.activated_at is not None
    ]


def threshold_sets(session: Session, *, limit: int = 8) -> list[dict[str, Any]]:
    """The newest threshold sets (proposed, active, retired) for the approve/rollback panel."""
    rows = session.scalars(
        select(ThresholdSetRow).order_by(ThresholdSetRow.version.desc()).limit(limit)
    )
    return [
        {
            "version": r.version,
            "status": r.status,
            "thresholds": [r.t1_lo, r.t1_hi, r.t2_lo, r.t2_hi],
            "expected_cost": r.expected_cost,
            "miss_rate_bound": r.miss_rate_bound,
            "created_by": r.created_by,
            "created_at": r.created_at.isoformat(),
            "activated_at": r.activated_at.isoformat() if r.activated_at else None,
            "active": r.status == ThresholdStatus.ACTIVE,
        }
        for r in rows
    ]


def queue_overview(
    depths: Mapping[str, float], backlog: Mapping[str, float], oldest_age_s: float | None
) -> dict[str, Any]:
    """Queue depths (passed in: from the broker or the gauges) next to the review backlog."""
    return {
        "queues": {k: float(v) for k, v in sorted(depths.items())},
        "review_backlog": {k: float(v) for k, v in sorted(backlog.items())},
        "review_oldest_age_s": oldest_age_s,
    }


def review_backlog(session: Session) -> tuple[dict[str, int], datetime | None]:
    """Waiting review items by reason, and when the oldest of them was opened — from the
    trigger-kept backlog (``cascade.backlog``), never by counting the items."""
    waiting = (ReviewState.PENDING, ReviewState.CONFLICT)
    backlog: dict[str, int] = {}
    for (state, reason), n in backlog_counts(session).items():
        if state in waiting:
            backlog[reason] = backlog.get(reason, 0) + n
    return backlog, oldest_waiting(session, waiting)


def active_threshold_version(session: Session) -> int:
    """The active threshold set's version (0: the built-in default)."""
    return load_active(session).version


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _ratios(parts: Sequence[float], wholes: Sequence[float]) -> list[float | None]:
    return [_ratio(p, w) for p, w in zip(parts, wholes, strict=True)]


def _add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]
