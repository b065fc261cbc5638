"""Write operations, executed as one transaction and then applied to the segments.

Each operation is validated before any SQL runs, executed inside the collection's write
transaction, and returns an `Effect`: the in-memory change to make once PostgreSQL has
committed. A batch of operations (Qdrant `points/batch`) therefore commits whole or not at
all, and the segments only ever reflect committed writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Collection as Collection_
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app import limits
from app.db import repository
from app.db.repository import PointWrite
from app.errors import NotFound, UnknownVectorName
from app.index.registry import IndexRegistry
from app.models import Collection, PointId, wire_point_id
from app.services.payloads import delete_paths, merge_at


@dataclass(frozen=True, slots=True)
class PointSelector:
    """Which points an operation touches: explicit ids, or those matching a filter."""

    ids: tuple[Any, ...] | None = None
    filter: Any = None


@dataclass(slots=True)
class Effect:
    """What a committed operation changes in memory, and the last seq it wrote."""

    seq: int = 0
    apply: Callable[[], None] = lambda: None
    rows: int = 0  # points written or deleted


@dataclass(slots=True)
class WriteContext:
    collection: Collection
    namespace_id: int
    registry: IndexRegistry
    select_ids: Callable[[AsyncConnection, Collection, int, PointSelector], Any]

    def segment(self, vector_name: str):
        params = self.collection.config.vectors[vector_name]
        return self.registry.ensure(self.namespace_id, vector_name, params)

    def put_vectors(
        self, vector_name: str, ids: list[PointId], vectors: list[Any], seqs: list[int]
    ) -> None:
        """Store written vectors of one name: dense arrays in its segment, `SparseVector`s
        in its inverted index."""
        if self.collection.config.is_sparse(vector_name):
            index = self.registry.ensure_sparse(self.namespace_id, vector_name)
            index.upsert_many(
                (pid, v.indices, v.values, seq)
                for pid, v, seq in zip(ids, vectors, seqs, strict=True)
            )
        else:
            self.segment(vector_name).upsert(ids, np.stack(vectors), seqs)

    def drop_vectors(self, vector_name: str, ids: list[PointId]) -> None:
        if self.collection.config.is_sparse(vector_name):
            self.registry.ensure_sparse(self.namespace_id, vector_name).delete_many(ids)
        else:
            self.segment(vector_name).delete(ids)

    def payloads_written(self, payloads: dict[str, Any], wire: dict[str, PointId], seqs) -> None:
        """Keep the namespace's in-memory payload columns (if any) in step with a write."""
        columns = self.registry.columns(self.namespace_id)
        if columns is not None:
            columns.put((wire[t], seq, payloads[t]) for t, seq in seqs.items())


class Operation(Protocol):
    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect: ...


def _last(seqs: dict[str, int]) -> int:
    return max(seqs.values(), default=0)


def _set_versions(ctx: WriteContext, wire: dict[str, PointId], seqs: dict[str, int]) -> None:
    for vector_name in ctx.collection.config.vectors:
        ctx.segment(vector_name).set_versions([wire[t] for t in seqs], list(seqs.values()))


@dataclass(slots=True)
class Upsert:
    """Insert or replace whole points (every vector and the payload)."""

    writes: list[PointWrite]
    # id text -> vector name -> checked vector (a float32 array, or a `SparseVector`)
    vectors: dict[str, dict[str, Any]]

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        seqs = await repository.upsert_points(conn, ctx.namespace_id, self.writes)
        wire = {w.id_text: wire_point_id(w.id_text, w.id_kind) for w in self.writes}

        def apply() -> None:
            for vector_name in ctx.collection.config.vector_names():
                having = [t for t in seqs if vector_name in self.vectors[t]]
                lacking = [wire[t] for t in seqs if vector_name not in self.vectors[t]]
                if having:
                    ctx.put_vectors(
                        vector_name,
                        [wire[t] for t in having],
                        [self.vectors[t][vector_name] for t in having],
                        [seqs[t] for t in having],
                    )
                if lacking:
                    ctx.drop_vectors(vector_name, lacking)
            ctx.payloads_written({w.id_text: w.payload for w in self.writes}, wire, seqs)

        return Effect(_last(seqs), apply, len(seqs))


