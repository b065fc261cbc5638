"""The resumable query engine against brute force: every invariant of app/index/resumable.py.

Segments are built as the service builds them (`Segment` + `upsert` + `index_step` until
done). "Graph" segments have a low segment threshold so hnswlib graphs exist; queries are
forced into a mode with `mode=` where a test is about one engine, otherwise the planner
decides. Reading "to the end" means calling `next()` until it returns [].
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest

from app.index import fusion, resumable, resumable_segment, resumable_state
from app.index import resumable_ranked as ranked
from app.index.resumable import ResumableQuery, StateError, StateMismatch
from app.index.resumable_scoring import Scorer
from app.index.resumable_state import Mode, QueryState, dumps, loads
from app.index.segment import Segment
from app.models import Distance, HnswParams, PointId

MODES = ["exact", "graph"]
SHARES = [None, 0.5, 0.1, 0.01]


# ---------------------------------------------------------------------- data and helpers


def embedding_like(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered vectors with norms 0.8-1.2 (what Dot is used with in practice)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 50, 1), dim))
    data = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, dim))
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return (data * rng.uniform(0.8, 1.2, size=(n, 1))).astype(np.float32)


def near_queries(data: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Queries from the data's distribution: perturbed data points."""
    rng = np.random.default_rng(seed)
    picks = data[rng.integers(0, len(data), count)]
    return (picks + 0.1 * rng.normal(size=picks.shape)).astype(np.float32)


def filled(
    data: np.ndarray, distance: Distance, threshold: int, ids: list[PointId] | None = None
) -> Segment:
    segment = Segment(data.shape[1], distance, HnswParams(), threshold)
    ids = list(range(len(data))) if ids is None else ids
    segment.upsert(ids, data, list(range(1, len(data) + 1)))
    while segment.needs_indexing:
        segment.index_step()
    return segment


def id_key(point_id: PointId) -> tuple[int, int | str]:
    return (0, point_id) if isinstance(point_id, int) else (1, point_id)


def brute_force(
    data: np.ndarray, ids: list[PointId], query: np.ndarray, distance: Distance
) -> list[tuple[PointId, float]]:
    """Every point best first by (score, point id), scores in float64."""
    x, q = data.astype(np.float64), query.astype(np.float64)
    if distance is Distance.COSINE:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    if distance is Distance.EUCLID:
        scores = np.sqrt(((x - q) ** 2).sum(axis=1))
        ranked = sorted(range(len(ids)), key=lambda i: (scores[i], id_key(ids[i])))
    else:
        scores = x @ q
        ranked = sorted(range(len(ids)), key=lambda i: (-scores[i], id_key(ids[i])))
    return [(ids[i], float(scores[i])) for i in ranked]


def row_filter(count: int, share: float | None, seed: int) -> Callable | None:
    """A random allow-mask over rows (None: no filter) and the rows it allows."""
    if share is None:
        return None
    mask = np.random.default_rng(seed).random(count) < share
    return lambda rows: mask[rows]


def allowed_ids(segment: Segment, allow: Callable | None) -> set[PointId]:
    rows = np.flatnonzero(segment._alive[: segment._count])
    if allow is not None:
        rows = rows[allow(rows)]
    return {segment._ids[row] for row in rows}


def pages(query: ResumableQuery, k: int) -> Iterator[list[tuple[PointId, float]]]:
    while page := query.next(k):
        yield page


def read_all(query: ResumableQuery, k: int = 50) -> list[PointId]:
    return [point for page in pages(query, k) for point, _ in page]


def read_resuming(
    segment: Segment, query: ResumableQuery, k: int, allow: Callable | None = None
) -> list[PointId]:
    """Read to the end, parking the query in a state and resuming it after every page."""
    state, out = query.state(), []
    while page := (query := ResumableQuery.resume(segment, state, allow=allow)).next(k):
        out += [point for point, _ in page]
        state = query.state()
    return out


def assert_complete(returned: list[PointId], expected: set[PointId]) -> None:
    assert len(returned) == len(set(returned)), "a point came back twice"
    assert set(returned) == expected


