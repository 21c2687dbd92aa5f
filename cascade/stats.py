"""The cost dashboard's numbers: windowed queries over the cost ledger and the submissions.

Every function takes the session first and keyword arguments after, and returns plain dicts
and lists (JSON-ready). They stay fast at millions of submissions because they never scan a
table: dollars come from the per-minute ``cost_ledger``; counts and latency samples come from
range scans of the covering index ``ix_submissions_decided_cover`` (decided_at, decided_by,
audit, created_at), one small range per time slot. A slot that is over never changes, so
``SlotCache`` keeps its results and a refresh queries only the newest slot; what a cold look
at a long window costs is measured by ``cascade bench dashboard``.

**Denominator of cost per image: images decided in the slot** (``submissions.decided_at``),
not the ledger's stage-1 image counts. A cache hit is a moderated image that cost nothing and
must lower the cost per image; stage-1 counts miss it. A stage-1 batch that is retried after a
crash is billed (it used the device) but its images are decided once; stage-1 counts would
count them twice. Dollars and decisions of one image can fall in different slots (the screen
now, the human label an hour later), so a slot's ratio is a flow ratio: exact over long
windows, noisy over a few minutes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, extract, func, select
from sqlalchemy.orm import Session

from cascade.cost import BUCKETS
from cascade.db.schema import (
    CostLedger,
    ReviewItem,
    ReviewState,
    Submission,
    ThresholdSetRow,
    ThresholdStatus,
)
from cascade.thresholds import load_active

COMPUTE_BUCKETS = ("stage1", "stage2")
DECIDERS = ("stage1", "stage2", "human", "cache")
SECONDS_PER_MONTH = 30 * 86400
NICE_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Window:
    """A time window cut into equal slots; ``end`` may fall inside the last slot."""

    start: datetime
    end: datetime
    step_s: int

    @property
    def slots(self) -> list[tuple[datetime, datetime]]:
        step = timedelta(seconds=self.step_s)
        edges, at = [], self.start
        while at < self.end:
            edges.append((at, min(at + step, self.end)))
            at += step
        return edges


def make_window(*, end: datetime, span_s: int, points: int = 60) -> Window:
    """A window of ``span_s`` seconds ending at ``end``, with about ``points`` slots.

    Slot edges are whole multiples of the step since the epoch, so refreshing the page moves
    the window without reshuffling past slots, and ledger minutes never straddle two slots.
    """
    if span_s < 60 or points < 1:
        raise ValueError("a window spans at least one minute and has at least one slot")
    wanted = span_s / points
    step = next((s for s in NICE_STEPS_S if s >= wanted), NICE_STEPS_S[-1])
    end = end.astimezone(UTC)
    epoch = int((end - timedelta(seconds=span_s)).timestamp())
    start = datetime.fromtimestamp(epoch - epoch % step, UTC)
    return Window(start=start, end=end, step_s=step)


def cost_per_image(dollars: float, images: int) -> float | None:
    """Dollars per decided image; None (not 0, not infinity) when nothing was decided."""
    return dollars / images if images > 0 else None


def monthly_projection(dollars: float, seconds: float) -> float:
    """What 30 days cost at the rate of ``dollars`` per ``seconds``."""
    return dollars / seconds * SECONDS_PER_MONTH if seconds > 0 else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class SlotCache:
    """Per-slot query results of slots that are over.

    A slot that ended more than ``settle_s`` ago never changes (ledger minutes and decision
    times are written when they happen), so the page's refresh every 30 s recomputes only the
    newest slots. Bounded, thread-safe; one per app (per database). Backfilling old data
    behind a running app's back is the exception: restart it or ``clear()``.
    """

    def __init__(self, max_entries: int = 50_000, settle_s: float = 120.0) -> None:
        self.max_entries = max_entries
        self.settle_s = settle_s
        self._data: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _per_slot(
    session: Session,
    window: Window,
    stmt: Any,
    kind: str,
    cache: SlotCache | None,
    fetch: Callable[[Any], Any],
) -> list[Any]:
    """Run ``stmt`` once per slot (bind parameters ``a``, ``b``), reusing settled slots."""
    conn = session.connection()
    settled = datetime.now(UTC) - timedelta(seconds=cache.settle_s if cache else 0)
    out = []
    for a, b in window.slots:

        def run(a: datetime = a, b: datetime = b) -> Any:
            return fetch(conn.execute(stmt, {"a": a, "b": b}))

        # The last slot is cut at the window's end: partial, never final, never cached.
        if cache is None or b > settled or (b - a).total_seconds() < window.step_s:
            out.append(run())
        else:
            out.append(cache.get_or_compute((kind, a, b), run))
    return out


def ledger_series(
    session: Session, *, window: Window, cache: SlotCache | None = None
) -> dict[str, list[float]]:
    """Dollars and images per ledger bucket and slot (one indexed minute range per slot).

    Conditional sums rather than GROUP BY: one pass over the range, no sort.
    """
    columns: list[ColumnElement[Any]] = []
    for bucket in BUCKETS:
        mine = CostLedger.bucket == bucket
        columns += [
            func.coalesce(func.sum(CostLedger.images).filter(mine), 0),
            func.coalesce(func.sum(CostLedger.dollars).filter(mine), 0.0),
        ]
    stmt = select(*columns).where(CostLedger.minute >= _bind("a"), CostLedger.minute < _bind("b"))
    rows = _per_slot(session, window, stmt, "ledger", cache, lambda r: tuple(r.one()))
    out = {f"{b}_{k}": [0.0] * len(rows) for b in BUCKETS for k in ("images", "dollars")}
    for i, row in enumerate(rows):
        for j, bucket in enumerate(BUCKETS):
            out[f"{bucket}_images"][i] = float(row[2 * j])
            out[f"{bucket}_dollars"][i] = float(row[2 * j + 1])
    return out


def decision_series(
    session: Session, *, window: Window, cache: SlotCache | None = None
) -> dict[str, list[int]]:
    """Decided images per slot: in all, by decider, and audit-sampled (conditional counts over
    one covering-index range per slot: no table reads, no sort)."""
    stmt = select(
        func.count(),
        func.count().filter(Submission.audit.is_(True)),
        *(func.count().filter(Submission.decided_by == d) for d in DECIDERS),
    ).where(Submission.decided_at >= _bind("a"), Submission.decided_at < _bind("b"))
    rows = _per_slot(session, window, stmt, "decisions", cache, lambda r: tuple(r.one()))
    out = {k: [0] * len(rows) for k in ("decided", "audit", *DECIDERS)}
    for i, row in enumerate(rows):
        for key, value in zip(("decided", "audit", *DECIDERS), row, strict=True):
            out[key][i] = int(value)
    return out


def cost_and_volume(
    session: Session, *, window: Window, cache: SlotCache | None = None
) -> dict[str, Any]:
    """Cost per image over time split into compute / human / error, images per second, share
    resolved at each stage, escalation and audit rates — per slot and over the window."""
    ledger = ledger_series(session, window=window, cache=cache)
    decisions = decision_series(session, window=window, cache=cache)
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


def latency(
    session: Session, *, window: Window, per_slot: int = 200, cache: SlotCache | None = None
) -> dict[str, Any]:
    """Upload-to-decision latency p50/p95/p99 per slot and over the window.

    A bounded sample — the first ``per_slot`` decisions of each slot, read from the covering
    index — so a 30-day window costs the same as a one-hour one; every slot weighs the same.
    """
    seconds = _latency_seconds(session)
    stmt = (
        select(seconds)
        .where(Submission.decided_at >= _bind("a"), Submission.decided_at < _bind("b"))
        .order_by(Submission.decided_at)
        .limit(per_slot)
    )
    series: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    pooled: list[float] = []

    def fetch(result: Any) -> tuple[float, ...]:
        return tuple(sorted(float(v) for v in result.scalars() if v is not None))

    for values in _per_slot(session, window, stmt, f"latency{per_slot}", cache, fetch):
        pooled.extend(values)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            series[name].append(percentile(values, q))
    pooled.sort()
    summary = {
        name: percentile(pooled, q) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }
    return {
        "t": [int(a.timestamp()) for a, _ in window.slots],
        **series,
        "summary": summary,
        "samples": len(pooled),
    }


def spend_summary(
    session: Session, *, window: Window, dollars: float, decided: int, rate_span_s: int = 3600
) -> dict[str, Any]:
    """Cost per 1,000 images over the window (its ``dollars`` and ``decided`` images, from
    ``cost_and_volume``), and a monthly projection at the current rate: the spend of the last
    ``rate_span_s`` seconds before the window's end."""
    total = dollars
    recent_start = window.end - timedelta(seconds=rate_span_s)
    recent = _ledger_dollars(session, recent_start, window.end)
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
    """Waiting review items by reason, and when the oldest of them was opened."""
    waiting = (ReviewState.PENDING, ReviewState.CONFLICT)
    rows = session.execute(
        select(ReviewItem.reason, func.count(), func.min(ReviewItem.created_at))
        .where(ReviewItem.state.in_(waiting))
        .group_by(ReviewItem.reason)
    ).all()
    backlog = {reason: int(count) for reason, count, _ in rows}
    oldest = min((first for _, _, first in rows if first is not None), default=None)
    return backlog, oldest


def active_threshold_version(session: Session) -> int:
    """The active threshold set's version (0: the built-in default)."""
    return load_active(session).version


def _ledger_dollars(session: Session, start: datetime, end: datetime) -> float:
    total = session.scalar(
        select(func.sum(CostLedger.dollars)).where(
            CostLedger.minute >= start, CostLedger.minute < end
        )
    )
    return float(total or 0.0)


def _latency_seconds(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", Submission.decided_at - Submission.created_at)
    return (func.julianday(Submission.decided_at) - func.julianday(Submission.created_at)) * 86400.0


def _bind(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, type_=CostLedger.minute.type)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _ratios(parts: Sequence[float], wholes: Sequence[float]) -> list[float | None]:
    return [_ratio(p, w) for p, w in zip(parts, wholes, strict=True)]


def _add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]
