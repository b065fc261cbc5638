"""The Upstash Vector dialect's semantics on top of the shared services.

An Upstash index is a collection (dialect "upstash") with one unnamed dense vector and
string ids. Point writes go through `PointService.write` (one transaction under the
collection row lock, segments updated after commit, other workers signalled), so every
Upstash write is read-your-writes. Namespace creation, deletion and renaming take the same
row lock, update this worker's catalog and segments, and signal the change feed, whose
catalog reload brings the other workers along.

Decisions on what the Upstash docs leave open are stated where they are made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app import limits
from app.db import repository
from app.db import upstash as sql
from app.db.database import Database
from app.db.repository import PointRecord
from app.embedding import registry
from app.embedding.registry import Kind, TextModel
from app.errors import BadRequest, CollectionNotFound, NotFound, ValidationFailed
from app.index.fusion import UPSTASH_RRF_K
from app.index.registry import IndexRegistry
from app.models import (
    DEFAULT_VECTOR,
    Collection,
    CollectionConfig,
    Distance,
    SparseParams,
    SparseVector,
    VectorParams,
)
from app.services.catalog import Catalog
from app.services.embedding import EmbeddingService
from app.services.filtering import parse_filter_off_loop
from app.services.points import PointInput, PointService, Record, parse_point_id
from app.services.search import Fusion, SearchRequest, SearchService
from app.services.writes import (
    ChangePayload,
    Delete,
    Effect,
    Operation,
    PointSelector,
    WriteContext,
    overwrite_payload,
)

if TYPE_CHECKING:
    from app.services.container import Services

SPARSE_VECTOR = "sparse"  # the stored name of an index's sparse vector (the dense one is "")
INDEX_TYPES = ("DENSE", "SPARSE", "HYBRID")
WEIGHTING_STRATEGIES = ("IDF",)
QUERY_MODES = ("HYBRID", "DENSE", "SPARSE")
UPSTASH_MODEL_NAMES = {registry.QDRANT_BM25: registry.BM25}  # registry name -> Upstash's
NO_EMBEDDING = "Embedding data is not supported: this index has no embedding model"
FUSION_ALGORITHMS = {"RRF": "rrf", "DBSF": "dbsf"}
SIMILARITY = {Distance.COSINE: "COSINE", Distance.EUCLID: "EUCLIDEAN", Distance.DOT: "DOT_PRODUCT"}
DISTANCE = {name: distance for distance, name in SIMILARITY.items()}
MAX_DIMENSION = 65_536
MAX_TOP_K = 10_000  # the resumable queries' page cap, so both query paths agree
MAX_RANGE_PAGE = 1_000  # a longer `limit` returns 1000 vectors and a cursor to continue
FETCH_PREFIX_LIMIT = 1_000  # documented: fetch by prefix returns at most 1000 vectors
MAX_SEQ = 2**63 - 1  # seqs are PostgreSQL bigints
# Results beyond topK that are ranked too, so that vectors tied after float32 rounding are
# ordered by insertion even where the exact float64 scores differ in the last bits.
TIE_MARGIN = 16


# --------------------------------------------------------------------- pure rules


def index_config(
    dimension: int | None,
    similarity: str | None,
    index_type: str | None = None,
    embedding_model: str | None = None,
    sparse_embedding_model: str | None = None,
) -> CollectionConfig:
    """The collection layout of an Upstash index (HTTP `PUT` and the CLI share it): a dense
    vector (`""`), a sparse one (`SPARSE_VECTOR`), or both (HYBRID). IDF is chosen per
    query (`weightingStrategy`), so the sparse vector has no modifier.

    With embedding models the index embeds `data` itself: the dense model sets the
    dimension, and a hybrid index takes both models or neither (it could not embed text
    into only one of its vectors). Without `indexType`, the models say which it is."""
    models = _embedding_models(embedding_model, sparse_embedding_model)
    kind = str(index_type or _implied_type(models)).upper()
    if kind not in INDEX_TYPES:
        raise BadRequest("indexType must be DENSE, SPARSE or HYBRID")
    _check_models(kind, models)
    if DEFAULT_VECTOR in models:
        dimension = _model_dimension(models[DEFAULT_VECTOR], dimension)
    sent: dict[str, Any] = {"index_type": kind}
    vectors = {}
    if kind == "SPARSE":
        if dimension is not None or similarity is not None:
            raise BadRequest("A SPARSE index takes no dimension or similarityFunction")
    else:
        if dimension is None:
            raise BadRequest(f"A {kind} index needs a dimension or an embeddingModel")
        vectors = {DEFAULT_VECTOR: _dense_params(dimension, similarity or "COSINE")}
        sent["vectors"] = vectors[DEFAULT_VECTOR].as_sent
    if models:
        sent["embedding_models"] = {
            vector: UPSTASH_MODEL_NAMES.get(model.name, model.name)
            for vector, model in models.items()
        }
    sparse = {} if kind == "DENSE" else {SPARSE_VECTOR: SparseParams()}
    return CollectionConfig(vectors=vectors, named=False, as_sent=sent, sparse_vectors=sparse)


def _embedding_models(dense: str | None, sparse: str | None) -> dict[str, TextModel]:
    """The models named at creation, by the vector each fills; each of the right kind."""
    models = {}
    for vector, name, kind, field_name in (
        (DEFAULT_VECTOR, dense, Kind.DENSE, "embeddingModel"),
        (SPARSE_VECTOR, sparse, Kind.SPARSE, "sparseEmbeddingModel"),
    ):
        if name is None or name == "":
            continue
        model = EmbeddingService.model(name)
        if model.kind is not kind:
            raise BadRequest(f"{field_name} must be a {kind} model; {model.name} is {model.kind}")
        models[vector] = model
    return models


def _implied_type(models: dict[str, TextModel]) -> str:
    if len(models) == 2:
        return "HYBRID"
    return "SPARSE" if SPARSE_VECTOR in models else "DENSE"


def _check_models(kind: str, models: dict[str, TextModel]) -> None:
    if kind == "DENSE" and SPARSE_VECTOR in models:
        raise BadRequest("A DENSE index takes no sparseEmbeddingModel")
    if kind == "SPARSE" and DEFAULT_VECTOR in models:
        raise BadRequest("A SPARSE index takes no embeddingModel")
    if kind == "HYBRID" and len(models) == 1:
        raise BadRequest(
            "A HYBRID index takes both embeddingModel and sparseEmbeddingModel, or neither"
        )


def _model_dimension(model: TextModel, dimension: int | None) -> int:
    assert model.dimension is not None
    if dimension is not None and dimension != model.dimension:
        raise BadRequest(
            f"dimension {dimension} does not match {model.name}, which makes "
            f"{model.dimension}-dimensional vectors"
        )
    return model.dimension


def model_names(collection: Collection) -> dict[str, str]:
    """The names of the index's embedding models by the vector each fills, as Upstash
    spells them."""
    return dict(collection.config.as_sent.get("embedding_models") or {})


def embedding_models(collection: Collection) -> dict[str, TextModel]:
    """The index's embedding models by the vector each fills ({} for an index of raw
    vectors)."""
    return {
        vector: EmbeddingService.model(name) for vector, name in model_names(collection).items()
    }


def _dense_params(dimension: int, similarity: str) -> VectorParams:
    distance = DISTANCE.get(similarity.upper())
    if distance is None:
        raise BadRequest("similarityFunction must be COSINE, EUCLIDEAN or DOT_PRODUCT")
    if not 1 <= dimension <= MAX_DIMENSION:
        raise BadRequest(f"dimension must be between 1 and {MAX_DIMENSION}")
    as_sent = {"size": dimension, "distance": distance.value}
    return VectorParams(dimension, distance, as_sent=as_sent)


def index_type(collection: Collection) -> str:
    """DENSE, SPARSE or HYBRID: which vectors the index's points carry."""
    dense = DEFAULT_VECTOR in collection.config.vectors
    sparse = SPARSE_VECTOR in collection.config.sparse_vectors
    return "HYBRID" if dense and sparse else "SPARSE" if sparse else "DENSE"


