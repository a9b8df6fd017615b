"""Users count wrong PINs and lock; audit rows form a hash chain.

``users.failed_pins`` (0 for existing accounts) and ``users.locked_until`` (NULL: not locked)
carry the PIN lock. ``audit_events.prev_hash``/``hash`` chain the audit trail; the rows already
there are chained here, in id order, so the trail verifies from its first row on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from inspector.history.audit_chain import GENESIS, row_hash
from inspector.history.tables import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns as this revision knows them, so later changes to the models cannot change it.
_audit = sa.table(
    "audit_events",
    sa.column("id", sa.Integer()),
    sa.column("time", UTCDateTime()),
    sa.column("user", sa.String()),
    sa.column("role", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    # Batch mode: SQLite. Existing accounts start with no wrong PINs.
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("failed_pins", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _chain_existing_rows(op.get_bind())


def _chain_existing_rows(connection: sa.Connection) -> None:
    rows = connection.execute(sa.select(_audit).order_by(_audit.c.id)).all()
    prev = GENESIS
    for row in rows:
        own = row_hash(prev, row.time, row.user, row.role, row.action, row.target, row.before, row.after)
        connection.execute(sa.update(_audit).where(_audit.c.id == row.id).values(prev_hash=prev, hash=own))
        prev = own


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_pins")
