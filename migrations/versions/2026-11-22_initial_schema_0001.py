"""Initial schema: collections, namespaces, points, vectors, tombstones, payload indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("point_seq")))
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("config", JSONB, nullable=False),
        sa.Column("dialect", sa.Text, nullable=False, server_default="qdrant"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_collections"),
        sa.UniqueConstraint("name", name="uq_collections_name"),
    )
    op.create_table(
        "namespaces",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_namespaces"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            ondelete="CASCADE",
            name="fk_namespaces_collection_id_collections",
        ),
        sa.UniqueConstraint("collection_id", "name", name="uq_namespaces_collection_id_name"),
    )
    op.create_table(
        "points",
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("point_id", sa.Text, nullable=False),
        sa.Column("id_kind", sa.SmallInteger, nullable=False),
        sa.Column("id_number", sa.BigInteger, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("payload", JSONB, nullable=True),
        sa.Column("data", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("namespace_id", "point_id", name="pk_points"),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            ondelete="CASCADE",
            name="fk_points_namespace_id_namespaces",
        ),
    )
    op.create_index("ix_points_namespace_id_seq", "points", ["namespace_id", "seq"])
    op.create_index(
        "ix_points_namespace_id_order",
        "points",
        ["namespace_id", "id_kind", "id_number", "point_id"],
    )
    op.create_table(
        "point_vectors",
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("point_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("namespace_id", "point_id", "name", name="pk_point_vectors"),
        sa.ForeignKeyConstraint(
            ["namespace_id", "point_id"],
            ["points.namespace_id", "points.point_id"],
            ondelete="CASCADE",
            name="fk_point_vectors_point",
        ),
    )
    op.create_table(
        "point_tombstones",
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("point_id", sa.Text, nullable=False),
        sa.Column("id_kind", sa.SmallInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("namespace_id", "point_id", name="pk_point_tombstones"),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            ondelete="CASCADE",
            name="fk_point_tombstones_namespace_id_namespaces",
        ),
    )
    op.create_index(
        "ix_point_tombstones_namespace_id_seq", "point_tombstones", ["namespace_id", "seq"]
    )
    op.create_table(
        "payload_indexes",
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("field_name", sa.Text, nullable=False),
        sa.Column("field_schema", JSONB, nullable=False),
        sa.Column("pg_index_name", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("collection_id", "field_name", name="pk_payload_indexes"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            ondelete="CASCADE",
            name="fk_payload_indexes_collection_id_collections",
        ),
    )


def downgrade() -> None:
    for table in ("payload_indexes", "point_tombstones", "point_vectors", "points"):
        op.drop_table(table)
    op.drop_table("namespaces")
    op.drop_table("collections")
    op.execute(sa.schema.DropSequence(sa.Sequence("point_seq")))
