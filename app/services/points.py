"""Writing and reading points: upsert, retrieve, delete, scroll, count.

A write is committed to PostgreSQL first and applied to the in-memory segments afterwards,
inside one per-collection lock, so the next request of any client sees it (read-your-writes)
and the segments apply writes in commit order.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app import limits
from app.db import offload, ordering, payload_indexes, repository
from app.db.database import Database
from app.db.repository import PointWrite
from app.errors import BadRequest, CollectionNotFound, UnknownVectorName, ValidationFailed
from app.index.registry import IndexRegistry
from app.models import Collection, PointId, SparseVector, point_id_key, wire_point_id
from app.services.catalog import Catalog
from app.services.cpu import CpuPool
from app.services.filtering import filter_where, matching_ids, offload_pool
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.statistics import TableStatistics
from app.services.writes import (
    Delete,
    Operation,
    PointSelector,
    ReplaceVectors,
    Upsert,
    WriteContext,
)


@dataclass(slots=True)
class PointInput:
    """A point as a dialect parsed it: id, vectors by name (`""` = unnamed), payload."""

    id: PointId
    vectors: dict[str, Sequence[float] | SparseVector]
    payload: dict[str, Any] | None = None
    data: str | None = None


@dataclass(slots=True)
class Record:
    """A point as reads return it; `vectors` holds only the selected names."""

    id: PointId
    version: int
    payload: dict[str, Any] | None = None
    # dense: the list of floats; sparse: `{"indices", "values"}` (`SparseVector.as_wire`)
    vectors: dict[str, Any] | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_point_id(point_id: Any, collection: Collection) -> tuple[str, Any, int | None]:
    """Canonical id text, kind and number; Upstash indexes take any string as an id."""
    if isinstance(point_id, str):
        limits.check_id(point_id)
    try:
        return point_id_key(point_id, strings=collection.dialect == "upstash")
    except ValueError as exc:
        raise BadRequest(f"Wrong input: {exc}") from None


@dataclass(frozen=True, slots=True)
class OrderBy:
    """Qdrant scroll `order_by`: a payload key with a range-capable index, and a direction."""

    key: str
    descending: bool = False
    start_from: Any = None  # a number, or an RFC 3339 string for datetime keys


RANGE_SCHEMAS = frozenset({"integer", "float", "datetime"})


MAX_COUNT = 2**31 - 1  # limits and offsets beyond this are mistakes, not requests


def check_count(name: str, value: int, minimum: int = 0) -> None:
    if not minimum <= value <= MAX_COUNT:
        raise BadRequest(f"Wrong input: {name} must be between {minimum} and {MAX_COUNT}")


def canonical_id(point_id: Any, collection: Collection) -> PointId:
    """The id as segments and responses hold it: an int, or a lowercase hyphenated UUID."""
    text, kind, _ = parse_point_id(point_id, collection)
    return wire_point_id(text, kind)


def check_vector(collection: Collection, name: str, values: Any) -> np.ndarray | SparseVector:
    """The vector as float32 after Qdrant's checks: known name, right size, finite; or the
    `SparseVector` (checked by the dialect that parsed it) under a sparse name."""
    sparse = isinstance(values, SparseVector)
    if collection.config.is_sparse(name) and sparse:
        return values
    params = collection.config.vectors.get(name)
    if params is None and not collection.config.is_sparse(name):
        raise UnknownVectorName(name)
    if params is None or sparse:
        raise BadRequest(
            f"Wrong input: Conversion between sparse and regular vectors failed: vector "
            f"{name or '(unnamed)'} is {'sparse' if params is None else 'dense'}"
        )
    try:
        vector = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValidationFailed("Validation error: a vector must be a list of numbers") from None
    if vector.ndim != 1:
        raise BadRequest("Wrong input: expected a dense vector (a flat list of numbers)")
    if len(vector) != params.size:
        raise BadRequest(
            f"Wrong input: Vector dimension error: expected dim: {params.size}, got {len(vector)}"
        )
    if not np.isfinite(vector).all():
        raise BadRequest("Wrong input: vector values must be finite numbers (no NaN or inf)")
    return vector


class PointService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        registry: IndexRegistry,
        cpu: CpuPool,
        on_commit: Callable[[int], None],
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.cpu = cpu
        self.on_commit = on_commit
        self.statistics = TableStatistics(db)
        self._write_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    # ------------------------------------------------------------------- writes

    async def upsert(self, name: str, points: Sequence[PointInput], namespace: str = "") -> int:
        """Insert or replace points; returns the operation id (the batch's last seq)."""
        collection = self.catalog.get(name)
        return await self.write(name, [self.upsert_operation(collection, points)], namespace)

    async def delete(self, name: str, ids: Iterable[Any], namespace: str = "") -> int:
        """Delete points by id; returns the operation id (0 when nothing existed)."""
        return await self.write(name, [Delete(PointSelector(ids=tuple(ids)))], namespace)

    def upsert_operation(self, collection: Collection, points: Sequence[PointInput]) -> Upsert:
        """Validate points (ids, vector names, sizes, finiteness) before anything is written."""
        latest = {
            parse_point_id(p.id, collection)[0]: p for p in points
        }  # the last write of an id wins
        writes, vectors = [], {}
        for text_id, point in latest.items():
            limits.check_payload("a payload", point.payload)
            checked = {vn: check_vector(collection, vn, v) for vn, v in point.vectors.items()}
            vectors[text_id] = checked
            _, kind, number = parse_point_id(point.id, collection)
            raw = {vn: v.tobytes() for vn, v in checked.items()}
            writes.append(PointWrite(text_id, kind, number, raw, point.payload, point.data))
        return Upsert(writes, vectors)

    def vectors_operation(
        self, collection: Collection, points: Sequence[tuple[Any, dict[str, Any]]]
    ) -> ReplaceVectors:
        """Qdrant `update_vectors`: validated named vectors for existing points."""
        vectors: dict[str, dict[str, Any]] = {}
        for point_id, named in points:
            text_id = parse_point_id(point_id, collection)[0]
            vectors[text_id] = {vn: check_vector(collection, vn, v) for vn, v in named.items()}
        return ReplaceVectors(vectors)

    async def write(self, name: str, operations: Sequence[Operation], namespace: str = "") -> int:
        """Run operations in one transaction, then apply them to the segments.

        Returns the operation id: the last seq written (0 when nothing changed).
        """
        collection = self.catalog.get(name)
        namespace_id = self._namespace(collection, namespace)
        context = WriteContext(collection, namespace_id, self.registry, self._select_ids)
        async with self._write_locks[collection.id]:
            async with self.db.begin() as conn:
                await self._lock(conn, collection)
                effects = [await operation.execute(conn, context) for operation in operations]
            await self.cpu.run(lambda: [effect.apply() for effect in effects])
            self.on_commit(namespace_id)
        self.registry.notify()
        self.statistics.wrote(sum(effect.rows for effect in effects))
        return max((effect.seq for effect in effects), default=0)

    async def _select_ids(
        self, conn, collection: Collection, namespace_id: int, selector: PointSelector
    ) -> list[str]:
        """Id texts of the points a selector names (ids need not exist; filters match)."""
        if selector.filter is not None:
            indexed = self.registry.declared_fields(namespace_id)
            found = await matching_ids(
                conn, namespace_id, selector.filter, indexed=indexed, cpu=self.cpu
            )
            ids = [text for text, _ in found]
            if selector.ids is not None:
                wanted = {parse_point_id(i, collection)[0] for i in selector.ids}
                ids = [text for text in ids if text in wanted]
            return ids
        return list(dict.fromkeys(parse_point_id(i, collection)[0] for i in selector.ids or ()))

    async def _lock(self, conn, collection: Collection) -> None:
        if not await repository.lock_collection(conn, collection.id):
            raise CollectionNotFound(collection.name)

    # -------------------------------------------------------------------- reads

    async def retrieve(
        self,
        name: str,
        ids: Sequence[Any],
        payload: PayloadSelector,
        vectors: VectorSelector,
        namespace: str = "",
    ) -> list[Record]:
        """The existing points among `ids`, in request order, each once."""
        collection = self.catalog.get(name)
        namespace_id = self._namespace(collection, namespace)
        text_ids = list(dict.fromkeys(parse_point_id(i, collection)[0] for i in ids))
        async with self.db.connect() as conn:
            found = await repository.select_points(
                conn, namespace_id, text_ids, with_vectors=False, shape_in=self.cpu
            )
        stored = [found[t] for t in text_ids if t in found]
        return await self.cpu.run_per_item(
            len(stored), self.records, collection, namespace_id, stored, payload, vectors
        )

    async def scroll(
        self,
        name: str,
        offset: Any,
        limit: int,
        payload: PayloadSelector,
        vectors: VectorSelector,
        filter_: Any = None,
        order_by: OrderBy | None = None,
    ) -> tuple[list[Record], PointId | None]:
        """A page of points in id order and the id the next page starts at.

        With `order_by`, points come in order of that payload value instead (one entry per
        value, `extra["order_value"]`) and there is no next page offset, as in Qdrant.
        """
        check_count("limit", limit, minimum=1)
        limits.check_result_size("limit", limit)
        collection = self.catalog.get(name)
        namespace_id = self._namespace(collection, "")
        if order_by is not None:
            if offset is not None:
                raise BadRequest(
                    "Bad request: Cannot use an `offset` when using `order_by`. The alternative "
                    "for paging is to use `order_by.start_from` and a filter to exclude the IDs "
                    "that you've already seen for the `order_by.start_from` value"
                )
            records = await self._ordered(collection, namespace_id, order_by, limit, filter_)
            ordered = await self.cpu.run_per_item(
                len(records),
                self.records_with_order,
                collection,
                namespace_id,
                records,
                payload,
                vectors,
            )
            return ordered, None
        start = None
        if offset is not None:
            text, kind, number = parse_point_id(offset, collection)
            start = (int(kind), number, text)
        async with self.db.connect() as conn:
            where = await self._where(conn, namespace_id, filter_)
            with offload.rendering_in(offload_pool(filter_, self.cpu)):
                rows = await repository.scroll_points(
                    conn,
                    namespace_id,
                    start=start,
                    limit=limit + 1,
                    with_vectors=False,
                    where=where,
                    shape_in=self.cpu,
                )
        next_offset = rows[limit].id if len(rows) > limit else None
        stored = rows[:limit]
        page = await self.cpu.run_per_item(
            len(stored), self.records, collection, namespace_id, stored, payload, vectors
        )
        return page, next_offset

    async def _ordered(
        self,
        collection: Collection,
        namespace_id: int,
        order_by: OrderBy,
        limit: int,
        filter_: Any,
    ) -> list[tuple[repository.PointRecord, Any]]:
        async with self.db.connect() as conn:
            kind = await _range_index(conn, collection, order_by.key)
            where = await self._where(conn, namespace_id, filter_)
            with offload.rendering_in(offload_pool(filter_, self.cpu)):
                return await ordering.ordered_points(
                    conn,
                    namespace_id,
                    path=order_by.key.split("."),
                    descending=order_by.descending,
                    start_from=_order_start(order_by.start_from, kind),
                    datetimes=kind == "datetime",
                    limit=limit,
                    where=where,
                )

    def records_with_order(
        self,
        collection: Collection,
        namespace_id: int,
        entries: Sequence[tuple[repository.PointRecord, Any]],
        payload: PayloadSelector,
        vectors: VectorSelector,
    ) -> list[Record]:
        stored = [point for point, _ in entries]
        records = self.records(collection, namespace_id, stored, payload, vectors)
        for record, (_, value) in zip(records, entries, strict=True):
            record.extra["order_value"] = value
        return records

    async def count(self, name: str, namespace: str = "", filter_: Any = None) -> int:
        collection = self.catalog.get(name)
        namespace_id = self._namespace(collection, namespace)
        async with self.db.connect() as conn:
            where = await self._where(conn, namespace_id, filter_)
            with offload.rendering_in(offload_pool(filter_, self.cpu)):
                return await repository.count_points(conn, namespace_id, where)

    async def _where(self, conn, namespace_id: int, filter_: Any) -> Any:
        """The WHERE clause of a filter over this namespace's points (None: no filter)."""
        indexed = self.registry.declared_fields(namespace_id)
        return await filter_where(conn, namespace_id, filter_, indexed, cpu=self.cpu)

    def records(
        self,
        collection: Collection,
        namespace_id: int,
        stored: Sequence[repository.PointRecord],
        payload: PayloadSelector,
        vectors: VectorSelector,
    ) -> list[Record]:
        """Shape stored points for output; vectors come from the in-memory segments."""
        result = [Record(point.id, point.seq, payload.apply(point.payload)) for point in stored]
        self.attach_vectors(collection, namespace_id, result, vectors)
        return result

    def attach_vectors(
        self,
        collection: Collection,
        namespace_id: int,
        records: Sequence[Record],
        vectors: VectorSelector,
    ) -> None:
        attach_vectors(self.registry, collection, namespace_id, records, vectors)

    @staticmethod
    def _namespace(collection: Collection, namespace: str) -> int:
        try:
            return collection.namespaces[namespace]
        except KeyError:
            raise CollectionNotFound(collection.name) from None


def attach_vectors(
    registry: IndexRegistry,
    collection: Collection,
    namespace_id: int,
    records: Sequence[Record],
    vectors: VectorSelector,
) -> None:
    """Fill each record's selected vectors from the segments and sparse indexes (as stored:
    normalised for Cosine); nothing when no vector is asked for."""
    if not vectors.enabled:
        return
    config = collection.config
    segments = {n: registry.get(namespace_id, n) for n in config.vectors}
    indexes = {n: registry.get_sparse(namespace_id, n) for n in config.sparse_vectors}
    segments = {n: s for n, s in segments.items() if s is not None and vectors.wants(n)}
    indexes = {n: i for n, i in indexes.items() if i is not None and vectors.wants(n)}
    for record in records:
        record.vectors = {}
        for vector_name, segment in segments.items():
            vector = segment.vector(record.id)
            if vector is not None:
                record.vectors[vector_name] = vector.tolist()
        for vector_name, index in indexes.items():
            stored = index.get(record.id)
            if stored is not None:
                record.vectors[vector_name] = SparseVector(*stored).as_wire()


async def _range_index(conn, collection: Collection, key: str) -> str:
    """The type of the range-capable payload index declared on `key` (400 without one)."""
    for row in await payload_indexes.declared(conn, collection.id):
        schema = row.field_schema
        kind = schema.get("type")
        if row.field_name == key and kind in RANGE_SCHEMAS and schema.get("range") is not False:
            return kind
    raise BadRequest(
        f"Bad request: No range index for `order_by` key `{key}`. Please create one to use "
        "`order_by`. Check https://qdrant.tech/documentation/concepts/indexing/#payload-index "
        "to see which payload schemas support Range conditions"
    )


def _order_start(start_from: Any, kind: str) -> Any:
    """`start_from` in the order's units: the number, or microseconds for datetimes."""
    if start_from is None or isinstance(start_from, bool):
        return None
    if isinstance(start_from, int | float) and kind != "datetime":
        return start_from
    if isinstance(start_from, int | float):
        return int(start_from)
    if isinstance(start_from, str) and kind == "datetime":
        try:
            moment = datetime.fromisoformat(start_from.replace("z", "Z"))
        except ValueError:
            raise BadRequest(f"Wrong input: order_by.start_from {start_from!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1_000_000)
    raise BadRequest("Wrong input: order_by.start_from must be a number or an RFC 3339 string")
