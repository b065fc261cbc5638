"""SQL for collections, namespaces and points. Every function takes an open connection, so
the caller (a service) decides what one transaction covers.

Bulk writes go through `unnest()` of parallel arrays: one statement per batch, whatever its
size, instead of one round trip per point.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, BYTEA, SMALLINT, TEXT
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import offload
from app.db.functions import among
from app.db.offload import Pool
from app.db.tables import collections, namespaces, point_vectors, points
from app.models import IdKind, PointId, wire_point_id


@dataclass(slots=True)
class PointWrite:
    """One point as it is written: canonical id, vectors as float32 bytes, payload, data."""

    id_text: str
    id_kind: IdKind
    id_number: int | None
    vectors: dict[str, bytes]
    payload: dict[str, Any] | None = None
    data: str | None = None


@dataclass(slots=True)
class PointRecord:
    id: PointId
    seq: int
    payload: dict[str, Any] | None
    data: str | None
    vectors: dict[str, bytes]


@dataclass(slots=True)
class StoredVector:
    id: PointId
    seq: int
    vector: bytes


_json = msgspec.json.Encoder()


def _json_text(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


# ------------------------------------------------------------------ collections


async def insert_collection(
    conn: AsyncConnection, name: str, config: dict[str, Any], dialect: str
) -> int | None:
    """Create the collection and its default namespace; None if the name is taken."""
    stmt = (
        sa.dialects.postgresql.insert(collections)
        .values(name=name, config=config, dialect=dialect)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(collections.c.id)
    )
    collection_id = (await conn.execute(stmt)).scalar_one_or_none()
    if collection_id is not None:
        await conn.execute(sa.insert(namespaces).values(collection_id=collection_id, name=""))
    return collection_id


async def update_collection_config(
    conn: AsyncConnection, collection_id: int, config: dict[str, Any]
) -> bool:
    """Replace the collection's stored settings; False if it was deleted meanwhile."""
    stmt = sa.update(collections).where(collections.c.id == collection_id).values(config=config)
    return (await conn.execute(stmt)).rowcount == 1


async def select_collections(conn: AsyncConnection) -> list[sa.Row]:
    stmt = sa.select(
        collections.c.id, collections.c.name, collections.c.config, collections.c.dialect
    )
    return list((await conn.execute(stmt.order_by(collections.c.name))).all())


async def select_namespaces(conn: AsyncConnection) -> list[sa.Row]:
    stmt = sa.select(namespaces.c.id, namespaces.c.collection_id, namespaces.c.name)
    return list((await conn.execute(stmt)).all())


_CATALOG_FINGERPRINT = sa.text(
    """
    SELECT md5(coalesce(string_agg(version, ',' ORDER BY version), '')) FROM (
        SELECT 'c' || id || ':' || xmin AS version FROM collections
        UNION ALL SELECT 'n' || id || ':' || xmin FROM namespaces
        UNION ALL SELECT 'a' || alias_name || ':' || xmin FROM collection_aliases
        UNION ALL SELECT 'i' || collection_id || '/' || field_name || ':' || xmin
            FROM payload_indexes
    ) AS versions
    """
)


async def catalog_fingerprint(conn: AsyncConnection) -> str:
    """A digest of every row version of the catalog tables (collections, namespaces,
    aliases, payload indexes): it changes with every committed insert, update or delete
    there (a new row version has a new xmin), and not with point writes, which only lock
    their collection's row. One cheap query tells a poll whether the catalog changed."""
    return (await conn.execute(_CATALOG_FINGERPRINT)).scalar_one()


async def delete_collection(conn: AsyncConnection, collection_id: int) -> bool:
    stmt = sa.delete(collections).where(collections.c.id == collection_id)
    return (await conn.execute(stmt)).rowcount > 0


async def lock_collection(conn: AsyncConnection, collection_id: int) -> bool:
    """Row-lock the collection for a write; False if it was deleted meanwhile."""
    stmt = sa.select(collections.c.id).where(collections.c.id == collection_id).with_for_update()
    return (await conn.execute(stmt)).scalar_one_or_none() is not None


# ----------------------------------------------------------------------- points