@dataclass(slots=True)
class Delete:
    selector: PointSelector

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        targets = await ctx.select_ids(conn, ctx.collection, ctx.namespace_id, self.selector)
        deleted, seq = await repository.delete_points(conn, ctx.namespace_id, list(targets))

        def apply() -> None:
            for vector_name in ctx.collection.config.vector_names():
                ctx.drop_vectors(vector_name, deleted)
            if (columns := ctx.registry.columns(ctx.namespace_id)) is not None:
                columns.remove((point_id, seq or 0) for point_id in deleted)

        return Effect(seq or 0, apply, len(deleted))


@dataclass(slots=True)
class ChangePayload:
    """Any payload edit: `change(old payload) -> new payload` on the selected points."""

    selector: PointSelector
    change: Callable[[dict[str, Any]], dict[str, Any]]

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        targets = await ctx.select_ids(conn, ctx.collection, ctx.namespace_id, self.selector)
        current = await repository.select_payloads(conn, ctx.namespace_id, list(targets))
        _require_all(targets, current)
        new = {pid: self.change(dict(payload or {})) for pid, payload in current.items()}
        for payload in new.values():  # a key path can nest the change deeper than it was sent
            limits.check_payload("the payload", payload)
        seqs = await repository.update_payloads(conn, ctx.namespace_id, new)
        wire = await _wire_ids(conn, ctx, seqs)

        def apply() -> None:
            _set_versions(ctx, wire, seqs)
            ctx.payloads_written(new, wire, seqs)

        return Effect(_last(seqs), apply, len(seqs))


def set_payload(selector: PointSelector, payload: dict[str, Any], key: str | None) -> ChangePayload:
    limits.check_payload("the payload", payload)
    return ChangePayload(selector, lambda old: merge_at(old, key, payload))


def overwrite_payload(selector: PointSelector, payload: dict[str, Any]) -> ChangePayload:
    limits.check_payload("the payload", payload)
    return ChangePayload(selector, lambda _old: dict(payload))


def delete_payload_keys(selector: PointSelector, keys: Sequence[str]) -> ChangePayload:
    return ChangePayload(selector, lambda old: delete_paths(old, keys))


def clear_payload(selector: PointSelector) -> ChangePayload:
    return ChangePayload(selector, lambda _old: {})


@dataclass(slots=True)
class ReplaceVectors:
    """Set some named vectors (array) or remove them (None) on existing points."""

    vectors: dict[str, dict[str, Any]]  # id text -> name -> checked vector | None
    selector: PointSelector | None = None  # for removals chosen by filter or ids
    names: tuple[str, ...] = field(default_factory=tuple)

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        known = ctx.collection.config.vector_names()
        for name in self.names:
            if name not in known:
                raise UnknownVectorName(name)
        vectors = dict(self.vectors)
        if self.selector is not None:
            for pid in await ctx.select_ids(conn, ctx.collection, ctx.namespace_id, self.selector):
                vectors[pid] = dict.fromkeys(self.names)
        raw = {
            pid: {n: (None if v is None else v.tobytes()) for n, v in named.items()}
            for pid, named in vectors.items()
        }
        seqs = await repository.replace_vectors(conn, ctx.namespace_id, raw)
        if self.selector is None:
            _require_all(list(vectors), seqs)
        wire = await _wire_ids(conn, ctx, seqs)

        def apply() -> None:
            for pid, seq in seqs.items():
                for name, vector in vectors[pid].items():
                    if vector is None:
                        ctx.drop_vectors(name, [wire[pid]])
                    else:
                        ctx.put_vectors(name, [wire[pid]], [vector], [seq])
            _set_versions(ctx, wire, seqs)

        return Effect(_last(seqs), apply)


def _require_all(wanted: Sequence[str], found: Collection_[str]) -> None:
    """Qdrant answers 404 for an id it does not hold; unlike Qdrant, nothing is written."""
    for point_id in wanted:
        if point_id not in found:
            raise NotFound(f"Not found: No point with id {point_id} found")


async def _wire_ids(
    conn: AsyncConnection, ctx: WriteContext, seqs: dict[str, int]
) -> dict[str, PointId]:
    """Wire ids of written points (ints for numeric ids), read back from PostgreSQL."""
    found = await repository.select_points(conn, ctx.namespace_id, list(seqs), with_vectors=False)
    return {pid: record.id for pid, record in found.items()}