def parse_sparse(raw: Any, where: str = "sparseVector") -> SparseVector:
    """`{"indices": [int], "values": [float]}` checked (and sorted by index)."""
    if not isinstance(raw, dict) or set(raw) != {"indices", "values"}:
        raise BadRequest(f'{where} must be {{"indices": [int], "values": [float]}}')
    if isinstance(raw["indices"], list):
        limits.check_sparse_size(len(raw["indices"]))
    try:
        return SparseVector.parse(raw["indices"], raw["values"], merge_repeats=True)
    except ValueError as exc:
        raise BadRequest(f"Invalid {where}: {exc}") from None


def point_vectors(
    collection: Collection,
    vector: Sequence[float] | None,
    sparse: Any,
    *,
    data: str | None = None,
    update: bool = False,
) -> dict[str, Any]:
    """A point's vectors by stored name, checked against the index type: a dense index
    takes `vector`, a sparse one `sparseVector`, a hybrid one both (an update may give
    neither, to keep them). None sent, with `data` on an index with embedding models:
    {} until `UpstashService.embed_points` embeds the data."""
    vectors = query_vectors(collection, vector, sparse)
    kind = index_type(collection)
    if update and not vectors:
        return vectors
    if not vectors and data is not None and embedding_models(collection):
        return vectors
    if kind == "HYBRID" and len(vectors) == 1:
        raise BadRequest("This index is hybrid: send both vector and sparseVector")
    if not vectors:
        wanted = {"DENSE": "vector", "SPARSE": "sparseVector"}.get(kind, "vector and sparseVector")
        raise BadRequest(
            f"A {wanted} is required: this index has no embedding model to embed `data`"
        )
    return vectors


