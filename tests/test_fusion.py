"""Result-list fusion against qdrant-client local mode, hand-computed Upstash cases, and
the RRF final prefix against brute force over random streaming orders."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from qdrant_client.http import models
from qdrant_client.hybrid.fusion import (
    distribution_based_score_fusion,
    reciprocal_rank_fusion,
)

from app.index.fusion import (
    UPSTASH_RRF_K,
    PointId,
    Scored,
    dbsf_normalise,
    qdrant_dbsf,
    qdrant_rrf,
    rrf_final_prefix,
    upstash_dbsf,
    upstash_rrf,
)

POOL: list[PointId] = [*range(25), *"abcdefghij"]


def scored_points(lists: list[list[Scored]]) -> list[list[models.ScoredPoint]]:
    """Fresh ScoredPoints per call: local mode overwrites their scores in place."""
    return [
        [models.ScoredPoint(id=pid, version=0, score=score) for pid, score in items]
        for items in lists
    ]


def local_rrf(lists, k=None, weights=None, limit=1000) -> list[Scored]:
    fused = reciprocal_rank_fusion(
        scored_points(lists), limit=limit, ranking_constant_k=k, weights=weights
    )
    return [(p.id, p.score) for p in fused]


def local_dbsf(lists, limit=1000) -> list[Scored]:
    fused = distribution_based_score_fusion(scored_points(lists), limit=limit)
    return [(p.id, p.score) for p in fused]


def random_scores(rng: random.Random, n: int) -> list[float]:
    """Descending scores. Some are coarse, to force ties; some are constant, to get sd = 0."""
    style = rng.choice(["fine", "coarse", "constant", "wide"])
    if style == "constant":
        return [0.7] * n
    if style == "coarse":
        values = [round(rng.random(), 1) for _ in range(n)]
    elif style == "wide":
        values = [rng.uniform(-50, 50) for _ in range(n)]
    else:
        values = [rng.random() for _ in range(n)]
    return sorted(values, reverse=True)


def random_lists(rng: random.Random, unique: bool = True) -> list[list[Scored]]:
    lists = []
    for _ in range(rng.randint(0, 4)):
        n = rng.choice([0, 1, 2, rng.randint(3, 30)])
        ids = rng.sample(POOL, n) if unique else [rng.choice(POOL) for _ in range(n)]
        lists.append(list(zip(ids, random_scores(rng, n), strict=True)))
    return lists


def random_weights(rng: random.Random, n: int) -> list[float] | None:
    if rng.random() < 0.3:
        return None
    return [rng.choice([1.0, 0.0, -1.0, 0.5, 2.0, 3.0, rng.uniform(0.01, 5)]) for _ in range(n)]


# --- Qdrant: bit for bit against local mode ---------------------------------------------


@pytest.mark.parametrize("unique", [True, False])
def test_qdrant_rrf_matches_local_mode(unique: bool) -> None:
    rng = random.Random(1)
    for _ in range(1500):
        lists = random_lists(rng, unique)
        k = rng.choice([1, 2, 3, 10, 60, 100])
        weights = random_weights(rng, len(lists))
        assert qdrant_rrf(lists, k=k, weights=weights) == local_rrf(lists, k, weights)


@pytest.mark.parametrize("unique", [True, False])
def test_qdrant_dbsf_matches_local_mode(unique: bool) -> None:
    rng = random.Random(2)
    for _ in range(1500):
        lists = random_lists(rng, unique)
        assert qdrant_dbsf(lists) == local_dbsf(lists)


def test_limits_match_local_mode() -> None:
    rng = random.Random(3)
    for _ in range(300):
        lists = random_lists(rng)
        limit = rng.randint(0, 12)
        assert qdrant_rrf(lists, limit=limit) == local_rrf(lists, limit=limit)
        assert qdrant_dbsf(lists, limit=limit) == local_dbsf(lists, limit=limit)


def test_default_k_is_two() -> None:
    lists = [[(1, 0.9), (2, 0.8)], [(2, 0.5)]]
    assert qdrant_rrf(lists) == local_rrf(lists) == [(2, 1 / 3 + 1 / 2), (1, 0.5)]


def test_empty_inputs() -> None:
    assert qdrant_rrf([]) == local_rrf([]) == []
    assert qdrant_rrf([[], []]) == local_rrf([[], []]) == []
    assert qdrant_dbsf([]) == local_dbsf([]) == []
    assert qdrant_dbsf([[], [(1, 0.3)]]) == local_dbsf([[], [(1, 0.3)]]) == [(1, 0.5)]


def test_rrf_ties_keep_first_appearance() -> None:
    """Position 1 of list 0 and of list 1 tie; list 0's point comes first, then by position."""
    lists = [[("x", 0.9), ("a", 0.8)], [("y", 0.9), ("b", 0.1)]]
    expected = [("x", 0.5), ("y", 0.5), ("a", 1 / 3), ("b", 1 / 3)]
    assert qdrant_rrf(lists) == local_rrf(lists) == expected


