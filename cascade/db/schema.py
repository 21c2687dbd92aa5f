"""The SQL schema. Migrations under ``cascade/db/migrations`` are generated from it.

State machine of a submission::

    queued → stage1 → stage2 → review → decided
       └──────┴─────────┴────────┴──────→ error

``decided`` is final; an audit-sampled image may be decided automatically and still hold an
open review item whose label is recorded against that decision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cascade.phash import bands_of


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class State(StrEnum):
    """Where a submission is. Stage 1 runs straight from ``queued``; ``stage2`` means handed
    on to the second stage."""

    QUEUED = "queued"
    STAGE2 = "stage2"
    REVIEW = "review"
    DECIDED = "decided"
    ERROR = "error"


# Not decided yet, and no human has it: the machines still owe these an answer.
PENDING_STATES = (State.QUEUED, State.STAGE2)
# Nothing more happens without a human (review) or ever (decided, error).
FINAL_STATES = (State.DECIDED, State.REVIEW, State.ERROR)


class ReviewReason(StrEnum):
    ESCALATION = "escalation"
    AUDIT = "audit"
    OOD = "ood"  # unlike anything the stage model was trained on (models/ood.py): a human decides


class ReviewState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    CONFLICT = "conflict"  # two moderators disagreed: an admin decides


class Role(StrEnum):
    MODERATOR = "moderator"
    ADMIN = "admin"
    OPS = "ops"


class ThresholdStatus(StrEnum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An upload service's credential. Only a hash of the key is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship()


def _band(i: int) -> Any:
    """The default of band column ``i``: that band of the row's ``phash``, so no insert path
    can leave the near-duplicate index out of step with the hash."""

    def default(context: Any) -> int:
        return bands_of(context.get_current_parameters()["phash"])[i]

    return default


class Image(Base):
    """Image bytes live in the blob store under ``blob_key`` (the original) and under
    ``BlobStore.derivative_key_for(sha256)`` (the pixels the stages read); this row is their
    index."""

    __tablename__ = "images"
    # One index per band, holding the hash and the key too: a near-duplicate look-up reads the
    # matching run of each index and never the table (cascade/neardup.py; migration 0006).
    __table_args__ = tuple(
        Index(f"ix_images_phash_b{i}", f"phash_b{i}", "phash", "sha256") for i in range(4)
    )

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    phash: Mapped[int] = mapped_column(BigInteger)
    # ``phash`` in four 16-bit bands, each indexed: the near-duplicate index (multi-index
    # hashing, cascade/neardup.py).
    phash_b0: Mapped[int] = mapped_column(Integer, default=_band(0))
    phash_b1: Mapped[int] = mapped_column(Integer, default=_band(1))
    phash_b2: Mapped[int] = mapped_column(Integer, default=_band(2))
    phash_b3: Mapped[int] = mapped_column(Integer, default=_band(3))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    blob_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# A decision the roll-ups do not yet count as it is (the partial index's predicate, per dialect;
# ``cascade.rollup.unrolled()`` renders the same expression, so the planners match them).
UNROLLED_SQLITE = "decided_at IS NOT rolled_decided_at OR decided_by IS NOT rolled_decided_by"
UNROLLED_POSTGRESQL = (
    "decided_at IS DISTINCT FROM rolled_decided_at OR decided_by IS DISTINCT FROM rolled_decided_by"
)
CALLBACK_DUE = "callback_url IS NOT NULL AND callback_sent_at IS NULL"


class Submission(Base):
    """One request to moderate one image, and everything the cascade did with it."""

    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_submission_idempotency"),
        Index("ix_submissions_state_created", "state", "created_at"),
        # Covers the dashboard's windowed counts (decider shares, audit rate) and latency
        # samples, so they read the index only, never the table (cascade/stats.py).
        Index("ix_submissions_decided_cover", "decided_at", "decided_by", "audit", "created_at"),
        # Decisions the roll-ups do not count as they are now (cascade/rollup.py): small, so the
        # dashboard's correction for them and the roll-up sweep read only these.
        Index(
            "ix_submissions_unrolled",
            "decided_at",
            "decided_by",
            "rolled_decided_at",
            "rolled_decided_by",
            "audit",
            "created_at",
            "id",
            sqlite_where=text(UNROLLED_SQLITE),
            postgresql_where=text(UNROLLED_POSTGRESQL),
        ),
        # The audit sample the retune loads (feedback/store.py): a range of created_at over the
        # audited rows only, with the columns it reads.
        Index(
            "ix_submissions_audit_sample",
            "created_at",
            "id",
            "s1",
            "s2",
            "audit_p",
            sqlite_where=text("audit IS 1"),
            postgresql_where=text("audit IS true"),
        ),
        # Decisions whose callback is still owed (beat's sweep, cascade/maintenance.py): only
        # those rows, not every decision ever made.
        Index(
            "ix_submissions_callback_due",
            "decided_at",
            sqlite_where=text(CALLBACK_DUE),
            postgresql_where=text(CALLBACK_DUE),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    callback_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=State.QUEUED)
    s1: Mapped[float | None] = mapped_column(Float, nullable=True)
    s2: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    route: Mapped[str | None] = mapped_column(String(16), nullable=True)  # policy.Route
    decision: Mapped[str | None] = mapped_column(String(8), nullable=True)  # policy.Outcome
    decided_by: Mapped[str | None] = mapped_column(String(8), nullable=True)  # policy.Decider
    # The automatic decision before any human correction (audit findings compare against it).
    auto_decision: Mapped[str | None] = mapped_column(String(8), nullable=True)
    audit: Mapped[bool] = mapped_column(Boolean, default=False)
    audit_p: Mapped[float] = mapped_column(Float, default=0.0)  # P(sampled for audit)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stage1_at: Mapped[datetime | None] = mapped_column(nullable=True)
    stage2_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    callback_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What the roll-ups count for this submission (cascade/rollup.py): equal to decided_at /
    # decided_by once rolled up; a decision made or corrected since differs until applied.
    rolled_decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    rolled_decided_by: Mapped[str | None] = mapped_column(String(8), nullable=True)

    image: Mapped[Image] = relationship()


class User(Base):
    """A person using the web UI: moderator, admin or ops (read-only)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=Role.MODERATOR)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The review queue's order and the lease columns, so that a claim reads one index only.
