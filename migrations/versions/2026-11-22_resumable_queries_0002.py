"""Resumable query sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resumable_queries",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("vector_name", sa.Text, nullable=False),
        sa.Column("dialect", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("emitted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("emitted_seqs", sa.LargeBinary, nullable=False),
        sa.Column("start_seq", sa.BigInteger, nullable=False),
        sa.Column("max_idle_seconds", sa.Integer, nullable=False),
        sa.Column("owner_key", sa.Text, nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "last_touched", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_resumable_queries"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            ondelete="CASCADE",
            name="fk_resumable_queries_collection_id_collections",
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            ondelete="CASCADE",
            name="fk_resumable_queries_namespace_id_namespaces",
        ),
    )
    op.create_index("ix_resumable_queries_expires_at", "resumable_queries", ["expires_at"])
    op.create_index("ix_resumable_queries_owner_key", "resumable_queries", ["owner_key"])


def downgrade() -> None:
    op.drop_table("resumable_queries")
