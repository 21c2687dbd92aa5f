"""review items counted by triggers, the oldest waiting item by an index (issue 14)

Counting a million waiting review items reads a million index entries on every dashboard
refresh. Instead, triggers on ``review_items`` append +1/-1 rows to ``review_backlog`` per
(state, reason) — any insert, state or reason change, or delete, whatever code (ORM, bulk
insert, COPY, raw SQL) made it — and beat folds them (``cascade.backlog``). Appends never wait
on another transaction (no shared counter row). Seeded from the items already there.

Revision ID: 0005_review_backlog
Revises: 0004_callback_due
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_review_backlog"
down_revision: str | None = "0004_callback_due"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG = "INSERT INTO review_backlog (state, reason, delta) VALUES"

SQLITE = [
    f"""CREATE TRIGGER review_backlog_insert AFTER INSERT ON review_items
    BEGIN {LOG} (NEW.state, NEW.reason, 1); END""",
    f"""CREATE TRIGGER review_backlog_update AFTER UPDATE OF state, reason ON review_items
    WHEN OLD.state IS NOT NEW.state OR OLD.reason IS NOT NEW.reason
    BEGIN {LOG} (OLD.state, OLD.reason, -1), (NEW.state, NEW.reason, 1); END""",
    f"""CREATE TRIGGER review_backlog_delete AFTER DELETE ON review_items
    BEGIN {LOG} (OLD.state, OLD.reason, -1); END""",
]
POSTGRESQL = [
    f"""CREATE FUNCTION review_backlog_log() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN {LOG} (OLD.state, OLD.reason, -1); END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN {LOG} (NEW.state, NEW.reason, 1); END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER review_backlog_insert_delete AFTER INSERT OR DELETE ON review_items
    FOR EACH ROW EXECUTE FUNCTION review_backlog_log()""",
    """CREATE TRIGGER review_backlog_update AFTER UPDATE OF state, reason ON review_items
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.reason IS DISTINCT FROM
    NEW.reason) EXECUTE FUNCTION review_backlog_log()""",
]


def upgrade() -> None:
    op.create_index("ix_review_waiting_since", "review_items", ["state", "created_at"])
    op.create_table(
        "review_backlog",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    op.execute(
        f"{LOG.removesuffix(' VALUES')} SELECT state, reason, count(*) FROM review_items"
        " GROUP BY state, reason"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER review_backlog_update ON review_items")
        op.execute("DROP TRIGGER review_backlog_insert_delete ON review_items")
        op.execute("DROP FUNCTION review_backlog_log()")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER review_backlog_{name}")
    op.drop_table("review_backlog")
    op.drop_index("ix_review_waiting_since", table_name="review_items")
