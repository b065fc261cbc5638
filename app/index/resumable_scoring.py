"""Keys that order a resumable query, computed one way so a resumed query agrees with itself.

A resumable query compares distances computed on different pages, on different calls and
after a cold resume. BLAS is fast but not reproducible per row: `X @ q` may round a row
differently depending on where it sits in the batch, so a point could sort before the cursor
on one page and after it on the next (a duplicate or a gap). `np.einsum` gives every row
the same bits whatever batch it is in (its loop order depends on the row length only; the
tests check it on the running build), and with float64 accumulation it is also precise
(float32 x float32 products are exact in float64), so it is the one code path for every key
that is compared across calls. Scans of many rows use a cheap float32 key plus a proven
error bound instead, and re-key only the few rows whose order the bound cannot settle (see
`ExactScan`).

Keys are "smaller is better": minus the dot product (Cosine, Dot) or the squared L2
distance (Euclid, the quantity hnswlib's `l2` space uses too), computed as
|x|^2 + |q|^2 - 2 x.q in float64 from cached row norms (more precise than a float32
difference, and it needs no n x d temporary).
"""

from __future__ import annotations

import math

import numpy as np

from app.models import Distance, PointId

F32_ROUNDOFF = 2.0**-24
F64_ROUNDOFF = 2.0**-53
SAFETY = 1.01  # headroom over the textbook bounds below
SCAN_SHARE = 0.25  # from this share of the rows on, a contiguous scan beats a gather

Hit = tuple[float, int]
"""(key, row): what the engines yield."""

Entry = tuple[float, tuple[int, int | str], int]
"""(key, id order, row): tuples that compare as the query's total order, ties by point id."""


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

    def keys(self, vectors: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
        """Reproducible float64 keys: the same bits for a row whatever batch it is in.

        `sq_norms` are the rows' squared norms (float64), needed for Euclid: the distance
        is expanded as |x|^2 + |q|^2 - 2 x.q so no difference matrix is materialised.
        """
        dots = np.einsum("ij,j->i", vectors, self.query, dtype=np.float64)
        if self.distance is Distance.EUCLID:
            return sq_norms - 2 * dots + self.query_norm**2
        return -dots

    def fast_keys(self, vectors: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
        """Keys from a float32 dot product: ~5x cheaper, also the same bits in any batch.

        They differ from `keys()` by at most `fast_key_error()`.
        """
        dots = np.einsum("ij,j->i", vectors, self.query).astype(np.float64)
        if self.distance is Distance.EUCLID:
            return sq_norms - 2 * dots + self.query_norm**2
        return -dots

    def fast_keys_of(
        self, vectors: np.ndarray, sq_norms: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """`fast_keys` of `rows` of the segment matrix `vectors` (`sq_norms`: of all rows).

        Gathering scattered rows runs at a fraction of the bandwidth of a sequential pass,
        so past a quarter of the rows it is cheaper to key them all and pick. Either way a
        row gets the same bits.
        """
        if len(rows) >= SCAN_SHARE * len(sq_norms):
            return self.fast_keys(vectors[: len(sq_norms)], sq_norms)[rows]
        return self.fast_keys(vectors[rows], sq_norms[rows])

    def fast_key_error(self, sq_norms: np.ndarray) -> float:
        """A bound on |fast_keys() - keys()| over rows with these squared norms.

        The worst case over any summation order (Higham's gamma), so it holds for whatever
        SIMD path einsum takes; for Euclid it adds float64 rounding of both expansions.
        """
        if not len(sq_norms):
            return 0.0
        dim, q = len(self.query), self.query_norm
        top = math.sqrt(float(sq_norms.max()))
        g32, g64 = _gamma(dim, F32_ROUNDOFF), _gamma(dim + 2, F64_ROUNDOFF)
        if self.distance is Distance.EUCLID:
            error = 2 * (g32 + g64) * top * q + 8 * g64 * (top + q) ** 2
        else:
            error = (g32 + g64) * top * q
        return SAFETY * error + 1e-300

    def scores(self, keys: list[float]) -> list[float]:
        """Qdrant scores of keys: the dot product, or the L2 distance for Euclid."""
        if self.distance is Distance.EUCLID:
            return [math.sqrt(max(key, 0.0)) for key in keys]
        return [-key for key in keys]
