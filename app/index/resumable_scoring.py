"""Keys that order a resumable query, computed one way so a resumed query agrees with itself.

A resumable query compares distances computed on different pages, on different calls and
after a cold resume. BLAS is fast but not reproducible per row: `X @ q` may round a row
differently depending on where it sits in the batch, so a point could sort before the cursor
on one page and after it on the next (a duplicate or a gap). `np.einsum` with float64
accumulation gives every row the same bits whatever batch it is in (float32 x float32
products are exact in float64), so it is the one code path for every key that is compared
across calls. Scans of many rows use a cheap float32 key plus a proven error bound instead,
and re-key only the few rows whose order the bound cannot settle (see `ExactScan`).

Keys are "smaller is better": minus the dot product (Cosine, Dot) or the squared L2
distance (Euclid, the quantity hnswlib's `l2` space uses too).
"""

from __future__ import annotations

import math

import numpy as np

from app.models import Distance, PointId

F32_ROUNDOFF = 2.0**-24
F64_ROUNDOFF = 2.0**-53
SAFETY = 1.01  # headroom over the textbook bounds below

Entry = tuple[float, tuple[int, int | str], int]
"""(key, id order, row): tuples compare as the query's total order, ties by point id."""


def id_order(point_id: PointId) -> tuple[int, int | str]:
    """Qdrant's point id order, numbers before UUIDs, as a sortable tuple."""
    return (0, point_id) if isinstance(point_id, int) else (1, point_id)


def _gamma(n: int, roundoff: float) -> float:
    """Higham's γₙ: the relative error bound of any n-term floating-point dot product."""
    return n * roundoff / (1 - n * roundoff)


class Scorer:
    """Keys, fast bounded keys and Qdrant scores of segment rows against one query."""

    def __init__(self, distance: Distance, query: np.ndarray) -> None:
        self.distance = distance
        self.query = np.ascontiguousarray(query, dtype=np.float32)
        self.query_norm = float(np.linalg.norm(self.query.astype(np.float64)))

    def keys(self, vectors: np.ndarray) -> np.ndarray:
        """Reproducible float64 keys: the same bits for a row whatever batch it is in."""
        if self.distance is Distance.EUCLID:
            diff = vectors - self.query
            return np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
        return -np.einsum("ij,j->i", vectors, self.query, dtype=np.float64)

    def approx_keys(self, vectors: np.ndarray, sq_norms: np.ndarray) -> tuple[np.ndarray, float]:
        """Float32-speed keys and a bound `tol` with |approx - keys()| <= tol for every row.

        `sq_norms` are the rows' squared norms (exact enough: float64). The bound is the
        worst case over any summation order, so it holds for whatever SIMD path einsum takes.
        """
        dots = np.einsum("ij,j->i", vectors, self.query).astype(np.float64)
        if not len(dots):
            return dots, 0.0
        dim, q = len(self.query), self.query_norm
        top = math.sqrt(float(sq_norms.max()))
        g32, g64 = _gamma(dim, F32_ROUNDOFF), _gamma(dim + 2, F64_ROUNDOFF)
        if self.distance is Distance.EUCLID:
            keys = sq_norms - 2 * dots + q * q
            # the float32 dot, doubled; then keys() itself: a float32 difference per term
            tol = 2 * g32 * top * q + (2.01 * F32_ROUNDOFF + 4 * g64) * (top + q) ** 2
        else:
            keys = -dots
            tol = (g32 + g64) * top * q
        return keys, SAFETY * tol + 1e-300

    def scores(self, keys: list[float]) -> list[float]:
        """Qdrant scores of keys: the dot product, or the L2 distance for Euclid."""
        if self.distance is Distance.EUCLID:
            return [math.sqrt(key) for key in keys]
        return [-key for key in keys]