# ---------------------------------------------------------------------- segments


@pytest.fixture(scope="module")
def small() -> dict[Distance, tuple[Segment, np.ndarray]]:
    """600 points, no graph: the planner's EXACT territory."""
    data = embedding_like(600, 12, seed=1)
    return {d: (filled(data, d, threshold=10_000), data) for d in Distance}


@pytest.fixture(scope="module")
def graphs() -> dict[Distance, tuple[Segment, np.ndarray]]:
    """4,000 points with an hnswlib graph."""
    data = embedding_like(4000, 16, seed=2)
    return {d: (filled(data, d, threshold=500), data) for d in Distance}


@pytest.fixture(scope="module")
def large() -> tuple[Segment, np.ndarray]:
    """24,000 points, cosine, with a graph: the recall check."""
    data = embedding_like(24_000, 32, seed=3)
    return filled(data, Distance.COSINE, threshold=1000), data


# ---------------------------------------------------------------------- order and recall


@pytest.mark.parametrize("distance", list(Distance))
def test_first_page_is_the_exact_best_k_on_a_small_segment(small, distance) -> None:
    segment, data = small[distance]
    for query in near_queries(data, 10, seed=4):
        live = ResumableQuery.start(segment, query)
        page = live.next(10)
        truth = brute_force(data, list(range(len(data))), query, distance)[:10]
        assert live.mode == "exact"
        assert [point for point, _ in page] == [point for point, _ in truth]
        np.testing.assert_allclose([s for _, s in page], [s for _, s in truth], atol=1e-5)


@pytest.mark.parametrize("distance", list(Distance))
def test_exact_mode_is_exact_at_every_depth_across_resumes(small, distance) -> None:
    segment, data = small[distance]
    query = near_queries(data, 1, seed=5)[0]
    returned = read_resuming(segment, ResumableQuery.start(segment, query), k=7)
    truth = brute_force(data, list(range(len(data))), query, distance)
    assert returned == [point for point, _ in truth]


def test_page_one_recall_on_a_20k_graph_segment(large) -> None:
    segment, data = large
    recalls = []
    for query in near_queries(data, 40, seed=6):
        live = ResumableQuery.start(segment, query, exact_threshold=10_000)
        assert live.mode == "graph"
        truth = {
            point
            for point, _ in brute_force(data, list(range(len(data))), query, Distance.COSINE)[:10]
        }
        recalls.append(len(truth & {point for point, _ in live.next(10)}) / 10)
    assert np.mean(recalls) >= 0.95


def test_graph_mode_stays_near_monotone_and_compact(large) -> None:
    """Cumulative recall after 100 results, and the state stays within the size targets."""
    segment, data = large
    query = near_queries(data, 1, seed=7)[0]
    live = ResumableQuery.start(segment, query, exact_threshold=10_000)
    returned = [point for _ in range(10) for point, _ in live.next(10)]
    truth = [
        point
        for point, _ in brute_force(data, list(range(len(data))), query, Distance.COSINE)[:100]
    ]
    assert len(set(returned) & set(truth)) >= 95
    assert len(live.state()) <= 2048


def test_ties_come_out_in_point_id_order() -> None:
    """Four copies of each vector under shuffled ids, numbers and UUIDs mixed."""
    rng = np.random.default_rng(8)
    base = embedding_like(40, 8, seed=8)
    data = np.repeat(base, 4, axis=0)
    ids: list[PointId] = [int(i) for i in rng.permutation(1000)[:120]]
    ids += [str(uuid.UUID(int=int(rng.integers(2**62)))) for _ in range(40)]
    order = rng.permutation(len(ids))
    ids = [ids[i] for i in order]
    segment = filled(data, Distance.DOT, threshold=10_000, ids=ids)
    query = near_queries(base, 1, seed=9)[0]
    returned = read_resuming(segment, ResumableQuery.start(segment, query), k=3)
    assert returned == [point for point, _ in brute_force(data, ids, query, Distance.DOT)]


