"""Upstash Vector REST routes under `/upstash/{index}`: the SDK's base URL is
`{server}/upstash/{index}` and its token is the API key. Every answer is `{"result": ...}`;
errors are `{"error", "status"}` (see app/api/envelope.py).

The SDK only POSTs; the verbs the Upstash docs list (GET for reads, DELETE for deletions)
are accepted too. Litestar gives GET handlers no `data`, so those handlers decode their
body themselves (`body_as`), with the same error statuses as Litestar's own decoding.
"""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar

from litestar import Controller, Request, Response, post, put, route
from litestar.di import Provide
from litestar.params import QueryParameter

from app.api.auth import READ_ONLY, presented_key
from app.api.bodies import Deferred, decode
from app.api.deps import provide_services
from app.api.encoding import rendered
from app.api.openapi import upstash_errors
from app.api.upstash import render, schemas
from app.errors import BadRequest
from app.models import DEFAULT_VECTOR, Collection, Distance
from app.services.container import Services
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.points import PointInput, Record
from app.services.sessions import SessionSpec, owner_of
from app.services.upstash import (
    NO_EMBEDDING,
    QuerySpec,
    UpdateSpec,
    UpstashService,
    embedding_models,
    index_config,
    index_type,
    point_vectors,
    score,
)

NAMESPACED = "{namespace:str}"
DEFAULT_MAX_IDLE = 3600  # seconds, as the SDK and the Upstash docs default
READ = ["GET", "POST"]
DELETE = ["DELETE", "POST"]

T = TypeVar("T")


def ok(result: Any) -> Response:
    return Response({"result": result}, status_code=200)


def paths(name: str) -> list[str]:
    """The route in the default namespace and in a named one (`/name/{namespace}`)."""
    return [f"/{name}", f"/{name}/{NAMESPACED}"]


async def provide_upstash(services: Services) -> UpstashService:
    return UpstashService.of(services)


async def body_as(request: Request, kind: type[T]) -> T:
    """The JSON body as `kind` (an empty body reads as `{}`)."""
    return decode(await request.body(), kind, strict=True)


def as_list(ids: list[int | str] | int | str | None) -> list[int | str] | None:
    return ids if ids is None or isinstance(ids, list) else [ids]


def point_inputs(
    collection: Collection, body: list[schemas.Vector] | schemas.Vector, *, data_only: bool
) -> list[PointInput]:
    """The points of an upsert body; `data_only` (`upsert-data`): each must carry data,
    which the index's models embed."""
    items = body if isinstance(body, list) else [body]
    if data_only and any(item.data is None for item in items):
        raise BadRequest("upsert-data needs data for every vector")
    return [
        PointInput(
            item.id,
            {}
            if data_only
            else point_vectors(collection, item.vector, item.sparse_vector, data=item.data),
            item.metadata,
            item.data,
        )
        for item in items
    ]


def query_spec(query: schemas.Query, *, data_only: bool = False) -> QuerySpec:
    """A query as the service takes it; `data_only` (`query-data`): it must carry data."""
    if data_only and query.data is None:
        raise BadRequest("query-data needs data: the text to embed and query with")
    return QuerySpec(
        vector=query.vector,
        sparse_vector=query.sparse_vector,
        data=query.data,
        query_mode=query.query_mode,
        top_k=query.top_k,
        filter=query.filter or "",
        include_vectors=query.include_vectors,
        include_metadata=query.include_metadata,
        include_data=query.include_data,
        weighting_strategy=query.weighting_strategy,
        fusion_algorithm=query.fusion_algorithm,
    )


def session_scale(collection: Collection) -> Distance | None:
    dense = collection.config.vectors.get(DEFAULT_VECTOR)
    return None if dense is None else dense.distance


def session_score(record: Record, distance: Distance | None) -> dict[str, Any]:
    """A resumable query's page entry: its raw score made Upstash's, then rendered."""
    record.score = score(record.score or 0.0, None if record.extra.get("ranked") else distance)
    return render.score_object(record)


def include_flags(body: schemas.Include) -> dict[str, bool]:
    return {
        "include_vectors": body.include_vectors,
        "include_metadata": body.include_metadata,
        "include_data": body.include_data,
    }


async def upserted(
    request: Request,
    services: Services,
    upstash: UpstashService,
    index_name: str,
    namespace: str,
    *,
    data_only: bool,
) -> None:
    """Decode, embed what is sent as data, validate, then write in one transaction."""
    collection = upstash.index(index_name)
    if data_only and not embedding_models(collection):
        raise BadRequest(NO_EMBEDDING)
    body = Deferred(await request.body(), list[schemas.Vector] | schemas.Vector)
    points = await body.parsed(
        services.cpu, lambda vectors: point_inputs(collection, vectors, data_only=data_only)
    )
    await upstash.embed_points(collection, points)
    operation = await services.cpu.run_per_item(
        len(points), services.points.upsert_operation, collection, points
    )
    await services.collections.ensure_namespace(index_name, namespace)
    await services.points.write(index_name, [operation], namespace)


