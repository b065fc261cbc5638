"""Upstash Vector REST routes under `/upstash/{index}`: the SDK's base URL is
`{server}/upstash/{index}` and its token is the API key. Every answer is `{"result": ...}`;
errors are `{"error", "status"}` (see app/api/envelope.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post, put, route
from litestar.di import Provide

from app.api.auth import READ_ONLY, presented_key
from app.api.deps import provide_services
from app.api.upstash import render, schemas
from app.errors import BadRequest, NotFound
from app.models import DEFAULT_VECTOR, CollectionConfig, VectorParams
from app.services.container import Services
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.points import PointInput
from app.services.sessions import SessionSpec, owner_of

NAMESPACED = "{namespace:str}"
DEFAULT_MAX_IDLE = 3600  # seconds, as the SDK and the Upstash docs default


def ok(result: Any) -> Response:
    return Response({"result": result}, status_code=200)


def index_of(services: Services, index_name: str):
    collection = services.catalog.find(index_name)
    if collection is None:
        raise NotFound(f"Index {index_name} does not exist")
    return collection


def point_inputs(body: list[schemas.Vector] | schemas.Vector) -> list[PointInput]:
    items = body if isinstance(body, list) else [body]
    points = []
    for item in items:
        if item.sparse_vector is not None:
            raise BadRequest("This index is dense: sparse vectors are not supported")
        if item.vector is None:
            raise BadRequest(
                "A vector is required: this index has no embedding model to embed `data`"
            )
        points.append(PointInput(item.id, {DEFAULT_VECTOR: item.vector}, item.metadata, item.data))
    return points


class UpstashController(Controller):
    path = "/upstash/{index_name:str}"
    tags = ["upstash"]
    dependencies = {"services": Provide(provide_services)}

    @put("/")
    async def create_index(
        self, services: Services, index_name: str, data: schemas.CreateIndex
    ) -> Response:
        """Create an index (Waypoint's own endpoint: Upstash creates indexes in its console)."""
        distance = render.DISTANCE.get(data.similarity_function.upper())
        if distance is None:
            raise BadRequest("similarityFunction must be COSINE, EUCLIDEAN or DOT_PRODUCT")
        if not 1 <= data.dimension <= 65_536:
            raise BadRequest("dimension must be between 1 and 65536")
        as_sent = {"size": data.dimension, "distance": distance.value}
        config = CollectionConfig(
            vectors={DEFAULT_VECTOR: VectorParams(data.dimension, distance, as_sent=as_sent)},
            named=False,
            as_sent={"vectors": as_sent},
        )
        await services.collections.create(index_name, config, dialect="upstash")
        return ok("Success")

    @post(["/upsert", f"/upsert/{NAMESPACED}"], status_code=200)
    async def upsert(
        self,
        services: Services,
        index_name: str,
        data: list[schemas.Vector] | schemas.Vector,
        namespace: str = "",
    ) -> Response:
        collection = index_of(services, index_name)
        operation = services.points.upsert_operation(collection, point_inputs(data))
        await services.collections.ensure_namespace(index_name, namespace)
        await services.points.write(index_name, [operation], namespace)
        return ok("Success")

    @post(["/upsert-data", f"/upsert-data/{NAMESPACED}"], status_code=200)
    async def upsert_data(
        self, services: Services, index_name: str, namespace: str = ""
    ) -> Response:
        index_of(services, index_name)
        raise BadRequest("Embedding data is not supported: this index has no embedding model")

    @post(["/resumable-query", f"/resumable-query/{NAMESPACED}"], status_code=200, opt=READ_ONLY)
    async def resumable_query(
        self,
        request: Request,
        services: Services,
        index_name: str,
        data: schemas.Query,
        namespace: str = "",
    ) -> Response:
        collection = index_of(services, index_name)
        if namespace not in collection.namespaces:
            return ok({"uuid": "", "scores": []})  # Upstash's answer; the namespace stays absent
        if data.vector is None:
            raise BadRequest("A query vector is required: this index has no embedding model")
        spec = SessionSpec(
            collection=index_name,
            namespace=namespace,
            vector=data.vector,
            filter=data.filter or None,
            filter_language="upstash",
            payload=PayloadSelector(enabled=data.include_metadata),
            vectors=VectorSelector(enabled=data.include_vectors),
            include_data=data.include_data,
            dialect="upstash",
        )
        max_idle = DEFAULT_MAX_IDLE if data.max_idle is None else data.max_idle
        handle, records = await services.sessions.start(
            spec, data.top_k, max_idle, owner_of(presented_key(request.scope))
        )
        distance = collection.config.vectors[DEFAULT_VECTOR].distance
        return ok({"uuid": handle, "scores": [render.score_object(r, distance) for r in records]})

    @post("/resumable-query-next", status_code=200, opt=READ_ONLY)
    async def resumable_query_next(
        self, request: Request, services: Services, index_name: str, data: schemas.ResumableNext
    ) -> Response:
        collection = index_of(services, index_name)
        if data.uuid == "":
            return ok([])  # the handle of a query on a missing namespace
        records = await services.sessions.next(
            data.uuid, data.additional_k, owner_of(presented_key(request.scope)), index_name
        )
        distance = collection.config.vectors[DEFAULT_VECTOR].distance
        return ok([render.score_object(r, distance) for r in records])

    @post("/resumable-query-end", status_code=200, opt=READ_ONLY)
    async def resumable_query_end(
        self, request: Request, services: Services, index_name: str, data: schemas.ResumableEnd
    ) -> Response:
        index_of(services, index_name)
        if data.uuid != "":
            await services.sessions.end(
                data.uuid, owner_of(presented_key(request.scope)), index_name
            )
        return ok("Success")

    @route("/info", http_method=["GET", "POST"], status_code=200, opt=READ_ONLY)
    async def info(self, services: Services, index_name: str) -> Response:
        collection = index_of(services, index_name)
        params = collection.config.vectors[DEFAULT_VECTOR]
        counts = await services.collections.namespace_counts(index_name)
        counts.setdefault("", 0)
        similarity = render.SIMILARITY[params.distance]
        total = sum(counts.values())
        return ok(
            {
                "vectorCount": total,
                "pendingVectorCount": 0,
                "indexSize": total * params.size * 4,
                "dimension": params.size,
                "similarityFunction": similarity,
                "indexType": "DENSE",
                "denseIndex": {
                    "dimension": params.size,
                    "similarityFunction": similarity,
                    "embeddingModel": "",
                },
                "namespaces": {
                    name: {"vectorCount": count, "pendingVectorCount": 0}
                    for name, count in counts.items()
                },
            }
        )
