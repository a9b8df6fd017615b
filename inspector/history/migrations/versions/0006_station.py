"""Inspections name their station; forwarders keep their high-water mark.

One plant database holds the inspections of many stations (``inspector.links.plant``), so every
row says which station recorded it, and (station, uid) replaces uid as what makes a row unique:
the key a replay is recognised by. Rows already there were recorded here, so they get this
machine's host name, the station's name by default. ``forward_marks`` keeps, per plant database,
the last local inspection id it has committed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import socket
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable first, filled, then NOT NULL: no server default stays behind in the schema, as the
    # name is this machine's, not the schema's. Batch mode: SQLite copies the table once.
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.add_column(sa.Column("station", sa.String(length=64), nullable=True))
    inspections = sa.table("inspections", sa.column("station", sa.String()))
    op.execute(inspections.update().values(station=socket.gethostname()[:64]))
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.alter_column("station", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("uq_inspections_uid", type_="unique")
        batch_op.create_unique_constraint(op.f("uq_inspections_station_uid"), ["station", "uid"])
        batch_op.create_index("ix_inspections_station_time", ["station", "time"])
    op.create_table(
        "forward_marks",
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_forward_marks")),
    )


def downgrade() -> None:
    op.drop_table("forward_marks")
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.drop_index("ix_inspections_station_time")
        batch_op.drop_constraint("uq_inspections_station_uid", type_="unique")
        batch_op.create_unique_constraint(op.f("uq_inspections_uid"), ["uid"])
        batch_op.drop_column("station")
