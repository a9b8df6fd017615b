"""Inspections keep the value range of their stored heatmap (NULL for a legacy colour heatmap).

From this revision on the image store writes the anomaly map as a 16-bit grey PNG whose 0 and
65535 stand for ``heatmap_low`` and ``heatmap_high``. Rows written before it keep NULL: their
heatmap is a JET colour picture over 0 .. 2 x threshold, which the review page still decodes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, so existing rows (legacy colour heatmaps, or none) need no value. Batch mode: SQLite.
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.add_column(sa.Column("heatmap_low", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("heatmap_high", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.drop_column("heatmap_high")
        batch_op.drop_column("heatmap_low")
