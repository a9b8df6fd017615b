"""Seals beside the audit chain: users bound to their audit event, verdicts sealed per batch, heads.

The audit chain did not cover the ``users`` table (a role raised by hand went unnoticed) nor the
verdicts, and a trail emptied or cut short at its end still "fitted". ``users.audit_id``/``digest``
bind each row to the audit event that set it; ``inspection_batches`` seal recorded verdicts, a
batch per transaction, chained; ``chain_heads`` keeps each chain's length and last hash (see
:mod:`inspector.history.seals`).

Existing databases are sealed here, at upgrade time, as they are now: each user gets a
``user_sealed`` audit event stating their present role (by ``system``), the inspections already
there are sealed in batches of 10,000, and both heads are set. Whatever was edited before this
upgrade is sealed as it was found.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from inspector.history.audit_chain import GENESIS, row_hash
from inspector.history.seals import AUDIT, INSPECTIONS, SEALED_COLUMNS, batch_digest, row_token, user_digest
from inspector.history.tables import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 10_000
# The columns as this revision knows them (types as the models read them, so the seal made here
# is the one the models verify), so later changes to the models cannot change it.
_audit = sa.table(
    "audit_events", sa.column("id", sa.Integer()), sa.column("time", UTCDateTime()), sa.column("user", sa.String()),
    sa.column("role", sa.String()), sa.column("action", sa.String()), sa.column("target", sa.String()),
    sa.column("before", sa.JSON()), sa.column("after", sa.JSON()), sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_users = sa.table(
    "users", sa.column("id", sa.Integer()), sa.column("name", sa.String()), sa.column("role", sa.String()),
    sa.column("pin_hash", sa.String()), sa.column("audit_id", sa.Integer()), sa.column("digest", sa.String()),
)
_types = {"id": sa.Integer(), "time": UTCDateTime(), "frame_id": sa.BigInteger(), "score": sa.Float(),
          "threshold": sa.Float(), "pixel_threshold": sa.Float(), "min_defect_area_px": sa.Integer(),
          "rule_recorded": sa.Boolean(), "model_version_id": sa.Integer(), "product_id": sa.Integer(),
          "heatmap_low": sa.Float(), "heatmap_high": sa.Float()}
_inspections = sa.table("inspections", *(sa.column(name, _types.get(name, sa.String())) for name in SEALED_COLUMNS))
_batches = sa.table(
    "inspection_batches", sa.column("first_id", sa.Integer()), sa.column("last_id", sa.Integer()),
    sa.column("rows", sa.Integer()), sa.column("prev_digest", sa.String()), sa.column("digest", sa.String()),
    sa.column("seal", sa.Text()),
)
_heads = sa.table("chain_heads", sa.column("name", sa.String()), sa.column("rows", sa.Integer()),
                  sa.column("hash", sa.String()), sa.column("last_id", sa.Integer()))


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("audit_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
    op.create_table(
        "chain_heads",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chain_heads")),
    )
    op.create_table(
        "inspection_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("prev_digest", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("seal", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_batches")),
    )
    bind = op.get_bind()
    _seal_users(bind)
    _seal_inspections(bind)


def _seal_users(bind: sa.Connection) -> None:
    """One ``user_sealed`` event per user, chained after the last audit row; then the audit head."""
    prev = bind.scalar(sa.select(_audit.c.hash).order_by(_audit.c.id.desc()).limit(1)) or GENESIS
    now = datetime.now(timezone.utc)
    for user in bind.execute(sa.select(_users).order_by(_users.c.id)).all():
        target, after = f"user:{user.name}", {"role": user.role, "by": "revision 0009"}
        own = row_hash(prev, now, "system", "system", "user_sealed", target, None, after)
        bind.execute(sa.insert(_audit).values(time=now, user="system", role="system", action="user_sealed",
                                              target=target, before=None, after=after, prev_hash=prev, hash=own))
        event_id = bind.scalar(sa.select(sa.func.max(_audit.c.id)))  # the migration is the only writer
        bind.execute(sa.update(_users).where(_users.c.id == user.id).values(
            audit_id=event_id, digest=user_digest(user.name, user.role, user.pin_hash, own)))
        prev = own
    rows = bind.scalar(sa.select(sa.func.count()).select_from(_audit))
    bind.execute(sa.insert(_heads).values(name=AUDIT, rows=rows, hash=prev, last_id=None))


def _seal_inspections(bind: sa.Connection) -> None:
    prev, sealed, last_id = GENESIS, 0, None
    while True:  # pages by id: no cursor stays open across the inserts
        page = sa.select(_inspections).order_by(_inspections.c.id).limit(_CHUNK)
        chunk = bind.execute(page if last_id is None else page.where(_inspections.c.id > last_id)).all()
        if not chunk:
            break
        seal = ",".join(row_token(row._mapping) for row in chunk)
        digest = batch_digest(prev, seal)
        bind.execute(sa.insert(_batches).values(first_id=chunk[0].id, last_id=chunk[-1].id, rows=len(chunk),
                                                prev_digest=prev, digest=digest, seal=seal))
        prev, sealed, last_id = digest, sealed + len(chunk), chunk[-1].id
    bind.execute(sa.insert(_heads).values(name=INSPECTIONS, rows=sealed, hash=prev, last_id=last_id))


def downgrade() -> None:
    # The user_sealed audit events stay: audit rows are only ever added.
    op.drop_table("inspection_batches")
    op.drop_table("chain_heads")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("digest")
        batch_op.drop_column("audit_id")