def query_vectors(collection: Collection, vector: Sequence[float] | None, sparse: Any) -> dict:
    """The vectors sent, by stored name, each checked (a dense index refuses a sparse
    vector, a sparse index a dense one)."""
    kind = index_type(collection)
    vectors: dict[str, Any] = {}
    if vector is not None:
        if kind == "SPARSE":
            raise BadRequest("This index is sparse: send sparseVector, not vector")
        check_dimension(collection, vector)
        vectors[DEFAULT_VECTOR] = vector
    if sparse is not None:
        if kind == "DENSE":
            raise BadRequest("This index is dense: sparse vectors are not supported")
        embedded = isinstance(sparse, SparseVector)
        vectors[SPARSE_VECTOR] = sparse if embedded else parse_sparse(sparse)
    return vectors


def score(raw: float, distance: Distance | None) -> float:
    """Upstash's 0..1 score from a Qdrant-style score (dot product, or L2 distance).

    COSINE and DOT_PRODUCT: (1 + similarity) / 2; EUCLIDEAN: 1 / (1 + squared distance).
    Rounded through float32 and clamped, so identical directions score exactly 1. Sparse
    and fused scores (`distance` None) are not normalised, only rounded through float32.
    """
    if distance is None:
        return float(np.float32(raw))
    value = 1.0 / (1.0 + raw * raw) if distance is Distance.EUCLID else (1.0 + raw) / 2.0
    return min(1.0, max(0.0, float(np.float32(value))))


def check_dimension(collection: Collection, vector: Sequence[float]) -> None:
    """Upstash's own 422 wording, before the shared (Qdrant-worded) vector checks run."""
    if DEFAULT_VECTOR not in collection.config.vectors:
        raise BadRequest("This index is sparse: send sparseVector, not vector")
    size = collection.config.vectors[DEFAULT_VECTOR].size
    if len(vector) != size:
        raise ValidationFailed(f"Invalid vector dimension: {len(vector)}, expected: {size}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, `null` removes a key, anything
    else replaces the target."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def parse_cursor(cursor: str | int) -> int:
    """A range cursor is the write seq to continue from (inclusive); "" and "0" start."""
    text = str(cursor).strip()
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_SEQ):
        raise BadRequest(f'Invalid cursor {cursor!r}: use "0" or a nextCursor from range')
    return int(text)


# ------------------------------------------------------------- write operations

