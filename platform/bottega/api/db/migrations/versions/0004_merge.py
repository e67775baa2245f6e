"""merge the registry and features branches

Revision ID: 0004_merge
Revises: 0003_registry, 0003_features
Create Date: 2026-11-24
"""

revision = "0004_merge"
down_revision = ("0003_registry", "0003_features")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
