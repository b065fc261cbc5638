"""Nearest-neighbour search: one internal request, answered from the in-memory segments,
with payloads joined from PostgreSQL only when the caller asks for them."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app import limits
from app.db import repository
from app.errors import BadRequest
from app.index.recommend import RecoScorer, Strategy
from app.index.segment import SearchHits, Segment
from app.models import Collection, PointId
from app.services import recommend
from app.services.counters import Counters
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.planner import Candidates, FilterPlanner
from app.services.points import (
    OrderBy,
    PointService,
    Record,
    canonical_id,
    check_count,
    check_vector,
    parse_point_id,
)
from app.services.recommend import Recommend

PLANS = "search_plans"  # `Counters` families
FILTER_SOURCES = "filter_candidates"


@dataclass(slots=True)
class SearchRequest:
    """One query: nearest to a raw `vector` or to the stored vector of `point_id`, a
    `recommend` query, or neither (points in id order, or by `order_by`, Qdrant's query
    without a query)."""

    vector: Sequence[float] | None = None
    point_id: PointId | None = None
    recommend: Recommend | None = None
    order_by: OrderBy | None = None
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

    @property
    def is_listing(self) -> bool:
        return self.vector is None and self.point_id is None and self.recommend is None


@dataclass(slots=True)
class SearchResult:
    points: list[Record]
    plan: str  # "exact" or "hnsw" ("scroll" for a query without a query)
    detail: dict[str, Any] = field(default_factory=dict)  # candidates, cache, timings


@dataclass(frozen=True, slots=True)
class Target:
    """What a segment searches for: a query vector or a recommend scorer, and the ids the
    results leave out (the point a query is made from, recommend example ids)."""

    vector: np.ndarray | None
    scorer: RecoScorer | None = None
    exclude: frozenset[PointId] = frozenset()


class SearchService:
    def __init__(self, points: PointService, counters: Counters) -> None:
        self.points = points
        self.catalog = points.catalog
        self.registry = points.registry
        self.cpu = points.cpu
        self.db = points.db
        self.planner = FilterPlanner(points.db, points.registry, points.cpu)
        self.counters = counters  # plans chosen, where filtered searches found candidates

    async def search(self, name: str, request: SearchRequest, namespace: str = "") -> SearchResult:
        collection = self.catalog.get(name)
        namespace_id = self.points._namespace(collection, namespace)
        self._check_limits(request)
        if request.is_listing:
            return await self._listing(name, request)
        target = self.target(collection, request)
        segment = self.registry.get(namespace_id, request.using)
        if segment is None:
            return SearchResult([], "exact")
        k = request.offset + request.limit + len(target.exclude)
        detail: dict[str, Any] = {}
        started = time.perf_counter()
        if request.filter is None:
            hits = await self._hits(segment, target, k, request, None)
            plan = hits.plan
        else:
            hits, plan, detail = await self._filtered_hits(
                namespace_id, segment, target, k, request
            )
        chosen = [
            (pid, score, version)
            for pid, score, version in zip(hits.ids, hits.scores, hits.versions, strict=True)
            if pid not in target.exclude
        ][request.offset : request.offset + request.limit]
        detail["search_ms"] = round((time.perf_counter() - started) * 1000, 3)
        records = [Record(pid, version, score=score) for pid, score, version in chosen]
        await self._attach(collection, namespace_id, records, request)
        self.counters.add(PLANS, plan)
        return SearchResult(records, hits.plan, detail)

    async def search_batch(
        self, name: str, requests: Sequence[SearchRequest]
    ) -> list[SearchResult]:
        return [await self.search(name, request) for request in requests]

    def target(self, collection: Collection, request: SearchRequest) -> Target:
        """The query vector (or recommend scorer) of a request, with its checks and 404s."""
        if request.recommend is not None:
            examples = recommend.resolve(
                self.catalog, self.registry, collection, request.using, request.recommend
            )
            strategy = request.recommend.strategy
            if strategy is Strategy.AVERAGE_VECTOR:
                return Target(examples.average(), exclude=examples.exclude)
            scorer = recommend.scorer(collection, request.using, examples, strategy)
            return Target(None, scorer, examples.exclude)
        if request.point_id is not None:
            # Qdrant leaves the point a query is made from out of its own results.
            point_id = canonical_id(request.point_id, collection)
            vector = recommend.stored_vector(self.registry, collection, request.using, point_id)
            return Target(vector, exclude=frozenset({point_id}))
        return Target(check_vector(collection, request.using, request.vector or []))

    def resumable_target(self, name: str, request: SearchRequest) -> Target:
        """The single query vector a resumable session follows, and the ids it leaves out.

        The session engine walks outward from one vector, so it takes nearest queries and
        `average_vector` recommend queries (whose query is that average); `best_score` and
        `sum_scores` rank by several examples at once and have no such vector.
        """
        recommendation = request.recommend
        if recommendation is not None and recommendation.strategy is not Strategy.AVERAGE_VECTOR:
            raise BadRequest(
                "Wrong input: resumable queries take nearest queries and recommend queries "
                f"with the average_vector strategy, not {recommendation.strategy.value}"
            )
        if request.is_listing:
            raise BadRequest("Wrong input: resumable queries take a query vector")
        return self.target(self.catalog.get(name), request)

    async def _filtered_hits(
        self, namespace_id: int, segment: Segment, target: Target, k: int, request: SearchRequest
    ) -> tuple[SearchHits, str, dict[str, Any]]:
        """Hits that match the filter, as the planner advises, with the plan and its detail."""
        may_sample = target.vector is not None  # a recommend scorer needs the listed rows
        found = await self.planner.candidates(namespace_id, segment, request.filter, may_sample)
        self.counters.add(FILTER_SOURCES, found.source)
        detail: dict[str, Any] = {
            "candidates": found.estimate,
            "filter": found.source,
            "filter_ms": round(found.seconds * 1000, 3),
        }
        if found.rows is None:
            confirmed = await self._confirmed_hits(namespace_id, segment, target, k, request, found)
            if confirmed is not None:
                hits, detail["checked"] = confirmed
                return hits, hits.plan + "-postfiltered", detail
            # the sample misjudged the filter: list its matches after all
            found = await self.planner.candidates(namespace_id, segment, request.filter, False)
            detail.update(candidates=found.estimate, filter=f"{detail['filter']}+{found.source}")
        hits = await self._hits(segment, target, k, request, found.rows)
        return hits, hits.plan + "-filtered", detail

    async def _confirmed_hits(
        self,
        namespace_id: int,
        segment: Segment,
        target: Target,
        k: int,
        request: SearchRequest,
        found: Candidates,
    ) -> tuple[SearchHits, int] | None:
        """Search unfiltered for enough results that `k` of them should match (by the
        estimated share) and keep those PostgreSQL confirms; once more 4x wider if too few
        matched. None if still too few, while the segment holds more: the caller lists
        the matches instead, so a filtered query returns `limit` results whenever that many
        points match. Returns the hits and how many results were checked."""
        share = max(found.estimate / max(len(segment), 1), 0.01)
        width = min(int(k / share * 2) + 20, len(segment))
        for _ in range(2):
            hits = await self._hits(segment, target, width, request, None)
            matching = await self.planner.confirm(namespace_id, request.filter, hits.ids)
            kept = [i for i, pid in enumerate(hits.ids) if pid in matching]
            if len(kept) >= k or len(hits.ids) < width or width >= len(segment):
                picked = SearchHits(
                    [hits.ids[i] for i in kept],
                    [hits.scores[i] for i in kept],
                    [hits.versions[i] for i in kept],
                    hits.plan,
                )
                return picked, len(hits.ids)
            width = min(width * 4, len(segment))
        return None

    async def _hits(
        self,
        segment: Segment,
        target: Target,
        k: int,
        request: SearchRequest,
        allowed: np.ndarray | None,
    ) -> SearchHits:
        options = {
            "ef": request.hnsw_ef,
            "exact": request.exact,
            "score_threshold": request.score_threshold,
            "allowed": allowed,
        }
        if target.scorer is not None:
            return await self.cpu.run(
                functools.partial(segment.recommend, target.scorer, k, **options)
            )
        return await self.cpu.run(
            functools.partial(
                segment.search, target.vector, k, indexed_only=request.indexed_only, **options
            )
        )

    async def _listing(self, name: str, request: SearchRequest) -> SearchResult:
        """Qdrant's query without a query: points in id order (or by `order_by`), with the
        filter, as scored points of score 1 (qdrant-client local mode's rendering)."""
        records, _ = await self.points.scroll(
            name,
            None,
            request.offset + request.limit,
            request.payload,
            request.vectors,
            request.filter,
            request.order_by,
        )
        records = records[request.offset :]
        for record in records:
            record.score = 1.0
        self.counters.add(PLANS, "scroll")
        return SearchResult(records, "scroll")

    @staticmethod
    def _check_limits(request: SearchRequest) -> None:
        check_count("limit", request.limit, minimum=1)
        limits.check_result_size("limit", request.limit)
        check_count("offset", request.offset)
        if request.hnsw_ef is not None:
            check_count("hnsw_ef", request.hnsw_ef, minimum=1)

    async def _attach(
        self,
        collection: Collection,
        namespace_id: int,
        records: list[Record],
        request: SearchRequest,
    ) -> None:
        """Fill payloads (one SQL round trip) and vectors (from memory) as requested."""
        stored: dict[str, repository.PointRecord] = {}
        ids: list[str] = []
        if request.payload.enabled and records:
            ids = [parse_point_id(r.id, collection)[0] for r in records]
            async with self.db.connect() as conn:
                stored = await repository.select_points(
                    conn, namespace_id, ids, with_vectors=False, shape_in=self.cpu
                )

        def fill() -> None:
            if request.payload.enabled:
                for record, text_id in zip(records, ids, strict=True):
                    point = stored.get(text_id)
                    record.payload = request.payload.apply(point.payload if point else None)
            self.points.attach_vectors(collection, namespace_id, records, request.vectors)

        await self.cpu.run_per_item(len(records), fill)
