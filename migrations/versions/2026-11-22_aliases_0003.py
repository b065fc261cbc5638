"""Collection aliases (Qdrant `POST /collections/aliases`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collection_aliases",
        sa.Column("alias_name", sa.Text, nullable=False),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("alias_name", name="pk_collection_aliases"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            ondelete="CASCADE",
            name="fk_collection_aliases_collection_id_collections",
        ),
    )


def downgrade() -> None:
    op.drop_table("collection_aliases")
