"""Upstash wire shapes: normalised scores, vectors exactly as sent, optional fields.

The similarity names and the score normalisation are dialect rules the service ranks by, so
they live in `app.services.upstash`; they are re-exported here for the handlers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.db.repository import PointRecord
from app.models import DEFAULT_VECTOR, Collection, SparseVector
from app.services.upstash import DISTANCE, SIMILARITY, SPARSE_VECTOR, model_names, score

__all__ = [
    "DISTANCE",
    "SIMILARITY",
    "exact_floats",
    "info",
    "score",
    "score_object",
    "stored_object",
    "vector_object",
]


def exact_floats(raw: bytes) -> list[float]:
    """A stored float32 vector as the numbers the client sent (shortest repr, not widened)."""
    return [float(str(x)) for x in np.frombuffer(raw, dtype=np.float32)]


def vector_object(
    point_id: Any,
    *,
    vector: bytes | None,
    metadata: dict[str, Any] | None,
    data: str | None,
    include_vectors: bool,
    include_metadata: bool,
    include_data: bool,
    sparse: bytes | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(point_id)}
    if include_vectors:
        _put_vectors(out, vector, sparse)
    if include_metadata and metadata is not None:
        out["metadata"] = metadata
    if include_data and data is not None:
        out["data"] = data
    return out


def stored_object(
    point: PointRecord | None,
    *,
    include_vectors: bool = False,
    include_metadata: bool = False,
    include_data: bool = False,
) -> dict[str, Any] | None:
    """A `Vector` (fetch, range, random) from a stored point; None stays None (fetch)."""
    if point is None:
        return None
    return vector_object(
        point.id,
        vector=point.vectors.get(DEFAULT_VECTOR),
        sparse=point.vectors.get(SPARSE_VECTOR),
        metadata=point.payload,
        data=point.data,
        include_vectors=include_vectors,
        include_metadata=include_metadata,
        include_data=include_data,
    )


def _put_vectors(out: dict[str, Any], dense: bytes | None, sparse: bytes | None) -> None:
    """`vector` and `sparseVector` from their stored bytes, the numbers as sent."""
    if dense is not None:
        out["vector"] = exact_floats(dense)
    if sparse is not None:
        out["sparseVector"] = SparseVector.frombytes(sparse).as_wire()


def score_object(record: Any) -> dict[str, Any]:
    """A `Score`: id, score (already Upstash's), and what the query asked to include."""
    out: dict[str, Any] = {"id": str(record.id), "score": record.score}
    _put_vectors(out, record.extra.get("raw_vector"), record.extra.get("raw_sparse"))
    if record.payload is not None:
        out["metadata"] = record.payload
    if record.extra.get("data") is not None:
        out["data"] = record.extra["data"]
    return out


def info(collection: Collection, kind: str, counts: dict[str, int]) -> dict[str, Any]:
    """`InfoResult`: counts per namespace, the dense part (`denseIndex`, and the legacy
    top-level `dimension` and `similarityFunction`, 0 and "" without one), the sparse part
    (`sparseIndex`), each with its embedding model ("" for none), and `indexType`."""
    models = model_names(collection)
    dense = collection.config.vectors.get(DEFAULT_VECTOR)
    similarity = SIMILARITY[dense.distance] if dense is not None else ""
    size = dense.size if dense is not None else 0
    total = sum(counts.values())
    out: dict[str, Any] = {
        "vectorCount": total,
        "pendingVectorCount": 0,
        "indexSize": total * size * 4,
        "dimension": size,
        "similarityFunction": similarity,
        "indexType": kind,
        "namespaces": {
            name: {"vectorCount": count, "pendingVectorCount": 0} for name, count in counts.items()
        },
    }
    if dense is not None:
        out["denseIndex"] = {
            "dimension": size,
            "similarityFunction": similarity,
            "embeddingModel": models.get(DEFAULT_VECTOR, ""),
        }
    if kind != "DENSE":
        out["sparseIndex"] = {"embeddingModel": models.get(SPARSE_VECTOR, "")}
    return out
