"""Upstash wire shapes: normalised scores, vectors exactly as sent, optional fields."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.models import Distance

SIMILARITY = {Distance.COSINE: "COSINE", Distance.EUCLID: "EUCLIDEAN", Distance.DOT: "DOT_PRODUCT"}
DISTANCE = {name: distance for distance, name in SIMILARITY.items()}


def score(raw: float, distance: Distance) -> float:
    """Upstash's 0..1 score from a Qdrant-style score (dot product, or L2 distance).

    COSINE and DOT_PRODUCT: (1 + similarity) / 2; EUCLIDEAN: 1 / (1 + squared distance).
    Rounded through float32 and clamped, so identical directions score exactly 1.
    """
    value = 1.0 / (1.0 + raw * raw) if distance is Distance.EUCLID else (1.0 + raw) / 2.0
    return min(1.0, max(0.0, float(np.float32(value))))


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