_UPSERT_POINTS = sa.text(
    """
    INSERT INTO points (namespace_id, point_id, id_kind, id_number, seq, payload, data)
    SELECT :namespace_id, u.point_id, u.id_kind, u.id_number, nextval('point_seq'),
           u.payload::jsonb, u.data
    FROM unnest(:point_ids, :id_kinds, :id_numbers, :payloads, :datas)
         AS u(point_id, id_kind, id_number, payload, data)
    ON CONFLICT (namespace_id, point_id) DO UPDATE
    SET seq = EXCLUDED.seq, payload = EXCLUDED.payload, data = EXCLUDED.data
    RETURNING point_id, seq
    """
).bindparams(
    sa.bindparam("point_ids", type_=ARRAY(TEXT)),
    sa.bindparam("id_kinds", type_=ARRAY(SMALLINT)),
    sa.bindparam("id_numbers", type_=ARRAY(BIGINT)),
    sa.bindparam("payloads", type_=ARRAY(TEXT)),
    sa.bindparam("datas", type_=ARRAY(TEXT)),
)

_INSERT_VECTORS = sa.text(
    """
    INSERT INTO point_vectors (namespace_id, point_id, name, seq, vector)
    SELECT :namespace_id, u.point_id, u.name, u.seq, u.vector
    FROM unnest(:point_ids, :names, :seqs, :vectors) AS u(point_id, name, seq, vector)
    """
).bindparams(
    sa.bindparam("point_ids", type_=ARRAY(TEXT)),
    sa.bindparam("names", type_=ARRAY(TEXT)),
    sa.bindparam("seqs", type_=ARRAY(BIGINT)),
    sa.bindparam("vectors", type_=ARRAY(BYTEA)),
)


async def upsert_points(
    conn: AsyncConnection, namespace_id: int, batch: Sequence[PointWrite]
) -> dict[str, int]:
    """Insert or replace points (payload and every vector); returns point id -> new seq.

    `batch` must not name a point twice (PostgreSQL refuses to update a row twice in one
    statement); the service keeps the last write of each id.
    """
    result = await conn.execute(
        _UPSERT_POINTS,
        {
            "namespace_id": namespace_id,
            "point_ids": [p.id_text for p in batch],
            "id_kinds": [int(p.id_kind) for p in batch],
            "id_numbers": [p.id_number for p in batch],
            "payloads": [_json_text(p.payload) for p in batch],
            "datas": [p.data for p in batch],
        },
    )
    seqs = {row.point_id: row.seq for row in result}
    await conn.execute(
        sa.delete(point_vectors).where(
            point_vectors.c.namespace_id == namespace_id,
            among(point_vectors.c.point_id, seqs),
        )
    )
    rows = [
        (p.id_text, name, seqs[p.id_text], vec) for p in batch for name, vec in p.vectors.items()
    ]
    await _insert_vectors(conn, namespace_id, rows)
    return seqs


async def _insert_vectors(
    conn: AsyncConnection, namespace_id: int, rows: list[tuple[str, str, int, bytes]]
) -> None:
    """Insert (point id, vector name, seq, float32 bytes) rows in one statement."""
    if not rows:
        return
    ids, names, seqs, vectors = (list(col) for col in zip(*rows, strict=True))
    await conn.execute(
        _INSERT_VECTORS,
        {
            "namespace_id": namespace_id,
            "point_ids": ids,
            "names": names,
            "seqs": seqs,
            "vectors": vectors,
        },
    )


_DELETE_POINTS = sa.text(
    """
    WITH gone AS (
        DELETE FROM points WHERE namespace_id = :namespace_id AND point_id = ANY(:point_ids)
        RETURNING point_id, id_kind
    ), stone AS (
        INSERT INTO point_tombstones (namespace_id, point_id, id_kind, seq)
        SELECT :namespace_id, point_id, id_kind, nextval('point_seq') FROM gone
        ON CONFLICT (namespace_id, point_id) DO UPDATE SET seq = EXCLUDED.seq
        RETURNING seq
    )
    SELECT gone.point_id, gone.id_kind, (SELECT max(seq) FROM stone) AS seq FROM gone
    """
).bindparams(sa.bindparam("point_ids", type_=ARRAY(TEXT)))


