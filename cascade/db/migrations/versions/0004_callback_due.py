"""the callbacks still owed, indexed on their own (issue 14)

Beat's stale sweep asks every minute for decisions whose callback was never delivered; without
an index of its own that walks every decision ever made. The partial index holds only the rows
whose callback is owed.

Revision ID: 0004_callback_due
Revises: 0003_phash_bands
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_callback_due"
down_revision: str | None = "0003_phash_bands"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLBACK_DUE = "callback_url IS NOT NULL AND callback_sent_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_submissions_callback_due",
        "submissions",
        ["decided_at"],
        sqlite_where=sa.text(CALLBACK_DUE),
        postgresql_where=sa.text(CALLBACK_DUE),
    )


def downgrade() -> None:
    op.drop_index("ix_submissions_callback_due", table_name="submissions")
