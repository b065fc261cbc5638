"""qdrant-client local mode as the oracle: one dataset loaded into a live Waypoint server
and into `QdrantClient(":memory:")`, and comparisons of what both answer.

Local mode is exact, so on the exact path results must agree position by position (scores
within 1e-4). Two results whose scores tie within float32 rounding may come in either order
(local mode sorts with an unstable argsort), so such neighbours may be swapped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

SCORE_TOL = 1e-4
TIE = 1e-6
NAMES = ("cos", "dot", "euc")
DISTANCES = {
    "cos": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euc": models.Distance.EUCLID,
}
CITIES = ("berlin", "paris", "rome", "oslo", "lima")


def clients(url: str) -> tuple[QdrantClient, QdrantClient]:
    """(remote, local): the client of the live server and the local-mode oracle."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return QdrantClient(url=url, prefer_grpc=False, timeout=60), QdrantClient(":memory:")


def payload(i: int, rng: np.random.Generator) -> dict[str, Any]:
    """Keyword, integer and array values to filter and group on (some points lack some)."""
    out: dict[str, Any] = {
        "i": i,
        "city": CITIES[int(rng.integers(len(CITIES)))],
        "rank": int(rng.integers(0, 8)),
        "price": round(float(rng.uniform(0, 100)), 2),
        "tags": [f"t{int(t)}" for t in rng.choice(6, size=int(rng.integers(0, 3)), replace=False)],
    }
    if i % 7 == 0:
        del out["city"]
    if i % 11 == 0:
        out["rank"] = [int(rng.integers(0, 8)), int(rng.integers(0, 8))]
    if i % 13 == 0:
        out["rank"] = 1.5  # a float: joins no group
    return out


def build(
    pair: tuple[QdrantClient, QdrantClient],
    name: str,
    count: int,
    dim: int,
    seed: int,
    names: Sequence[str] = NAMES,
) -> dict[str, np.ndarray]:
    """A collection with the named vectors of `names`, the same in both clients."""
    rng = np.random.default_rng(seed)
    vectors = {n: rng.standard_normal((count, dim)).astype(np.float32) for n in names}
    payloads = [payload(i, rng) for i in range(count)]
    config = {n: models.VectorParams(size=dim, distance=DISTANCES[n]) for n in names}
    for client in pair:
        client.create_collection(name, vectors_config=config)
        for start in range(0, count, 500):
            points = [
                models.PointStruct(
                    id=i, vector={n: vectors[n][i].tolist() for n in names}, payload=payloads[i]
                )
                for i in range(start, min(count, start + 500))
            ]
            client.upsert(name, points=points, wait=True)
    return vectors


def assert_same(got: Sequence[Any], want: Sequence[Any], where: str = "") -> None:
    """Same ids position by position (tied neighbours may swap), scores within 1e-4."""
    got_ids, want_ids = [p.id for p in got], [p.id for p in want]
    got_scores = np.array([p.score for p in got], dtype=np.float64)
    want_scores = np.array([p.score for p in want], dtype=np.float64)
    assert len(got_ids) == len(want_ids), f"{where}: {got_ids} != {want_ids}"
    np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=SCORE_TOL, err_msg=where)
    for position, (a, b) in enumerate(zip(got_ids, want_ids, strict=True)):
        if a != b:
            tied = np.abs(want_scores - got_scores[position]) < TIE
            assert a in np.array(want_ids, dtype=object)[tied], f"{where}: {got_ids} != {want_ids}"


def assert_same_records(got: Sequence[Any], want: Sequence[Any], where: str = "") -> None:
    """Payloads and vectors agree too (ids and scores by `assert_same`)."""
    assert_same(got, want, where)
    for a, b in zip(got, want, strict=True):
        if a.id == b.id:
            assert a.payload == b.payload, where
            if b.vector is not None:
                _close_vectors(a.vector, b.vector, where)


def _close_vectors(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=where)
    else:
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=where)


def random_filter(rng: np.random.Generator) -> models.Filter | None:
    """One of a few filter shapes with random values (None a fifth of the time)."""
    kind = int(rng.integers(5))
    city = CITIES[int(rng.integers(len(CITIES)))]
    low = int(rng.integers(0, 6))
    if kind == 0:
        return None
    if kind == 1:
        cities = [city, CITIES[(CITIES.index(city) + 1) % len(CITIES)]]
        return models.Filter(
            must=[models.FieldCondition(key="city", match=models.MatchAny(any=cities))]
        )
    if kind == 2:
        return models.Filter(
            must=[models.FieldCondition(key="rank", range=models.Range(gte=low, lt=low + 3))]
        )
    if kind == 3:
        return models.Filter(
            must_not=[models.FieldCondition(key="tags", match=models.MatchValue(value="t1"))],
            should=[
                models.FieldCondition(key="city", match=models.MatchValue(value=city)),
                models.FieldCondition(key="price", range=models.Range(lt=30.0)),
            ],
        )
    return models.Filter(
        must=[
            models.FieldCondition(key="price", range=models.Range(gt=float(low * 10))),
            models.FieldCondition(key="tags", match=models.MatchAny(any=["t0", "t2", "t4"])),
        ]
    )