@pytest.mark.parametrize("mode", MODES)
def test_identical_vectors_get_identical_scores_in_id_order_within_a_page(mode) -> None:
    base = embedding_like(500, 8, seed=10)
    data = np.concatenate([base, base])
    segment = filled(data, Distance.COSINE, threshold=100)
    query = near_queries(base, 1, seed=11)[0]
    scores: dict[int, float] = {}
    for page in pages(ResumableQuery.start(segment, query, mode=mode), 20):
        assert page == sorted(page, key=lambda hit: (-hit[1], hit[0]))
        scores.update(page)
    assert all(scores[i] == scores[i + 500] for i in range(500))


# ---------------------------------------------------------------------- enumeration


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("distance", list(Distance))
def test_reading_to_the_end_returns_every_match_once(graphs, distance, mode, share) -> None:
    segment, data = graphs[distance]
    allow = row_filter(len(data), share, seed=12)
    query = near_queries(data, 1, seed=13)[0]
    live = ResumableQuery.start(segment, query, allow=allow, mode=mode)
    assert live.mode == mode
    assert_complete(read_all(live), allowed_ids(segment, allow))


@pytest.mark.parametrize("share", [None, 0.5])
@pytest.mark.parametrize("mode", MODES)
def test_resumed_reads_equal_warm_reads(graphs, mode, share) -> None:
    """State after every page, or at random, changes nothing: the walk is deterministic."""
    segment, data = graphs[Distance.EUCLID]
    allow = row_filter(len(data), share, seed=14)
    query = near_queries(data, 1, seed=15)[0]
    warm = read_all(ResumableQuery.start(segment, query, allow=allow, mode=mode), k=25)
    cold = ResumableQuery.start(segment, query, allow=allow, mode=mode)
    assert read_resuming(segment, cold, k=25, allow=allow) == warm
    assert_complete(warm, allowed_ids(segment, allow))


@pytest.mark.parametrize("mode", MODES)
def test_any_mix_of_warm_pages_and_resumes(graphs, mode) -> None:
    segment, data = graphs[Distance.DOT]
    rng = np.random.default_rng(16)
    allow = row_filter(len(data), 0.5, seed=17)
    live = ResumableQuery.start(segment, near_queries(data, 1, seed=18)[0], allow=allow, mode=mode)
    returned: list[PointId] = []
    while page := live.next(int(rng.integers(1, 60))):
        returned += [point for point, _ in page]
        if rng.random() < 0.4:
            live = ResumableQuery.resume(segment, live.state(), allow=allow)
    assert_complete(returned, allowed_ids(segment, allow))


def test_a_query_may_be_parked_before_its_first_page(graphs) -> None:
    segment, data = graphs[Distance.COSINE]
    query = near_queries(data, 1, seed=19)[0]
    warm = read_all(ResumableQuery.start(segment, query, mode="graph"), k=10)
    parked = ResumableQuery.resume(
        segment, ResumableQuery.start(segment, query, mode="graph").state()
    )
    assert read_all(parked, k=10) == warm


# ---------------------------------------------------------------------- switching


@pytest.mark.parametrize("distance", list(Distance))
def test_forced_switch_from_graph_to_exact_mid_query(graphs, distance) -> None:
    segment, data = graphs[distance]
    allow = row_filter(len(data), 0.5, seed=20)
    live = ResumableQuery.start(
        segment, near_queries(data, 1, seed=21)[0], allow=allow, mode="graph"
    )
    returned = [point for _ in range(5) for point, _ in live.next(10)]
    live.switch_to_exact()
    assert live.mode == "exact"
    returned += [point for point, _ in live.next(10)]
    returned += read_resuming(segment, live, k=30, allow=allow)
    assert_complete(returned, allowed_ids(segment, allow))


