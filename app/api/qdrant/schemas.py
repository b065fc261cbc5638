"""Request bodies of the Qdrant REST API (the subset Waypoint serves), as msgspec Structs.

Fields whose wire type is a union msgspec cannot express (a vector, an id or a query object)
are `Any` here and parsed into domain types by `parse.py`, which owns the error messages.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Body(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """Unknown fields are accepted and ignored, as newer clients send newer options."""


class CreateCollection(Body):
    vectors: dict[str, Any] | None = None
    hnsw_config: dict[str, Any] | None = None
    sparse_vectors: dict[str, Any] | None = None
    optimizers_config: dict[str, Any] | None = None
    wal_config: dict[str, Any] | None = None
    quantization_config: Any = None
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool | None = None


class UpdateCollection(Body):
    vectors: Any = None
    optimizers_config: Any = None
    params: Any = None
    hnsw_config: Any = None
    quantization_config: Any = None
    sparse_vectors: Any = None
    strict_mode_config: Any = None


class PointStruct(Body):
    id: int | str
    vector: list[float] | dict[str, Any] | None = None
    payload: dict[str, Any] | None = None


class PointsBatch(Body):
    ids: list[int | str]
    vectors: list[Any] | dict[str, Any]  # vectors or Documents (app/api/qdrant/documents.py)
    payloads: list[dict[str, Any] | None] | None = None


class UpsertPoints(Body):
    points: list[PointStruct] | None = None
    batch: PointsBatch | None = None
    shard_key: Any = None
    update_filter: Any = None


class RetrievePoints(Body):
    ids: list[int | str]
    with_payload: Any = True
    with_vector: Any = False
    shard_key: Any = None


class DeletePoints(Body):
    points: list[int | str] | None = None
    filter: dict[str, Any] | None = None
    shard_key: Any = None


class ScrollPoints(Body):
    offset: int | str | None = None
    limit: int = 10
    filter: dict[str, Any] | None = None
    with_payload: Any = True
    with_vector: Any = False
    order_by: Any = None
    shard_key: Any = None


class CountPoints(Body):
    filter: dict[str, Any] | None = None
    exact: bool = True
    shard_key: Any = None


class SearchParams(Body):
    hnsw_ef: int | None = None
    exact: bool = False
    indexed_only: bool = False
    quantization: Any = None
    acorn: Any = None


class Prefetch(Body):
    """One level of a universal query: what a `prefetch` entry and the query itself share."""

    prefetch: Any = None
    query: Any = None
    using: str | None = None
    filter: dict[str, Any] | None = None
    params: SearchParams | None = None
    score_threshold: float | None = None
    limit: int = 10
    lookup_from: Any = None


class QueryPoints(Prefetch):
    offset: int = 0
    with_payload: Any = False
    with_vector: Any = False
    with_vectors: Any = None
    shard_key: Any = None


class QueryGroups(QueryPoints, kw_only=True):
    group_by: str
    group_size: int = 3
    with_lookup: Any = None


class ResumableQuery(QueryPoints):
    max_idle: int = 3600  # seconds without a page before the session expires


class ResumableNext(Body):
    limit: int = 10


class QueryBatch(Body):
    searches: list[QueryPoints]


class SearchPoints(Body):
    vector: Any
    limit: int
    filter: dict[str, Any] | None = None
    params: SearchParams | None = None
    score_threshold: float | None = None
    offset: int = 0
    with_payload: Any = False
    with_vector: Any = False
    shard_key: Any = None


class SearchBatch(Body):
    searches: list[SearchPoints]


class SearchGroups(SearchPoints, kw_only=True):
    group_by: str
    group_size: int
    with_lookup: Any = None


class RecommendPoints(Body):
    """The legacy `points/recommend` body (examples are ids or raw vectors)."""

    limit: int
    positive: list[Any] | None = None
    negative: list[Any] | None = None
    strategy: str | None = None
    filter: dict[str, Any] | None = None
    params: SearchParams | None = None
    offset: int = 0
    with_payload: Any = False
    with_vector: Any = False
    score_threshold: float | None = None
    using: str | None = None
    lookup_from: Any = None
    shard_key: Any = None


class RecommendBatch(Body):
    searches: list[RecommendPoints]


class RecommendGroups(RecommendPoints, kw_only=True):
    group_by: str
    group_size: int
    with_lookup: Any = None


class SetPayload(Body):
    payload: dict[str, Any]
    points: list[int | str] | None = None
    filter: dict[str, Any] | None = None
    key: str | None = None
    shard_key: Any = None


class DeletePayload(Body):
    keys: list[str]
    points: list[int | str] | None = None
    filter: dict[str, Any] | None = None
    shard_key: Any = None


class ClearPayload(Body):
    points: list[int | str] | None = None
    filter: dict[str, Any] | None = None
    shard_key: Any = None


class PointVectors(Body):
    id: int | str
    vector: list[float] | dict[str, Any]


class UpdateVectors(Body):
    points: list[PointVectors]
    shard_key: Any = None
    update_filter: Any = None


class DeleteVectors(Body):
    vector: list[str]
    points: list[int | str] | None = None
    filter: dict[str, Any] | None = None
    shard_key: Any = None


class BatchUpdate(Body):
    operations: list[dict[str, Any]]


class ChangeAliases(Body):
    actions: list[dict[str, Any]]
