"""Value types shared by every layer: distances, vector parameters, point ids.

This module imports nothing from the application, so `api`, `services`, `db` and `index` can
all depend on it without creating cycles.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np

DEFAULT_VECTOR = ""  # the name of a collection's unnamed vector
MAX_POINT_NUMBER = 2**64 - 1
MAX_SPARSE_INDEX = 2**32 - 1

PointId = int | str


class Distance(StrEnum):
    COSINE = "Cosine"
    DOT = "Dot"
    EUCLID = "Euclid"


class IdKind(IntEnum):
    """How a point id is written; orders numbers before UUIDs like Qdrant's id order."""

    NUMBER = 0
    UUID = 1
    STRING = 2


@dataclass(frozen=True, slots=True)
class HnswParams:
    m: int = 16
    ef_construct: int = 100
    full_scan_threshold: int = 10_000  # KB of vectors, as in Qdrant

    def full_scan_points(self, dim: int) -> int:
        """`full_scan_threshold` as a number of float32 vectors of `dim`, as Qdrant counts it:
        up to this many candidates a search scans them exactly instead of walking the graph."""
        return self.full_scan_threshold * 1024 // (dim * 4)

    def same_graph(self, other: HnswParams) -> bool:
        """Whether a graph built with `other` is the one these parameters would build."""
        return (self.m, self.ef_construct) == (other.m, other.ef_construct)


@dataclass(frozen=True, slots=True)
class VectorParams:
    size: int
    distance: Distance
    hnsw: HnswParams = HnswParams()
    # The parameters exactly as the caller sent them, echoed back by collection info.
    as_sent: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SparseParams:
    """A sparse vector of a collection. `idf`: Qdrant's `modifier: "idf"`, query values
    weighted by each dimension's inverse document frequency at search time."""

    idf: bool = False
    as_sent: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SparseVector:
    """A checked sparse vector: uint32 indices strictly increasing, float32 finite values."""

    indices: np.ndarray
    values: np.ndarray

    @classmethod
    def parse(cls, indices: Any, values: Any, *, merge_repeats: bool = False) -> SparseVector:
        """Check a sparse vector as sent (any index order) and sort it; ValueError says why.

        Qdrant sorts indices itself and refuses repeated ones. With `merge_repeats` (the
        Upstash dialect: its SDK's own tests send `[3, 3]`) a repeated index holds the sum
        of its values, as the sparse vector those pairs spell.
        """
        if not isinstance(indices, list | tuple) or not isinstance(values, list | tuple):
            raise ValueError("indices and values must be lists")
        if len(indices) != len(values):
            raise ValueError(
                f"indices and values must have the same length ({len(indices)} != {len(values)})"
            )
        # type checks by set of types: one pass in C, where a loop in Python would hold the
        # event loop for a long vector (bool is not int here, as JSON true is not a number)
        if not set(map(type, indices)) <= {int}:
            raise ValueError("indices must be integers")
        if not set(map(type, values)) <= {int, float}:
            raise ValueError("values must be numbers")
        dims = np.asarray(indices, dtype=np.int64 if not indices else None)
        if dims.dtype == object or (
            len(dims) and (dims.min() < 0 or dims.max() > MAX_SPARSE_INDEX)
        ):  # object: an integer past 64 bits
            raise ValueError(f"indices must be between 0 and {MAX_SPARSE_INDEX}")
        dims = dims.astype(np.int64)
        try:
            vals = np.asarray(values, dtype=np.float64)
        except OverflowError:
            raise ValueError("values must be finite 32-bit floats (no NaN or inf)") from None
        if not np.isfinite(vals).all() or (np.abs(vals) > np.finfo(np.float32).max).any():
            raise ValueError("values must be finite 32-bit floats (no NaN or inf)")
        order = np.argsort(dims, kind="stable")
        dims, vals = dims[order], vals[order]
        if len(dims) > 1 and (dims[1:] == dims[:-1]).any():
            if not merge_repeats:
                raise ValueError("indices must be unique")
            dims, positions = np.unique(dims, return_inverse=True)
            vals = np.bincount(positions, vals, len(dims))
        return cls(dims.astype(np.uint32), vals.astype(np.float32))

    def tobytes(self) -> bytes:
        """How PostgreSQL stores it (like a dense vector's `tobytes`): the indices as
        little-endian uint32, then the values as float32."""
        return self.indices.astype("<u4").tobytes() + self.values.astype("<f4").tobytes()

    @classmethod
    def frombytes(cls, raw: bytes) -> SparseVector:
        size = len(raw) // 8
        return cls(
            np.frombuffer(raw, dtype="<u4", count=size).astype(np.uint32),
            np.frombuffer(raw, dtype="<f4", count=size, offset=4 * size).astype(np.float32),
        )

    def as_wire(self) -> dict[str, list]:
        """`{"indices", "values"}` with each value the shortest text of its float32, so a
        client reads back the numbers it sent."""
        return {
            "indices": self.indices.tolist(),
            "values": [float(str(value)) for value in self.values],
        }