async def answered(
    services: Services,
    upstash: UpstashService,
    index_name: str,
    namespace: str,
    body: list[schemas.Query] | schemas.Query,
    *,
    data_only: bool,
) -> Response:
    upstash.index(index_name)
    queries = body if isinstance(body, list) else [body]
    specs = [query_spec(query, data_only=data_only) for query in queries]
    results = []
    for spec in specs:
        records = await upstash.query(index_name, namespace, spec)
        results.append(await rendered(services.cpu, records, render.score_object))
    return ok(results[0] if len(results) == 1 else results)


async def resumed(
    request: Request,
    services: Services,
    upstash: UpstashService,
    index_name: str,
    namespace: str,
    data: schemas.Query,
    *,
    data_only: bool,
) -> Response:
    """Start a resumable query: its first page and the session's uuid."""
    collection = upstash.index(index_name)
    if namespace not in collection.namespaces:
        return ok({"uuid": "", "scores": []})  # Upstash's answer; the namespace stays absent
    query = await upstash.embedded(collection, query_spec(data, data_only=data_only))
    search = upstash.search_request(collection, query)
    vectors = services.search.session_vectors(index_name, search, namespace) or {
        "vector": list(query.vector or ())
    }
    spec = SessionSpec(
        collection=index_name,
        namespace=namespace,
        **vectors,
        filter=query.filter or None,
        filter_language="upstash",
        payload=PayloadSelector(enabled=query.include_metadata),
        vectors=VectorSelector(enabled=query.include_vectors),
        include_data=query.include_data,
        dialect="upstash",
    )
    max_idle = DEFAULT_MAX_IDLE if data.max_idle is None else data.max_idle
    handle, records = await services.sessions.start(
        spec, query.top_k, max_idle, owner_of(presented_key(request.scope))
    )
    scored = partial(session_score, distance=session_scale(collection))
    return ok({"uuid": handle, "scores": await rendered(services.cpu, records, scored)})


