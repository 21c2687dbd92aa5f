"""Cost model and the pre-aggregated cost ledger.

Compute cost is what the device was busy for: ``device_seconds × $/hour ÷ 3600``, the price
coming from the device type the stage is billed as in the settings (``stage1_billed_as``). Human cost is a price per label. Error
cost (a miss, a false block) is what the configuration says such an error costs the business.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, insert
from sqlalchemy.orm import Session

from cascade import metrics
from cascade.config import Settings
from cascade.db.schema import BatchRecord, CostLedger, utcnow
from cascade.rollup import add_cost, add_to_rows

BUCKETS = ("stage1", "stage2", "human", "error")
_BATCH_ROW = insert(cast(Table, BatchRecord.__table__))


def compute_dollars(device_seconds: float, price_per_hour: float) -> float:
    """Dollars for ``device_seconds`` of a device billed at ``price_per_hour``."""
    if device_seconds < 0 or price_per_hour < 0:
        raise ValueError("device seconds and prices cannot be negative")
    return device_seconds * price_per_hour / 3600.0


def error_dollars(kind: str, settings: Settings) -> float:
    """What one automatic error costs: a miss (harm let through) or a false block."""
    if kind == "miss":
        return settings.miss_cost
    if kind == "false_block":
        return settings.false_block_cost
    raise ValueError(f"unknown error kind {kind!r}; expected 'miss' or 'false_block'")


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def add_to_ledger(
    session: Session,
    *,
    bucket: str,
    at: datetime,
    images: int = 0,
    device_seconds: float = 0.0,
    dollars: float = 0.0,
) -> None:
    """Add to the ledger row of (minute of ``at``, ``bucket``), creating it if needed, and to
    its roll-up cells (``cascade.rollup``) in the same transaction.

    Upsert statements, so concurrent workers add rather than overwrite.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"unknown ledger bucket {bucket!r}; expected one of {BUCKETS}")
    values = {
        "minute": minute_of(at),
        "bucket": bucket,
        "images": images,
        "device_seconds": device_seconds,
        "dollars": dollars,
    }
    add_to_rows(session, CostLedger, keys=["minute", "bucket"],
                added=["images", "device_seconds", "dollars"], rows=[values])  # fmt: skip
    add_cost(
        session, bucket=bucket, at=at, images=images, device_seconds=device_seconds,
        dollars=dollars,
    )  # fmt: skip


def record_batch(
    session: Session,
    *,
    stage: str,
    size: int,
    device_seconds: float,
    settings: Settings,
    decode_seconds: float = 0.0,
    worker: str = "",
    at: datetime | None = None,
) -> float:
    """Record one stage batch (its row and its ledger minute); returns its dollars."""
    device = settings.billed_as(stage)
    dollars = compute_dollars(device_seconds, settings.stage_price_per_hour(stage))
    at = at or utcnow()
    row = {"stage": stage, "device": device, "size": size, "device_seconds": device_seconds,
           "decode_seconds": decode_seconds, "worker": worker, "created_at": at}  # fmt: skip
    session.execute(_BATCH_ROW, row)  # not through the unit of work: 7 % of a batch's CPU
    add_to_ledger(
        session, bucket=stage, at=at, images=size, device_seconds=device_seconds, dollars=dollars
    )
    return dollars


def record_human(
    session: Session, *, labels: int, settings: Settings, at: datetime | None = None
) -> float:
    """Record ``labels`` human labels; returns their dollars."""
    dollars = labels * settings.human_review_cost
    add_to_ledger(session, bucket="human", at=at or utcnow(), images=labels, dollars=dollars)
    _count_dollars("human", dollars)
    return dollars


def record_error(
    session: Session, *, kind: str, settings: Settings, at: datetime | None = None
) -> float:
    """Record one discovered automatic error; returns its dollars."""
    dollars = error_dollars(kind, settings)
    add_to_ledger(session, bucket="error", at=at or utcnow(), images=1, dollars=dollars)
    _count_dollars("error", dollars)
    return dollars


def ledger_totals(session: Session, since: datetime | None = None) -> dict[str, float]:
    """Dollars per bucket since ``since`` (all time if None)."""
    q = session.query(CostLedger.bucket, func.sum(CostLedger.dollars))
    if since is not None:
        q = q.filter(CostLedger.minute >= minute_of(since))
    return {bucket: float(total or 0.0) for bucket, total in q.group_by(CostLedger.bucket)}


def _count_dollars(bucket: str, dollars: float) -> None:
    """Human and error dollars also go to Prometheus (``cascade_dollars_total{bucket}``), so
    Grafana's cost per image has all its parts. Stage dollars are counted by the stage
    workers next to their other batch metrics. Counters only go up: an undone label
    (negative dollars) and a rolled-back transaction stay counted — the ledger, not
    Prometheus, is the record."""
    if dollars <= 0:
        return
    metrics.DOLLARS.labels(bucket=bucket).inc(dollars)
