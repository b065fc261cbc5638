"""PostgreSQL schema (SQLAlchemy Core). Alembic migrations create exactly these tables.

Point identity is `(namespace_id, point_id)`: `point_id` is the canonical text form of the id
(decimal for unsigned integers, lowercase hyphenated for UUIDs, verbatim for Upstash strings)
and `id_kind` says which, so ordering by `(id_kind, id_number, point_id)` is Qdrant's id order.
`seq` comes from one global sequence and is new on every write: it is the point's version,
the insertion order for Upstash `range`, and the change feed (`WHERE seq > last_applied`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from app.db import functions

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


point_seq = sa.Sequence("point_seq", metadata=metadata)

collections = sa.Table(
    "collections",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("config", JSONB, nullable=False),
    sa.Column("dialect", sa.Text, nullable=False, server_default="qdrant"),
    _created_at(),
)

namespaces = sa.Table(
    "namespaces",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column(
        "collection_id",
        sa.Integer,
        sa.ForeignKey("collections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.Text, nullable=False),
    _created_at(),
    sa.UniqueConstraint("collection_id", "name"),
)

points = sa.Table(
    "points",
    metadata,
    sa.Column(
        "namespace_id",
        sa.Integer,
        sa.ForeignKey("namespaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("point_id", sa.Text, primary_key=True),
    sa.Column("id_kind", sa.SmallInteger, nullable=False),
    # Unsigned 64-bit ids shifted by -2**63 so that they sort as signed bigints.
    sa.Column("id_number", sa.BigInteger, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("payload", JSONB, nullable=True),
    sa.Column("data", sa.Text, nullable=True),
    sa.Index("ix_points_namespace_id_seq", "namespace_id", "seq"),
    sa.Index("ix_points_namespace_id_order", "namespace_id", "id_kind", "id_number", "point_id"),
)

point_vectors = sa.Table(
    "point_vectors",
    metadata,
    sa.Column("namespace_id", sa.Integer, primary_key=True),
    sa.Column("point_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    # The seq of the write that set this vector: the stable, never reused label of the vector.
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.ForeignKeyConstraint(
        ["namespace_id", "point_id"],
        ["points.namespace_id", "points.point_id"],
        ondelete="CASCADE",
        name="fk_point_vectors_point",
    ),
)

point_tombstones = sa.Table(
    "point_tombstones",
    metadata,
    sa.Column(
        "namespace_id",
        sa.Integer,
        sa.ForeignKey("namespaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("point_id", sa.Text, primary_key=True),
    sa.Column("id_kind", sa.SmallInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Index("ix_point_tombstones_namespace_id_seq", "namespace_id", "seq"),
)

payload_indexes = sa.Table(
    "payload_indexes",
    metadata,
    sa.Column(
        "collection_id",
        sa.Integer,
        sa.ForeignKey("collections.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("field_name", sa.Text, primary_key=True),
    sa.Column("field_schema", JSONB, nullable=False),
    sa.Column("pg_index_name", sa.Text, nullable=False),
    _created_at(),
)

resumable_queries = sa.Table(
    "resumable_queries",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "collection_id",
        sa.Integer,
        sa.ForeignKey("collections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "namespace_id",
        sa.Integer,
        sa.ForeignKey("namespaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("vector_name", sa.Text, nullable=False),
    sa.Column("dialect", sa.Text, nullable=False),
    # The frozen request: query vector, filter (as sent), include flags, page size.
    sa.Column("request", JSONB, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),  # "exact" | "graph"
    sa.Column("state", sa.LargeBinary, nullable=False),  # the engine's compact frontier
    sa.Column("emitted", sa.BigInteger, nullable=False, server_default="0"),
    # Write seqs of every point returned so far (sorted, delta-encoded, zlib): what lets any
    # worker continue the session even where the frontier state does not apply.
    sa.Column("emitted_seqs", sa.LargeBinary, nullable=False),
    # Seqs returned since `state` was stored (from its read-ahead), little-endian int64s in
    # the order returned: pages append here and leave the two large columns alone.
    sa.Column("recent_seqs", sa.LargeBinary, nullable=False, server_default=sa.text("''")),
    # Only vectors written up to this seq may be returned (later writes may not appear).
    sa.Column("start_seq", sa.BigInteger, nullable=False),
    sa.Column("max_idle_seconds", sa.Integer, nullable=False),
    sa.Column("owner_key", sa.Text, nullable=False, server_default=""),
    _created_at(),
    sa.Column(
        "last_touched", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_resumable_queries_expires_at", "expires_at"),
    sa.Index("ix_resumable_queries_owner_key", "owner_key"),
)

collection_aliases = sa.Table(
    "collection_aliases",
    metadata,
    sa.Column("alias_name", sa.Text, primary_key=True),
    sa.Column(
        "collection_id",
        sa.Integer,
        sa.ForeignKey("collections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    _created_at(),
)

functions.attach(metadata)
