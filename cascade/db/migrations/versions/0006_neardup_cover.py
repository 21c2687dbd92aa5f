"""the near-duplicate band indexes hold the hash and the key (issue 14)

At ten million images a look-up's ~600 candidates were ~600 random reads of the table (50-120
ms when they are not cached). With ``phash`` and ``sha256`` in each band's index, one look-up
reads four short runs of index entries (cascade/neardup.py asks one band at a time so that each
read is index-only).

Revision ID: 0006_neardup_cover
Revises: 0005_review_backlog
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_neardup_cover"
down_revision: str | None = "0005_review_backlog"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BANDS = [f"phash_b{i}" for i in range(4)]


def upgrade() -> None:
    for band in BANDS:
        op.drop_index(f"ix_images_{band}", table_name="images")
        op.create_index(f"ix_images_{band}", "images", [band, "phash", "sha256"])


def downgrade() -> None:
    for band in BANDS:
        op.drop_index(f"ix_images_{band}", table_name="images")
        op.create_index(f"ix_images_{band}", "images", [band])
