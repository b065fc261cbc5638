"""Request bodies of the Upstash Vector REST API (camelCase on the wire)."""

from __future__ import annotations

from typing import Any

import msgspec


class Body(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    """Unknown fields are ignored: the SDK sends telemetry-free but version-dependent keys."""


class Vector(Body):
    id: int | str
    vector: list[float] | None = None
    sparse_vector: Any = None
    metadata: dict[str, Any] | None = None
    data: str | None = None


class Query(Body):
    vector: list[float] | None = None
    sparse_vector: Any = None
    data: str | None = None
    top_k: int = 10
    include_vectors: bool = False
    include_metadata: bool = False
    include_data: bool = False
    filter: str | None = ""
    weighting_strategy: str | None = None
    fusion_algorithm: str | None = None
    query_mode: str | None = None
    max_idle: int | None = None


class ResumableNext(Body):
    uuid: str
    additional_k: int = 10


class ResumableEnd(Body):
    uuid: str


class CreateIndex(Body):
    dimension: int | None = None
    similarity_function: str | None = None
    index_type: str | None = None  # None: implied by the embedding models (DENSE without)
    embedding_model: str | None = None
    sparse_embedding_model: str | None = None


class Include(Body):
    include_vectors: bool = False
    include_metadata: bool = False
    include_data: bool = False


class Fetch(Include):
    ids: list[int | str] | int | str | None = None
    prefix: str | None = None


class Range(Include, kw_only=True):
    limit: int
    cursor: str | int = ""
    prefix: str | None = None


class Delete(Body):
    """The SDK wraps a single id into `ids`; other clients may send it bare."""

    ids: list[int | str] | int | str | None = None
    prefix: str | None = None
    filter: str | None = None


class Update(Body):
    id: int | str
    metadata_update_mode: str = "OVERWRITE"
    vector: list[float] | None = None
    sparse_vector: Any = None
    data: str | None = None
    metadata: dict[str, Any] | None = None


class RenameNamespace(Body):
    namespace: str
    new_namespace: str
    delete_existing: bool = False
