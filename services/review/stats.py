"""Read-only figures for the review pages: queue counts, moderator agreement, personal stats."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cascade.backlog import counts as counts_by_state
from cascade.db.schema import Label, ReviewItem, ReviewState, User
from cascade.review import cohens_kappa


@dataclass(frozen=True)
class LabelPair:
    """The first two labels by different moderators on one double-labelled item."""

    item_id: int
    user_a: int
    label_a: str
    user_b: int
    label_b: str


def queue_counts(db: Session, now: datetime) -> dict[str, int]:
    """Waiting items by reason, leased now, conflicts.

    Counts by state and reason come from the trigger-kept backlog (``cascade.backlog``), not
    from counting the items; leased ones are counted among the few items that have a lease
    owner (``ix_review_lease_owner``), not among every waiting item."""
    backlog = counts_by_state(db)
    counts = {"escalation": 0, "audit": 0}
    for (state, reason), n in backlog.items():
        if state == ReviewState.PENDING:
            counts[str(reason)] = counts.get(str(reason), 0) + n
    counts["leased"] = int(
        db.scalar(
            select(func.count()).where(
                ReviewItem.lease_owner.is_not(None),
                ReviewItem.state == ReviewState.PENDING,
                ReviewItem.lease_expires_at > now,
            )
        )
        or 0
    )
    counts["conflict"] = sum(
        n for (state, _), n in backlog.items() if state == ReviewState.CONFLICT
    )
    return counts


def label_pairs(db: Session, since: datetime | None = None) -> list[LabelPair]:
    """Pairs of labels on double-labelled items (an admin's later ruling is not a pair)."""
    q = (
        select(Label.review_item_id, Label.user_id, Label.label)
        .join(ReviewItem, ReviewItem.id == Label.review_item_id)
        .where(ReviewItem.labels_required >= 2, Label.label != "skip")
        .order_by(Label.review_item_id, Label.created_at, Label.id)
    )
    if since is not None:
        q = q.where(Label.created_at >= since)
    by_item: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for item_id, user_id, label in db.execute(q):
        votes = by_item[item_id]
        if len(votes) < 2 and all(u != user_id for u, _ in votes):
            votes.append((user_id, label))
    return [
        LabelPair(item_id, v[0][0], v[0][1], v[1][0], v[1][1])
        for item_id, v in by_item.items()
        if len(v) == 2
    ]


@dataclass(frozen=True)
class PairAgreement:
    user_a: str
    user_b: str
    n: int
    agreement: float
    kappa: float | None


def agreement_table(db: Session, pairs: list[LabelPair]) -> list[PairAgreement]:
    """Kappa per pair of moderators (whoever labelled first is rater A of that item)."""
    names = {uid: name for uid, name in db.execute(select(User.id, User.username))}
    grouped: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for p in pairs:
        key = (min(p.user_a, p.user_b), max(p.user_a, p.user_b))
        a, b = (p.label_a, p.label_b) if p.user_a == key[0] else (p.label_b, p.label_a)
        grouped[key].append((a, b))
    return [
        PairAgreement(
            names.get(ua, str(ua)),
            names.get(ub, str(ub)),
            len(labels),
            sum(a == b for a, b in labels) / len(labels),
            cohens_kappa(labels),
        )
        for (ua, ub), labels in sorted(grouped.items())
    ]


@dataclass(frozen=True)
class ModeratorStats:
    labels: int
    skips: int
    items_per_hour: float | None
    median_seconds: float | None
    agreement_rate: float | None
    agreement_n: int


def moderator_stats(db: Session, user_id: int, now: datetime, days: int = 7) -> ModeratorStats:
    """One moderator's last ``days``: labels, pace (labels per hour of labelling time, from the
    seconds the page measured per item) and how often a second moderator agreed with them."""
    since = now - timedelta(days=days)
    rows = db.execute(
        select(Label.label, Label.seconds_spent).where(
            Label.user_id == user_id, Label.created_at >= since
        )
    ).all()
    labels = sum(1 for label, _ in rows if label != "skip")
    seconds = [float(s) for _, s in rows if s is not None and s > 0]
    per_hour = len(seconds) * 3600.0 / sum(seconds) if seconds else None
    mine = [p for p in label_pairs(db, since) if user_id in (p.user_a, p.user_b)]
    agreed = sum(p.label_a == p.label_b for p in mine)
    return ModeratorStats(
        labels=labels,
        skips=len(rows) - labels,
        items_per_hour=per_hour,
        median_seconds=median(seconds) if seconds else None,
        agreement_rate=agreed / len(mine) if mine else None,
        agreement_n=len(mine),
    )
