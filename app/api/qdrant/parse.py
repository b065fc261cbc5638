"""Qdrant wire bodies → domain requests. Every rejection names the field that is wrong."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from app import limits
from app.api.qdrant import schemas
from app.errors import BadRequest, ValidationFailed
from app.filters import parse_qdrant_filter
from app.filters.semantics import is_integer
from app.index.fusion import QDRANT_RRF_K
from app.index.recommend import Strategy
from app.models import (
    DEFAULT_VECTOR,
    Collection,
    CollectionConfig,
    Distance,
    HnswParams,
    SparseParams,
    SparseVector,
    VectorParams,
    hnsw_from_json,
)
from app.services import writes
from app.services.collections import AliasAction, ConfigChange
from app.services.groups import GroupSpec, Lookup
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.points import OrderBy, PointInput, PointService
from app.services.recommend import LookupFrom, Recommend
from app.services.search import Fusion, SearchRequest
from app.services.writes import Operation, PointSelector

T = TypeVar("T")

_DISTANCES = {d.value: d for d in Distance}
_HNSW_INTS = ("m", "ef_construct", "full_scan_threshold")


def collection_config(body: schemas.CreateCollection) -> CollectionConfig:
    hnsw = _hnsw(body.hnsw_config, HnswParams())
    vectors = body.vectors or {}
    named = not ("size" in vectors and "distance" in vectors)
    params = vectors.items() if named else [(DEFAULT_VECTOR, vectors)]
    sparse = {
        name: _sparse_params(name, raw)
        for name, raw in _object(body.sparse_vectors, "sparse_vectors").items()
    }
    dense = {name: _vector_params(name, raw, hnsw) for name, raw in params}
    for name in sparse.keys() & dense.keys():
        raise BadRequest(f"Wrong input: vector name {name!r} is both dense and sparse")
    return CollectionConfig(
        vectors=dense,
        hnsw=hnsw,
        named=named,
        as_sent=_jsonable(body),
        sparse_vectors=sparse,
    )


_MODIFIERS = {"idf": True, "none": False, None: False}


def _sparse_params(name: str, raw: Any) -> SparseParams:
    """`SparseVectorParams`: `modifier` (`idf` or `none`) and `index` options, echoed back.

    The index options (`full_scan_threshold`, `on_disk`, `datatype`) tune Qdrant's storage;
    Waypoint's inverted index is always exact and in memory, so they are only kept."""
    where = f"sparse_vectors.{name}"
    if not name:
        raise BadRequest("Wrong input: a sparse vector needs a name")
    sent = _object(raw, where)
    if sent.get("modifier") not in _MODIFIERS:
        raise BadRequest(f"Wrong input: {where}.modifier must be idf or none")
    _object(sent.get("index"), f"{where}.index")
    return SparseParams(idf=_MODIFIERS[sent.get("modifier")], as_sent=sent)


def _vector_params(name: str, raw: Any, hnsw: HnswParams) -> VectorParams:
    where = f"vectors.{name}" if name else "vectors"
    if not isinstance(raw, dict):
        raise BadRequest(f"Wrong input: {where} must be an object with size and distance")
    size, distance = raw.get("size"), raw.get("distance")
    if not is_integer(size) or not 1 <= size <= 65_536:
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
    return hnsw_from_json(_hnsw_fields(raw), base)