def test_a_filter_the_graph_cannot_serve_switches_to_exact(graphs) -> None:
    """Anti-correlated: half the points match, but only a sprinkle near the query, so the
    window spans the non-matching region and each page needs most of it expanded."""
    segment, data = graphs[Distance.EUCLID]
    query = near_queries(data, 1, seed=22)[0]
    ranked = np.argsort(((data - query) ** 2).sum(axis=1))
    mask = np.zeros(len(data), dtype=bool)
    mask[ranked[2000:]] = True
    mask[ranked[:2000:50]] = True
    allow = lambda rows: mask[rows]  # noqa: E731
    live = ResumableQuery.start(segment, query, allow=allow, exact_threshold=1000)
    assert live.mode == "graph"  # the planner sees 2,040 matches, 51 %
    returned = [point for _ in range(3) for point, _ in live.next(10)]
    assert live.mode == "exact"
    returned += read_all(live)
    assert_complete(returned, set(np.flatnonzero(mask).tolist()))


def test_an_oversized_graph_state_switches_to_exact(graphs, monkeypatch) -> None:
    segment, data = graphs[Distance.COSINE]
    live = ResumableQuery.start(segment, near_queries(data, 1, seed=23)[0], mode="graph")
    returned = [point for point, _ in live.next(100)]
    monkeypatch.setattr(resumable, "MAX_GRAPH_STATE", 200)
    state = live.state()
    assert live.mode == "exact"
    assert ResumableQuery.resume(segment, state).mode == "exact"
    returned += read_resuming(segment, live, k=100)
    assert_complete(returned, allowed_ids(segment, None))


# ---------------------------------------------------------------------- writes while reading


@pytest.mark.parametrize("mode", MODES)
def test_points_deleted_after_start_are_never_returned_after_the_delete(mode) -> None:
    data = embedding_like(3000, 16, seed=24)
    segment = filled(data, Distance.COSINE, threshold=500)
    live = ResumableQuery.start(segment, near_queries(data, 1, seed=25)[0], mode=mode)
    before = [point for _ in range(3) for point, _ in live.next(20)]
    rng = np.random.default_rng(26)
    doomed = [int(i) for i in rng.choice(3000, 900, replace=False)]
    segment.delete(doomed)
    after = [point for _ in range(5) for point, _ in live.next(20)]
    after += read_resuming(segment, live, k=40)
    assert not set(after) & set(doomed)
    assert_complete(before + after, (set(range(3000)) - set(doomed)) | set(before))


@pytest.mark.parametrize("mode", MODES)
def test_points_written_after_start_never_appear_and_nothing_repeats(mode) -> None:
    data = embedding_like(3000, 16, seed=27)
    segment = filled(data, Distance.EUCLID, threshold=500)
    query = near_queries(data, 1, seed=28)[0]
    live = ResumableQuery.start(segment, query, mode=mode)
    before = [point for _ in range(3) for point, _ in live.next(20)]
    updated = before[:20] + list(range(2000, 2100))  # some already returned, some not
    fresh = list(range(5000, 5200))
    vectors = np.repeat(query[None, :], len(updated) + len(fresh), axis=0)  # right next to q
    segment.upsert(updated + fresh, vectors, [10_000] * len(vectors))
    after = read_resuming(segment, live, k=30)
    assert not set(after) & set(fresh)
    untouched = set(range(3000)) - set(updated)
    assert_complete(before + after, untouched | set(before))


@pytest.mark.parametrize("refresh", [False, True])
def test_resuming_after_the_graph_grew(monkeypatch, refresh) -> None:
    data = embedding_like(4000, 16, seed=29)
    segment = filled(data[:3000], Distance.DOT, threshold=500)
    graph = segment._graph
    live = ResumableQuery.start(segment, near_queries(data, 1, seed=30)[0], mode="graph")
    before = [point for _ in range(4) for point, _ in live.next(25)]
    state = live.state()
    segment.upsert(list(range(3000, 4000)), data[3000:], [5000] * 1000)
    while segment.needs_indexing:
        segment.index_step()
    assert segment._graph is graph and segment._graph_rows == 4000
    if refresh:  # make the resume re-read the level-0 snapshot from the grown graph
        monkeypatch.setattr(resumable_segment, "SNAPSHOT_LAG_ROWS", 0)
        monkeypatch.setattr(resumable_segment, "SNAPSHOT_LAG_SHARE", 0.0)
    resumed = ResumableQuery.resume(segment, state)
    assert resumed.mode == "graph"
    assert_complete(before + read_resuming(segment, resumed, k=25), set(range(3000)))


