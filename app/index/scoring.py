"""Similarity arithmetic in one place: query preparation, fast scoring and exact re-scoring.

Scores are Qdrant's: Cosine and Dot are dot products (vectors normalised for Cosine, higher is
better), Euclid is the true L2 distance (lower is better). Candidate selection uses float32
BLAS; the final order and the returned scores come from a float64 re-score of the few
candidates, so rounding in a matrix product can never reorder two results.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from app.models import Distance

TINY = np.finfo(np.float64).tiny
GATHER_CHUNK = 256  # rows scored per gather in `over_rows` (~400 KB at 384 dimensions)


def prepare(vectors: np.ndarray, distance: Distance) -> np.ndarray:
    """Vectors as stored and searched: float32, unit length for Cosine (zero stays zero)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if distance is Distance.COSINE and vectors.ndim == 1:  # a query: skip the matrix machinery
        norm = math.sqrt(float(vectors @ vectors))
        return vectors if norm == 0 else vectors * (1 / norm)  # a Python float keeps float32
    if distance is Distance.COSINE:
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1, norms)
        vectors = vectors.astype(np.float32, copy=False)
    return vectors


def sort_keys(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Fast float32 keys for every row of `matrix`; smaller key = better match."""
    products = matrix @ query
    if distance is Distance.EUCLID:
        return np.einsum("ij,ij->i", matrix, matrix) - 2 * products
    return -products


def over_rows(
    score: Callable[[np.ndarray], np.ndarray], matrix: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """`score(matrix[rows])`, a chunk of rows at a time (`score` maps rows to one value each).

    Gathering many rows at once writes a large copy to fresh memory (a page fault per 4 KB)
    and reads it back from RAM; a chunk stays in cache, which makes large gathers markedly
    faster.
    """
    if len(rows) <= GATHER_CHUNK:
        return score(matrix[rows])
    chunks = range(0, len(rows), GATHER_CHUNK)
    return np.concatenate([score(matrix[rows[i : i + GATHER_CHUNK]]) for i in chunks])


def exact_scores(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Qdrant scores of the rows of `matrix`, computed in float64.

    Cosine re-normalises in float64: vectors normalised in float32 are off unit length by
    ~1e-7, enough to make two identical directions score 0.99999994 instead of 1 (Upstash
    clients expect exactly 1 after float32 rounding).

    Products use `np.einsum`, not BLAS: `rows @ q` may round a row differently depending on
    how many rows the batch has and where the row sits in it (OpenBLAS's AVX-512 kernels do),
    so the same point would score differently on the graph and the exact path, or on two
    pages. einsum gives a row the same bits in any batch.
    """
    rows = matrix.astype(np.float64)
    q = query.astype(np.float64)
    if distance is Distance.EUCLID:
        return np.sqrt(((rows - q) ** 2).sum(axis=1))
    products = np.einsum("ij,j->i", rows, q)
    if distance is Distance.COSINE:
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows) * float(q @ q))
        products /= np.maximum(norms, TINY)  # a zero vector scores 0 (0 / tiny)
    return products


def order(scores: np.ndarray, rows: np.ndarray, distance: Distance) -> np.ndarray:
    """Positions that sort results best first; ties go to the older row (stable)."""
    key = scores if distance is Distance.EUCLID else -scores
    return np.lexsort((rows, key))


def passes_threshold(scores: np.ndarray, threshold: float, distance: Distance) -> np.ndarray:
    """Qdrant's strict `score_threshold`: keep `score > t`, or `score < t` for Euclid."""
    return scores < threshold if distance is Distance.EUCLID else scores > threshold
