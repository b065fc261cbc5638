"""Upstash wire shapes: normalised scores, vectors exactly as sent, optional fields.

The similarity names and the score normalisation are dialect rules the service ranks by, so
they live in `app.services.upstash`; they are re-exported here for the handlers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.db.repository import PointRecord
from app.models import DEFAULT_VECTOR, Distance
from app.services.upstash import DISTANCE, SIMILARITY, score

__all__ = [
    "DISTANCE",
    "SIMILARITY",
    "exact_floats",
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
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(point_id)}
    if include_vectors and vector is not None:
        out["vector"] = exact_floats(vector)
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
        metadata=point.payload,
        data=point.data,
        include_vectors=include_vectors,
        include_metadata=include_metadata,
        include_data=include_data,
    )


def score_object(record: Any, distance: Distance) -> dict[str, Any]:
    """A `Score`: id, normalised score, and what the query asked to include (if present)."""
    out: dict[str, Any] = {"id": str(record.id), "score": score(record.score, distance)}
    raw = record.extra.get("raw_vector")
    if raw is not None:
        out["vector"] = exact_floats(raw)
    if record.payload is not None:
        out["metadata"] = record.payload
    if record.extra.get("data") is not None:
        out["data"] = record.extra["data"]
    return out