async def delete_points(
    conn: AsyncConnection, namespace_id: int, point_ids: Sequence[str]
) -> tuple[list[PointId], int | None]:
    """Delete points and leave tombstones; returns the ids that existed and the last seq."""
    result = await conn.execute(
        _DELETE_POINTS, {"namespace_id": namespace_id, "point_ids": list(point_ids)}
    )
    rows = result.all()
    seq = max((row.seq for row in rows), default=None)
    return [wire_point_id(row.point_id, row.id_kind) for row in rows], seq


def _record(row: sa.Row, vectors: dict[str, bytes]) -> PointRecord:
    """A stored point from a row of `_POINT_COLUMNS` (its payload as `jsonb` text)."""
    return PointRecord(
        id=wire_point_id(row.point_id, row.id_kind),
        seq=row.seq,
        payload=None if row.payload is None else json.loads(row.payload),
        data=row.data,
        vectors=vectors,
    )


async def _records(
    rows: Sequence[sa.Row], vectors: dict[str, dict[str, bytes]], shape_in: Pool | None
) -> list[PointRecord]:
    """The rows as stored points, in `shape_in` when there are many (`run_per_item`):
    decoding each payload and building its record costs time per row, which a long page
    would spend on the event loop (payloads are read as text so that the driver does not
    decode them there)."""

    def shape() -> list[PointRecord]:
        return [_record(row, vectors.get(row.point_id, {})) for row in rows]

    return shape() if shape_in is None else await shape_in.run_per_item(len(rows), shape)


async def _vectors_of(
    conn: AsyncConnection, namespace_id: int, point_ids: Sequence[str]
) -> dict[str, dict[str, bytes]]:
    stmt = sa.select(point_vectors.c.point_id, point_vectors.c.name, point_vectors.c.vector).where(
        point_vectors.c.namespace_id == namespace_id, among(point_vectors.c.point_id, point_ids)
    )
    found: dict[str, dict[str, bytes]] = {}
    for row in await conn.execute(stmt):
        found.setdefault(row.point_id, {})[row.name] = row.vector
    return found


_POINT_COLUMNS = (
    points.c.point_id,
    points.c.id_kind,
    points.c.seq,
    sa.cast(points.c.payload, sa.Text).label("payload"),
    points.c.data,
)


async def select_points(
    conn: AsyncConnection,
    namespace_id: int,
    point_ids: Sequence[str],
    *,
    with_vectors: bool,
    shape_in: Pool | None = None,
) -> dict[str, PointRecord]:
    """The stored points among `point_ids`, keyed by canonical id text (see `_records` for
    `shape_in`)."""
    if not point_ids:
        return {}
    stmt = sa.select(*_POINT_COLUMNS).where(
        points.c.namespace_id == namespace_id, among(points.c.point_id, point_ids)
    )
    rows = (await conn.execute(stmt)).all()
    vectors = await _vectors_of(conn, namespace_id, point_ids) if with_vectors else {}
    records = await _records(rows, vectors, shape_in)
    return {row.point_id: record for row, record in zip(rows, records, strict=True)}


async def scroll_points(
    conn: AsyncConnection,
    namespace_id: int,
    *,
    start: tuple[int, int | None, str] | None,
    limit: int,
    with_vectors: bool,
    where: sa.ColumnElement[bool] | None = None,
    shape_in: Pool | None = None,
) -> list[PointRecord]:
    """Points in Qdrant id order (numbers, then UUIDs) from `start` (inclusive); see
    `_records` for `shape_in`."""
    order = (points.c.id_kind, points.c.id_number, points.c.point_id)
    stmt = sa.select(*_POINT_COLUMNS).where(points.c.namespace_id == namespace_id)
    if where is not None:
        stmt = stmt.where(where)
    if start is not None:
        kind, number, text = start
        stmt = stmt.where(
            sa.tuple_(*order)
            >= sa.tuple_(sa.literal(kind), sa.literal(number, sa.BigInteger), sa.literal(text))
            if number is not None
            else sa.or_(
                points.c.id_kind > kind,
                sa.and_(points.c.id_kind == kind, points.c.point_id >= text),
            )
        )
    rows = (await offload.execute(conn, stmt.order_by(*order).limit(limit))).all()
    ids = [row.point_id for row in rows]
    vectors = await _vectors_of(conn, namespace_id, ids) if with_vectors else {}
    return await _records(rows, vectors, shape_in)