def test_rrf_nonpositive_weight_adds_nothing_but_keeps_the_point() -> None:
    lists = [[(1, 0.9), (3, 0.1)], [(2, 0.9), (1, 0.2)]]
    for weights in ([1.0, 0.0], [1.0, -2.0]):
        expected = [(1, 0.5), (3, 1 / 3), (2, 0.0)]
        assert qdrant_rrf(lists, weights=weights) == local_rrf(lists, None, weights) == expected


def test_rrf_weight_formula() -> None:
    """Weight 3 divides the 1-based rank: position 2 at weight 3 scores like position 0."""
    assert qdrant_rrf([[(9, 0), (8, 0), (7, 0)]], k=60, weights=[3.0])[2] == (7, 1 / 60)


def test_rrf_argument_checks() -> None:
    with pytest.raises(ValueError, match="Length of weights"):
        qdrant_rrf([[(1, 1.0)]], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="Length of weights"):
        local_rrf([[(1, 1.0)]], weights=[1.0, 1.0])
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            qdrant_rrf([[(1, 1.0)]], k=bad_k)
    with pytest.raises(ValueError, match="finite"):
        qdrant_rrf([[(1, 1.0)]], weights=[math.nan])
    with pytest.raises(ValueError, match="limit"):
        qdrant_dbsf([[(1, 1.0)]], limit=-1)


def test_dbsf_edge_cases() -> None:
    assert dbsf_normalise([0.3]) == [0.5]
    assert dbsf_normalise([2.0, 2.0, 2.0]) == [0.5, 0.5, 0.5]
    assert dbsf_normalise([]) == []
    assert dbsf_normalise([3, 1]) == dbsf_normalise([3.0, 1.0])


def test_dbsf_uses_the_sample_standard_deviation() -> None:
    values = [3.0, 2.0, 1.0]
    sample_sd = float(np.std(values, ddof=1))
    assert sample_sd == 1.0
    assert dbsf_normalise(values) == pytest.approx([4 / 6, 3 / 6, 2 / 6])


def test_dbsf_does_not_clamp() -> None:
    """An outlier beyond 3 sd leaves [0, 1], in local mode too."""
    lists = [[(0, 100.0)] + [(i, 0.0) for i in range(1, 21)]]
    fused = qdrant_dbsf(lists, limit=1)
    assert fused == local_dbsf(lists, limit=1)
    assert fused[0][1] > 1


def test_dbsf_on_raw_distances_reverses_like_local_mode() -> None:
    """The contract: bigger is better. Raw Euclid distances fuse farthest first, as in local
    mode (qdrant/qdrant#10611); negated distances fuse nearest first."""
    distances = [(i, float(i)) for i in range(5)]
    assert [p for p, _ in qdrant_dbsf([distances])] == [4, 3, 2, 1, 0]
    assert [p for p, _ in local_dbsf([distances])] == [4, 3, 2, 1, 0]
    negated = [(i, -d) for i, d in distances]
    assert [p for p, _ in qdrant_dbsf([negated])] == [0, 1, 2, 3, 4]