Selection = Callable[[AsyncConnection, WriteContext], Awaitable[Sequence[str]]]


@dataclass(slots=True)
class DeleteSelected:
    """Delete the points `select` finds inside the write transaction, and count them.

    The collection row lock is held, so the points found are exactly the points removed.
    """

    select: Selection
    deleted: int = 0

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        targets = list(await self.select(conn, ctx))
        self.deleted = len(targets)
        return await Delete(PointSelector(ids=tuple(targets))).execute(conn, ctx)


@dataclass(slots=True)
class SetData:
    """Replace the `data` of existing points (Upstash's raw text; no embedding model).

    Upstash ids are strings, so the wire id is the id text and the segments' versions can
    be set without reading the ids back.
    """

    datas: dict[str, str | None]

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        seqs = await sql.update_data(conn, ctx.namespace_id, self.datas)

        def apply() -> None:
            for vector_name in ctx.collection.config.vectors:
                ctx.segment(vector_name).set_versions(list(seqs), list(seqs.values()))

        return Effect(max(seqs.values(), default=0), apply)


@dataclass(slots=True)
class IfExists:
    """Run `operations` only if the point exists, in the same transaction (`found` says).

    Upstash answers an update of an unknown id with `{"updated": 0}`, not an error, and the
    check must not race with a concurrent delete: both run under the collection lock.
    """

    id_text: str
    operations: list[Operation]
    found: bool = False

    async def execute(self, conn: AsyncConnection, ctx: WriteContext) -> Effect:
        existing = await repository.select_payloads(conn, ctx.namespace_id, [self.id_text])
        self.found = bool(existing)
        if not self.found:
            return Effect()
        effects = [await operation.execute(conn, ctx) for operation in self.operations]

        def apply() -> None:
            for effect in effects:
                effect.apply()

        return Effect(max(effect.seq for effect in effects), apply)


def _existing(texts: Sequence[str]) -> Selection:
    async def select(conn: AsyncConnection, ctx: WriteContext) -> list[str]:
        return list(await repository.select_payloads(conn, ctx.namespace_id, list(texts)))

    return select


def _with_prefix(prefix: str) -> Selection:
    async def select(conn: AsyncConnection, ctx: WriteContext) -> list[str]:
        rows = await sql.ids_in_order(conn, ctx.namespace_id, prefix=prefix)
        return [row.id_text for row in rows]

    return select


def _matching(node: Any) -> Selection:
    async def select(conn: AsyncConnection, ctx: WriteContext) -> Sequence[str]:
        selector = PointSelector(filter=node)
        return await ctx.select_ids(conn, ctx.collection, ctx.namespace_id, selector)

    return select


# ---------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class QuerySpec:
    vector: Sequence[float] | None = None
    sparse_vector: Any = None  # as sent (checked by `search_request`), or embedded
    data: str | None = None  # a text to embed: see `UpstashService.embedded`
    query_mode: str | None = None
    top_k: int = 10
    filter: str = ""
    include_vectors: bool = False
    include_metadata: bool = False
    include_data: bool = False
    weighting_strategy: str | None = None
    fusion_algorithm: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateSpec:
    id: Any
    mode: str = "OVERWRITE"
    vector: Sequence[float] | None = None
    sparse_vector: Any = None
    metadata: dict[str, Any] | None = None
    data: str | None = None


@dataclass(slots=True)
class Page:
    points: list[PointRecord] = field(default_factory=list)
    next_cursor: str = ""


# ----------------------------------------------------------------------- service


