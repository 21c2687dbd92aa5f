"""Retention: raw submissions and their images go after N days; what carries knowledge stays.

The policy (docs/retention.md has it for operators):

- **Pruned** after ``days`` (default ``DEFAULT_DAYS``): decided or failed submissions that carry
  nothing but their own outcome — not audit-sampled, no review item, no labelled error — with
  their image rows and blobs once no kept submission uses the image; the minute cost ledger and
  the 5-minute roll-up cells (only views of a day or less read them).
- **Kept**: hourly and daily roll-ups (decisions, latencies, costs), audit-sampled submissions,
  everything a human labelled (review items, labels and their submissions), labelled errors,
  threshold sets, batch records.

The roll-ups do not change: every pruned row is rolled up as it is (``cascade.rollup.apply``)
in the transaction that deletes it, so hourly and daily figures over pruned time stay what they
were. Rows can be archived (``archive``: gzip JSON lines) before they are deleted. Blobs are
deleted after the commit: a failure leaves an unused blob behind, never a row without its blob.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from cascade import rollup
from cascade.blobs import BlobStore
from cascade.db.schema import (
    CostLedger,
    CostRollup,
    DecisionRollup,
    Image,
    Label,
    LabelledError,
    LatencyRollup,
    ReviewItem,
    State,
    Submission,
    utcnow,
)
from cascade.db.session import session_scope

DEFAULT_DAYS = 30
# The score-drift check compares the last day with the week before (feedback/score_alerts.py).
MIN_DAYS = 8
PRUNED_STATES = (State.DECIDED, State.ERROR)


@dataclass
class PruneReport:
    """What one prune removed (or, on a dry run, would remove)."""

    cutoff: datetime
    submissions: int = 0
    images: int = 0
    blobs: int = 0
    ledger_minutes: int = 0
    fine_cells: int = 0
    archive: Path | None = None
    blob_errors: list[str] = field(default_factory=list)


def cutoff_for(days: int, now: datetime | None = None) -> datetime:
    """The creation time before which raw rows go; refuses less than ``MIN_DAYS``."""
    if days < MIN_DAYS:
        raise ValueError(
            f"retention must be at least {MIN_DAYS} days (the drift check reads 8 days back)"
        )
    return (now or utcnow()) - timedelta(days=days)


def prunable(cutoff: datetime) -> Any:
    """Submissions the policy lets go: final, older than ``cutoff``, carrying no knowledge."""
    return select(Submission).where(
        Submission.state.in_(PRUNED_STATES),
        Submission.created_at < cutoff,
        Submission.audit.is_(False),
        ~exists().where(ReviewItem.submission_id == Submission.id),
        ~exists().where(LabelledError.submission_id == Submission.id),
        ~exists().where(Label.submission_id == Submission.id),
    )


def count_prunable(session: Session, cutoff: datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(prunable(cutoff).subquery())) or 0)


def prune(
    sessions: sessionmaker[Session],
    *,
    cutoff: datetime,
    delete_blob: Callable[[str], bool] | None = None,
    archive: Path | None = None,
    chunk: int = 5_000,
) -> PruneReport:
    """Prune by the policy in chunks of ``chunk`` submissions, one transaction each.

    ``delete_blob`` removes one blob by key and says whether it was there
    (``BlobStore.delete``); None keeps the blobs."""
    report = PruneReport(cutoff=cutoff)
    with _archive(archive, report) as out:
        while True:
            with session_scope(sessions) as session:
                subs = list(session.scalars(prunable(cutoff).limit(chunk)))
                if not subs:
                    break
                blob_keys = _prune_chunk(session, subs, cutoff, out, report)
            for key in blob_keys:
                _delete_blob(delete_blob, key, report)
    with session_scope(sessions) as session:
        report.ledger_minutes = _delete_count(
            session, delete(CostLedger).where(CostLedger.minute < cutoff)
        )
        report.fine_cells = _prune_fine_cells(session, cutoff)
    return report


def _prune_chunk(
    session: Session,
    subs: list[Submission],
    cutoff: datetime,
    out: IO[str] | None,
    report: PruneReport,
) -> list[str]:
    """Roll up, archive and delete one chunk; returns the blob keys (original and derivative)
    of the images no kept submission uses any more."""
    ids = [s.id for s in subs]
    rollup.apply(session, ids)
    if out is not None:
        for sub in subs:
            out.write(json.dumps(_as_record(sub)) + "\n")
    shas = sorted({s.image_sha256 for s in subs})
    session.expunge_all()
    report.submissions += _delete_count(session, delete(Submission).where(Submission.id.in_(ids)))
    unused = select(Image.sha256, Image.blob_key).where(
        Image.sha256.in_(shas),
        Image.created_at < cutoff,
        ~exists().where(Submission.image_sha256 == Image.sha256),
    )
    images = session.execute(unused).all()
    if images:
        gone = [sha for sha, _ in images]
        report.images += _delete_count(session, delete(Image).where(Image.sha256.in_(gone)))
    return [k for sha, key in images for k in (key, BlobStore.derivative_key_for(sha))]


def _prune_fine_cells(session: Session, cutoff: datetime) -> int:
    before = int(cutoff.timestamp())
    n = 0
    for table in (DecisionRollup, LatencyRollup):
        n += _delete_count(
            session,
            delete(table).where(table.grain_s == rollup.FINEST, table.start_s < before),
        )
    n += _delete_count(
        session,
        delete(CostRollup).where(CostRollup.grain_s == rollup.FINEST, CostRollup.start_s < before),
    )
    return n


def _delete_count(session: Session, stmt: Any) -> int:
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def _delete_blob(delete_blob: Callable[[str], bool] | None, key: str, report: PruneReport) -> None:
    if delete_blob is None:
        return
    try:
        if delete_blob(key):
            report.blobs += 1
    except Exception as exc:  # an unused blob left behind is harmless; say so and go on
        report.blob_errors.append(f"{key}: {exc}")


def _as_record(sub: Submission) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column in Submission.__table__.columns:
        value = getattr(sub, column.key)
        record[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return record


@contextmanager
def _archive(folder: Path | None, report: PruneReport) -> Iterator[IO[str] | None]:
    """A gzip JSON-lines file under ``folder`` for this run's rows (or nothing)."""
    if folder is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    report.archive = folder / f"submissions-{utcnow():%Y%m%dT%H%M%S}.jsonl.gz"
    with gzip.open(report.archive, "wt", encoding="utf-8") as out:
        yield out
