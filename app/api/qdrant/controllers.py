"""Qdrant REST routes. Handlers parse, call one service, and wrap the result; no SQL here."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import Provide
from litestar.params import QueryParameter

from app.api.auth import READ_ONLY, presented_key
from app.api.bodies import Deferred, deferred
from app.api.deps import provide_services
from app.api.encoding import rendered
from app.api.envelope import qdrant_ok
from app.api.openapi import qdrant_errors
from app.api.qdrant import documents, parse, render, schemas
from app.errors import BadRequest, NotFound, UnknownVectorName
from app.services.container import Services
from app.services.groups import GroupService, GroupSpec
from app.services.search import SearchRequest, SearchResult
from app.services.sessions import SessionSpec, owner_of
from app.services.writes import Delete, Operation

PLAN_HEADER = "waypoint-plan"
B = TypeVar("B")

Wait = QueryParameter(name="wait", default=None, required=False)


def update_result(operation_id: int, wait: bool | None) -> dict[str, Any]:
    return {
        "operation_id": operation_id,
        "status": "acknowledged" if wait is False else "completed",
    }


class CollectionsController(Controller):
    path = "/collections"
    tags = ["qdrant: collections"]
    dependencies = {"services": Provide(provide_services)}

    @get("/")
    async def list_collections(self, request: Request, services: Services) -> Response:
        names = [{"name": c.name} for c in services.collections.list()]
        return qdrant_ok(request, {"collections": names})

    @post("/aliases", status_code=200, responses=qdrant_errors(409))
    async def update_aliases(
        self, request: Request, services: Services, data: schemas.ChangeAliases
    ) -> Response:
        await services.collections.update_aliases(parse.alias_actions(data))
        return qdrant_ok(request, True)

    @get("/{collection_name:str}/aliases", opt=READ_ONLY)
    async def collection_aliases(
        self, request: Request, services: Services, collection_name: str
    ) -> Response:
        pairs = services.collections.aliases(collection_name)
        return qdrant_ok(request, render.aliases(pairs))

    @put("/{collection_name:str}", responses=qdrant_errors(409))
    async def create_collection(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.CreateCollection,
    ) -> Response:
        await services.collections.create(collection_name, parse.collection_config(data))
        return qdrant_ok(request, True)

    @patch("/{collection_name:str}")
    async def update_collection(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.UpdateCollection,
    ) -> Response:
        await services.collections.update(collection_name, parse.collection_change(data))
        return qdrant_ok(request, True)

    @get("/{collection_name:str}")
    async def get_collection(
        self, request: Request, services: Services, collection_name: str
    ) -> Response:
        collection = services.collections.get(collection_name)
        stats = await services.collections.stats(collection_name)
        info = render.collection_info(collection, stats)
        info["payload_schema"] = await services.payload_indexes.schema(collection_name)
        return qdrant_ok(request, info)

    @get("/{collection_name:str}/exists")
    async def collection_exists(
        self, request: Request, services: Services, collection_name: str
    ) -> Response:
        return qdrant_ok(request, {"exists": services.collections.exists(collection_name)})

    @delete("/{collection_name:str}", status_code=200)
    async def delete_collection(
        self, request: Request, services: Services, collection_name: str
    ) -> Response:
        return qdrant_ok(request, await services.collections.delete(collection_name))


class AliasesController(Controller):
    path = "/aliases"
    tags = ["qdrant: collections"]
    dependencies = {"services": Provide(provide_services)}

    @get("/", opt=READ_ONLY)
    async def list_aliases(self, request: Request, services: Services) -> Response:
        return qdrant_ok(request, render.aliases(services.collections.aliases()))


async def _write(
    request: Request,
    services: Services,
    collection_name: str,
    kind: str,
    body: dict[str, Any],
    wait: bool | None,
) -> Response:
    services.collections.get(collection_name)  # 404 before the body is judged
    operation = parse.payload_operation(kind, body)
    operation_id = await services.points.write(collection_name, [operation])
    return qdrant_ok(request, update_result(operation_id, wait))


async def embedded_body(
    services: Services, data: Deferred[B], find: Callable[[B], documents.Documents]
) -> B:
    """The body decoded, with its Documents embedded in place (see `documents`)."""
    body, found = await data.parsed(services.cpu, lambda body: (body, find(body)))
    if found:
        await found.embed(services.embedding)
    return body


class PointsController(Controller):
    path = "/collections/{collection_name:str}/points"
    tags = ["qdrant: points"]
    dependencies = {"services": Provide(provide_services)}

    @put("/", dto=deferred(schemas.UpsertPoints), return_dto=None)
    async def upsert_points(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: Deferred[schemas.UpsertPoints],
        wait: bool | None = Wait,
    ) -> Response:
        collection = services.collections.get(collection_name)
        body, found = await data.parsed(
            services.cpu, lambda body: (body, documents.in_points(body))
        )
        if found:
            await found.embed(services.embedding)

        def validated() -> Operation:
            points = parse.upsert_points(body, collection.config.named)
            return services.points.upsert_operation(collection, points)

        operation = await data.sized(services.cpu, validated)
        operation_id = await services.points.write(collection_name, [operation])
        return qdrant_ok(request, update_result(operation_id, wait))

    @post("/", status_code=200, opt=READ_ONLY)
    async def retrieve_points(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.RetrievePoints,
    ) -> Response:
        records = await services.points.retrieve(
            collection_name,
            data.ids,
            parse.payload_selector(data.with_payload),
            parse.vector_selector(data.with_vector),
        )
        named = services.collections.get(collection_name).config.named
        return qdrant_ok(
            request, await rendered(services.cpu, records, partial(render.record, named=named))
        )

    @get("/{point_id:str}")
    async def get_point(
        self, request: Request, services: Services, collection_name: str, point_id: str
    ) -> Response:
        wire_id: int | str = int(point_id) if point_id.isdigit() else point_id
        records = await services.points.retrieve(
            collection_name,
            [wire_id],
            parse.payload_selector(True),
            parse.vector_selector(True),
        )
        if not records:
            raise NotFound(f"Not found: No point with id {point_id} found")
        named = services.collections.get(collection_name).config.named
        return qdrant_ok(request, render.record(records[0], named))

    @post("/delete", status_code=200)
    async def delete_points(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.DeletePoints,
        wait: bool | None = Wait,
    ) -> Response:
        chosen = parse.selector(data.points, data.filter)
        operation_id = await services.points.write(collection_name, [Delete(chosen)])
        return qdrant_ok(request, update_result(operation_id, wait))

    @post("/payload", status_code=200)
    async def set_payload(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: dict[str, Any],
        wait: bool | None = Wait,
    ) -> Response:
        return await _write(request, services, collection_name, "set_payload", data, wait)

    @put("/payload")
    async def overwrite_payload(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: dict[str, Any],
        wait: bool | None = Wait,
    ) -> Response:
        return await _write(request, services, collection_name, "overwrite_payload", data, wait)

    @post("/payload/delete", status_code=200)
    async def delete_payload(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: dict[str, Any],
        wait: bool | None = Wait,
    ) -> Response:
        return await _write(request, services, collection_name, "delete_payload", data, wait)

    @post("/payload/clear", status_code=200)
    async def clear_payload(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: dict[str, Any],
        wait: bool | None = Wait,
    ) -> Response:
        return await _write(request, services, collection_name, "clear_payload", data, wait)

    @put("/vectors", dto=deferred(schemas.UpdateVectors), return_dto=None)
    async def update_vectors(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: Deferred[schemas.UpdateVectors],
        wait: bool | None = Wait,
    ) -> Response:
        collection = services.collections.get(collection_name)
        body, found = await data.parsed(
            services.cpu, lambda body: (body, documents.in_vectors(body))
        )
        if found:
            await found.embed(services.embedding)

        def validated() -> Operation:
            vectors = parse.update_vectors(body, collection.config.named)
            return services.points.vectors_operation(collection, vectors)

        operation = await data.sized(services.cpu, validated)
        operation_id = await services.points.write(collection_name, [operation])
        return qdrant_ok(request, update_result(operation_id, wait))

    @post("/vectors/delete", status_code=200)
    async def delete_vectors(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.DeleteVectors,
        wait: bool | None = Wait,
    ) -> Response:
        collection = services.collections.get(collection_name)
        for name in data.vector:
            if name not in collection.config.vector_names():
                raise UnknownVectorName(name)
        operation_id = await services.points.write(collection_name, [parse.delete_vectors(data)])
        return qdrant_ok(request, update_result(operation_id, wait))

    @post("/batch", status_code=200, dto=deferred(schemas.BatchUpdate), return_dto=None)
    async def batch_update(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: Deferred[schemas.BatchUpdate],
        wait: bool | None = Wait,
    ) -> Response:
        collection = services.collections.get(collection_name)
        body = await embedded_body(services, data, documents.in_batch)
        operations = await data.sized(
            services.cpu, lambda: parse.batch_operations(body, collection, services.points)
        )
        operation_id = await services.points.write(collection_name, operations)
        results = [update_result(operation_id, wait) for _ in operations]
        return qdrant_ok(request, results)

    @post("/scroll", status_code=200, opt=READ_ONLY)
    async def scroll_points(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.ScrollPoints,
    ) -> Response:
        records, next_offset = await services.points.scroll(
            collection_name,
            data.offset,
            data.limit,
            parse.payload_selector(data.with_payload),
            parse.vector_selector(data.with_vector),
            parse.filter_node(data.filter),
            parse.order_by(data.order_by),
        )
        named = services.collections.get(collection_name).config.named
        points = await rendered(services.cpu, records, partial(render.record, named=named))
        return qdrant_ok(request, {"points": points, "next_page_offset": next_offset})

    @post("/count", status_code=200, opt=READ_ONLY)
    async def count_points(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.CountPoints | None = None,
    ) -> Response:
        node = parse.filter_node(data.filter) if data else None
        count = await services.points.count(collection_name, filter_=node)
        return qdrant_ok(request, {"count": count})


def _plans(results: list[SearchResult]) -> dict[str, str]:
    """`waypoint-plan: hnsw` and `waypoint-plan-detail: candidates=…;filter=…;search_ms=…`."""
    details = [";".join(f"{k}={v}" for k, v in r.detail.items()) for r in results]
    return {
        PLAN_HEADER: ",".join(r.plan for r in results),
        f"{PLAN_HEADER}-detail": ",".join(details),
    }


async def _answer(
    services: Services, collection_name: str, searches: list[SearchRequest]
) -> tuple[list[list[dict[str, Any]]], dict[str, str]]:
    """Run searches in order; each as ScoredPoints, and the plan headers of all."""
    results = await services.search.search_batch(collection_name, searches)
    scored = partial(
        render.scored_point, named=services.collections.get(collection_name).config.named
    )
    body = [await rendered(services.cpu, r.points, scored) for r in results]
    return body, _plans(results)


async def query_answer(
    services: Services, collection_name: str, search: SearchRequest
) -> tuple[dict[str, Any], dict[str, str]]:
    """`points/query` of a body parsed by `parse.query_request`: the result and plan
    headers (the route and the fast path share it)."""
    (points,), headers = await _answer(services, collection_name, [search])
    return {"points": points}, headers


async def search_answer(
    services: Services, collection_name: str, search: SearchRequest
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """`points/search` of a body parsed by `parse.search_request`: the result and plan
    headers (the route and the fast path share it)."""
    (points,), headers = await _answer(services, collection_name, [search])
    return points, headers


async def _grouped(
    request: Request,
    services: Services,
    collection_name: str,
    search: SearchRequest,
    spec: GroupSpec,
) -> Response:
    found = await GroupService(services.search, services.points).groups(
        collection_name, search, spec
    )
    named = services.collections.get(collection_name).config.named
    lookup = spec.lookup.collection if spec.lookup else collection_name
    lookup_named = services.collections.get(lookup).config.named
    return qdrant_ok(request, render.groups(found, named, lookup_named))


class SearchController(Controller):
    path = "/collections/{collection_name:str}/points"
    tags = ["qdrant: search"]
    dependencies = {"services": Provide(provide_services)}

    @post("/query", status_code=200, opt=READ_ONLY)
    async def query_points(
        self, request: Request, services: Services, collection_name: str, data: schemas.QueryPoints
    ) -> Response:
        await documents.embed_query(services.embedding, data)
        result, headers = await query_answer(services, collection_name, parse.query_request(data))
        return qdrant_ok(request, result, headers)

    @post("/query/batch", status_code=200, opt=READ_ONLY)
    async def query_batch(
        self, request: Request, services: Services, collection_name: str, data: schemas.QueryBatch
    ) -> Response:
        for search in data.searches:
            await documents.embed_query(services.embedding, search)
        searches = [parse.query_request(search) for search in data.searches]
        body, headers = await _answer(services, collection_name, searches)
        return qdrant_ok(request, [{"points": points} for points in body], headers)

    @post("/query/groups", status_code=200, opt=READ_ONLY)
    async def query_groups(
        self, request: Request, services: Services, collection_name: str, data: schemas.QueryGroups
    ) -> Response:
        await documents.embed_query(services.embedding, data)
        search, spec = parse.query_request(data), parse.group_spec(data)
        return await _grouped(request, services, collection_name, search, spec)

    @post("/search", status_code=200, opt=READ_ONLY)
    async def search_points(
        self, request: Request, services: Services, collection_name: str, data: schemas.SearchPoints
    ) -> Response:
        result, headers = await search_answer(services, collection_name, parse.search_request(data))
        return qdrant_ok(request, result, headers)

    @post("/search/batch", status_code=200, opt=READ_ONLY)
    async def search_batch(
        self, request: Request, services: Services, collection_name: str, data: schemas.SearchBatch
    ) -> Response:
        searches = [parse.search_request(search) for search in data.searches]
        body, headers = await _answer(services, collection_name, searches)
        return qdrant_ok(request, body, headers)

    @post("/search/groups", status_code=200, opt=READ_ONLY)
    async def search_groups(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.SearchGroups,
    ) -> Response:
        search, spec = parse.search_request(data), parse.group_spec(data)
        return await _grouped(request, services, collection_name, search, spec)

    @post("/recommend", status_code=200, opt=READ_ONLY)
    async def recommend_points(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.RecommendPoints,
    ) -> Response:
        search = [parse.recommend_request(data)]
        (points,), headers = await _answer(services, collection_name, search)
        return qdrant_ok(request, points, headers)

    @post("/recommend/batch", status_code=200, opt=READ_ONLY)
    async def recommend_batch(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.RecommendBatch,
    ) -> Response:
        searches = [parse.recommend_request(search) for search in data.searches]
        body, headers = await _answer(services, collection_name, searches)
        return qdrant_ok(request, body, headers)

    @post("/recommend/groups", status_code=200, opt=READ_ONLY)
    async def recommend_groups(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.RecommendGroups,
    ) -> Response:
        search, spec = parse.recommend_request(data), parse.group_spec(data)
        return await _grouped(request, services, collection_name, search, spec)


class ResumableController(Controller):
    """Resumable queries in the Qdrant style (a Waypoint extension of the Qdrant API).

    `POST …/points/query/resumable` takes a `points/query` request (plus `max_idle`, in
    seconds) and answers the first page with the session `id`; `POST …/resumable/{id}/next`
    with `{"limit": k}` returns the next k points (`[]` once exhausted); `DELETE …/{id}`
    stops the session. Sessions are PostgreSQL rows: any worker continues any session.
    """

    path = "/collections/{collection_name:str}/points/query/resumable"
    tags = ["qdrant: resumable queries"]
    dependencies = {"services": Provide(provide_services)}
    _categories = ("Wrong input: ", "Bad request: ", "Format error in JSON body: ")

    @classmethod
    def _in_qdrant_words(cls, error: Exception) -> None:
        """Give a bad-request message of the session service Qdrant's `Wrong input: `.

        The service is shared with the Upstash dialect, whose messages carry no category
        (`the page size must be between 0 and 10000`), while every Qdrant bad-input message
        starts with one. It is added here, at the Qdrant edge, so Upstash keeps its wording.
        """
        if isinstance(error, BadRequest) and not error.message.startswith(cls._categories):
            error.message = f"Wrong input: {error.message}"
            error.args = (error.message,)

    @post("/", status_code=200, opt=READ_ONLY, responses=qdrant_errors(429))
    async def start(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        data: schemas.ResumableQuery,
    ) -> Response:
        collection = services.collections.get(collection_name)
        await documents.embed_query(services.embedding, data)
        search = parse.query_request(data)
        try:
            spec = self._spec(services, collection.name, search, data)
            handle, records = await services.sessions.start(
                spec, data.limit, data.max_idle, owner_of(presented_key(request.scope))
            )
        except Exception as error:
            self._in_qdrant_words(error)
            raise
        scored = partial(render.scored_point, named=collection.config.named)
        points = await rendered(services.cpu, records, scored)
        return qdrant_ok(request, {"id": handle, "points": points})

    @staticmethod
    def _spec(
        services: Services, name: str, search: SearchRequest, data: schemas.ResumableQuery
    ) -> SessionSpec:
        """The session a query follows: its dense query vector (a recommend query's
        average), or its sparse query, or a fusion of a dense and a sparse one."""
        common = {
            "collection": name,
            "namespace": "",
            "payload": search.payload,
            "vectors": search.vectors,
            "hnsw_ef": search.hnsw_ef,
        }
        vectors = services.search.session_vectors(name, search)
        if vectors is not None:
            return SessionSpec(**common, **vectors, filter=data.filter)
        target = services.search.resumable_target(name, search)
        assert target.vector is not None
        return SessionSpec(
            **common,
            vector=target.vector.tolist(),
            vector_name=search.using,
            filter=parse.excluding(data.filter, target.exclude),
        )

    @post("/{session_id:str}/next", status_code=200, opt=READ_ONLY)
    async def next_page(
        self,
        request: Request,
        services: Services,
        collection_name: str,
        session_id: str,
        data: schemas.ResumableNext,
    ) -> Response:
        collection = services.collections.get(collection_name)
        owner = owner_of(presented_key(request.scope))
        try:
            records = await services.sessions.next(session_id, data.limit, owner, collection.name)
        except Exception as error:
            self._in_qdrant_words(error)
            raise
        scored = partial(render.scored_point, named=collection.config.named)
        return qdrant_ok(request, {"points": await rendered(services.cpu, records, scored)})

    @delete("/{session_id:str}", status_code=200, opt=READ_ONLY)
    async def stop(
        self, request: Request, services: Services, collection_name: str, session_id: str
    ) -> Response:
        collection = services.collections.get(collection_name)
        owner = owner_of(presented_key(request.scope))
        await services.sessions.end(session_id, owner, collection.name)
        return qdrant_ok(request, True)