def _hnsw_fields(raw: Any, where: str = "hnsw_config") -> dict[str, int]:
    """The HNSW fields `raw` sets (m, ef_construct, full_scan_threshold), each in range."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"Wrong input: {where} must be an object")
    values = {k: v for k, v in raw.items() if v is not None and k in _HNSW_INTS}
    if not all(is_integer(v) for v in values.values()):
        raise BadRequest(f"Wrong input: {where} {', '.join(_HNSW_INTS)} must be integers")
    params = hnsw_from_json(values)
    if not 2 <= params.m <= 512 or not 4 <= params.ef_construct <= 4096:
        raise BadRequest(f"Wrong input: {where}.m must be 2..512, ef_construct 4..4096")
    if params.full_scan_threshold < 10:
        raise BadRequest(f"Wrong input: {where}.full_scan_threshold must be 10 or larger")
    return values


def collection_change(body: schemas.UpdateCollection) -> ConfigChange:
    """`PATCH /collections/{name}`: the settings to change, checked before anything is."""
    settings = _collection_params(body.params)
    if body.quantization_config is not None:  # "Disabled" removes it
        quantization = body.quantization_config
        settings["quantization_config"] = None if quantization == "Disabled" else quantization
    if body.strict_mode_config is not None:
        settings["strict_mode_config"] = body.strict_mode_config
    return ConfigChange(
        hnsw=_hnsw_fields(body.hnsw_config),
        vectors={
            name: _vector_change(name, raw)
            for name, raw in _object(body.vectors, "vectors").items()
        },
        optimizers=_object(body.optimizers_config, "optimizers_config"),
        settings=settings,
        sparse_vectors={
            name: _sparse_params(name, raw)
            for name, raw in _object(body.sparse_vectors, "sparse_vectors").items()
        },
    )


def _collection_params(raw: Any) -> dict[str, Any]:
    params = _object(raw, "params")
    for key in ("replication_factor", "write_consistency_factor", "read_fan_out_factor"):
        value = params.get(key)
        if value is not None and (not is_integer(value) or value < 1):
            raise BadRequest(f"Wrong input: params.{key} must be a positive integer")
    if not isinstance(params.get("on_disk_payload", False), bool):
        raise BadRequest("Wrong input: params.on_disk_payload must be true or false")
    return params


def _vector_change(name: str, raw: Any) -> dict[str, Any]:
    where = f"vectors.{name}" if name else "vectors"
    change = _object(raw, where)
    if change.get("hnsw_config") is not None:
        change["hnsw_config"] = _hnsw_fields(change["hnsw_config"], f"{where}.hnsw_config")
    if not isinstance(change.get("on_disk", False), bool | None):
        raise BadRequest(f"Wrong input: {where}.on_disk must be true or false")
    return change


def _object(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"Wrong input: {where} must be an object")
    return dict(raw)


def _jsonable(body: Any) -> dict[str, Any]:
    return msgspec.to_builtins(body)


def point_vectors(vector: Any, named: bool) -> dict[str, Any]:
    """A point's vectors by name; sparse ones (`{"indices", "values"}`) checked and sorted.
    An unnamed collection may still hold named sparse vectors."""
    if vector is None:
        return {}
    if isinstance(vector, dict):
        vectors = {
            name: sparse_vector(values, f"vector.{name}") if isinstance(values, dict) else values
            for name, values in vector.items()
        }
        dense = [name for name, v in vectors.items() if not isinstance(v, SparseVector)]
        if not named and dense and set(dense) != {DEFAULT_VECTOR}:
            names = ", ".join(sorted(dense))
            raise BadRequest(f"Wrong input: Not existing vector name error: {names}")
        return vectors
    return {DEFAULT_VECTOR: vector}


def sparse_vector(raw: Any, where: str) -> SparseVector:
    """A `SparseVector` from `{"indices": [...], "values": [...]}`; 422 for any other shape
    or a broken vector (lengths, repeated indices), as Qdrant validates it."""
    if not isinstance(raw, dict) or set(raw) != {"indices", "values"}:
        raise ValidationFailed(
            f"Validation error in JSON body: [{where}: a sparse vector is "
            '{"indices": [...], "values": [...]}]'
        )
    if isinstance(raw["indices"], list):
        limits.check_sparse_size(len(raw["indices"]))
    try:
        return SparseVector.parse(raw["indices"], raw["values"])
    except ValueError as exc:
        raise ValidationFailed(f"Validation error in JSON body: [{where}: {exc}]") from None


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


def _query_target(query: Any, using: str) -> dict[str, Any]:
    """The SearchRequest fields a `query` sets: nearest (a bare VectorInput or
    `{"nearest": …}`), `{"recommend": …}`, `{"order_by": …}`, `{"fusion": …}`, `{"rrf": …}`,
    or nothing (no query)."""
    if query is None:
        return {"using": using}
    if isinstance(query, dict) and len(query) == 1 and ("fusion" in query or "rrf" in query):
        return {"using": using, "fusion": _fusion(query)}
    if isinstance(query, dict) and "recommend" in query and len(query) == 1:
        return {"using": using, "recommend": recommend_query(query["recommend"], "query")}
    if isinstance(query, dict) and "order_by" in query and len(query) == 1:
        return {"using": using, "order_by": order_by(query["order_by"])}
    if isinstance(query, dict) and not _is_sparse(query):
        if set(query) == {"nearest"} or ("nearest" in query and set(query) <= {"nearest", "mmr"}):
            query = query["nearest"]
        else:
            kinds = ", ".join(sorted(query))
            raise BadRequest(
                f"Wrong input: query type {kinds!r} is not supported by this server yet"
            )
    vector, point_id, using = _vector_or_id(query, using, "query")
    return {"vector": vector, "point_id": point_id, "using": using}


def _vector_or_id(value: Any, using: str, where: str) -> tuple[Any, Any, str]:
    """(vector, point id, vector name) from a VectorInput: a list, an id or a named vector."""
    if isinstance(value, bool):
        raise BadRequest(f"Wrong input: {where} must be a vector or a point id")
    if isinstance(value, int | str):
        return None, value, using
    if isinstance(value, list):
        return value, None, using
    if isinstance(value, dict) and "vector" in value and isinstance(value.get("name"), str):
        named = value["vector"]
        if _is_sparse(named):
            return sparse_vector(named, f"{where}.vector"), None, value["name"]
        return named, None, value["name"]
    if _is_sparse(value):
        return sparse_vector(value, where), None, using
    raise BadRequest(f"Wrong input: {where} must be a vector or a point id")


def _is_sparse(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"indices", "values"}


def _fusion(query: dict[str, Any]) -> Fusion:
    """`{"fusion": "rrf" | "dbsf"}` or `{"rrf": {"k": …, "weights": […]}}`."""
    if "fusion" in query:
        if query["fusion"] not in ("rrf", "dbsf"):
            raise BadRequest("Wrong input: query.fusion must be rrf or dbsf")
        return Fusion(query["fusion"])
    rrf = _object(query["rrf"], "query.rrf")
    k = rrf.get("k")
    weights = rrf.get("weights")
    if k is not None and (not is_integer(k) or k < 1):
        raise ValidationFailed("Validation error in JSON body: [query.rrf.k: must be 1 or more]")
    if weights is not None and (
        not isinstance(weights, list)
        or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
    ):
        raise BadRequest("Wrong input: query.rrf.weights must be a list of numbers")
    return Fusion(
        "rrf", QDRANT_RRF_K if k is None else k, None if weights is None else tuple(weights)
    )


MAX_PREFETCHES = 64  # in one query, at every level together


def prefetches(raw: Any, budget: list[int] | None = None) -> tuple[SearchRequest, ...]:
    """A query's `prefetch` (one object or a list), each level parsed like a query."""
    budget = [MAX_PREFETCHES] if budget is None else budget
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    budget[0] -= len(items)
    if budget[0] < 0:
        raise BadRequest(f"Wrong input: a query takes at most {MAX_PREFETCHES} prefetches")
    return tuple(_prefetch(item, budget) for item in items)


