"""features: the feature catalog (entities, versioned feature groups, features, tags, pipeline stats)

Revision ID: 0003_features
Revises: 0002_domains
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_features"
down_revision = "0002_domains"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_entities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("join_keys", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=63), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_feature_entities_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_entities")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_feature_entities_project_id_name")),
    )
    with op.batch_alter_table("feature_entities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feature_entities_project_id"), ["project_id"], unique=False)

    op.create_table(
        "feature_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("max_age_seconds", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=63), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"], ["feature_entities.id"], name=op.f("fk_feature_groups_entity_id_feature_entities")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_feature_groups_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_groups")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_feature_groups_project_id_name")),
    )
    with op.batch_alter_table("feature_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feature_groups_entity_id"), ["entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feature_groups_project_id"), ["project_id"], unique=False)

    op.create_table(
        "feature_group_stats",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("rows_offline", sa.BigInteger(), nullable=True),
        sa.Column("rows_online", sa.BigInteger(), nullable=True),
        sa.Column("last_event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("freshness_seconds", sa.Float(), nullable=True),
        sa.Column("reported_by", sa.String(length=63), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["feature_groups.id"],
            name=op.f("fk_feature_group_stats_group_id_feature_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_feature_group_stats")),
    )
    op.create_table(
        "feature_group_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("entity", sa.String(length=63), nullable=False),
        sa.Column("entity_keys", sa.JSON(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("breaking", sa.Boolean(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["feature_groups.id"],
            name=op.f("fk_feature_group_versions_group_id_feature_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_group_versions")),
        sa.UniqueConstraint("group_id", "version", name=op.f("uq_feature_group_versions_group_id_version")),
    )
    op.create_table(
        "features",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["feature_groups.id"], name=op.f("fk_features_group_id_feature_groups"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "name", name=op.f("pk_features")),
    )
    op.create_table(
        "feature_tags",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=63), nullable=False),
        sa.Column("key", sa.String(length=127), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id", "feature"],
            ["features.group_id", "features.name"],
            name=op.f("fk_feature_tags_group_id_features"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "feature", "key", name=op.f("pk_feature_tags")),
    )


def downgrade() -> None:
    op.drop_table("feature_tags")
    op.drop_table("features")
    op.drop_table("feature_group_versions")
    op.drop_table("feature_group_stats")
    with op.batch_alter_table("feature_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feature_groups_project_id"))
        batch_op.drop_index(batch_op.f("ix_feature_groups_entity_id"))

    op.drop_table("feature_groups")
    with op.batch_alter_table("feature_entities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feature_entities_project_id"))

    op.drop_table("feature_entities")