async def count_points(
    conn: AsyncConnection, namespace_id: int, where: sa.ColumnElement[bool] | None = None
) -> int:
    stmt = (
        sa.select(sa.func.count()).select_from(points).where(points.c.namespace_id == namespace_id)
    )
    if where is not None:
        stmt = stmt.where(where)
    return (await offload.execute(conn, stmt)).scalar_one()


async def stream_vectors(
    conn: AsyncConnection, namespace_id: int, name: str, batch_size: int = 10_000
) -> AsyncIterator[list[StoredVector]]:
    """Every stored vector of one segment, oldest write first, in batches (start-up load)."""
    stmt = (
        sa.select(
            point_vectors.c.point_id, points.c.id_kind, point_vectors.c.seq, point_vectors.c.vector
        )
        .join(
            points,
            sa.and_(
                points.c.namespace_id == point_vectors.c.namespace_id,
                points.c.point_id == point_vectors.c.point_id,
            ),
        )
        .where(point_vectors.c.namespace_id == namespace_id, point_vectors.c.name == name)
        .order_by(point_vectors.c.seq)
    )
    result = await conn.stream(stmt.execution_options(yield_per=batch_size))
    async for partition in result.partitions(batch_size):
        yield [
            StoredVector(wire_point_id(r.point_id, r.id_kind), r.seq, r.vector) for r in partition
        ]


async def stream_payloads(
    conn: AsyncConnection, namespace_id: int, batch_size: int = 10_000
) -> AsyncIterator[list[tuple[PointId, int, dict[str, Any] | None]]]:
    """(id, seq, payload) of every point of a namespace, in batches (payload columns)."""
    stmt = sa.select(points.c.point_id, points.c.id_kind, points.c.seq, points.c.payload).where(
        points.c.namespace_id == namespace_id
    )
    result = await conn.stream(stmt.execution_options(yield_per=batch_size))
    async for partition in result.partitions(batch_size):
        yield [(wire_point_id(r.point_id, r.id_kind), r.seq, r.payload) for r in partition]


# ------------------------------------------------------------------ change feed


@dataclass(slots=True)
class PointChange:
    """The current state of a point written after some seq: its vectors with their seqs,
    and its payload."""

    namespace_id: int
    id: PointId
    seq: int
    vectors: dict[str, tuple[int, bytes]]
    payload: dict[str, Any] | None = None


@dataclass(slots=True)
class Tombstone:
    namespace_id: int
    id: PointId
    seq: int


_CHANGED_POINTS = sa.text(
    """
    SELECT p.namespace_id, p.point_id, p.id_kind, p.seq, p.payload::text AS payload,
           v.name, v.seq AS vector_seq, v.vector
    FROM unnest(:namespace_ids, :since) AS s(namespace_id, since)
    JOIN points p ON p.namespace_id = s.namespace_id AND p.seq > s.since
    LEFT JOIN point_vectors v ON v.namespace_id = p.namespace_id AND v.point_id = p.point_id
    """
).bindparams(
    sa.bindparam("namespace_ids", type_=ARRAY(sa.Integer)),
    sa.bindparam("since", type_=ARRAY(BIGINT)),
)

_NEW_TOMBSTONES = sa.text(
    """
    SELECT t.namespace_id, t.point_id, t.id_kind, t.seq
    FROM unnest(:namespace_ids, :since) AS s(namespace_id, since)
    JOIN point_tombstones t ON t.namespace_id = s.namespace_id AND t.seq > s.since
    """
).bindparams(
    sa.bindparam("namespace_ids", type_=ARRAY(sa.Integer)),
    sa.bindparam("since", type_=ARRAY(BIGINT)),
)


