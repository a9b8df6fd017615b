"""Images in the plant: ``plant_images`` holds the frames and 16-bit maps that stations forward,
and ``settings`` the database's own settings (the plant's image retention). ``alarms`` keeps the
alarms a station raised (forwarded to the plant like its rows), ``station_status`` what each
station last said of its forwarding (rows and images waiting). ``audit_events.target`` gets an
index: the review reads a part's trail by it.

``plant_images`` is keyed by (station, uid, kind), as the inspection rows are by (station, uid),
so a forwarder sending a batch again inserts nothing twice. The bytes are a bytea (BLOB on
SQLite) column, or NULL where an object store keeps them at ``location``. A station's history gets
the tables too and leaves them empty: one schema everywhere.

``inspections.camera_id`` becomes unbounded text: a camera's id is its URI, and a URI with a path
(``basler://emulated?images=/srv/line/cells``, ``folder:///…``) is often longer than the 64
characters it had. SQLite never enforced the length, so stations recorded such rows, and a plant
PostgreSQL refused them, stopping that station's forwarding for good.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inspector.history.tables import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.alter_column("camera_id", existing_type=sa.String(length=64), type_=sa.Text(),
                              existing_nullable=False)
    op.create_table(
        "plant_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("received", UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('image', 'heatmap')", name=op.f("ck_plant_images_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plant_images")),
        sa.UniqueConstraint("station", "uid", "kind", name=op.f("uq_plant_images_station")),
    )
    op.create_index(op.f("ix_plant_images_received"), "plant_images", ["received"])
    op.create_table(
        "settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("changed", UTCDateTime(), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_settings")),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
        sa.UniqueConstraint("station", "uid", name=op.f("uq_alarms_station")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_alarms_time"), "alarms", ["time"])
    op.create_index("ix_alarms_station_time", "alarms", ["station", "time"])  # one station's page
    # The part page reads a row's review trail (labels, notes) by target: years of audit events
    # must not be scanned for each part.
    op.create_index(op.f("ix_audit_events_target"), "audit_events", ["target"])
    op.create_table(
        "station_status",
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("seen", UTCDateTime(), nullable=False),
        sa.Column("rows_waiting", sa.Integer(), nullable=False),
        sa.Column("images_waiting", sa.Integer(), nullable=False),
        sa.Column("images_gone", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("station", name=op.f("pk_station_status")),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_target"), table_name="audit_events")
    op.drop_table("station_status")
    op.drop_index("ix_alarms_station_time", table_name="alarms")
    op.drop_index(op.f("ix_alarms_time"), table_name="alarms")
    op.drop_table("alarms")
    op.drop_table("settings")
    op.drop_index(op.f("ix_plant_images_received"), table_name="plant_images")
    op.drop_table("plant_images")
    inspections = sa.table("inspections", sa.column("camera_id", sa.Text()))
    longer = op.get_bind().scalar(sa.select(sa.func.count()).select_from(inspections)
                                  .where(sa.func.length(inspections.c.camera_id) > 64))
    if longer:
        raise RuntimeError(f"{longer} inspection(s) name a camera in more than 64 characters, which the history "
                           "before revision 0011 cannot hold: export them and keep this version")
    with op.batch_alter_table("inspections") as batch_op:
        batch_op.alter_column("camera_id", existing_type=sa.Text(), type_=sa.String(length=64),
                              existing_nullable=False)
