"""The in-memory segment against numpy brute force: exact path, graph path, writes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.index import scoring
from app.index.registry import IndexRegistry
from app.index.segment import FILTERED_SCAN_BYTES, Segment
from app.models import CollectionConfig, Distance, HnswParams, VectorParams


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 1), dim))
    return (centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, dim))).astype(
        np.float32
    )


def brute_force(data: np.ndarray, query: np.ndarray, distance: Distance, k: int):
    x, q = data.astype(np.float64), query.astype(np.float64)
    if distance is Distance.COSINE:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    if distance is Distance.EUCLID:
        scores = np.sqrt(((x - q) ** 2).sum(axis=1))
        order = np.argsort(scores, kind="stable")
    else:
        scores = x @ q
        order = np.argsort(-scores, kind="stable")
    return order[:k].tolist(), scores[order[:k]]


def filled(data: np.ndarray, distance: Distance, threshold: int) -> Segment:
    segment = Segment(data.shape[1], distance, HnswParams(), threshold)
    segment.upsert(list(range(len(data))), data, list(range(1, len(data) + 1)))
    while segment.needs_indexing:
        segment.index_step()
    return segment


@pytest.mark.parametrize("distance", list(Distance))
def test_exact_path_equals_brute_force(distance: Distance) -> None:
    data = clustered(2000, 24, seed=1)
    segment = filled(data, distance, threshold=10_000)
    for query in clustered(20, 24, seed=2):
        hits = segment.search(query, 10)
        ids, scores = brute_force(data, query, distance, 10)
        assert hits.plan == "exact"
        assert hits.ids == ids
        np.testing.assert_allclose(hits.scores, scores, atol=1e-5)


def embedding_like(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors scaled by 0.8-1.2: the norms Dot is used with in practice."""
    data = clustered(n, dim, seed)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data * np.random.default_rng(seed).uniform(0.8, 1.2, size=(n, 1)).astype(np.float32)


@pytest.mark.parametrize("distance", list(Distance))
def test_graph_path_recall(distance: Distance) -> None:
    data = embedding_like(6000, 32, seed=3)
    segment = filled(data, distance, threshold=1000)
    recall = []
    for query in embedding_like(50, 32, seed=4):
        hits = segment.search(query, 10)
        assert hits.plan == "hnsw"
        recall.append(len(set(hits.ids) & set(brute_force(data, query, distance, 10)[0])) / 10)
    assert np.mean(recall) >= 0.95
    exact = segment.search(data[0], 10, exact=True)
    assert exact.plan == "exact"


def near_copies(distance: Distance, threshold: int) -> tuple[np.ndarray, Segment, np.ndarray]:
    """Clustered rows plus 40 near-copies of a unit query: the data, its segment, the query."""
    rng = np.random.default_rng(7)
    centre = rng.normal(size=32).astype(np.float32)
    centre /= np.linalg.norm(centre)
    copies = centre + 2e-4 * rng.normal(size=(40, 32)).astype(np.float32)
    data = np.concatenate([clustered(3000, 32, seed=8), copies])
    return data, filled(data, distance, threshold), centre


@pytest.mark.parametrize("distance", [Distance.COSINE, Distance.EUCLID])
def test_graph_path_orders_near_ties_exactly(distance: Distance) -> None:
    """Cosine distances (1 - dot) of 40 near-copies of the query differ at float32
    resolution, so the graph orders them by rounding noise. Only results near the k-th are
    re-scored: the slack must let in every near-tie, or the graph's answer would differ from
    the exact path's float64 order (fails with CONTENDER_SLACK = 0)."""
    data, segment, centre = near_copies(distance, threshold=1000)
    graph, exact = segment.search(centre, 10), segment.search(centre, 10, exact=True)
    assert (graph.plan, exact.plan) == ("hnsw", "exact")
    assert graph.ids == exact.ids == brute_force(data, centre, distance, 10)[0]
    assert graph.scores == exact.scores


def spy_on_filtered_paths(segment: Segment) -> list[str]:
    """Record which filtered graph path each search takes: "after" (unfiltered search, then
    the filter) or "inside" (hnswlib's filtered search)."""
    taken: list[str] = []
    after, inside = segment._postfiltered, segment._graph_filtered
    segment._postfiltered = lambda *a: taken.append("after") or after(*a)
    segment._graph_filtered = lambda *a: taken.append("inside") or inside(*a)
    return taken