def test_rows_the_graph_does_not_cover_yet_are_walked_too() -> None:
    """Rows appended after the last index step are keyed directly (the walk's tail)."""
    data = embedding_like(3700, 16, seed=37)
    segment = filled(data[:3000], Distance.EUCLID, threshold=500)
    segment.upsert(list(range(3000, 3700)), data[3000:], [5000] * 700)
    assert segment._graph_rows == 3000
    live = ResumableQuery.start(segment, near_queries(data, 1, seed=38)[0], mode="graph")
    first = [point for point, _ in live.next(30)]
    assert_complete(first + read_resuming(segment, live, k=30), set(range(3700)))


def test_rows_no_link_leads_to_are_found_by_the_teleport(graphs, monkeypatch) -> None:
    segment, data = graphs[Distance.DOT]
    orphans = np.arange(0, 4000, 40)
    read = resumable_segment.LevelZero.read

    def without_links_to_orphans(graph, generation):
        level0 = read(graph, generation)
        links = level0.links.copy()
        links[np.isin(links, orphans)] = -1
        return replace(level0, links=np.sort(links, axis=1)[:, ::-1])  # -1 last, as hnswlib

    monkeypatch.setattr(resumable_segment.LevelZero, "read", without_links_to_orphans)
    monkeypatch.setattr(resumable_segment, "SNAPSHOT_LAG_ROWS", -1)  # re-read: no cached copy
    query = data[orphans[0]] * -1  # far from the orphans: hnswlib will not seed them
    warm = ResumableQuery.start(segment, query, mode="graph")
    assert_complete(read_all(warm, k=100), set(range(4000)))
    assert warm.mode == "graph"  # so only the walk could have found them ...
    assert set(orphans.tolist()) - set(warm._engine.seeds.tolist())  # ... not just seeded
    cold = ResumableQuery.start(segment, query, mode="graph")
    assert_complete(read_resuming(segment, cold, k=100), set(range(4000)))


def test_resuming_on_a_rebuilt_graph_falls_back_to_exact() -> None:
    data = embedding_like(3000, 16, seed=31)
    segment = filled(data, Distance.COSINE, threshold=500)
    live = ResumableQuery.start(segment, near_queries(data, 1, seed=32)[0], mode="graph")
    before = [point for _ in range(4) for point, _ in live.next(25)]
    state = live.state()
    old = segment._graph
    segment._build_graph()  # a new hnswlib.Index object: the walked graph is gone
    assert segment._graph is not old
    resumed = ResumableQuery.resume(segment, state)
    assert resumed.mode == "exact"
    assert_complete(before + read_resuming(segment, resumed, k=40), set(range(3000)))


# ---------------------------------------------------------------------- planning and edges


def test_the_planner_picks_exact_for_few_or_selective_matches(graphs) -> None:
    segment, data = graphs[Distance.COSINE]
    query = data[0]

    def plan(**options) -> str:
        return ResumableQuery.start(segment, query, exact_threshold=1000, **options).mode

    assert plan() == "graph"
    assert plan(expected_matches=900) == "exact"  # few matches
    assert plan(allow=row_filter(4000, 0.05, seed=33)) == "exact"  # selective
    assert plan(allow=row_filter(4000, 0.5, seed=33)) == "graph"
    assert ResumableQuery.start(segment, query).mode == "exact"  # 4,000 <= 30,000


def test_tiny_empty_and_exhausted_queries() -> None:
    data = embedding_like(5, 4, seed=34)
    segment = filled(data, Distance.COSINE, threshold=10_000)
    live = ResumableQuery.start(segment, data[0])
    assert live.next(0) == []
    assert live.next(10)[0][0] == 0
    assert live.next(10) == [] and live.next(10) == []
    assert ResumableQuery.resume(segment, live.state()).next(10) == []
    empty = Segment(4, Distance.EUCLID, HnswParams(), 10)
    assert ResumableQuery.start(empty, data[0]).next(10) == []
    with pytest.raises(ValueError):
        ResumableQuery.start(segment, np.zeros(3, dtype=np.float32))