# --- Upstash: hand-computed -----------------------------------------------------------------


def test_upstash_rrf_matches_the_vector_js_sdk_expectations() -> None:
    """upstash/vector-js `query-many/index.test.ts` on its hybrid fixture (id0, id1, id2):
    the dense query ranks [id2, id1, id0] both times; the sparse lists differ."""
    dense = [("id2", 0.99), ("id1", 0.98), ("id0", 0.95)]
    first = upstash_rrf([dense, [("id2", 0.04)]], limit=1)
    assert first == [("id2", 1 / 60 + 1 / 60)]
    assert np.format_float_positional(np.float32(first[0][1])) == "0.033333335"
    second = upstash_rrf([dense[:3], [("id0", 0.07), ("id1", 0.02)]], limit=1)
    assert second == [("id0", 1 / 62 + 1 / 60)]
    assert np.format_float_positional(np.float32(second[0][1])) == "0.032795697"


def test_upstash_rrf_full_order() -> None:
    lists = [[("a", 0.9), ("b", 0.8), ("c", 0.7)], [("c", 5.0), ("d", 4.0)]]
    assert upstash_rrf(lists) == [
        ("c", 1 / 62 + 1 / 60),
        ("a", 1 / 60),
        ("b", 1 / 61),
        ("d", 1 / 61),
    ]


def test_upstash_dbsf_hand_computed() -> None:
    """List 1: mu 2, sd 1, so [-1, 5] maps to [0, 1]. List 2: mu 5, sd = sqrt(50)."""
    lists = [[("a", 3.0), ("b", 2.0), ("c", 1.0)], [("b", 10.0), ("d", 0.0)]]
    spread = 6 * math.sqrt(50)
    expected = [
        ("b", 3 / 6 + (10 - 5 + spread / 2) / spread),
        ("a", 4 / 6),
        ("d", (0 - 5 + spread / 2) / spread),
        ("c", 2 / 6),
    ]
    fused = upstash_dbsf(lists)
    assert [p for p, _ in fused] == [p for p, _ in expected]
    assert [s for _, s in fused] == pytest.approx([s for _, s in expected])


def test_upstash_dbsf_edge_cases() -> None:
    assert upstash_dbsf([[("a", 0.2)], [("b", 0.9), ("a", 0.9)]]) == [("a", 1.0), ("b", 0.5)]
    assert upstash_dbsf([[], []]) == []


# --- RRF final prefix ---------------------------------------------------------------------


def full_lists(rng: random.Random) -> list[list[Scored]]:
    lists = []
    for _ in range(rng.randint(1, 4)):
        n = rng.choice([0, 1, rng.randint(2, 25)])
        lists.append([(pid, 0.0) for pid in rng.sample(POOL, n)])
    return lists


def stream(rng: random.Random, lists: list[list[Scored]]):
    """Yield (prefixes, exhausted) while reading the lists in a random interleaving.

    A stream is known to be exhausted only after a read that returns nothing, or when a
    read happens to report the end with its last items.
    """
    seen = [0] * len(lists)
    done = [False] * len(lists)
    yield [items[:0] for items in lists], list(done)
    while not all(done):
        i = rng.choice([j for j, is_done in enumerate(done) if not is_done])
        if seen[i] == len(lists[i]):
            done[i] = True
        else:
            seen[i] = min(len(lists[i]), seen[i] + rng.randint(1, 4))
            done[i] = seen[i] == len(lists[i]) and rng.random() < 0.5
        yield [items[:n] for items, n in zip(lists, seen, strict=True)], list(done)


