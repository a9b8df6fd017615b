"""Two new decisions, RECHECK and NO_PART; the rule's recheck band and pixel size; the defect's size
and the framing's match quality kept with the row.

``inspections.decision`` widens from 4 to 8 characters (``NO_PART``) and its CHECK constraint
``ck_inspections_decision`` is made again with the four values. Inspections gain nullable
``recheck_threshold`` and ``mm_per_px`` (the rest of the rule), ``defect_area_px`` (the largest
region the pixel rule measured) and ``match_quality`` (how well the part was found); old rows keep
NULL there: no recheck band, no pixel size, size and quality not recorded. Calibrations gain
``recheck_threshold``, ``target_recheck_rate``, ``expected_recheck_rate`` and ``mm_per_px``.

Batch mode on SQLite (the table is copied); plain ALTERs on PostgreSQL (a plant database runs the
same revisions). Going back refuses while RECHECK or NO_PART rows exist: they have no place in
the older schema, and turning them into another verdict would rewrite what the line decided.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As this revision knows them, so later changes to the models cannot change it.
_DECISIONS = ("PASS", "FAIL", "RECHECK", "NO_PART")
_OLD_DECISIONS = ("PASS", "FAIL")


def _one_of(values: tuple[str, ...]) -> str:
    return f"decision IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.drop_constraint(op.f("ck_inspections_decision"), type_="check")
        batch_op.alter_column("decision", existing_type=sa.String(length=4), type_=sa.String(length=8),
                              existing_nullable=False)
        batch_op.create_check_constraint("decision", _one_of(_DECISIONS))
        batch_op.add_column(sa.Column("recheck_threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("mm_per_px", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("defect_area_px", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("match_quality", sa.Float(), nullable=True))
    with op.batch_alter_table("calibrations") as batch_op:
        batch_op.add_column(sa.Column("recheck_threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("target_recheck_rate", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("expected_recheck_rate", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("mm_per_px", sa.Float(), nullable=True))


def downgrade() -> None:
    inspections = sa.table("inspections", sa.column("decision", sa.String()))
    newer = op.get_bind().scalar(sa.select(sa.func.count()).select_from(inspections)
                                 .where(inspections.c.decision.not_in(_OLD_DECISIONS)))
    if newer:
        raise RuntimeError(f"{newer} inspection(s) are RECHECK or NO PART, which the history before revision 0010 "
                           "cannot hold: export them and keep this version")
    with op.batch_alter_table("calibrations") as batch_op:
        batch_op.drop_column("mm_per_px")
        batch_op.drop_column("expected_recheck_rate")
        batch_op.drop_column("target_recheck_rate")
        batch_op.drop_column("recheck_threshold")
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.drop_column("match_quality")
        batch_op.drop_column("defect_area_px")
        batch_op.drop_column("mm_per_px")
        batch_op.drop_column("recheck_threshold")
        batch_op.drop_constraint(op.f("ck_inspections_decision"), type_="check")
        batch_op.alter_column("decision", existing_type=sa.String(length=8), type_=sa.String(length=4),
                              existing_nullable=False)
        batch_op.create_check_constraint("decision", _one_of(_OLD_DECISIONS))