QUEUE_ORDER_AND_LEASE = ("priority", "created_at", "id", "lease_owner", "lease_expires_at")


class ReviewItem(Base):
    """A submission waiting for human labels, with a lease so two moderators never collide."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("submission_id", name="uq_review_submission"),
        # The queue (cascade/review.py): next items in order, with the lease columns, so a
        # claim reads this index only, however many items wait.
        Index("ix_review_queue", "state", *QUEUE_ORDER_AND_LEASE),
        # The same order within one reason (an audit's turn) and the backlog counts by reason.
        Index("ix_review_queue_reason", "state", "reason", *QUEUE_ORDER_AND_LEASE),
        # The item a moderator already holds.
        Index("ix_review_lease_owner", "lease_owner", "state", "lease_expires_at"),
        # "Has this submission its final label?" from the index alone (the audit sample and
        # its complete window, feedback/store.py).
        Index("ix_review_submission_label", "submission_id", "state", "final_label"),
        # The oldest waiting item of a state: one seek (the dashboard's review age).
        Index("ix_review_waiting_since", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"))
    reason: Mapped[str] = mapped_column(String(16))  # ReviewReason
    state: Mapped[str] = mapped_column(String(16), default=ReviewState.PENDING)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # lower comes first
    labels_required: Mapped[int] = mapped_column(Integer, default=1)
    lease_owner: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    final_label: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)

    submission: Mapped[Submission] = relationship()


class Label(Base):
    """One moderator's label on one review item."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("review_item_id", "user_id", name="uq_label_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(8))  # allow / block / skip
    category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds_spent: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ThresholdSetRow(Base):
    """A versioned threshold set with its provenance and what the optimiser expected of it."""

    __tablename__ = "threshold_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    t1_lo: Mapped[float] = mapped_column(Float)
    t1_hi: Mapped[float] = mapped_column(Float)
    t2_lo: Mapped[float] = mapped_column(Float)
    t2_hi: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=ThresholdStatus.PROPOSED, index=True)
    created_by: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text, default="")
    expected_cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    miss_rate_bound: Mapped[float | None] = mapped_column(Float, nullable=True)
    alpha: Mapped[float | None] = mapped_column(Float, nullable=True)
    delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    activated_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(nullable=True)


class LabelledError(Base):
    """An error of the automatic cascade found after the fact (audit finding, appeal, report)."""

    __tablename__ = "labelled_errors"
    __table_args__ = (UniqueConstraint("submission_id", "source", name="uq_error_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # miss / false_block
    source: Mapped[str] = mapped_column(String(16))  # audit / appeal / report / review
    threshold_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CostLedger(Base):
    """Pre-aggregated cost per minute and bucket, so dashboards never scan submissions.

    ``bucket`` is a stage (``stage1``, ``stage2``), ``human`` or ``error``.
    """

    __tablename__ = "cost_ledger"
    __table_args__ = (UniqueConstraint("minute", "bucket", name="uq_ledger_minute_bucket"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    minute: Mapped[datetime] = mapped_column(index=True)
    bucket: Mapped[str] = mapped_column(String(16))
    images: Mapped[int] = mapped_column(Integer, default=0)
    device_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    dollars: Mapped[float] = mapped_column(Float, default=0.0)


class BatchRecord(Base):
    """One stage batch as a worker ran it: its size, device time and which worker ran it."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(8))
    device: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    device_seconds: Mapped[float] = mapped_column(Float)
    decode_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    worker: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DecisionRollup(Base):
    """Decided images per time cell (``grain_s`` seconds from ``start_s``, epoch seconds, UTC),
    decider and audit flag. Maintained by ``cascade.rollup``; never recomputed from raw rows."""

    __tablename__ = "decision_rollup"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 (SQLAlchemy reads it once)

    grain_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    decider: Mapped[str] = mapped_column(String(8), primary_key=True)
    audit: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    decided: Mapped[int] = mapped_column(BigInteger, default=0)


class LatencyRollup(Base):
    """Upload-to-decision latencies per time cell as a log-bucket sketch (``cascade.sketch``):
    ``n`` decisions of the cell fell in ``bucket``."""

    __tablename__ = "latency_rollup"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 (SQLAlchemy reads it once)

    grain_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class CostRollup(Base):
    """The cost ledger summed per time cell and bucket, added to in the same statement batch
    as the ledger's minute (``cascade.cost.add_to_ledger``)."""

    __tablename__ = "cost_rollup"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 (SQLAlchemy reads it once)

    grain_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(16), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger, default=0)
    device_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    dollars: Mapped[float] = mapped_column(Float, default=0.0)


class ReviewBacklog(Base):
    """Review items per (state, reason) as a log of +1/-1 changes, written by database triggers
    on ``review_items`` (migration 0005) whatever code writes the items, and folded into one
    row per key by beat (``cascade.backlog.compact``): counting a million waiting items is then
    a sum over a few rows, and appending never waits on another transaction."""

    __tablename__ = "review_backlog"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    delta: Mapped[int] = mapped_column(BigInteger)