@pytest.mark.parametrize("k", [1, 2, 60])
def test_final_prefix_is_the_head_of_the_full_fusion(k: int) -> None:
    rng = random.Random(k)
    for _ in range(400):
        lists = full_lists(rng)
        weights = random_weights(rng, len(lists))
        full = qdrant_rrf(lists, k=k, weights=weights)
        final: list[Scored] = []
        for prefixes, exhausted in stream(rng, lists):
            previous = final
            final = rrf_final_prefix(prefixes, exhausted, k=k, weights=weights)
            assert final == full[: len(final)]
            assert len(final) >= len(previous)
        assert final == full


def test_final_prefix_with_a_limit() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lists = full_lists(rng)
        limit = rng.randint(0, 6)
        full = qdrant_rrf(lists, limit=limit)
        for prefixes, exhausted in stream(rng, lists):
            final = rrf_final_prefix(prefixes, exhausted, limit=limit)
            assert final == full[: len(final)]
            assert len(final) <= limit
        assert final == full


def test_final_prefix_for_upstash() -> None:
    rng = random.Random(8)
    for _ in range(200):
        lists = full_lists(rng)[:2]
        full = upstash_rrf(lists)
        for prefixes, exhausted in stream(rng, lists):
            final = rrf_final_prefix(prefixes, exhausted, k=UPSTASH_RRF_K)
            assert final == full[: len(final)]
        assert final == full


def test_final_prefix_settles_early_when_the_bound_allows() -> None:
    """`a` is first in both open lists: 1/2 + 1/2 = 1 beats any unseen 1/3 + 1/3."""
    prefixes = [[("a", 0.9)], [("a", 0.8)]]
    assert rrf_final_prefix(prefixes) == [("a", 1.0)]
    prefixes = [[("a", 0.9)], [("b", 0.8)]]
    assert rrf_final_prefix(prefixes) == []


def test_final_prefix_needs_an_exhausted_list_to_rule_a_point_out() -> None:
    """`b` is missing from list 0: while list 0 is open, `b` could gain up to 1/5 there, so
    `x` (1/4, final since list 1 is exhausted) may still be overtaken."""
    prefixes = [[("a", 0.9), ("c", 0.5), ("x", 0.4)], [("a", 0.8), ("c", 0.7), ("b", 0.1)]]
    head = [("a", 1 / 2 + 1 / 2), ("c", 1 / 3 + 1 / 3)]
    assert rrf_final_prefix(prefixes, [False, True]) == head
    # Closed: `b` and `x` tie at 1/4, and `x` appeared first (list 0).
    assert rrf_final_prefix(prefixes, [True, True]) == [*head, ("x", 0.25), ("b", 0.25)]


def test_final_prefix_ties_are_not_declared_while_the_bound_reaches_them() -> None:
    """`b` could still tie `c` exactly. Bounds carry a margin for rounding, so `c` waits
    until `b` is known rather than trusting a float equality between a bound and a score."""
    prefixes = [[("a", 0.9), ("c", 0.5)], [("a", 0.8), ("b", 0.7), ("c", 0.1)]]
    assert rrf_final_prefix(prefixes, [False, True]) == [("a", 1.0)]


def test_final_prefix_resolves_zero_weight_ties_by_first_appearance() -> None:
    """Points of a zero-weight list all score 0.0; their order is first appearance, so the
    seen ones are final even though more zero-score points may follow."""
    prefixes = [[("a", 0.9)], [("z", 0.5), ("y", 0.4)]]
    final = rrf_final_prefix(prefixes, [True, False], weights=[1.0, 0.0])
    assert final == [("a", 0.5), ("z", 0.0), ("y", 0.0)]


def test_final_prefix_refuses_a_repeated_point() -> None:
    with pytest.raises(ValueError, match="twice"):
        rrf_final_prefix([[("a", 0.9), ("a", 0.8)]])
    with pytest.raises(ValueError, match="one flag per list"):
        rrf_final_prefix([[("a", 0.9)]], [True, True])