@dataclass(frozen=True, slots=True)
class ChangedRows:
    """What `changed_rows` read, as the driver returned it: `as_changes` makes the changes
    (decoding payloads and building a record per point costs time in proportion to the
    write, so the change feed does it off the event loop)."""

    points: Sequence[sa.Row]
    tombstones: Sequence[sa.Row]


async def changed_rows(conn: AsyncConnection, since: dict[int, int]) -> ChangedRows:
    """Rows of the points written and deleted in each namespace after the given seq.

    Writers take the collection row lock before drawing a seq, so within a collection seqs
    commit in order: everything up to the largest seq seen here is complete.
    """
    params = {"namespace_ids": list(since), "since": list(since.values())}
    written = (await conn.execute(_CHANGED_POINTS, params)).all()
    return ChangedRows(written, (await conn.execute(_NEW_TOMBSTONES, params)).all())


def as_changes(rows: ChangedRows) -> tuple[list[PointChange], list[Tombstone]]:
    """The point changes and tombstones of `changed_rows`' rows."""
    changes: dict[tuple[int, str], PointChange] = {}
    for row in rows.points:
        key = (row.namespace_id, row.point_id)
        change = changes.get(key)
        if change is None:
            payload = None if row.payload is None else json.loads(row.payload)
            change = PointChange(
                row.namespace_id, wire_point_id(row.point_id, row.id_kind), row.seq, {}, payload
            )
            changes[key] = change
        if row.name is not None:
            change.vectors[row.name] = (row.vector_seq, row.vector)
    stones = [
        Tombstone(row.namespace_id, wire_point_id(row.point_id, row.id_kind), row.seq)
        for row in rows.tombstones
    ]
    return list(changes.values()), stones


async def latest_seqs(conn: AsyncConnection) -> dict[int, int]:
    """The largest seq written (or deleted) in every namespace."""
    stmt = sa.text(
        """
        SELECT namespace_id, max(seq) AS seq FROM (
            SELECT namespace_id, seq FROM points
            UNION ALL SELECT namespace_id, seq FROM point_tombstones
        ) AS writes GROUP BY namespace_id
        """
    )
    return {row.namespace_id: row.seq for row in await conn.execute(stmt)}


# ------------------------------------------------------------- partial updates

_UPDATE_PAYLOADS = sa.text(
    """
    UPDATE points AS p SET payload = u.payload::jsonb, seq = nextval('point_seq')
    FROM unnest(:point_ids, :payloads) AS u(point_id, payload)
    WHERE p.namespace_id = :namespace_id AND p.point_id = u.point_id
    RETURNING p.point_id, p.seq
    """
).bindparams(
    sa.bindparam("point_ids", type_=ARRAY(TEXT)),
    sa.bindparam("payloads", type_=ARRAY(TEXT)),
)


