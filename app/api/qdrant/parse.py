"""Qdrant wire bodies → domain requests. Every rejection names the field that is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from app.api.qdrant import schemas
from app.errors import BadRequest, ValidationFailed
from app.models import (
    DEFAULT_VECTOR,
    Collection,
    CollectionConfig,
    Distance,
    HnswParams,
    VectorParams,
    hnsw_from_json,
)
from app.services import writes
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.points import PointInput, PointService
from app.services.search import SearchRequest
from app.services.writes import Operation, PointSelector

T = TypeVar("T")

_DISTANCES = {d.value: d for d in Distance}
_HNSW_INTS = ("m", "ef_construct", "full_scan_threshold")


def collection_config(body: schemas.CreateCollection) -> CollectionConfig:
    if body.sparse_vectors:
        raise BadRequest("Wrong input: sparse vectors are not supported")
    hnsw = _hnsw(body.hnsw_config, HnswParams())
    vectors = body.vectors or {}
    named = not ("size" in vectors and "distance" in vectors)
    params = vectors.items() if named else [(DEFAULT_VECTOR, vectors)]
    return CollectionConfig(
        vectors={name: _vector_params(name, raw, hnsw) for name, raw in params},
        hnsw=hnsw,
        named=named,
        as_sent=_jsonable(body),
    )


def _vector_params(name: str, raw: Any, hnsw: HnswParams) -> VectorParams:
    where = f"vectors.{name}" if name else "vectors"
    if not isinstance(raw, dict):
        raise BadRequest(f"Wrong input: {where} must be an object with size and distance")
    size, distance = raw.get("size"), raw.get("distance")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 65_536:
        raise BadRequest(f"Wrong input: {where}.size must be an integer from 1 to 65536")
    if distance not in _DISTANCES:
        raise BadRequest(
            f"Wrong input: {where}.distance must be one of Cosine, Dot, Euclid (got {distance!r})"
        )
    if raw.get("multivector_config"):
        raise BadRequest(f"Wrong input: {where}: multivectors are not supported")
    return VectorParams(
        size=size,
        distance=_DISTANCES[distance],
        hnsw=_hnsw(raw.get("hnsw_config"), hnsw),
        as_sent=raw,
    )


def _hnsw(raw: Any, base: HnswParams) -> HnswParams:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise BadRequest("Wrong input: hnsw_config must be an object")
    values = {k: v for k, v in raw.items() if v is not None and k in _HNSW_INTS}
    if any(not isinstance(v, int) or isinstance(v, bool) for v in values.values()):
        raise BadRequest(f"Wrong input: hnsw_config {', '.join(_HNSW_INTS)} must be integers")
    params = hnsw_from_json(values, base)
    if not 2 <= params.m <= 512 or not 4 <= params.ef_construct <= 4096:
        raise BadRequest("Wrong input: hnsw_config.m must be 2..512, ef_construct 4..4096")
    return params


def _jsonable(body: Any) -> dict[str, Any]:
    return msgspec.to_builtins(body)


def point_vectors(vector: Any, named: bool) -> dict[str, Any]:
    if vector is None:
        return {}
    if isinstance(vector, dict):
        if not named and vector and set(vector) != {DEFAULT_VECTOR}:
            names = ", ".join(sorted(vector))
            raise BadRequest(f"Wrong input: Not existing vector name error: {names}")
        for name, values in vector.items():
            if isinstance(values, dict):
                raise BadRequest(f"Wrong input: vector {name!r}: sparse vectors are not supported")
        return dict(vector)
    return {DEFAULT_VECTOR: vector}


def upsert_points(body: schemas.UpsertPoints, named: bool) -> list[PointInput]:
    if (body.points is None) == (body.batch is None):
        raise BadRequest("Wrong input: send either `points` or `batch`")
    if body.points is not None:
        return [PointInput(p.id, point_vectors(p.vector, named), p.payload) for p in body.points]
    batch = body.batch
    assert batch is not None
    count = len(batch.ids)
    vectors = batch.vectors
    columns = vectors if isinstance(vectors, dict) else {DEFAULT_VECTOR: vectors}
    for name, column in columns.items():
        if not isinstance(column, list) or len(column) != count:
            raise BadRequest(f"Wrong input: batch.vectors[{name!r}] must hold {count} vectors")
    payloads = batch.payloads if batch.payloads is not None else [None] * count
    if len(payloads) != count:
        raise BadRequest(f"Wrong input: batch.payloads must hold {count} entries")
    return [
        PointInput(
            point_id,
            point_vectors({n: column[i] for n, column in columns.items()}, named=True),
            payloads[i],
        )
        for i, point_id in enumerate(batch.ids)
    ]


def payload_selector(raw: Any) -> PayloadSelector:
    if raw is None or raw is False:
        return PayloadSelector()
    if raw is True:
        return PayloadSelector(enabled=True)
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        return PayloadSelector(enabled=True, include=tuple(raw))
    if isinstance(raw, dict) and set(raw) <= {"include", "exclude"} and len(raw) == 1:
        key, paths = next(iter(raw.items()))
        if isinstance(paths, list) and all(isinstance(k, str) for k in paths):
            return PayloadSelector(enabled=True, **{key: tuple(paths)})
    raise BadRequest(
        "Wrong input: with_payload must be a bool, a list of keys, "
        '{"include": [...]} or {"exclude": [...]}'
    )


def vector_selector(raw: Any) -> VectorSelector:
    if raw is None or raw is False:
        return VectorSelector()
    if raw is True:
        return VectorSelector(enabled=True)
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        return VectorSelector(enabled=True, names=tuple(raw))
    raise BadRequest("Wrong input: with_vector must be a bool or a list of vector names")


def _nearest(query: Any) -> Any:
    """The vector-or-id a query is for: a bare VectorInput or `{"nearest": ...}`."""
    if isinstance(query, dict):
        if set(query) == {"nearest"} or ("nearest" in query and set(query) <= {"nearest", "mmr"}):
            return query["nearest"]
        kinds = ", ".join(sorted(query))
        raise BadRequest(f"Wrong input: query type {kinds!r} is not supported by this server yet")
    return query


def _vector_or_id(value: Any, using: str, where: str) -> tuple[Any, Any, str]:
    """(vector, point id, vector name) from a VectorInput: a list, an id or a named vector."""
    if isinstance(value, bool):
        raise BadRequest(f"Wrong input: {where} must be a vector or a point id")
    if isinstance(value, int | str):
        return None, value, using
    if isinstance(value, list):
        return value, None, using
    if isinstance(value, dict) and "vector" in value and isinstance(value.get("name"), str):
        return value["vector"], None, value["name"]
    if isinstance(value, dict) and {"indices", "values"} <= set(value):
        raise BadRequest(f"Wrong input: {where}: sparse vectors are not supported")
    raise BadRequest(f"Wrong input: {where} must be a vector or a point id")


def _params(body: schemas.QueryPoints | schemas.SearchPoints) -> dict[str, Any]:
    params = body.params or schemas.SearchParams()
    return {
        "hnsw_ef": params.hnsw_ef,
        "exact": params.exact,
        "indexed_only": params.indexed_only,
    }


def query_request(body: schemas.QueryPoints) -> SearchRequest:
    if body.prefetch:
        raise BadRequest("Wrong input: prefetch is not supported by this server yet")
    if body.query is None:
        raise BadRequest("Wrong input: a query without `query` is not supported yet")
    vector, point_id, using = _vector_or_id(
        _nearest(body.query), body.using or DEFAULT_VECTOR, "query"
    )
    with_vector = body.with_vector if body.with_vectors is None else body.with_vectors
    return SearchRequest(
        vector=vector,
        point_id=point_id,
        using=using,
        limit=body.limit,
        offset=body.offset,
        score_threshold=body.score_threshold,
        payload=payload_selector(body.with_payload),
        vectors=vector_selector(with_vector),
        filter=filter_node(body.filter),
        **_params(body),
    )


def search_request(body: schemas.SearchPoints) -> SearchRequest:
    vector, point_id, using = _vector_or_id(body.vector, DEFAULT_VECTOR, "vector")
    if point_id is not None:
        raise BadRequest("Wrong input: vector must be a list of numbers or {name, vector}")
    return SearchRequest(
        vector=vector,
        using=using,
        limit=body.limit,
        offset=body.offset,
        score_threshold=body.score_threshold,
        payload=payload_selector(body.with_payload),
        vectors=vector_selector(body.with_vector),
        filter=filter_node(body.filter),
        **_params(body),
    )


def filter_node(raw: Any) -> Any:
    """A Qdrant JSON filter as the filter AST (None for no filter)."""
    if not raw:
        return None
    try:
        from app.filters import parse_qdrant_filter
    except ImportError:
        raise BadRequest(
            "Wrong input: payload filters are not supported by this server yet"
        ) from None
    return parse_qdrant_filter(raw)


def selector(points: list[Any] | None, filter_: Any) -> PointSelector:
    """`points` or `filter`, exactly one of them, as a point selector."""
    if (points is None) == (not filter_):
        raise BadRequest("Wrong input: select points with either `points` or `filter`")
    if points is not None:
        return PointSelector(ids=tuple(points))
    return PointSelector(filter=filter_node(filter_))


def _convert(raw: Any, kind: type[T], where: str) -> T:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"Validation error in JSON body: {where}: {exc}") from None


def payload_operation(kind: str, body: Any) -> Operation:
    if kind in ("set_payload", "overwrite_payload"):
        data = _convert(body, schemas.SetPayload, kind)
        chosen = selector(data.points, data.filter)
        if kind == "overwrite_payload":
            return writes.overwrite_payload(chosen, data.payload)
        return writes.set_payload(chosen, data.payload, data.key)
    if kind == "delete_payload":
        data = _convert(body, schemas.DeletePayload, kind)
        return writes.delete_payload_keys(selector(data.points, data.filter), data.keys)
    data = _convert(body, schemas.ClearPayload, kind)
    return writes.clear_payload(selector(data.points, data.filter))


def update_vectors(body: schemas.UpdateVectors, named: bool) -> list[tuple[Any, dict[str, Any]]]:
    return [(p.id, point_vectors(p.vector, named)) for p in body.points]


def delete_vectors(body: schemas.DeleteVectors) -> writes.ReplaceVectors:
    return writes.ReplaceVectors({}, selector(body.points, body.filter), tuple(body.vector))


def batch_operations(
    body: schemas.BatchUpdate, collection: Collection, points: PointService
) -> list[Operation]:
    """`points/batch`: every operation parsed and validated before any is executed."""
    named = collection.config.named
    operations: list[Operation] = []
    for position, item in enumerate(body.operations):
        if not isinstance(item, dict) or len(item) != 1:
            raise BadRequest(f"Wrong input: operations[{position}] must have exactly one key")
        kind, raw = next(iter(item.items()))
        where = f"operations[{position}].{kind}"
        if kind == "upsert":
            upsert = _convert(raw, schemas.UpsertPoints, where)
            operations.append(points.upsert_operation(collection, upsert_points(upsert, named)))
        elif kind == "delete":
            data = _convert(raw, schemas.DeletePoints, where)
            operations.append(writes.Delete(selector(data.points, data.filter)))
        elif kind in ("set_payload", "overwrite_payload", "delete_payload", "clear_payload"):
            operations.append(payload_operation(kind, raw))
        elif kind == "update_vectors":
            data = _convert(raw, schemas.UpdateVectors, where)
            operations.append(points.vectors_operation(collection, update_vectors(data, named)))
        elif kind == "delete_vectors":
            operations.append(delete_vectors(_convert(raw, schemas.DeleteVectors, where)))
        else:
            raise BadRequest(f"Wrong input: {where}: unknown operation")
    return operations
