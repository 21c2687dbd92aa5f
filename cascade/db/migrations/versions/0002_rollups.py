"""roll-ups of decisions, latencies and costs; queue and audit-sample indexes (issue 14)

The roll-up tables start empty and every decided submission starts unrolled; the upgrade then
rolls up what is already there (``cascade.rollup.catch_up`` until nothing is left), so the
dashboard reads roll-ups from the first request. Costs are rolled up from the minute ledger.

Revision ID: 0002_rollups
Revises: 0001_initial
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_rollups"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNROLLED_SQLITE = "decided_at IS NOT rolled_decided_at OR decided_by IS NOT rolled_decided_by"
UNROLLED_POSTGRESQL = (
    "decided_at IS DISTINCT FROM rolled_decided_at OR decided_by IS DISTINCT FROM rolled_decided_by"
)
QUEUE = ["priority", "created_at", "id", "lease_owner", "lease_expires_at"]


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("rolled_decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rolled_decided_by", sa.String(length=8), nullable=True))
    op.create_index(
        "ix_submissions_unrolled",
        "submissions",
        [
            "decided_at",
            "decided_by",
            "rolled_decided_at",
            "rolled_decided_by",
            "audit",
            "created_at",
            "id",
        ],
        sqlite_where=sa.text(UNROLLED_SQLITE),
        postgresql_where=sa.text(UNROLLED_POSTGRESQL),
    )
    op.create_index(
        "ix_submissions_audit_sample",
        "submissions",
        ["created_at", "id", "s1", "s2", "audit_p"],
        sqlite_where=sa.text("audit IS 1"),
        postgresql_where=sa.text("audit IS true"),
    )
    op.drop_index("ix_review_state_priority", table_name="review_items")
    op.create_index("ix_review_queue", "review_items", ["state", *QUEUE])
    op.create_index("ix_review_queue_reason", "review_items", ["state", "reason", *QUEUE])
    op.create_index(
        "ix_review_lease_owner", "review_items", ["lease_owner", "state", "lease_expires_at"]
    )
    op.create_index(
        "ix_review_submission_label", "review_items", ["submission_id", "state", "final_label"]
    )
    _create_rollup_tables()
    _roll_up_existing()


def _cell() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("grain_s", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
    ]


def _create_rollup_tables() -> None:
    op.create_table(
        "decision_rollup",
        *_cell(),
        sa.Column("decider", sa.String(length=8), nullable=False),
        sa.Column("audit", sa.Boolean(), nullable=False),
        sa.Column("decided", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain_s", "start_s", "decider", "audit"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "latency_rollup",
        *_cell(),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain_s", "start_s", "bucket"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "cost_rollup",
        *_cell(),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.Column("device_seconds", sa.Float(), nullable=False),
        sa.Column("dollars", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("grain_s", "start_s", "bucket"),
        sqlite_with_rowid=False,
    )


def _roll_up_existing() -> None:
    """Existing decisions and ledger minutes into the new tables (nothing to do on a new DB)."""
    from sqlalchemy.orm import Session

    from cascade import rollup

    with Session(bind=op.get_bind()) as session:
        rollup.rebuild_costs(session)
        while rollup.catch_up(session, limit=50_000):
            pass
        session.flush()


def downgrade() -> None:
    op.drop_table("cost_rollup")
    op.drop_table("latency_rollup")
    op.drop_table("decision_rollup")
    op.drop_index("ix_review_submission_label", table_name="review_items")
    op.drop_index("ix_review_lease_owner", table_name="review_items")
    op.drop_index("ix_review_queue_reason", table_name="review_items")
    op.drop_index("ix_review_queue", table_name="review_items")
    op.create_index("ix_review_state_priority", "review_items", ["state", "priority", "created_at"])
    op.drop_index("ix_submissions_audit_sample", table_name="submissions")
    op.drop_index("ix_submissions_unrolled", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("rolled_decided_by")
        batch.drop_column("rolled_decided_at")
