"""Initial schema: products, model versions, calibrations, inspections, audit events, users.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # products <-> model_versions refer to each other: create products without its foreign key
    # and add it once model_versions exists (batch mode rebuilds the table on SQLite).
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("camera_settings", sa.JSON(), nullable=False),
        sa.Column("active_model_version_id", sa.Integer(), nullable=True),
        sa.Column("created", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("name", name=op.f("uq_products_name")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created", UTC_TIME, nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "status IN ('candidate', 'active', 'retired')", name=op.f("ck_model_versions_status")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_model_versions_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
    )
    op.create_index(op.f("ix_model_versions_product_id"), "model_versions", ["product_id"])
    op.create_index(op.f("ix_model_versions_sha256"), "model_versions", ["sha256"])
    with op.batch_alter_table("products") as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_products_active_model_version_id_model_versions"),
            "model_versions",
            ["active_model_version_id"],
            ["id"],
        )

    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("image_threshold", sa.Float(), nullable=False),
        sa.Column("pixel_threshold", sa.Float(), nullable=True),
        sa.Column("min_defect_area_px", sa.Integer(), nullable=True),
        sa.Column("target_frr", sa.Float(), nullable=False),
        sa.Column("expected_frr", sa.Float(), nullable=False),
        sa.Column("expected_frr_ci_low", sa.Float(), nullable=True),
        sa.Column("expected_frr_ci_high", sa.Float(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created", UTC_TIME, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_calibrations_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
    )
    op.create_index(
        op.f("ix_calibrations_model_version_id"), "calibrations", ["model_version_id"]
    )

    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("time", UTC_TIME, nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("frame_id", sa.BigInteger(), nullable=False),
        sa.Column("part_id", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=4), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("latency_total_ms", sa.Float(), nullable=True),
        sa.Column("latency_model_ms", sa.Float(), nullable=True),
        sa.Column("image_path", sa.Text(), nullable=True),
        sa.Column("heatmap_path", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=20), nullable=False),
        sa.Column("labelled_by", sa.String(length=100), nullable=True),
        sa.Column("labelled_at", UTC_TIME, nullable=True),
        sa.CheckConstraint("decision IN ('PASS', 'FAIL')", name=op.f("ck_inspections_decision")),
        sa.CheckConstraint(
            "label IN ('none', 'false_reject', 'confirmed_defect')",
            name=op.f("ck_inspections_label"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_inspections_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_inspections_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspections")),
        sa.UniqueConstraint("uid", name=op.f("uq_inspections_uid")),
    )
    op.create_index(op.f("ix_inspections_time"), "inspections", ["time"])
    op.create_index(op.f("ix_inspections_score"), "inspections", ["score"])
    op.create_index("ix_inspections_decision_time", "inspections", ["decision", "time"])
    op.create_index(
        "ix_inspections_model_version_time", "inspections", ["model_version_id", "time"]
    )
    op.create_index("ix_inspections_product_time", "inspections", ["product_id", "time"])
    op.create_index("ix_inspections_label_time", "inspections", ["label", "time"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", UTC_TIME, nullable=False),
        sa.Column("user", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_time"), "audit_events", ["time"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=False),
        sa.Column("created", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "role IN ('operator', 'technician', 'quality')", name=op.f("ck_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; break the products <-> model_versions cycle first.
    op.drop_table("users")
    op.drop_table("audit_events")
    op.drop_table("inspections")
    op.drop_table("calibrations")
    with op.batch_alter_table("products") as batch_op:
        batch_op.drop_constraint(
            op.f("fk_products_active_model_version_id_model_versions"), type_="foreignkey"
        )
    op.drop_table("model_versions")
    op.drop_table("products")