@dataclass(frozen=True, slots=True)
class CollectionConfig:
    """A collection's vector layout; an unnamed vector is stored under the name `""`.
    Dense and sparse vectors have distinct names (they share the stored rows' key)."""

    vectors: dict[str, VectorParams]
    hnsw: HnswParams = HnswParams()
    named: bool = True
    as_sent: dict[str, Any] = field(default_factory=dict)
    sparse_vectors: dict[str, SparseParams] = field(default_factory=dict)

    def is_sparse(self, name: str) -> bool:
        return name in self.sparse_vectors

    def vector_names(self) -> list[str]:
        """Every vector a point may hold, dense then sparse."""
        return [*self.vectors, *self.sparse_vectors]


def hnsw_from_json(data: dict[str, Any], base: HnswParams = HnswParams()) -> HnswParams:
    return HnswParams(
        m=int(data.get("m", base.m)),
        ef_construct=int(data.get("ef_construct", base.ef_construct)),
        full_scan_threshold=int(data.get("full_scan_threshold", base.full_scan_threshold)),
    )


def config_to_json(config: CollectionConfig) -> dict[str, Any]:
    """The JSON stored in `collections.config`: the request as sent plus what we derived."""
    return {
        "named": config.named,
        "as_sent": config.as_sent,
        "hnsw": {
            "m": config.hnsw.m,
            "ef_construct": config.hnsw.ef_construct,
            "full_scan_threshold": config.hnsw.full_scan_threshold,
        },
        "vectors": {
            name: {
                "size": params.size,
                "distance": params.distance.value,
                "hnsw": {
                    "m": params.hnsw.m,
                    "ef_construct": params.hnsw.ef_construct,
                    "full_scan_threshold": params.hnsw.full_scan_threshold,
                },
                "as_sent": params.as_sent,
            }
            for name, params in config.vectors.items()
        },
        "sparse_vectors": {
            name: {"idf": params.idf, "as_sent": params.as_sent}
            for name, params in config.sparse_vectors.items()
        },
    }


def config_from_json(data: dict[str, Any]) -> CollectionConfig:
    return CollectionConfig(
        vectors={
            name: VectorParams(
                size=int(v["size"]),
                distance=Distance(v["distance"]),
                hnsw=hnsw_from_json(v.get("hnsw", {})),
                as_sent=v.get("as_sent", {}),
            )
            for name, v in data["vectors"].items()
        },
        hnsw=hnsw_from_json(data.get("hnsw", {})),
        named=bool(data.get("named", True)),
        as_sent=data.get("as_sent", {}),
        sparse_vectors={
            name: SparseParams(idf=bool(v.get("idf")), as_sent=v.get("as_sent", {}))
            for name, v in data.get("sparse_vectors", {}).items()
        },
    )


@dataclass(slots=True)
class Collection:
    id: int
    name: str
    config: CollectionConfig
    dialect: str = "qdrant"
    namespaces: dict[str, int] = field(default_factory=dict)  # namespace name -> id


def point_id_key(point_id: PointId, *, strings: bool = False) -> tuple[str, IdKind, int | None]:
    """Canonical text, kind and sortable number of a point id.

    Qdrant ids are unsigned 64-bit ints or UUIDs; the number is the id shifted by -2**63 so
    they sort as signed bigints. With `strings` (Upstash indexes) any non-empty string is an
    id, and numbers become their decimal text. Raises ValueError for anything else.
    """
    if strings:
        return _string_id(point_id)
    if isinstance(point_id, bool):
        raise ValueError(
            f"Unable to parse point id {point_id!r}: expected an unsigned integer or UUID"
        )
    if isinstance(point_id, int):
        if not 0 <= point_id <= MAX_POINT_NUMBER:
            raise ValueError(f"Point id {point_id} is out of range: expected 0..2^64-1")
        return str(point_id), IdKind.NUMBER, point_id - 2**63
    if isinstance(point_id, str):
        try:
            return str(uuid.UUID(point_id)), IdKind.UUID, None
        except ValueError:
            pass
    raise ValueError(f"Unable to parse point id {point_id!r}: expected an unsigned integer or UUID")


def _string_id(point_id: PointId) -> tuple[str, IdKind, int | None]:
    if isinstance(point_id, bool) or not isinstance(point_id, int | str) or point_id == "":
        raise ValueError(f"Invalid id {point_id!r}: expected a non-empty string or a number")
    return str(point_id), IdKind.STRING, None


def wire_point_id(text: str, kind: int) -> PointId:
    """Inverse of `point_id_key`: the id as it goes on the wire."""
    return int(text) if kind == IdKind.NUMBER else text


def plain_keys(field: str) -> tuple[str, ...] | None:
    """`a.b` → ("a", "b"); None for paths through arrays (`a[]`, `a[0]`) or empty keys.

    Declared payload fields with plain keys are the ones kept as in-memory columns and,
    for numbers, as PostgreSQL expression indexes.
    """
    if not field or any(char in field for char in '[]"'):
        return None
    keys = tuple(field.split("."))
    return keys if all(keys) else None
