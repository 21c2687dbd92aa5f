"""the near-duplicate index: the perceptual hash in four indexed 16-bit bands (issue 13)

``images.phash_b0`` … ``phash_b3`` hold the 64-bit ``phash`` cut into bands, most significant
first (``cascade.phash.bands_of``; multi-index hashing, ``cascade/neardup.py``). Existing rows
are filled from their hash in SQL: an arithmetic shift and a mask give the same bits on SQLite
and PostgreSQL whatever the sign of the stored BIGINT. The single index on ``phash`` goes: no
query reads it (the near-duplicate scan it was meant for is replaced by the bands).

Revision ID: 0003_phash_bands
Revises: 0002_rollups
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_phash_bands"
down_revision: str | None = "0002_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BANDS = [(f"phash_b{i}", 16 * (3 - i)) for i in range(4)]  # (column, shift)


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        for name, _ in BANDS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
    op.execute(
        "UPDATE images SET "
        + ", ".join(f"{name} = (phash >> {shift}) & 65535" for name, shift in BANDS)
    )
    with op.batch_alter_table("images") as batch:
        for name, _ in BANDS:
            batch.alter_column(name, existing_type=sa.Integer(), nullable=False)
        batch.drop_index("ix_images_phash")
        for name, _ in BANDS:
            batch.create_index(f"ix_images_{name}", [name], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        for name, _ in BANDS:
            batch.drop_index(f"ix_images_{name}")
        batch.create_index("ix_images_phash", ["phash"], unique=False)
        for name, _ in reversed(BANDS):
            batch.drop_column(name)