def test_states_are_refused_elsewhere(graphs, small) -> None:
    segment, data = graphs[Distance.COSINE]
    state = ResumableQuery.start(segment, data[0]).state()
    assert state[:4] == b"WPQ\x03"
    with pytest.raises(StateMismatch):
        ResumableQuery.resume(small[Distance.COSINE][0], state)
    with pytest.raises(StateError):
        ResumableQuery.resume(segment, state[:4] + b"garbage")
    with pytest.raises(StateError):
        ResumableQuery.resume(segment, b"WPQ\x01" + state[4:])


def test_state_round_trip_with_sparse_and_dense_row_sets() -> None:
    rng = np.random.default_rng(35)
    expanded = np.sort(rng.choice(100_000, 5000, replace=False))
    state = QueryState(
        mode=Mode.GRAPH,
        distance=Distance.EUCLID,
        epoch=2**64 - 1,
        graph=7,
        row_limit=100_000,
        ef=64,
        batch=3,
        emitted=1234,
        walked=1300,
        query=rng.normal(size=24).astype(np.float32),
        teleported=True,
        cursor=(-0.25, 17),
        expanded=expanded,
        pending=np.concatenate([expanded[::7], [99_999]]),
        seeds=rng.choice(100_000, 64, replace=False),
        emitted_unexpanded=np.arange(0, 40, 3),
        excluded=np.arange(50_000),  # dense: stored as a bitmap
        ahead=np.array([70_001, 12, 5000]),  # a list, in its order
    )
    blob = dumps(state)
    back = loads(blob)
    for name in state.__dataclass_fields__:
        mine, theirs = getattr(state, name), getattr(back, name)
        if name in ("query", "ahead"):
            np.testing.assert_array_equal(mine, theirs)
        elif isinstance(mine, np.ndarray):  # row sets come back sorted and unique
            np.testing.assert_array_equal(np.unique(mine), theirs)
        else:
            assert mine == theirs
    header = loads(blob, row_sets=False)  # the sets skipped, what follows them read
    np.testing.assert_array_equal(header.ahead, state.ahead)
    assert header.expanded.size == header.pending.size == header.excluded.size == 0
    np.testing.assert_array_equal(header.query, state.query)
    for name in state.__dataclass_fields__:
        if not isinstance(getattr(state, name), np.ndarray):
            assert getattr(header, name) == getattr(state, name)


@pytest.mark.parametrize("distance", list(Distance))
def test_keys_do_not_depend_on_the_batch_and_fast_keys_stay_in_bounds(distance) -> None:
    """The engine's premise: a row's key has the same bits in any batch (einsum, not BLAS)."""
    rng = np.random.default_rng(36)
    data = embedding_like(3000, 24, seed=36) * 3
    sq_norms = np.einsum("ij,ij->i", data, data, dtype=np.float64)
    scorer = Scorer(distance, rng.normal(size=24).astype(np.float32))
    keys, fast = scorer.keys(data, sq_norms), scorer.fast_keys(data, sq_norms)
    for _ in range(50):
        rows = rng.choice(3000, int(rng.integers(1, 80)), replace=False)
        np.testing.assert_array_equal(scorer.keys(data[rows], sq_norms[rows]), keys[rows])
        np.testing.assert_array_equal(scorer.fast_keys(data[rows], sq_norms[rows]), fast[rows])
    assert np.abs(fast - keys).max() <= scorer.fast_key_error(sq_norms)