class UpstashService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        registry: IndexRegistry,
        points: PointService,
        search: SearchService,
        on_commit: Callable[[], None],
        catalog_lock: asyncio.Lock,
        embedding: EmbeddingService,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.points = points
        self.search = search
        self.on_commit = on_commit
        self.catalog_lock = catalog_lock  # the change feed's: see ChangeFeed.lock
        self.embedding = embedding

    @classmethod
    def of(cls, services: Services) -> UpstashService:
        """A view over one worker's services (stateless, so one per request costs nothing)."""
        return cls(
            services.db,
            services.catalog,
            services.registry,
            services.points,
            services.search,
            services.feed.committed_to_catalog,  # its own commits are namespace changes
            services.feed.lock,
            services.embedding,
        )

    def index(self, name: str) -> Collection:
        collection = self.catalog.find(name)
        if collection is None:
            raise NotFound(f"Index {name} does not exist")
        if collection.dialect != "upstash":
            raise NotFound(f"Index {name} does not exist: {name} is a Qdrant collection")
        return collection

    # -------------------------------------------------------------- embedding

    async def embed_points(self, collection: Collection, points: Sequence[PointInput]) -> None:
        """Give each point sent with `data` and no vectors the vectors its index's models
        make of the data (stored too, as sent)."""
        pending = [point for point in points if not point.vectors and point.data is not None]
        if not pending:
            return
        texts = [point.data for point in pending if point.data is not None]
        for vector, model in _models(collection).items():
            embedded = await self.embedding.embed(model, texts, query=False)
            for point, values in zip(pending, embedded, strict=True):
                point.vectors[vector] = values

    async def embedded(self, collection: Collection, spec: QuerySpec) -> QuerySpec:
        """The query with its `data` embedded by the index's models: on a hybrid index
        into both vectors, or the one `queryMode` (DENSE, SPARSE) picks."""
        if spec.data is None:
            return spec
        if spec.vector is not None or spec.sparse_vector is not None:
            raise BadRequest("A query takes either data or vectors, not both")
        mode = str(spec.query_mode or "HYBRID").upper()
        if mode not in QUERY_MODES:
            raise BadRequest("queryMode must be HYBRID, DENSE or SPARSE")
        models = {
            vector: model
            for vector, model in _models(collection, "query with a vector").items()
            if mode == "HYBRID" or (model.kind is Kind.DENSE) == (mode == "DENSE")
        }
        if not models:
            raise BadRequest(f"queryMode {mode} needs a {mode.lower()} embedding model")
        vectors = await self._embed_text(models, spec.data, query=True)
        return dataclasses.replace(spec, data=None, **vectors)

    async def _embed_text(
        self, models: dict[str, TextModel], text: str, *, query: bool
    ) -> dict[str, Any]:
        """`vector` and/or `sparse_vector` (as the specs name them) made of `text`."""
        fields = {}
        for vector, model in models.items():
            (values,) = await self.embedding.embed(model, [text], query=query)
            if vector == DEFAULT_VECTOR:
                fields["vector"] = values.tolist()
            else:
                fields["sparse_vector"] = values
        return fields

    # ------------------------------------------------------------- namespaces

    def list_namespaces(self, name: str) -> list[str]:
        return sorted(self.index(name).namespaces)

    async def delete_namespace(self, name: str, namespace: str) -> None:
        collection = self.index(name)
        if namespace == "":
            raise BadRequest("Cannot delete the default namespace")
        async with self.catalog_lock:  # a catalog reload must not read before and apply after
            async with self.db.begin() as conn:
                await self._lock(conn, collection)
                namespace_id = await sql.namespace_id(conn, collection.id, namespace)
                if namespace_id is None:
                    raise NotFound(f"Namespace {namespace} for the index {name} does not exist")
                await sql.delete_namespace(conn, namespace_id)
            self._forget(collection, namespace_id)
            self.on_commit()

    async def rename_namespace(
        self, name: str, old: str, new: str, delete_existing: bool = False
    ) -> bool:
        """Rename `old` to `new` (the id, hence segments and sessions, stay); False when the
        names are equal. An existing `new` is replaced only with `delete_existing`."""
        collection = self.index(name)
        if "" in (old, new):
            raise BadRequest("The default namespace cannot be renamed or replaced")
        if "/" in new:
            raise BadRequest("A namespace name cannot contain '/'")
        limits.check_name("a namespace name", new)
        async with self.catalog_lock:  # as in delete_namespace
            async with self.db.begin() as conn:
                await self._lock(conn, collection)
                source = await sql.namespace_id(conn, collection.id, old)
                if source is None:
                    raise NotFound(f"Namespace {old} for the index {name} does not exist")
                if old == new:
                    return False
                target = await sql.namespace_id(conn, collection.id, new)
                if target is not None and not delete_existing:
                    raise BadRequest(
                        f"Namespace {new} already exists: set deleteExisting to replace it"
                    )
                if target is not None:
                    await sql.delete_namespace(conn, target)
                await sql.rename_namespace(conn, source, new)
            if target is not None:
                self._forget(collection, target)
            self._forget(collection, source)
            collection.namespaces[new] = source
            self.on_commit()
            return True

    async def reset(self, name: str, namespace: str) -> None:
        """Empty a namespace but keep it; a missing namespace stays missing."""
        if namespace in self.index(name).namespaces:
            await self.points.write(name, [DeleteSelected(_with_prefix(""))], namespace)

    async def reset_all(self, name: str) -> None:
        """Empty every namespace (one transaction per namespace)."""
        for namespace in sorted(self.index(name).namespaces):
            await self.reset(name, namespace)

    async def _lock(self, conn: AsyncConnection, collection: Collection) -> None:
        if not await repository.lock_collection(conn, collection.id):
            raise CollectionNotFound(collection.name)

    def _forget(self, collection: Collection, namespace_id: int) -> None:
        for namespace, known in list(collection.namespaces.items()):
            if known == namespace_id:
                del collection.namespaces[namespace]
        self.registry.drop_namespaces({namespace_id})

    # ------------------------------------------------------------------ reads

    async def query(self, name: str, namespace: str, spec: QuerySpec) -> list[Record]:
        """The topK best, ranked by Upstash score then insertion order, with the fields the
        query asked for; each record's score is the Upstash score. A missing namespace
        answers [] (and is not created)."""
        collection = self.index(name)
        spec = await self.embedded(collection, spec)
        request = self.search_request(collection, spec)
        node = await parse_filter_off_loop(spec.filter, "upstash", self.points.cpu)
        namespace_id = collection.namespaces.get(namespace)
        if namespace_id is None:
            return []
        request = dataclasses.replace(request, filter=node)
        found = await self.search.search(name, request, namespace)
        scale = score_scale(collection, request)
        ranked = self._ranked(namespace_id, found.points, request, scale)[: spec.top_k]
        return await self._with_fields(namespace_id, ranked, spec)

    def search_request(self, collection: Collection, spec: QuerySpec) -> SearchRequest:
        """The search a query makes, after Upstash's checks: dense, sparse, or both fused
        (each list `topK` long, ties beyond it ranked too)."""
        if not 1 <= spec.top_k <= MAX_TOP_K:
            raise BadRequest(f"topK must be between 1 and {MAX_TOP_K}")
        vectors = query_vectors(collection, spec.vector, spec.sparse_vector)
        if not vectors:
            wanted = {"DENSE": "vector", "SPARSE": "sparseVector"}
            raise BadRequest(
                f"A query {wanted.get(index_type(collection), 'vector or sparseVector')} "
                "is required"
            )
        idf = _weighting(spec.weighting_strategy)
        fusion = _fusion(spec.fusion_algorithm)
        limit = spec.top_k + TIE_MARGIN
        parts = [
            SearchRequest(vector=vector, using=name, idf=idf, limit=limit)
            for name, vector in vectors.items()
        ]
        if len(parts) == 1:
            return parts[0]
        return SearchRequest(prefetch=tuple(parts), fusion=fusion, limit=limit)

    def _ranked(
        self,
        namespace_id: int,
        records: list[Record],
        request: SearchRequest,
        scale: Distance | None,
    ) -> list[Record]:
        """Records by Upstash score (set on each), then insertion order."""
        using = request.prefetch[0].using if request.prefetch else request.using
        segment = self.registry.get(namespace_id, DEFAULT_VECTOR)
        sparse = self.registry.get_sparse(namespace_id, SPARSE_VECTOR)
        stored = segment if using == DEFAULT_VECTOR else sparse

        def key(record: Record) -> tuple[float, int]:
            inserted = stored.seq_of(record.id) if stored is not None else None
            return (-(record.score or 0.0), inserted or 0)

        for record in records:
            record.score = score(record.score or 0.0, scale)
        return sorted(records, key=key)

    async def _with_fields(
        self, namespace_id: int, records: list[Record], spec: QuerySpec
    ) -> list[Record]:
        """Metadata, data and the vectors as sent, read from PostgreSQL in one round trip;
        a point deleted since the search is left out."""
        if not (spec.include_vectors or spec.include_metadata or spec.include_data):
            return records
        ids = [str(record.id) for record in records]
        async with self.db.connect() as conn:
            stored = await repository.select_points(
                conn, namespace_id, ids, with_vectors=spec.include_vectors
            )
        out = []
        for record in records:
            point = stored.get(str(record.id))
            if point is None:
                continue
            if spec.include_metadata:
                record.payload = point.payload
            if spec.include_vectors:
                record.extra["raw_vector"] = point.vectors.get(DEFAULT_VECTOR)
                record.extra["raw_sparse"] = point.vectors.get(SPARSE_VECTOR)
            if spec.include_data:
                record.extra["data"] = point.data
            out.append(record)
        return out

    async def fetch(
        self,
        name: str,
        namespace: str,
        *,
        ids: Sequence[Any] | None = None,
        prefix: str | None = None,
        with_vectors: bool = False,
    ) -> list[PointRecord | None]:
        """By ids: one entry per id, in order, None where missing. By prefix: the matches
        in insertion order, at most 1000."""
        collection = self.index(name)
        if (ids is None) == (prefix is None):
            raise BadRequest("Fetch needs either ids or prefix (not both)")
        texts = None if ids is None else [parse_point_id(i, collection)[0] for i in ids]
        namespace_id = collection.namespaces.get(namespace)
        if namespace_id is None:
            return [None] * len(texts) if texts is not None else []
        async with self.db.snapshot() as conn:
            if texts is None:
                ordered = await sql.ids_in_order(
                    conn, namespace_id, prefix=prefix or "", limit=FETCH_PREFIX_LIMIT
                )
                texts = [row.id_text for row in ordered]
            found = await repository.select_points(
                conn, namespace_id, texts, with_vectors=with_vectors, shape_in=self.points.cpu
            )
        return [found.get(text) for text in texts]

    async def range(
        self,
        name: str,
        namespace: str,
        *,
        cursor: str | int,
        limit: int,
        prefix: str | None = None,
        with_vectors: bool = False,
    ) -> Page:
        """A page in insertion (last write) order; `next_cursor` is the seq of the first
        vector not returned, "" exactly when nothing is left."""
        collection = self.index(name)
        start = parse_cursor(cursor)
        if limit < 1:
            raise BadRequest("limit must be greater than 0")
        limit = min(limit, MAX_RANGE_PAGE)
        namespace_id = collection.namespaces.get(namespace)
        if namespace_id is None:
            return Page()
        async with self.db.snapshot() as conn:
            ordered = await sql.ids_in_order(
                conn, namespace_id, prefix=prefix or "", from_seq=start, limit=limit + 1
            )
            texts = [row.id_text for row in ordered[:limit]]
            found = await repository.select_points(
                conn, namespace_id, texts, with_vectors=with_vectors, shape_in=self.points.cpu
            )
        next_cursor = str(ordered[limit].seq) if len(ordered) > limit else ""
        return Page([found[text] for text in texts], next_cursor)

    async def random(self, name: str, namespace: str) -> PointRecord | None:
        """One uniformly chosen vector; None for an empty or missing namespace."""
        namespace_id = self.index(name).namespaces.get(namespace)
        if namespace_id is None:
            return None
        async with self.db.snapshot() as conn:
            count = await repository.count_points(conn, namespace_id)
            if count == 0:
                return None
            text = await sql.id_at(conn, namespace_id, random.randrange(count))
            found = await repository.select_points(
                conn, namespace_id, [text] if text else [], with_vectors=True
            )
        return found.get(text) if text else None

    # ----------------------------------------------------------------- writes

    async def delete(
        self,
        name: str,
        namespace: str,
        *,
        ids: Sequence[Any] | None = None,
        prefix: str | None = None,
        filter: str | None = None,
    ) -> int:
        """Delete by exactly one of ids, prefix or filter; returns how many were removed."""
        collection = self.index(name)
        if sum((ids is not None, prefix is not None, bool(filter))) != 1:
            raise BadRequest("Delete needs exactly one of ids, prefix or filter")
        if prefix == "":
            raise BadRequest("An empty prefix would delete every vector: use reset instead")
        if ids is not None:
            select = _existing([parse_point_id(i, collection)[0] for i in ids])
        elif prefix is not None:
            select = _with_prefix(prefix)
        else:
            select = _matching(await parse_filter_off_loop(filter, "upstash", self.points.cpu))
        if namespace not in collection.namespaces:
            return 0
        operation = DeleteSelected(select)
        await self.points.write(name, [operation], namespace)
        return operation.deleted

    async def update(self, name: str, namespace: str, spec: UpdateSpec) -> bool:
        """Change the vector, metadata and/or data of one point in one transaction; False
        (Upstash's `{"updated": 0}`) when the id or the namespace does not exist."""
        collection = self.index(name)
        text = parse_point_id(spec.id, collection)[0]
        if spec.data is not None and spec.vector is None and spec.sparse_vector is None:
            models = embedding_models(collection)  # the data is embedded, as in an upsert
            if models:
                vectors = await self._embed_text(models, spec.data, query=False)
                spec = dataclasses.replace(spec, **vectors)
        guard = IfExists(text, self._update_operations(collection, text, spec))
        if namespace not in collection.namespaces:
            return False
        await self.points.write(name, [guard], namespace)
        return guard.found

    def _update_operations(
        self, collection: Collection, text: str, spec: UpdateSpec
    ) -> list[Operation]:
        mode = spec.mode.upper()
        if mode not in ("OVERWRITE", "PATCH"):
            raise BadRequest("metadataUpdateMode must be OVERWRITE or PATCH")
        operations: list[Operation] = []
        vectors = point_vectors(collection, spec.vector, spec.sparse_vector, update=True)
        if vectors:
            operations.append(self.points.vectors_operation(collection, [(text, vectors)]))
        if spec.metadata is not None:
            selector = PointSelector(ids=(text,))
            patch = spec.metadata
            limits.check_payload("the metadata", patch)
            operations.append(
                ChangePayload(selector, lambda old: merge_patch(old, patch))
                if mode == "PATCH"
                else overwrite_payload(selector, patch)
            )
        if spec.data is not None:
            operations.append(SetData({text: spec.data}))
        if not operations:
            raise BadRequest("Nothing to update: give a vector, metadata or data")
        return operations