@pytest.mark.parametrize("distance", [Distance.COSINE, Distance.EUCLID])
@pytest.mark.parametrize(("every", "k", "path"), [(3, 10, "after"), (5, 100, "inside")])
def test_filtered_graph_path_orders_near_ties_exactly(
    distance: Distance, every: int, k: int, path: str
) -> None:
    """The same near-copies behind a filter, on both filtered graph paths: 2 of 3 rows pass
    and k is 10 (enough pass among an unfiltered search's results: filtered after), or 1 of
    5 with k 100 (too few would: hnswlib's filtered search). Both return several times k
    results, and again only those near the k-th are re-scored."""
    data, segment, centre = near_copies(distance, threshold=500)
    keep = np.arange(len(data)) % every
    allowed = np.flatnonzero(keep != 0) if every == 3 else np.flatnonzero(keep == 0)
    taken = spy_on_filtered_paths(segment)
    graph = segment.search(centre, k, allowed=allowed)
    exact = segment.search(centre, k, allowed=allowed, exact=True)
    assert (graph.plan, exact.plan) == ("hnsw", "exact")
    assert taken == [path]
    expected = [int(allowed[i]) for i in brute_force(data[allowed], centre, distance, k)[0]]
    assert graph.ids == exact.ids == expected
    assert graph.scores == exact.scores


@pytest.mark.parametrize(
    ("share", "k", "path"),
    [(0.6, 10, "after"), (0.3, 10, "after"), (0.12, 10, "after"), (0.12, 100, "inside")],
)
def test_filtered_graph_path_recall(share: float, k: int, path: str) -> None:
    """A filter is applied after an unfiltered graph search when enough of its results
    should pass (3 k), inside hnswlib's search otherwise: both keep the unfiltered recall."""
    data = embedding_like(6000, 32, seed=3)
    segment = filled(data, Distance.COSINE, threshold=500)
    allowed = np.flatnonzero(np.random.default_rng(12).random(len(data)) < share)
    taken = spy_on_filtered_paths(segment)
    recall = []
    for query in embedding_like(50, 32, seed=4):
        hits = segment.search(query, k, allowed=allowed)
        assert hits.plan == "hnsw"
        truth = allowed[brute_force(data[allowed], query, Distance.COSINE, k)[0]]
        recall.append(len(set(hits.ids) & set(truth.tolist())) / k)
    assert set(taken) == {path}
    assert np.mean(recall) >= 0.95


