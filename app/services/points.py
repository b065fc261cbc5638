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
from typing import Any

import numpy as np

from app.db import repository
from app.db.database import Database
from app.db.repository import PointWrite
from app.errors import BadRequest, CollectionNotFound, ValidationFailed
from app.index.registry import IndexRegistry
from app.models import Collection, PointId, point_id_key, wire_point_id
from app.services.catalog import Catalog
from app.services.cpu import CpuPool
from app.services.filtering import filter_where, matching_ids
from app.services.payloads import PayloadSelector, VectorSelector
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
    vectors: dict[str, Sequence[float]]
    payload: dict[str, Any] | None = None
    data: str | None = None


@dataclass(slots=True)
class Record:
    """A point as reads return it; `vectors` holds only the selected names."""

    id: PointId
    version: int
    payload: dict[str, Any] | None = None
    vectors: dict[str, list[float]] | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_point_id(point_id: Any, collection: Collection) -> tuple[str, Any, int | None]:
    """Canonical id text, kind and number; Upstash indexes take any string as an id."""
    try:
        return point_id_key(point_id, strings=collection.dialect == "upstash")
    except ValueError as exc:
        raise BadRequest(f"Wrong input: {exc}") from None


MAX_COUNT = 2**31 - 1  # limits and offsets beyond this are mistakes, not requests


def check_count(name: str, value: int, minimum: int = 0) -> None:
    if not minimum <= value <= MAX_COUNT:
        raise BadRequest(f"Wrong input: {name} must be between {minimum} and {MAX_COUNT}")


def canonical_id(point_id: Any, collection: Collection) -> PointId:
    """The id as segments and responses hold it: an int, or a lowercase hyphenated UUID."""
    text, kind, _ = parse_point_id(point_id, collection)
    return wire_point_id(text, kind)


def check_vector(collection: Collection, name: str, values: Sequence[float]) -> np.ndarray:
    """The vector as float32 after Qdrant's checks: known name, right size, finite."""
    params = collection.config.vectors.get(name)
    if params is None:
        shown = name or "(unnamed)"
        raise BadRequest(f"Wrong input: Not existing vector name error: {shown}")
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
        on_commit: Callable[[], None],
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.cpu = cpu
        self.on_commit = on_commit
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
            self.on_commit()
        self.registry.notify()
        return max((effect.seq for effect in effects), default=0)

    async def _select_ids(
        self, conn, collection: Collection, namespace_id: int, selector: PointSelector
    ) -> list[str]:
        """Id texts of the points a selector names (ids need not exist; filters match)."""
        if selector.filter is not None:
            ids = [text for text, _ in await matching_ids(conn, namespace_id, selector.filter)]
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
            found = await repository.select_points(conn, namespace_id, text_ids, with_vectors=False)
        stored = [found[t] for t in text_ids if t in found]
        return self.records(collection, namespace_id, stored, payload, vectors)

    async def scroll(
        self,
        name: str,
        offset: Any,
        limit: int,
        payload: PayloadSelector,
        vectors: VectorSelector,
        filter_: Any = None,
    ) -> tuple[list[Record], PointId | None]:
        """A page of points in id order and the id the next page starts at."""
        check_count("limit", limit, minimum=1)
        collection = self.catalog.get(name)
        namespace_id = self._namespace(collection, "")
        start = None
        if offset is not None:
            text, kind, number = parse_point_id(offset, collection)
            start = (int(kind), number, text)
        async with self.db.connect() as conn:
            where = await filter_where(conn, namespace_id, filter_)
            rows = await repository.scroll_points(
                conn, namespace_id, start=start, limit=limit + 1, with_vectors=False, where=where
            )
        next_offset = rows[limit].id if len(rows) > limit else None
        return self.records(collection, namespace_id, rows[:limit], payload, vectors), next_offset

    async def count(self, name: str, namespace: str = "", filter_: Any = None) -> int:
        collection = self.catalog.get(name)
        namespace_id = self._namespace(collection, namespace)
        async with self.db.connect() as conn:
            where = await filter_where(conn, namespace_id, filter_)
            return await repository.count_points(conn, namespace_id, where)

    def records(
        self,
        collection: Collection,
        namespace_id: int,
        stored: Sequence[repository.PointRecord],
        payload: PayloadSelector,
        vectors: VectorSelector,
    ) -> list[Record]:
        """Shape stored points for output; vectors come from the in-memory segments."""
        wanted = [n for n in collection.config.vectors if vectors.wants(n)]
        segments = {n: self.registry.get(namespace_id, n) for n in wanted}
        result = []
        for point in stored:
            record = Record(point.id, point.seq, payload.apply(point.payload))
            if vectors.enabled:
                record.vectors = {}
                for vector_name, segment in segments.items():
                    vector = segment.vector(point.id) if segment else None
                    if vector is not None:
                        record.vectors[vector_name] = vector.tolist()
            result.append(record)
        return result

    @staticmethod
    def _namespace(collection: Collection, namespace: str) -> int:
        try:
            return collection.namespaces[namespace]
        except KeyError:
            raise CollectionNotFound(collection.name) from None
