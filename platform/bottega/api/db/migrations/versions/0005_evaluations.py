"""registry: model_version_evaluations (named evaluations of a version on other labelled data)

Revision ID: 0005_evaluations
Revises: 0004_merge
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_evaluations"
down_revision = "0004_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_version_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_version_evaluations_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_version_evaluations")),
        sa.UniqueConstraint("version_id", "name", name=op.f("uq_model_version_evaluations_version_id_name")),
    )
    with op.batch_alter_table("model_version_evaluations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_version_evaluations_version_id"), ["version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_version_evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_version_evaluations_version_id"))
    op.drop_table("model_version_evaluations")