class UpstashController(Controller):
    path = "/upstash/{index_name:str}"
    tags = ["upstash"]
    dependencies = {
        "services": Provide(provide_services),
        "upstash": Provide(provide_upstash),
    }

    # ------------------------------------------------------------------ index

    @put("/", responses=upstash_errors(409))
    async def create_index(
        self, services: Services, index_name: str, data: schemas.CreateIndex
    ) -> Response:
        """Create an index (Waypoint's own endpoint: Upstash creates indexes in its console)."""
        config = index_config(
            data.dimension,
            data.similarity_function,
            data.index_type,
            data.embedding_model,
            data.sparse_embedding_model,
        )
        await services.collections.create(index_name, config, dialect="upstash")
        return ok("Success")

    @route("/info", http_method=READ, status_code=200, opt=READ_ONLY)
    async def info(self, services: Services, upstash: UpstashService, index_name: str) -> Response:
        collection = upstash.index(index_name)
        counts = await services.collections.namespace_counts(index_name)
        counts.setdefault("", 0)
        return ok(render.info(collection, index_type(collection), counts))

    # ------------------------------------------------------------- namespaces

    @route("/list-namespaces", http_method=READ, status_code=200, opt=READ_ONLY)
    async def list_namespaces(self, upstash: UpstashService, index_name: str) -> Response:
        return ok(upstash.list_namespaces(index_name))

    @route(paths("delete-namespace"), http_method=DELETE, status_code=200)
    async def delete_namespace(
        self, upstash: UpstashService, index_name: str, namespace: str = ""
    ) -> Response:
        await upstash.delete_namespace(index_name, namespace)
        return ok("Success")

    @post("/rename-namespace", status_code=200)
    async def rename_namespace(
        self, upstash: UpstashService, index_name: str, data: schemas.RenameNamespace
    ) -> Response:
        renamed = await upstash.rename_namespace(
            index_name, data.namespace, data.new_namespace, data.delete_existing
        )
        return ok({"renamed": renamed})

    @route(paths("reset"), http_method=DELETE, status_code=200)
    async def reset(
        self,
        upstash: UpstashService,
        index_name: str,
        namespace: str = "",
        reset_all: str | None = QueryParameter(name="all", default=None),
    ) -> Response:
        """`?all` (sent with no value) resets every namespace and ignores the path's."""
        if reset_all is not None:
            await upstash.reset_all(index_name)
        else:
            await upstash.reset(index_name, namespace)
        return ok("Success")

    # ----------------------------------------------------------------- writes

    @post(paths("upsert"), status_code=200)
    async def upsert(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        namespace: str = "",
    ) -> Response:
        """Body: one vector object or a list of them (decoded off the loop when large)."""
        await upserted(request, services, upstash, index_name, namespace, data_only=False)
        return ok("Success")

    @post(paths("upsert-data"), status_code=200)
    async def upsert_data(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        namespace: str = "",
    ) -> Response:
        """Body: `{"id", "data", "metadata"}` or a list of them, embedded by the index."""
        await upserted(request, services, upstash, index_name, namespace, data_only=True)
        return ok("Success")

    @post(paths("update"), status_code=200)
    async def update(
        self, upstash: UpstashService, index_name: str, data: schemas.Update, namespace: str = ""
    ) -> Response:
        spec = UpdateSpec(
            id=data.id,
            mode=data.metadata_update_mode,
            vector=data.vector,
            sparse_vector=data.sparse_vector,
            metadata=data.metadata,
            data=data.data,
        )
        updated = await upstash.update(index_name, namespace, spec)
        return ok({"updated": int(updated)})

    @route(paths("delete"), http_method=DELETE, status_code=200)
    async def delete(
        self, request: Request, upstash: UpstashService, index_name: str, namespace: str = ""
    ) -> Response:
        body = await body_as(request, schemas.Delete)
        deleted = await upstash.delete(
            index_name, namespace, ids=as_list(body.ids), prefix=body.prefix, filter=body.filter
        )
        return ok({"deleted": deleted})

    # ------------------------------------------------------------------ reads

    @post(paths("query"), status_code=200, opt=READ_ONLY)
    async def query(
        self,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        data: list[schemas.Query] | schemas.Query,
        namespace: str = "",
    ) -> Response:
        """An object or a one-element array answers a flat list; longer arrays a list per
        query (the SDK's `query_many` relies on both)."""
        return await answered(services, upstash, index_name, namespace, data, data_only=False)

    @post(paths("query-data"), status_code=200, opt=READ_ONLY)
    async def query_data(
        self,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        data: list[schemas.Query] | schemas.Query,
        namespace: str = "",
    ) -> Response:
        """As `query`, each query's `data` embedded by the index's models."""
        return await answered(services, upstash, index_name, namespace, data, data_only=True)

    @route(paths("fetch"), http_method=READ, status_code=200, opt=READ_ONLY)
    async def fetch(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        namespace: str = "",
    ) -> Response:
        body = await body_as(request, schemas.Fetch)
        points = await upstash.fetch(
            index_name,
            namespace,
            ids=as_list(body.ids),
            prefix=body.prefix,
            with_vectors=body.include_vectors,
        )
        stored = partial(render.stored_object, **include_flags(body))
        return ok(await rendered(services.cpu, points, stored))

    @route(paths("range"), http_method=READ, status_code=200, opt=READ_ONLY)
    async def range(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        namespace: str = "",
    ) -> Response:
        body = await body_as(request, schemas.Range)
        page = await upstash.range(
            index_name,
            namespace,
            cursor=body.cursor,
            limit=body.limit,
            prefix=body.prefix,
            with_vectors=body.include_vectors,
        )
        stored = partial(render.stored_object, **include_flags(body))
        vectors = await rendered(services.cpu, page.points, stored)
        return ok({"nextCursor": page.next_cursor, "vectors": vectors})

    @route(paths("random"), http_method=READ, status_code=200, opt=READ_ONLY)
    async def random(
        self, upstash: UpstashService, index_name: str, namespace: str = ""
    ) -> Response:
        """Documented shape: the id and the dense vector (null for an empty namespace)."""
        point = await upstash.random(index_name, namespace)
        return ok(render.stored_object(point, include_vectors=True))

    # -------------------------------------------------------- resumable query

    @post(paths("resumable-query"), status_code=200, opt=READ_ONLY, responses=upstash_errors(429))
    async def resumable_query(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        data: schemas.Query,
        namespace: str = "",
    ) -> Response:
        return await resumed(
            request, services, upstash, index_name, namespace, data, data_only=False
        )

    @post(
        paths("resumable-query-data"),
        status_code=200,
        opt=READ_ONLY,
        responses=upstash_errors(429),
    )
    async def resumable_query_data(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        data: schemas.Query,
        namespace: str = "",
    ) -> Response:
        """As `resumable-query`, the query's `data` embedded by the index's models."""
        return await resumed(
            request, services, upstash, index_name, namespace, data, data_only=True
        )

    @post("/resumable-query-next", status_code=200, opt=READ_ONLY)
    async def resumable_query_next(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        data: schemas.ResumableNext,
    ) -> Response:
        collection = upstash.index(index_name)
        if data.uuid == "":
            return ok([])  # the handle of a query on a missing namespace
        records = await services.sessions.next(
            data.uuid, data.additional_k, owner_of(presented_key(request.scope)), index_name
        )
        scored = partial(session_score, distance=session_scale(collection))
        return ok(await rendered(services.cpu, records, scored))

    @post("/resumable-query-end", status_code=200, opt=READ_ONLY)
    async def resumable_query_end(
        self,
        request: Request,
        services: Services,
        upstash: UpstashService,
        index_name: str,
        data: schemas.ResumableEnd,
    ) -> Response:
        upstash.index(index_name)
        if data.uuid != "":
            await services.sessions.end(
                data.uuid, owner_of(presented_key(request.scope)), index_name
            )
        return ok("Success")
