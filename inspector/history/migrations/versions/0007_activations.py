"""One truth for the active model: ``products.active_model_version_id``; activations recorded.

Before, a version's ``status`` said "active" beside the product's column, and a rollback found
the version to return to by reading ``set_active_model`` audit events. Now ``activations`` keeps
every change of a product's active model with the version active before it, and a version's
status is worked out from the product and the activations (``ModelVersion.status``), so the
column goes. Existing databases get their activations back from the audit trail, and a version
that was active or retired without an audit event (a database edited by hand) one activation,
so that its status stays what it was.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_activations_product_id_products")),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_activations_model_version_id_model_versions")),
        sa.ForeignKeyConstraint(["previous_version_id"], ["model_versions.id"],
                                name=op.f("fk_activations_previous_version_id_model_versions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activations")),
    )
    op.create_index(op.f("ix_activations_product_id"), "activations", ["product_id"], unique=False)
    _activations_from_the_audit_trail()
    with op.batch_alter_table("model_versions") as batch_op:
        batch_op.drop_constraint(op.f("ck_model_versions_status"), type_="check")
        batch_op.drop_column("status")


def _activations_from_the_audit_trail() -> None:
    bind = op.get_bind()
    audit = sa.table("audit_events", sa.column("id", sa.Integer()), sa.column("time", sa.DateTime(timezone=True)),
                     sa.column("user", sa.String()), sa.column("role", sa.String()), sa.column("action", sa.String()),
                     sa.column("target", sa.String()), sa.column("before", sa.JSON()), sa.column("after", sa.JSON()))
    versions = sa.table("model_versions", sa.column("id", sa.Integer()), sa.column("product_id", sa.Integer()),
                        sa.column("status", sa.String()), sa.column("created", sa.DateTime(timezone=True)))
    activations = sa.table("activations", sa.column("product_id", sa.Integer()), sa.column("model_version_id", sa.Integer()),
                           sa.column("previous_version_id", sa.Integer()), sa.column("time", sa.DateTime(timezone=True)),
                           sa.column("user", sa.String()), sa.column("role", sa.String()))
    owner = dict(bind.execute(sa.select(versions.c.id, versions.c.product_id)).all())
    rows, seen = [], set()
    events = bind.execute(sa.select(audit).where(audit.c.action == "set_active_model").order_by(audit.c.id))
    for e in events:
        after, before = e.after or {}, e.before or {}
        version = after.get("active_model_version_id")
        product = owner.get(version)
        if product is None or e.target != f"product:{product}":
            continue
        previous = before.get("active_model_version_id")
        rows.append(dict(product_id=product, model_version_id=version, time=e.time, user=e.user, role=e.role,
                         previous_version_id=previous if previous in owner else None))
        seen.add(version)
    was_active = bind.execute(sa.select(versions).where(versions.c.status != "candidate").order_by(versions.c.id))
    unrecorded = [dict(product_id=v.product_id, model_version_id=v.id, previous_version_id=None, time=v.created,
                       user="system", role="system") for v in was_active if v.id not in seen]
    # A hand-made activation goes first, so a recorded one stays the latest (what a rollback reads).
    if unrecorded + rows:
        op.bulk_insert(activations, unrecorded + rows)


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
    versions = sa.table("model_versions", sa.column("id", sa.Integer()), sa.column("status", sa.String()))
    products = sa.table("products", sa.column("active_model_version_id", sa.Integer()))
    activations = sa.table("activations", sa.column("model_version_id", sa.Integer()))
    active = sa.select(products.c.active_model_version_id)
    op.execute(versions.update().values(status="candidate"))
    op.execute(versions.update().where(versions.c.id.in_(sa.select(activations.c.model_version_id))).values(status="retired"))
    op.execute(versions.update().where(versions.c.id.in_(active)).values(status="active"))
    with op.batch_alter_table("model_versions") as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(length=16), nullable=False)
        batch_op.create_check_constraint(op.f("ck_model_versions_status"), "status IN ('candidate', 'active', 'retired')")
    op.drop_index(op.f("ix_activations_product_id"), table_name="activations")
    op.drop_table("activations")
