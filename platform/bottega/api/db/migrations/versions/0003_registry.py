"""registry: project_blobs (which projects may reference which blobs)

Revision ID: 0003_registry
Revises: 0002_domains
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_registry"
down_revision = "0002_domains"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_blobs",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_project_blobs_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name=op.f("fk_project_blobs_sha256_blobs")),
        sa.PrimaryKeyConstraint("project_id", "sha256", name=op.f("pk_project_blobs")),
    )


def downgrade() -> None:
    op.drop_table("project_blobs")
