"""Nearest-neighbour search: one internal request, answered from the in-memory segments,
with payloads joined from PostgreSQL only when the caller asks for them."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.db import repository
from app.errors import NotFound
from app.index.segment import SearchHits
from app.models import Collection, PointId
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.planner import FilterPlanner
from app.services.points import (
    PointService,
    Record,
    canonical_id,
    check_count,
    check_vector,
    parse_point_id,
)


@dataclass(slots=True)
class SearchRequest:
    """A nearest query: by raw `vector`, or by the stored vector of `point_id`."""

    vector: Sequence[float] | None = None
    point_id: PointId | None = None
    using: str = ""
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None
    payload: PayloadSelector = field(default_factory=PayloadSelector)
    vectors: VectorSelector = field(default_factory=VectorSelector)
    hnsw_ef: int | None = None
    exact: bool = False
    indexed_only: bool = False
    filter: Any = None  # a filter AST (app.filters), already parsed by the dialect


@dataclass(slots=True)
class SearchResult:
    points: list[Record]
    plan: str  # "exact" or "hnsw"
    detail: dict[str, Any] = field(default_factory=dict)  # candidates, cache, timings


class SearchService:
    def __init__(self, points: PointService) -> None:
        self.points = points
        self.catalog = points.catalog
        self.registry = points.registry
        self.cpu = points.cpu
        self.db = points.db
        self.planner = FilterPlanner(points.db, points.cpu)
        self.plan_counts: Counter[str] = Counter()

    async def search(self, name: str, request: SearchRequest, namespace: str = "") -> SearchResult:
        collection = self.catalog.get(name)
        namespace_id = self.points._namespace(collection, namespace)
        self._check_limits(request)
        segment = self.registry.get(namespace_id, request.using)
        exclude: PointId | None = None
        if request.point_id is not None:
            # Qdrant leaves the point a query is made from out of its own results.
            exclude = canonical_id(request.point_id, collection)
            query = self._stored_vector(collection, namespace_id, request.using, exclude)
        else:
            query = check_vector(collection, request.using, request.vector or [])
        if segment is None:
            return SearchResult([], "exact")
        k = request.offset + request.limit + (1 if exclude is not None else 0)
        detail: dict[str, Any] = {}
        allowed = None
        if request.filter is not None:
            found = await self.planner.candidates(namespace_id, segment, request.filter)
            allowed = found.rows
            detail = {
                "candidates": len(found.rows),
                "filter": "cached" if found.cached else "sql",
                "filter_ms": round(found.seconds * 1000, 3),
            }
        started = time.perf_counter()
        hits: SearchHits = await self.cpu.run(
            segment.search,
            query,
            k,
            ef=request.hnsw_ef,
            exact=request.exact,
            score_threshold=request.score_threshold,
            indexed_only=request.indexed_only,
            allowed=allowed,
        )
        chosen = [
            (pid, score, version)
            for pid, score, version in zip(hits.ids, hits.scores, hits.versions, strict=True)
            if pid != exclude
        ][request.offset : request.offset + request.limit]
        detail["search_ms"] = round((time.perf_counter() - started) * 1000, 3)
        records = [Record(pid, version, score=score) for pid, score, version in chosen]
        await self._attach(collection, namespace_id, records, request)
        self.plan_counts[hits.plan + ("-filtered" if allowed is not None else "")] += 1
        return SearchResult(records, hits.plan, detail)

    async def search_batch(
        self, name: str, requests: Sequence[SearchRequest]
    ) -> list[SearchResult]:
        return [await self.search(name, request) for request in requests]

    @staticmethod
    def _check_limits(request: SearchRequest) -> None:
        check_count("limit", request.limit, minimum=1)
        check_count("offset", request.offset)
        if request.hnsw_ef is not None:
            check_count("hnsw_ef", request.hnsw_ef, minimum=1)

    def _stored_vector(
        self, collection: Collection, namespace_id: int, using: str, point_id: PointId
    ) -> np.ndarray:
        if using not in collection.config.vectors:
            check_vector(collection, using, [])  # raises Qdrant's unknown-name error
        segment = self.registry.get(namespace_id, using)
        vector = segment.vector(point_id) if segment is not None else None
        if vector is None:
            raise NotFound(f"Not found: No point with id {point_id} found")
        return vector

    async def _attach(
        self,
        collection: Collection,
        namespace_id: int,
        records: list[Record],
        request: SearchRequest,
    ) -> None:
        """Fill payloads (one SQL round trip) and vectors (from memory) as requested."""
        if request.payload.enabled and records:
            ids = [parse_point_id(r.id, collection)[0] for r in records]
            async with self.db.connect() as conn:
                stored = await repository.select_points(conn, namespace_id, ids, with_vectors=False)
            for record, text_id in zip(records, ids, strict=True):
                point = stored.get(text_id)
                record.payload = request.payload.apply(point.payload if point else None)
        if request.vectors.enabled:
            for record in records:
                record.vectors = {}
                for vector_name in collection.config.vectors:
                    segment = self.registry.get(namespace_id, vector_name)
                    if request.vectors.wants(vector_name) and segment is not None:
                        vector = segment.vector(record.id)
                        if vector is not None:
                            record.vectors[vector_name] = vector.tolist()