@pytest.mark.parametrize("method", ["rrf", "dbsf"])
@pytest.mark.parametrize("kind", ["numbers", "strings", "mixed", "numeric strings"])
def test_fused_rankings_are_the_fusion_module_s_exactly(method: str, kind: str) -> None:
    """`resumable_ranked.fused` (numpy) gives the ids, order and score bits of
    `app.index.fusion` (Python), whatever the ids are: "01" and "1" stay two points."""
    rng = np.random.default_rng(7)
    pool = {
        "numbers": list(range(300)),
        "strings": [f"id{i}" for i in range(300)],
        "mixed": [*range(150), *(str(uuid.UUID(int=i)) for i in range(150))],
        "numeric strings": [*(str(i) for i in range(150)), *(f"0{i}" for i in range(150))],
    }[kind]
    lists = []
    for size in (200, 120):
        ids = [pool[i] for i in rng.choice(len(pool), size, replace=False)]
        scores = np.round(rng.random(size), 2)  # ties within a list too
        lists.append(ranked.single(ids, scores, rng.permutation(size).astype(np.int64)))
    got = ranked.fused(lists, method, 2, None)
    as_lists = [list(zip(r.ids.tolist(), r.scores.tolist(), strict=True)) for r in lists]
    want = fusion.qdrant_dbsf(as_lists) if method == "dbsf" else fusion.qdrant_rrf(as_lists)
    assert got.ids.tolist() == [pid for pid, _ in want]
    assert got.scores.tolist() == [score for _, score in want]


# ---------------------------------------------------------------------- read-ahead


def _seqs(segment: Segment, page: list[tuple[PointId, float]]) -> list[int]:
    return [segment.seq_of(pid) for pid, _ in page]


@pytest.mark.parametrize("mode", ["graph", "exact"])
def test_pages_from_a_stored_read_ahead_continue_exactly_as_the_live_query(graphs, mode) -> None:
    """A session resumed on every page, its state stored only when the read-ahead ran dry
    (the pages in between only report their seqs as `returned`), returns what one live
    query with the same read-ahead returns, page for page."""
    segment, data = graphs[Distance.EUCLID]
    live = ResumableQuery.start(segment, data[5], mode=mode)
    parked = ResumableQuery.start(segment, data[5], mode=mode)
    state, since = parked.state(), []
    for _ in range(30):
        expected = live.next(10)
        live.read_ahead(40)
        resumed = ResumableQuery.resume(segment, state, returned=np.array(since, np.int64))
        page = resumed.next(10)
        assert page == expected
        since += _seqs(segment, page)
        if resumed.moved:  # the read-ahead ran dry: this page ran the engine
            resumed.read_ahead(40)
            state, since = resumed.state(), []
        else:
            assert resumed._engine is None  # served from the read-ahead: no rebuild


def test_a_row_deleted_while_read_ahead_is_not_returned(graphs) -> None:
    data = embedding_like(2000, 16, seed=36)
    segment = filled(data, Distance.COSINE, threshold=500)
    query = ResumableQuery.start(segment, data[7])
    query.next(10)
    query.read_ahead(40)
    state = query.state()
    doomed = [pid for pid, _ in ResumableQuery.resume(segment, state).next(40)][::3]
    segment.delete(doomed)
    for source in (query, ResumableQuery.resume(segment, state)):
        ids = [pid for pid, _ in source.next(40)]
        assert len(ids) == 40 and not set(ids) & set(doomed)


def test_a_version_2_state_still_resumes(graphs) -> None:
    segment, data = graphs[Distance.COSINE]
    query = ResumableQuery.start(segment, data[9])
    first = query.next(10)
    current = loads(query.state())
    assert current.ahead.size == 0
    body = zlib.decompress(query.state()[4:])
    version2 = b"WPQ\x02" + zlib.compress(body[: -resumable_state._SET.size])
    resumed = ResumableQuery.resume(segment, version2)
    assert not {pid for pid, _ in resumed.next(10)} & {pid for pid, _ in first}


def test_a_state_stored_without_its_query_resumes_with_the_query_passed(graphs) -> None:
    segment, data = graphs[Distance.EUCLID]
    live = ResumableQuery.start(segment, data[11])
    live.next(10)
    live.read_ahead(40)
    full, bare = live.state(), live.state(with_query=False)
    assert len(full) - len(bare) >= 4 * 16 - 8  # float32s compress poorly
    expected = ResumableQuery.resume(segment, full).next(100)  # past the read-ahead too
    assert ResumableQuery.resume(segment, bare, query=data[11]).next(100) == expected
    with pytest.raises(StateError):
        ResumableQuery.resume(segment, bare)