def _models(collection: Collection, instead: str = "") -> dict[str, TextModel]:
    """The index's embedding models; BadRequest for an index without any, saying what to
    send `instead`."""
    models = embedding_models(collection)
    if not models:
        raise BadRequest(f"{NO_EMBEDDING}: {instead}" if instead else NO_EMBEDDING)
    return models


def score_scale(collection: Collection, request: SearchRequest) -> Distance | None:
    """How a request's raw scores become Upstash scores: by the dense vector's similarity
    for a dense search; None (not normalised) for sparse and fused ones."""
    if request.prefetch or request.using != DEFAULT_VECTOR:
        return None
    return collection.config.vectors[DEFAULT_VECTOR].distance


def _weighting(strategy: str | None) -> bool:
    """Whether `weightingStrategy` asks for IDF (None: plain dot products)."""
    if strategy is None:
        return False
    if str(strategy).upper() not in WEIGHTING_STRATEGIES:
        raise BadRequest("weightingStrategy must be IDF")
    return True


def _fusion(algorithm: str | None) -> Fusion:
    """`fusionAlgorithm` (default RRF) as the service's fusion; Upstash's RRF is Qdrant's
    with k = 60."""
    method = FUSION_ALGORITHMS.get(str(algorithm or "RRF").upper())
    if method is None:
        raise BadRequest("fusionAlgorithm must be RRF or DBSF")
    return Fusion(method, k=UPSTASH_RRF_K)
