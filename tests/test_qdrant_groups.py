"""Grouped queries through the official client against local mode (the oracle), and the
legacy `points/search/groups` and `points/recommend/groups` endpoints.

`grp` has 500 points whose payloads group by a keyword (`city`, missing on some points), an
integer (`rank`: some points hold an array, some a float that joins no group) and an array of
keywords (`tags`). `grp_lookup` holds points 0..9, the lookups of the integer groups.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from qdrant_client import models

from tests.qdrant_oracle import NAMES, assert_same_records, build, clients, random_filter

N, DIM = 500, 8
KEYS = ("city", "rank", "tags")


@pytest.fixture(scope="module")
def pair(server):
    remote, local = clients(server.url)
    build((remote, local), "grp", N, DIM, seed=21)
    rng = np.random.default_rng(22)
    lookup = [
        models.PointStruct(id=i, vector=rng.standard_normal(4).tolist(), payload={"name": f"n{i}"})
        for i in range(10)
    ]
    for client in (remote, local):
        config = models.VectorParams(size=4, distance=models.Distance.DOT)
        client.create_collection("grp_lookup", vectors_config=config)
        client.upsert("grp_lookup", points=lookup, wait=True)
    yield remote, local
    remote.close()


def assert_same_groups(got, want, where: str) -> None:
    assert [g.id for g in got.groups] == [g.id for g in want.groups], where
    for a, b in zip(got.groups, want.groups, strict=True):
        assert_same_records(a.hits, b.hits, f"{where}, group {b.id}")
        assert (a.lookup is None) == (b.lookup is None), where
        if b.lookup is not None:
            assert (a.lookup.id, a.lookup.payload) == (b.lookup.id, b.lookup.payload), where
            if b.lookup.vector is not None:
                np.testing.assert_allclose(a.lookup.vector, b.lookup.vector, atol=1e-5)


def random_query(rng: np.random.Generator, using: str):
    kind = int(rng.integers(5))
    if kind == 0:
        return rng.standard_normal(DIM).tolist()
    if kind == 1:
        return int(rng.integers(N))
    if kind == 2:
        return None  # points in id order
    strategy = [None, "best_score", "sum_scores"][int(rng.integers(3))]
    return models.RecommendQuery(
        recommend=models.RecommendInput(
            positive=[int(rng.integers(N)), rng.standard_normal(DIM).tolist()],
            negative=[int(rng.integers(N))] if kind == 4 else None,
            strategy=strategy,
        )
    )


def random_lookup(rng: np.random.Generator):
    kind = int(rng.integers(3))
    if kind == 0:
        return None
    if kind == 1:
        return "grp_lookup"
    return models.WithLookup(collection="grp_lookup", with_payload=["name"], with_vectors=True)


def test_groups_match_local_mode(pair) -> None:
    """Keyword, integer and array keys; every query kind; lookups; filters."""
    remote, local = pair
    rng = np.random.default_rng(77)
    groups = lookups = 0
    for case in range(120):
        using = NAMES[case % 3]
        args = {
            "query": random_query(rng, using),
            "using": using,
            "group_by": KEYS[int(rng.integers(3))],
            "limit": int(rng.integers(1, 7)),
            "group_size": int(rng.integers(1, 5)),
            "query_filter": random_filter(rng),
            "with_lookup": random_lookup(rng),
            "with_payload": [True, False, ["i"]][int(rng.integers(3))],
            "with_vectors": bool(rng.random() < 0.2),
        }
        got = remote.query_points_groups("grp", **args)
        want = local.query_points_groups("grp", **args)
        assert_same_groups(got, want, f"case {case}: {args}")
        groups += len(want.groups)
        lookups += sum(g.lookup is not None for g in want.groups)
    assert groups > 200 and lookups > 20  # the cases are not vacuous


def test_groups_of_array_values_and_thresholds(pair) -> None:
    """Each element of an array forms its own group; a point can lead several groups."""
    remote, local = pair
    query = np.linspace(-1, 1, DIM).tolist()
    for key, threshold in (("tags", 0.5), ("rank", None), ("city", 0.8)):
        args = {"group_by": key, "limit": 10, "group_size": 3, "score_threshold": threshold}
        got = remote.query_points_groups("grp", query=query, using="cos", **args)
        want = local.query_points_groups("grp", query=query, using="cos", **args)
        assert_same_groups(got, want, key)
        assert got.groups


def test_legacy_group_endpoints(pair, server) -> None:
    _, local = pair
    vector = np.linspace(1, -1, DIM).tolist()
    search = {
        "vector": {"name": "euc", "vector": vector},
        "group_by": "rank",
        "group_size": 2,
        "limit": 4,
        "with_payload": True,
        "with_lookup": {"collection": "grp_lookup", "with_payload": True},
    }
    recommend = {
        "positive": [5, 6],
        "negative": [7],
        "strategy": "best_score",
        "using": "dot",
        "group_by": "tags",
        "group_size": 3,
        "limit": 5,
    }
    with httpx.Client(base_url=server.url, timeout=30) as http:
        searched = http.post("/collections/grp/points/search/groups", json=search)
        recommended = http.post("/collections/grp/points/recommend/groups", json=recommend)
    assert searched.status_code == 200, searched.text
    assert recommended.status_code == 200, recommended.text
    cases = [
        (
            searched,
            local.query_points_groups(
                "grp",
                query=vector,
                using="euc",
                group_by="rank",
                group_size=2,
                limit=4,
                with_lookup="grp_lookup",
            ),
        ),
        (
            recommended,
            local.query_points_groups(
                "grp",
                query=models.RecommendQuery(
                    recommend=models.RecommendInput(
                        positive=[5, 6], negative=[7], strategy="best_score"
                    )
                ),
                using="dot",
                group_by="tags",
                group_size=3,
                limit=5,
            ),
        ),
    ]
    for response, want in cases:
        groups = response.json()["result"]["groups"]
        assert [g["id"] for g in groups] == [g.id for g in want.groups]
        for got, expected in zip(groups, want.groups, strict=True):
            assert [h["id"] for h in got["hits"]] == [h.id for h in expected.hits]
            np.testing.assert_allclose(
                [h["score"] for h in got["hits"]], [h.score for h in expected.hits], atol=1e-4
            )
            if expected.lookup is not None:
                assert got["lookup"]["payload"] == expected.lookup.payload