def test_a_filter_against_the_query_falls_back_to_the_filtered_graph_search() -> None:
    """Half of the rows pass, but none of those near the query: the unfiltered search finds
    too few that pass, and the filtered search still answers right."""
    data = embedding_like(6000, 32, seed=3)
    segment = filled(data, Distance.COSINE, threshold=500)
    query = data[0]
    order = brute_force(data, query, Distance.COSINE, len(data))[0]
    allowed = np.sort(np.asarray(order[len(data) // 2 :]))  # the far half
    hits = segment.search(query, 10, allowed=allowed)
    truth = allowed[brute_force(data[allowed], query, Distance.COSINE, 10)[0]]
    assert hits.plan == "hnsw"
    assert len(set(hits.ids) & set(truth.tolist())) >= 9


def test_deleted_and_replaced_points_never_come_back() -> None:
    data = clustered(3000, 16, seed=5)
    segment = filled(data, Distance.EUCLID, threshold=500)
    segment.delete(list(range(0, 3000, 2)))
    hits = segment.search(data[0], 50)
    assert hits.ids and all(i % 2 == 1 for i in hits.ids)
    # Replacing a vector moves the point: it is found at its new place, once.
    far = np.full(16, 100.0, dtype=np.float32)
    segment.upsert([1], far[None, :], [10_000])
    assert segment.search(far, 1).ids == [1]
    assert segment.search(data[1], 5).ids.count(1) == 0
    assert len(segment) == 1500


def test_older_write_never_overwrites_newer() -> None:
    segment = Segment(2, Distance.DOT, HnswParams(), 100)
    segment.upsert([7], np.array([[1.0, 0.0]]), [5])
    segment.upsert([7], np.array([[0.0, 1.0]]), [3])  # a late, older write
    np.testing.assert_array_equal(segment.vector(7), [1.0, 0.0])


def test_replayed_writes_leave_cached_filters_valid() -> None:
    """The change feed re-delivers a worker's own writes; only news may bump the generation
    (which invalidates every cached filter result of the segment)."""
    segment = Segment(2, Distance.DOT, HnswParams(), 100)
    segment.upsert([7, 8], np.array([[1.0, 0.0], [0.0, 1.0]]), [5, 6])
    before = segment.generation
    segment.upsert([7], np.array([[1.0, 0.0]]), [5])  # the same write, replayed
    segment.set_versions([7, 8], [5, 6])
    assert segment.generation == before
    segment.set_versions([8], [9])  # a payload write
    assert segment.generation == before + 1


def test_rows_written_during_graph_work_are_searchable() -> None:
    """Rows not yet in the graph are scanned exactly: read-your-writes during indexing."""
    data = clustered(3000, 16, seed=6)
    segment = filled(data, Distance.COSINE, threshold=1000)
    fresh = clustered(5, 16, seed=7)
    segment.upsert([10_000 + i for i in range(5)], fresh, [20_000 + i for i in range(5)])
    assert segment.needs_indexing
    for i, vector in enumerate(fresh):
        assert segment.search(vector, 1).ids == [10_000 + i]
    assert segment.search(fresh[0], 1, indexed_only=True).ids != [10_000]


def test_score_threshold_is_strict() -> None:
    segment = Segment(2, Distance.DOT, HnswParams(), 100)
    segment.upsert([1, 2, 3], np.array([[1.0, 0], [0.5, 0], [0.25, 0]]), [1, 2, 3])
    hits = segment.search(np.array([1.0, 0.0]), 10, score_threshold=0.5)
    assert hits.ids == [1]
    euclid = Segment(1, Distance.EUCLID, HnswParams(), 100)
    euclid.upsert([1, 2], np.array([[1.0], [2.0]]), [1, 2])
    assert euclid.search(np.array([0.0]), 10, score_threshold=2.0).ids == [1]


@pytest.mark.parametrize("distance", list(Distance))
def test_scores_over_row_chunks_equal_the_scores_of_the_gathered_rows(
    distance: Distance,
) -> None:
    """Scoring a row subset chunk by chunk (several chunks and a partial one) changes nothing."""
    data = clustered(3000, 24, seed=9)
    rows = np.sort(np.random.default_rng(10).choice(3000, 1000, replace=False))
    query = clustered(1, 24, seed=11)[0]

    def keys(matrix: np.ndarray) -> np.ndarray:
        return scoring.sort_keys(matrix, query, distance)

    chunked, gathered = scoring.over_rows(keys, data, rows), keys(data[rows])
    np.testing.assert_allclose(chunked, gathered, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("distance", list(Distance))
def test_exact_scores_do_not_depend_on_the_batch(distance: Distance) -> None:
    """A row's Qdrant score has the same bits whichever rows are scored with it, so the
    graph and the exact path (or two pages) never disagree in the last digit."""
    rng = np.random.default_rng(12)
    data = scoring.prepare(clustered(3000, 384, seed=12), distance)
    query = scoring.prepare(clustered(1, 384, seed=13)[0], distance)
    every = scoring.exact_scores(data, query, distance)
    for _ in range(50):
        rows = rng.choice(3000, int(rng.integers(1, 80)), replace=False)
        np.testing.assert_array_equal(
            scoring.exact_scores(data[rows], query, distance), every[rows]
        )


def test_without_a_server_threshold_the_collections_full_scan_threshold_decides() -> None:
    """Qdrant's rule: `full_scan_threshold` KB of float32 vectors, as a point count."""
    data = embedding_like(3000, 32, seed=11)
    segment = Segment(32, Distance.COSINE, HnswParams(full_scan_threshold=100))  # 800 points
    segment.upsert(list(range(len(data))), data, list(range(1, len(data) + 1)))
    assert segment.exact_threshold == 100 * 1024 // (32 * 4)
    while segment.needs_indexing:
        segment.index_step()
    assert segment.search(data[0], 10).plan == "hnsw"

    segment.reconfigure(HnswParams(full_scan_threshold=10_000))  # 80,000 points: scan
    assert not segment.needs_indexing  # same graph parameters: nothing to rebuild
    assert segment.search(data[0], 10).plan == "exact"


def test_a_filters_candidates_are_scanned_up_to_a_floor_the_graph_costs_more_below() -> None:
    data = embedding_like(3000, 32, seed=13)
    segment = Segment(32, Distance.COSINE, HnswParams(full_scan_threshold=10))  # 80 points
    segment.upsert(list(range(len(data))), data, list(range(1, len(data) + 1)))
    while segment.needs_indexing:
        segment.index_step()
    half = np.arange(0, 3000, 2)
    assert segment.filtered_threshold == FILTERED_SCAN_BYTES // (4 * 32)
    assert segment.search(data[0], 10).plan == "hnsw"
    assert segment.search(data[0], 10, allowed=half).plan == "exact"

    overridden = filled(data, Distance.COSINE, threshold=80)  # the server's: for both
    assert overridden.filtered_threshold == overridden.exact_threshold == 80
    assert overridden.search(data[0], 10, allowed=half).plan == "hnsw"


def test_new_graph_parameters_rebuild_the_graph_and_searches_go_on_meanwhile() -> None:
    data = embedding_like(3000, 32, seed=12)
    segment = filled(data, Distance.DOT, threshold=500)
    old_graph = segment._graph
    assert old_graph is not None and (old_graph.M, old_graph.ef_construction) == (16, 100)

    segment.reconfigure(HnswParams(m=8, ef_construct=40))
    assert segment.needs_indexing
    before = segment.search(data[1], 10)  # still served by the old graph
    assert before.plan == "hnsw" and before.ids[0] == 1

    segment.index_step()
    new_graph = segment._graph
    assert new_graph is not old_graph and (new_graph.M, new_graph.ef_construction) == (8, 40)
    assert not segment.needs_indexing
    after = segment.search(data[1], 10)
    assert after.plan == "hnsw" and after.ids[0] == 1


def test_only_configure_changes_a_segments_parameters() -> None:
    """A write path reads the collection's settings and asks the registry for its segment,
    possibly on a pool thread while a settings change is applied: a stale read must not
    reconfigure the segment back. Only `configure` (the catalog's owners) changes them."""
    registry = IndexRegistry(None)
    old = VectorParams(4, Distance.COSINE)
    new = VectorParams(4, Distance.COSINE, HnswParams(m=8))
    segment = registry.ensure(1, "", old)

    registry.configure([1, 2], CollectionConfig({"": new}))
    assert segment.hnsw.m == 8
    assert registry.get(2, "").hnsw.m == 8  # made, with the new parameters

    assert registry.ensure(1, "", old) is segment
    assert segment.hnsw.m == 8


def test_building_walks_the_segments_again_only_after_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers publish `building()` four times a second; it walked every segment each
    time (1 % of a CPU per idle worker with 1000 collections). Its answer is kept until a
    write, a new or dropped segment, or an indexing step changes it."""
    walks = 0
    needs_indexing = Segment.needs_indexing

    def counted(segment: Segment) -> bool:
        nonlocal walks
        walks += 1
        return needs_indexing.fget(segment)

    monkeypatch.setattr(Segment, "needs_indexing", property(counted))
    registry = IndexRegistry(exact_threshold=10)
    params = VectorParams(4, Distance.DOT)
    filled, empty = registry.ensure(1, "", params), registry.ensure(2, "", params)
    assert registry.building() == set()
    before = walks
    assert registry.building() == set()
    assert walks == before  # nothing changed: not walked again

    vectors = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    filled.upsert(list(range(50)), vectors, list(range(1, 51)))
    registry.notify()
    assert registry.building() == {1}
    registry.start()
    try:
        deadline = time.monotonic() + 30
        while registry.building() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert registry.building() == set()  # the indexer's steps count as changes
    finally:
        registry.stop()
    empty.upsert(list(range(50)), vectors, list(range(1, 51)))
    registry.notify()
    assert registry.building() == {2}
    registry.drop_namespaces({2})
    assert registry.building() == set()