def _prefetch(raw: Any, budget: list[int]) -> SearchRequest:
    body = _convert(raw, schemas.Prefetch, "prefetch")
    params = body.params or schemas.SearchParams()
    request = SearchRequest(
        **_query_target(body.query, body.using or DEFAULT_VECTOR),
        limit=body.limit,
        score_threshold=body.score_threshold,
        filter=filter_node(body.filter),
        hnsw_ef=params.hnsw_ef,
        exact=params.exact,
        indexed_only=params.indexed_only,
        prefetch=prefetches(body.prefetch, budget),
    )
    _check_prefetched(request, "prefetch")
    return request


def _check_prefetched(request: SearchRequest, where: str) -> None:
    if request.fusion is not None and not request.prefetch:
        raise BadRequest(f"Wrong input: {where}: a fusion query needs prefetches to fuse")
    if request.order_by is not None and request.prefetch:
        raise BadRequest(f"Wrong input: {where}: order_by cannot rank prefetched points")


def _examples(raw: Any, where: str) -> tuple[Any, ...]:
    """Recommend examples: each a raw dense vector (a list), a sparse vector (`{"indices",
    "values"}`, as a `SparseVector`) or a point id."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadRequest(f"Wrong input: {where} must be a list of point ids or vectors")
    examples = []
    for position, example in enumerate(raw):
        if _is_sparse(example):
            examples.append(sparse_vector(example, f"{where}[{position}]"))
            continue
        if isinstance(example, bool) or not isinstance(example, int | str | list):
            raise BadRequest(f"Wrong input: {where}[{position}] must be a point id or a vector")
        examples.append(example)
    return tuple(examples)


_STRATEGIES = {s.value: s for s in Strategy}


def recommend_query(raw: Any, where: str, lookup: Any = None) -> Recommend:
    """`{"positive", "negative", "strategy"}` (query API or legacy body) as a Recommend."""
    if not isinstance(raw, dict):
        raise BadRequest(f"Wrong input: {where}.recommend must be an object")
    strategy = raw.get("strategy") or Strategy.AVERAGE_VECTOR.value
    if strategy not in _STRATEGIES:
        raise BadRequest(
            f"Wrong input: strategy must be one of {', '.join(_STRATEGIES)} (got {strategy!r})"
        )
    return Recommend(
        positive=_examples(raw.get("positive"), "positive"),
        negative=_examples(raw.get("negative"), "negative"),
        strategy=_STRATEGIES[strategy],
        lookup_from=lookup_from(lookup),
    )


def lookup_from(raw: Any) -> LookupFrom | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and isinstance(raw.get("collection"), str):
        vector = raw.get("vector")
        if vector is None or isinstance(vector, str):
            return LookupFrom(raw["collection"], vector)
    raise BadRequest('Wrong input: lookup_from must be {"collection": name, "vector": name}')


def order_by(raw: Any) -> OrderBy | None:
    """Scroll / query `order_by`: a key, or `{"key", "direction", "start_from"}`."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return OrderBy(raw)
    if isinstance(raw, dict) and isinstance(raw.get("key"), str):
        direction = raw.get("direction") or "asc"
        if direction not in ("asc", "desc"):
            raise BadRequest("Wrong input: order_by.direction must be asc or desc")
        return OrderBy(raw["key"], direction == "desc", raw.get("start_from"))
    raise BadRequest('Wrong input: order_by must be a key or {"key", "direction", "start_from"}')


