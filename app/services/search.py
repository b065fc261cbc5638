"""Nearest-neighbour search: one internal request, answered from the in-memory segments,
with payloads joined from PostgreSQL only when the caller asks for them."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Collection as Collection_
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app import limits
from app.db import repository
from app.errors import BadRequest, NotFound
from app.filters.ast import HasId, Not, both
from app.index.fusion import QDRANT_RRF_K, Scored, qdrant_dbsf, qdrant_rrf
from app.index.recommend import RecoScorer, Strategy
from app.index.segment import SearchHits, Segment
from app.models import Collection, PointId, SparseVector
from app.services import recommend, sparse_recommend, sparse_search
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

    vector: Sequence[float] | SparseVector | None = None
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
    idf: bool | None = None  # weigh a sparse query by IDF; None: as its vector's modifier
    # Qdrant's universal query: these requests' results are fused (`fusion`) or re-scored
    # by this request's own query; the filter applies to every level below it.
    prefetch: tuple[SearchRequest, ...] = ()
    fusion: Fusion | None = None

    @property
    def is_listing(self) -> bool:
        return (
            self.vector is None
            and self.point_id is None
            and self.recommend is None
            and self.fusion is None
            and not self.prefetch
        )


@dataclass(frozen=True, slots=True)
class Fusion:
    """How prefetched lists become one: `rrf` (reciprocal rank, constant `k`, optional
    weight per list) or `dbsf` (distribution-based score fusion)."""

    method: str = "rrf"
    k: int = QDRANT_RRF_K
    weights: tuple[float, ...] | None = None

    def fuse(self, lists: Sequence[Sequence[Scored]], limit: int | None) -> list[Scored]:
        if self.method == "dbsf":
            return qdrant_dbsf(lists, limit)
        return qdrant_rrf(lists, self.k, self.weights, limit)


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
        started = time.perf_counter()
        k = request.offset + request.limit
        hits, plan, detail = await self._ranked(collection, namespace_id, request, k)
        chosen = zip(hits.ids, hits.scores, hits.versions, strict=True)
        records = [Record(pid, version, score=score) for pid, score, version in chosen]
        records = records[request.offset :]
        detail["search_ms"] = round((time.perf_counter() - started) * 1000, 3)
        await self._attach(collection, namespace_id, records, request)
        self.counters.add(PLANS, plan)
        return SearchResult(records, hits.plan, detail)

    async def _ranked(
        self,
        collection: Collection,
        namespace_id: int,
        request: SearchRequest,
        k: int,
        among: Collection_[PointId] | None = None,
    ) -> tuple[SearchHits, str, dict[str, Any]]:
        """The best `k` hits of a request, best first, less the points a query is made from;
        only `among` these points if given. Returns the hits, the plan and its detail."""
        if request.prefetch:
            request = self._excluding_examples(collection, namespace_id, request)
            return await self._prefetched(collection, namespace_id, request, k), "prefetch", {}
        if among is not None and request.filter is not None:
            among = await self.planner.confirm(namespace_id, request.filter, list(among))
            request = dataclasses.replace(request, filter=None)
        if collection.config.is_sparse(request.using):
            hits = await self._sparse(collection, namespace_id, request, k, among)
            return hits, "sparse", {}
        return await self._dense(collection, namespace_id, request, k, among)

    async def _dense(
        self,
        collection: Collection,
        namespace_id: int,
        request: SearchRequest,
        k: int,
        among: Collection_[PointId] | None,
    ) -> tuple[SearchHits, str, dict[str, Any]]:
        target = self.target(collection, request)
        segment = self.registry.get(namespace_id, request.using)
        if segment is None:
            return SearchHits([], [], [], "exact"), "exact", {}
        want = k + len(target.exclude)
        detail: dict[str, Any] = {}
        if request.filter is not None:
            hits, plan, detail = await self._filtered_hits(
                namespace_id, segment, target, want, request
            )
        else:
            allowed = None if among is None else await self.cpu.run(segment.rows_of, among)
            hits = await self._hits(segment, target, want, request, allowed)
            plan = hits.plan
        keep = [i for i, pid in enumerate(hits.ids) if pid not in target.exclude][:k]
        return _picked(hits, keep), plan, detail

    async def _sparse(
        self,
        collection: Collection,
        namespace_id: int,
        request: SearchRequest,
        k: int,
        among: Collection_[PointId] | None,
    ) -> SearchHits:
        """Exact sparse search: every point sharing a dimension with the query is scored
        (by a recommend query with `best_score` or `sum_scores`: every point)."""
        query, exclude = self._sparse_query(collection, namespace_id, request)
        index = self.registry.get_sparse(namespace_id, request.using)
        if index is None:
            return SearchHits([], [], [], "sparse")
        idf = _idf(collection, request)
        recommending = isinstance(query, sparse_recommend.Examples)
        candidates = await self.cpu.run(
            functools.partial(
                sparse_recommend.ranked if recommending else sparse_search.ranked,
                index,
                query,
                idf=idf,
                limit=None if request.filter is not None else k,
                score_threshold=request.score_threshold,
                among=among,
                exclude=exclude,
            )
        )
        if request.filter is not None:
            confirm = functools.partial(self.planner.confirm, namespace_id, request.filter)
            candidates = await sparse_search.confirmed(candidates, k, confirm)
        return SearchHits(candidates.ids, candidates.scores, candidates.seqs, "sparse")

    def _sparse_query(
        self, collection: Collection, namespace_id: int, request: SearchRequest
    ) -> tuple[SparseVector | sparse_recommend.Examples, frozenset[PointId]]:
        """The sparse query vector (or resolved recommend examples) of a request and the ids
        left out of its results."""
        if request.recommend is not None:
            examples = sparse_recommend.resolve(
                self.catalog,
                self.registry,
                collection,
                namespace_id,
                request.using,
                request.recommend,
            )
            return examples, examples.exclude
        if request.point_id is not None:
            point_id = canonical_id(request.point_id, collection)
            index = self.registry.get_sparse(namespace_id, request.using)
            stored = index.get(point_id) if index is not None else None
            if stored is None:
                raise NotFound(f"Not found: No point with id {point_id} found")
            return SparseVector(*stored), frozenset({point_id})
        if not isinstance(request.vector, SparseVector):
            raise BadRequest(
                "Wrong input: Conversion between sparse and regular vectors failed: vector "
                f"{request.using} is sparse"
            )
        return request.vector, frozenset()

    def _excluding_examples(
        self, collection: Collection, namespace_id: int, request: SearchRequest
    ) -> SearchRequest:
        """A re-scoring query made from stored points (a point id, recommend example ids)
        leaves them out of its prefetches too, as Qdrant adds them to the filter it passes
        down: a prefetch then finds the next points in their place."""
        if request.point_id is None and request.recommend is None:
            return request
        if collection.config.is_sparse(request.using):
            exclude = self._sparse_query(collection, namespace_id, request)[1]
        else:
            exclude = self.target(collection, request).exclude
        if not exclude:
            return request
        unmentioned = Not(HasId(frozenset(exclude)))
        return dataclasses.replace(request, filter=both(request.filter, unmentioned))

    async def _prefetched(
        self, collection: Collection, namespace_id: int, request: SearchRequest, k: int
    ) -> SearchHits:
        """Qdrant's universal query: run the prefetches (each with this level's filter too),
        then fuse their lists or re-score the points they found with this request's query."""
        sources = []
        for prefetch in request.prefetch:
            inherited = dataclasses.replace(prefetch, filter=both(request.filter, prefetch.filter))
            hits, _, _ = await self._ranked(collection, namespace_id, inherited, prefetch.limit)
            sources.append(hits)
        versions = {
            pid: version
            for hits in sources
            for pid, version in zip(hits.ids, hits.versions, strict=True)
        }
        if request.fusion is None:
            found = versions.keys()
            if not found:
                return SearchHits([], [], [], "prefetch")
            rescoring = dataclasses.replace(request, prefetch=())
            hits, _, _ = await self._ranked(collection, namespace_id, rescoring, k, found)
            return hits
        lists = [list(zip(hits.ids, hits.scores, strict=True)) for hits in sources]
        fused = request.fusion.fuse(lists, k)
        if request.score_threshold is not None:  # inclusive here, as Qdrant's local mode
            fused = [(pid, score) for pid, score in fused if score >= request.score_threshold]
        return SearchHits(
            [pid for pid, _ in fused],
            [score for _, score in fused],
            [versions[pid] for pid, _ in fused],
            request.fusion.method,
        )

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

    def session_vectors(
        self, name: str, request: SearchRequest, namespace: str = ""
    ) -> dict[str, Any] | None:
        """What a sparse or hybrid resumable session follows (SessionSpec fields: `vector`,
        `vector_name`, `sparse`, `fusion`), or None for a dense request. A hybrid request is
        a fusion of a dense and a sparse nearest query (prefetches without prefetches of
        their own); a sparse query's IDF weights are applied now, so the order the session
        follows is the one of its start."""
        collection = self.catalog.get(name)
        parts = request.prefetch if request.fusion is not None else (request,)
        if not any(collection.config.is_sparse(part.using) for part in parts):
            return None
        if len(parts) > 2 or len({collection.config.is_sparse(p.using) for p in parts}) < len(
            parts
        ):
            raise BadRequest("resumable hybrid queries fuse one dense and one sparse nearest query")
        found: dict[str, Any] = {"vector": [], "vector_name": "", "sparse": None}
        namespace_id = self.points._namespace(collection, namespace)
        for part in parts:
            if part.prefetch or part.recommend is not None or part.point_id is not None:
                raise BadRequest("resumable sparse and hybrid queries take query vectors")
            if part is not request and part.filter is not None:
                raise BadRequest("a resumable hybrid query takes one filter, at the top level")
            if collection.config.is_sparse(part.using):
                found["sparse"] = self._frozen_sparse(collection, namespace_id, part)
            else:
                found["vector"] = check_vector(collection, part.using, part.vector).tolist()
                found["vector_name"] = part.using
        fusion = request.fusion
        if fusion is not None:
            weights = None if fusion.weights is None else list(fusion.weights)
            found["fusion"] = {"method": fusion.method, "k": fusion.k, "weights": weights}
        return found

    def _frozen_sparse(
        self, collection: Collection, namespace_id: int, request: SearchRequest
    ) -> dict[str, Any]:
        query, _ = self._sparse_query(collection, namespace_id, request)
        values = query.values.astype(np.float64)
        if _idf(collection, request):
            values *= self.registry.ensure_sparse(namespace_id, request.using).idf(query.indices)
        return {"name": request.using, "indices": query.indices.tolist(), "values": values.tolist()}

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
                return _picked(hits, kept), len(hits.ids)
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
        for prefetch in request.prefetch:
            SearchService._check_limits(prefetch)

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


def _idf(collection: Collection, request: SearchRequest) -> bool:
    """Whether a sparse query is weighted by IDF: as asked (Upstash's `weightingStrategy`),
    else as its vector's modifier says."""
    if request.idf is not None:
        return request.idf
    return collection.config.sparse_vectors[request.using].idf


def _picked(hits: SearchHits, positions: Sequence[int]) -> SearchHits:
    return SearchHits(
        [hits.ids[i] for i in positions],
        [hits.scores[i] for i in positions],
        [hits.versions[i] for i in positions],
        hits.plan,
    )
