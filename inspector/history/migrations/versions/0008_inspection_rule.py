"""Inspections keep the whole rule their verdict used: pixel threshold and minimum defect area.

``threshold`` (the image threshold) was the only part of the rule a row kept, so review could
not outline a defect where the pixel rule saw one. ``rule_recorded`` tells a row whose rule had no
pixel part (both columns NULL, True) from one written before this revision, whose pixel rule is
unknown (False): review then falls back to its model version's calibration with the same
threshold, or draws no contour, and says which.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable first, filled, then NOT NULL: no server default stays behind in the schema (new
    # rows always say whether they carry the rule). Batch mode: SQLite.
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.add_column(sa.Column("pixel_threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("min_defect_area_px", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rule_recorded", sa.Boolean(), nullable=True))
    inspections = sa.table("inspections", sa.column("rule_recorded", sa.Boolean()))
    op.execute(inspections.update().values(rule_recorded=False))
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.alter_column("rule_recorded", existing_type=sa.Boolean(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.drop_column("rule_recorded")
        batch_op.drop_column("min_defect_area_px")
        batch_op.drop_column("pixel_threshold")