def _params(body: Any) -> dict[str, Any]:
    params = body.params or schemas.SearchParams()
    return {
        "hnsw_ef": params.hnsw_ef,
        "exact": params.exact,
        "indexed_only": params.indexed_only,
    }


def _common(body: Any, with_vector: Any) -> dict[str, Any]:
    """The fields every search body shares: paging, threshold, selectors, filter, params."""
    return {
        "limit": body.limit,
        "offset": body.offset,
        "score_threshold": body.score_threshold,
        "payload": payload_selector(body.with_payload),
        "vectors": vector_selector(with_vector),
        "filter": filter_node(body.filter),
        **_params(body),
    }


def query_request(body: schemas.QueryPoints) -> SearchRequest:
    target = _query_target(body.query, body.using or DEFAULT_VECTOR)
    if "recommend" in target:
        target["recommend"] = dataclasses.replace(
            target["recommend"], lookup_from=lookup_from(body.lookup_from)
        )
    with_vector = body.with_vector if body.with_vectors is None else body.with_vectors
    request = SearchRequest(
        **target, **_common(body, with_vector), prefetch=prefetches(body.prefetch)
    )
    _check_prefetched(request, "query")
    return request


def search_request(body: schemas.SearchPoints) -> SearchRequest:
    vector, point_id, using = _vector_or_id(body.vector, DEFAULT_VECTOR, "vector")
    if point_id is not None:
        raise BadRequest("Wrong input: vector must be a list of numbers or {name, vector}")
    return SearchRequest(vector=vector, using=using, **_common(body, body.with_vector))