async def select_payloads(
    conn: AsyncConnection, namespace_id: int, point_ids: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """Current payloads of the existing points among `point_ids`."""
    stmt = sa.select(points.c.point_id, points.c.payload).where(
        points.c.namespace_id == namespace_id, among(points.c.point_id, point_ids)
    )
    return {row.point_id: row.payload for row in await conn.execute(stmt)}


async def update_payloads(
    conn: AsyncConnection, namespace_id: int, payloads: dict[str, dict[str, Any] | None]
) -> dict[str, int]:
    """Replace the payloads of existing points; returns point id -> new seq."""
    if not payloads:
        return {}
    result = await conn.execute(
        _UPDATE_PAYLOADS,
        {
            "namespace_id": namespace_id,
            "point_ids": list(payloads),
            "payloads": [_json_text(p) for p in payloads.values()],
        },
    )
    return {row.point_id: row.seq for row in result}


_TOUCH_POINTS = sa.text(
    """
    UPDATE points SET seq = nextval('point_seq')
    WHERE namespace_id = :namespace_id AND point_id = ANY(:point_ids)
    RETURNING point_id, seq
    """
).bindparams(sa.bindparam("point_ids", type_=ARRAY(TEXT)))


_DELETE_NAMED_VECTORS = sa.text(
    """
    DELETE FROM point_vectors AS v USING unnest(:point_ids, :names) AS u(point_id, name)
    WHERE v.namespace_id = :namespace_id AND v.point_id = u.point_id AND v.name = u.name
    """
).bindparams(
    sa.bindparam("point_ids", type_=ARRAY(TEXT)),
    sa.bindparam("names", type_=ARRAY(TEXT)),
)


async def replace_vectors(
    conn: AsyncConnection,
    namespace_id: int,
    vectors: dict[str, dict[str, bytes | None]],
) -> dict[str, int]:
    """Set (bytes) or remove (None) some named vectors of existing points, keeping the rest.

    Returns point id -> new seq for the points that exist.
    """
    result = await conn.execute(
        _TOUCH_POINTS, {"namespace_id": namespace_id, "point_ids": list(vectors)}
    )
    seqs = {row.point_id: row.seq for row in result}
    changed = [(pid, name) for pid in seqs for name in vectors[pid]]
    if changed:
        await conn.execute(
            _DELETE_NAMED_VECTORS,
            {
                "namespace_id": namespace_id,
                "point_ids": [pid for pid, _ in changed],
                "names": [name for _, name in changed],
            },
        )
    rows = [
        (pid, name, seqs[pid], vector)
        for pid in seqs
        for name, vector in vectors[pid].items()
        if vector is not None
    ]
    await _insert_vectors(conn, namespace_id, rows)
    return seqs


async def select_ids(
    conn: AsyncConnection, namespace_id: int, where: sa.ColumnElement[bool] | None = None
) -> list[tuple[str, PointId]]:
    """(id text, wire id) of the points of a namespace, optionally filtered."""
    stmt = sa.select(points.c.point_id, points.c.id_kind).where(
        points.c.namespace_id == namespace_id
    )
    if where is not None:
        stmt = stmt.where(where)
    return [
        (row.point_id, wire_point_id(row.point_id, row.id_kind))
        for row in await offload.execute(conn, stmt)
    ]


async def ensure_namespace(conn: AsyncConnection, collection_id: int, name: str) -> int:
    """The namespace's id, creating it if needed (Upstash creates namespaces on upsert)."""
    stmt = (
        sa.dialects.postgresql.insert(namespaces)
        .values(collection_id=collection_id, name=name)
        .on_conflict_do_nothing(index_elements=["collection_id", "name"])
        .returning(namespaces.c.id)
    )
    created = (await conn.execute(stmt)).scalar_one_or_none()
    if created is not None:
        return created
    existing = sa.select(namespaces.c.id).where(
        namespaces.c.collection_id == collection_id, namespaces.c.name == name
    )
    return (await conn.execute(existing)).scalar_one()


async def count_by_namespace(conn: AsyncConnection, namespace_ids: Sequence[int]) -> dict[int, int]:
    stmt = (
        sa.select(points.c.namespace_id, sa.func.count())
        .where(among(points.c.namespace_id, namespace_ids))
        .group_by(points.c.namespace_id)
    )
    return {row[0]: row[1] for row in await conn.execute(stmt)}


async def select_ids_rechecked(
    conn: AsyncConnection,
    namespace_id: int,
    where: sa.ColumnElement[bool],
    recheck: sa.ColumnElement[bool],
) -> list[tuple[str, PointId, dict[str, Any] | None, list[str]] | tuple[str, PointId]]:
    """Ids matching `where`; rows where `recheck` holds also carry payload and vector names,
    for the caller to confirm with the in-memory predicate."""
    names = (
        sa.select(sa.func.coalesce(sa.func.array_agg(point_vectors.c.name), sa.text("'{}'")))
        .where(
            point_vectors.c.namespace_id == points.c.namespace_id,
            point_vectors.c.point_id == points.c.point_id,
        )
        .scalar_subquery()
    )
    stmt = sa.select(
        points.c.point_id, points.c.id_kind, recheck.label("recheck"), points.c.payload, names
    ).where(points.c.namespace_id == namespace_id, where)
    out: list = []
    for row in await offload.execute(conn, stmt):
        wire = wire_point_id(row.point_id, row.id_kind)
        out.append(
            (row.point_id, wire, row.payload, row[4]) if row.recheck else (row.point_id, wire)
        )
    return out