def recommend_request(body: schemas.RecommendPoints) -> SearchRequest:
    """The legacy `points/recommend` body as a recommend query."""
    raw = {"positive": body.positive, "negative": body.negative, "strategy": body.strategy}
    return SearchRequest(
        recommend=recommend_query(raw, "body", body.lookup_from),
        using=body.using or DEFAULT_VECTOR,
        **_common(body, body.with_vector),
    )


def group_spec(body: Any) -> GroupSpec:
    """`group_by`, `group_size`, `limit` and `with_lookup` of a groups body."""
    return GroupSpec(
        group_by=body.group_by,
        group_size=body.group_size,
        limit=body.limit,
        lookup=with_lookup(body.with_lookup),
    )


def with_lookup(raw: Any) -> Lookup | None:
    """A collection name, or `{"collection", "with_payload" (default true), "with_vectors"}`."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return Lookup(raw)
    if isinstance(raw, dict) and isinstance(raw.get("collection"), str):
        payload = raw.get("with_payload")
        vectors = raw.get("with_vectors", raw.get("with_vector"))
        return Lookup(
            raw["collection"],
            payload_selector(True if payload is None else payload),
            vector_selector(vectors),
        )
    raise BadRequest('Wrong input: with_lookup must be a collection name or {"collection": …}')


def filter_node(raw: Any) -> Any:
    """A Qdrant JSON filter as the filter AST (None for no filter)."""
    if not raw:
        return None
    return parse_qdrant_filter(raw)


def excluding(raw: dict[str, Any] | None, ids: Iterable[Any]) -> dict[str, Any] | None:
    """A JSON filter that also leaves out `ids` (`must_not: has_id`), as Qdrant does with
    recommend example ids; for requests stored as sent (resumable sessions)."""
    ids = list(ids)
    if not ids:
        return raw
    clause: dict[str, Any] = {"must_not": [{"has_id": ids}]}
    return {**clause, "must": [raw]} if raw else clause


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


_ALIAS_FIELDS = {
    "create_alias": ("alias_name", "collection_name"),
    "delete_alias": ("alias_name",),
    "rename_alias": ("old_alias_name", "new_alias_name"),
}


def alias_actions(body: schemas.ChangeAliases) -> list[AliasAction]:
    """`{"actions": [{"create_alias": {...}}, {"delete_alias": …}, {"rename_alias": …}]}`."""
    actions = []
    for position, item in enumerate(body.actions):
        kind = next(iter(item), None) if len(item) == 1 else None
        fields = _ALIAS_FIELDS.get(kind or "")
        raw = item.get(kind) if kind else None
        if fields is None or not isinstance(raw, dict):
            raise BadRequest(
                f"Wrong input: actions[{position}] must be one of {', '.join(_ALIAS_FIELDS)}"
            )
        values = [raw.get(f) for f in fields]
        if not all(isinstance(v, str) and v for v in values):
            raise BadRequest(f"Wrong input: actions[{position}].{kind} needs {', '.join(fields)}")
        verb = kind.removesuffix("_alias")
        if verb == "create":
            actions.append(AliasAction("create", values[0], collection=values[1]))
        elif verb == "rename":
            actions.append(AliasAction("rename", values[0], new_alias=values[1]))
        else:
            actions.append(AliasAction("delete", values[0]))
    return actions
