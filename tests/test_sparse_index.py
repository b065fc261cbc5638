"""The in-memory sparse index against a numpy brute force over its live points."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from app.index import sparse
from app.index.sparse import SparseIndex

DIMS = 1000


def random_vector(rng: np.random.Generator, signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    nnz = int(rng.integers(5, 41))
    dims = np.sort(rng.choice(DIMS, nnz, replace=False)).astype(np.uint32)
    values = rng.normal(size=nnz) if signed else rng.random(nnz)
    return dims, values.astype(np.float32)


class Reference:
    """The live points as a dict, searched by brute force on a dense float64 matrix."""

    def __init__(self) -> None:
        self.points: dict[int | str, tuple[np.ndarray, np.ndarray, int]] = {}
        self.clock = 0  # insertion order: the index's rows grow the same way
        self._matrix: tuple | None = None  # built again after a write

    def upsert(self, pid: int | str, dims: np.ndarray, values: np.ndarray) -> None:
        self.clock += 1
        self.points[pid] = (dims, values, self.clock)
        self._matrix = None

    def delete(self, pid: int | str) -> None:
        self.points.pop(pid, None)
        self._matrix = None

    def matrix(self) -> tuple[list[int | str], np.ndarray, np.ndarray, np.ndarray]:
        if self._matrix is None:
            self._matrix = self._build()
        return self._matrix

    def _build(self) -> tuple[list[int | str], np.ndarray, np.ndarray, np.ndarray]:
        ids = list(self.points)
        dense = np.zeros((len(ids), DIMS))
        present = np.zeros((len(ids), DIMS), dtype=bool)
        for i, pid in enumerate(ids):
            dims, values, _ = self.points[pid]
            dense[i, dims] = values
            present[i, dims] = True
        order = np.array([self.points[pid][2] for pid in ids])
        return ids, dense, present, order

    def df(self) -> np.ndarray:
        return self.matrix()[2].sum(axis=0)

    def scores(self, dims, values, *, idf=False, total=None, allowed=None) -> dict:
        ids, dense, present, _ = self.matrix()
        weights = values.astype(np.float32).astype(np.float64)
        if idf:
            n = len(ids) if total is None else total
            df = present[:, dims].sum(axis=0)
            weights = weights * np.log((n - df + 0.5) / (df + 0.5) + 1)
        shares = present[:, dims].any(axis=1)
        scores = dense[:, dims] @ weights
        return {
            pid: float(scores[i])
            for i, pid in enumerate(ids)
            if shares[i] and (allowed is None or pid in allowed)
        }

    def search(self, dims, values, k, **kwargs) -> list[tuple[int | str, float]]:
        found = self.scores(dims, values, **kwargs)
        ranked = sorted(found.items(), key=lambda item: (-item[1], self.points[item[0]][2]))
        return ranked[:k]


def assert_same(got: list, want: list) -> None:
    assert [pid for pid, _ in got] == [pid for pid, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def check_queries(index: SparseIndex, ref: Reference, rng: np.random.Generator, n: int) -> None:
    """Random queries, with and without IDF, through `search` and `scores`."""
    for i in range(n):
        dims, values = random_vector(rng, signed=i % 2 == 1)
        for idf in (False, True):
            want = ref.search(dims, values, 10, idf=idf)
            assert_same(index.search(dims, values, 10, idf=idf), want)
        rows, scores = index.scores(dims, values)
        got = dict(zip(index.point_ids(rows), scores.tolist(), strict=True))
        want = ref.scores(dims, values)
        assert got.keys() == want.keys()
        assert [got[pid] for pid in want] == pytest.approx(list(want.values()), rel=1e-9)


def check_state(index: SparseIndex, ref: Reference) -> None:
    assert len(index) == len(ref.points)
    assert index.document_frequency(np.arange(DIMS)).tolist() == ref.df().tolist()
    for pid, (dims, values, _) in list(ref.points.items())[:50]:
        assert pid in index
        stored = index.get(pid)
        assert stored is not None
        assert stored[0].tolist() == dims.tolist()
        assert stored[1].tolist() == values.tolist()


def filled(n: int, seed: int) -> tuple[SparseIndex, Reference]:
    rng = np.random.default_rng(seed)
    index, ref = SparseIndex(), Reference()
    batch = []
    for pid in range(n):
        dims, values = random_vector(rng, signed=pid % 3 == 0)
        batch.append((pid, dims, values, pid + 1))
        ref.upsert(pid, dims, values)
    assert index.upsert_many(batch) == n
    return index, ref


@pytest.fixture(scope="module")
def loaded() -> tuple[SparseIndex, Reference]:
    return filled(2000, seed=1)


@pytest.fixture(params=["sparse", "dense"])
def accumulation(request, monkeypatch) -> str:
    """Force one way of summing postings (at this size the dense one is chosen)."""
    monkeypatch.setattr(sparse, "DENSE_SHARE", 0 if request.param == "sparse" else 10**12)
    return request.param


# ------------------------------------------------------------- against brute force


@pytest.mark.parametrize("idf", [False, True])
def test_search_matches_brute_force(loaded, accumulation: str, idf: bool) -> None:
    index, ref = loaded
    rng = np.random.default_rng(2)
    for i in range(20):
        dims, values = random_vector(rng, signed=i % 2 == 1)
        for k in (1, 10, 100):
            assert_same(
                index.search(dims, values, k, idf=idf), ref.search(dims, values, k, idf=idf)
            )
        assert_same(
            index.search(dims, values, 10, idf=idf, total_points=50_000),
            ref.search(dims, values, 10, idf=idf, total=50_000),
        )


@pytest.mark.parametrize("form", ["callable", "rows", "ids"])
@pytest.mark.parametrize("idf", [False, True])
def test_filtered_search_matches_brute_force(
    loaded, accumulation: str, form: str, idf: bool
) -> None:
    index, ref = loaded
    rng = np.random.default_rng(3)
    chosen = {int(pid) for pid in rng.choice(2000, 300, replace=False)}
    allowed = {
        "callable": lambda rows: np.isin(rows, index.rows_of(chosen)),
        "rows": index.rows_of(chosen),
        "ids": chosen,
    }[form]
    for _ in range(20):
        dims, values = random_vector(rng)
        want = ref.search(dims, values, 10, idf=idf, allowed=chosen)
        assert_same(index.search(dims, values, 10, idf=idf, allowed=allowed), want)


def test_scores_cover_every_sharing_vector(loaded, accumulation: str) -> None:
    index, ref = loaded
    check_queries(index, ref, np.random.default_rng(4), 10)


def test_dense_and_sparse_accumulation_agree_bit_for_bit(loaded, monkeypatch) -> None:
    """A row's score must not depend on how the accumulation was done (resumable queries
    compare scores between pages)."""
    index, _ = loaded
    dims, values = random_vector(np.random.default_rng(5), signed=True)
    monkeypatch.setattr(sparse, "DENSE_SHARE", 0)  # never dense
    rows_a, scores_a = index.scores(dims, values, idf=True)
    monkeypatch.setattr(sparse, "DENSE_SHARE", 10**12)  # always dense
    rows_b, scores_b = index.scores(dims, values, idf=True)
    assert rows_a.tolist() == rows_b.tolist()
    assert scores_a.tobytes() == scores_b.tobytes()


# ------------------------------------------------------------------------ writes


def test_updates_deletes_reinserts_and_compaction() -> None:
    index, ref = filled(2000, seed=6)
    rng = np.random.default_rng(7)
    seq = 10_000

    def upsert(pid: int) -> None:
        nonlocal seq
        seq += 1
        dims, values = random_vector(rng, signed=True)
        assert index.upsert(pid, dims, values, seq)
        ref.upsert(pid, dims, values)

    for pid in rng.choice(2000, 500, replace=False).tolist():  # replace a quarter
        upsert(pid)
    check_state(index, ref)
    check_queries(index, ref, rng, 5)

    deleted = rng.choice(2000, 300, replace=False).tolist()
    for pid in deleted:
        assert index.delete(pid)
        ref.delete(pid)
    assert not index.delete(deleted[0])  # already gone
    assert deleted[0] not in index and index.get(deleted[0]) is None
    check_state(index, ref)
    check_queries(index, ref, rng, 5)

    for pid in deleted[:100]:  # re-insert deleted ids
        upsert(pid)
    check_state(index, ref)
    check_queries(index, ref, rng, 5)

    written = index._fwd_used
    survivors = rng.choice(list(ref.points), 100, replace=False).tolist()
    assert index.delete_many([pid for pid in ref.points if pid not in survivors]) > 1500
    for pid in [pid for pid in ref.points if pid not in survivors]:
        ref.delete(pid)
    live_entries = sum(len(dims) for dims, _, _ in ref.points.values())
    assert index._fwd_used == live_entries < written  # the forward store was compacted
    assert sum(p.size for p in index._postings.values()) <= 2 * live_entries
    assert all(p.live for p in index._postings.values())  # emptied postings are dropped
    check_state(index, ref)
    check_queries(index, ref, rng, 10)

    for pid in range(5000, 5200):  # and the index still takes writes after compaction
        upsert(pid)
    check_state(index, ref)
    check_queries(index, ref, rng, 5)


def test_older_writes_are_ignored() -> None:
    index = SparseIndex()
    assert index.upsert("a", [1, 2], [1.0, 1.0], seq=10)
    assert not index.upsert("a", [3], [1.0], seq=9)  # a late redelivery
    assert not index.delete("a", seq=10)
    assert index.get("a")[0].tolist() == [1, 2]
    assert index.seq_of("a") == 10 and index.max_seq() == 10
    assert index.delete("a", seq=11)
    assert len(index) == 0 and index.seq_of("a") is None
    # within one batch the newest write of a point wins
    assert index.upsert_many([("b", [1], [1.0], 5), ("b", [2], [2.0], 7), ("b", [3], [3], 6)])
    assert index.get("b")[0].tolist() == [2]
    rows = index.rows_of(["b", "missing"])
    assert index.rows_written_by(rows).tolist() == [7]


def test_rejects_malformed_vectors_without_changing_anything() -> None:
    index = SparseIndex()
    index.upsert(1, [1, 5], [0.5, 0.5], 1)
    for indices, values in [
        ([5, 1], [1.0, 1.0]),
        ([1, 1], [1.0, 1.0]),
        ([-1, 3], [1.0, 1.0]),
        ([1, 2**32], [1.0, 1.0]),
        ([1.5, 2.5], [1.0, 1.0]),
        ([1, 2], [1.0]),
    ]:
        with pytest.raises(ValueError):
            index.upsert(2, indices, values, 2)
        with pytest.raises(ValueError):
            index.search(indices, values, 10)
    assert len(index) == 1 and 2 not in index
    assert index.document_frequency([1, 5]).tolist() == [1, 1]


def test_empty_vector_is_stored_but_never_found() -> None:
    index = SparseIndex()
    index.upsert("empty", [], [], 1)
    index.upsert("full", [4], [1.0], 2)
    assert len(index) == 2 and "empty" in index
    assert [a.tolist() for a in index.get("empty")] == [[], []]
    assert index.search([4], [1.0], 10) == [("full", 1.0)]
    assert index.search([], [], 10) == []
    assert index.search([4], [1.0], 0) == []


# --------------------------------------------------------------------- semantics


def test_only_vectors_sharing_a_dimension_are_results() -> None:
    index = SparseIndex()
    index.upsert("a", [1], [1.0], 1)  # shares nothing with the query
    index.upsert("b", [2, 5], [0.0, 1.0], 2)  # shares dim 2, product 0
    index.upsert("c", [3, 4], [1.0, 1.0], 3)  # products cancel to 0
    index.upsert("d", [4], [2.0], 4)
    hits = index.search([2, 3, 4], [1.0, 1.0, -1.0], 10)
    assert hits == [("b", 0.0), ("c", 0.0), ("d", -2.0)]
    rows, scores = index.scores([7], [1.0])
    assert len(rows) == 0 and len(scores) == 0
    # Qdrant's strict threshold: a score equal to it is left out
    assert index.search([2, 3, 4], [1.0, 1.0, -1.0], 10, score_threshold=0.0) == []


def test_ties_go_to_the_older_row() -> None:
    index = SparseIndex()
    for seq, pid in enumerate(["x", "y", "z"], start=1):
        index.upsert(pid, [1, 2], [0.5, 0.25], seq)
    assert [pid for pid, _ in index.search([1, 2], [1.0, 1.0], 10)] == ["x", "y", "z"]
    assert [pid for pid, _ in index.search([1, 2], [1.0, 1.0], 2)] == ["x", "y"]
    index.upsert("x", [1, 2], [0.5, 0.25], 4)  # a replaced point is a new row
    assert [pid for pid, _ in index.search([1, 2], [1.0, 1.0], 10)] == ["y", "z", "x"]


def test_many_ties_keep_insertion_order() -> None:
    """Enough equal scores that an unstable sort would shuffle them."""
    rng = np.random.default_rng(10)
    index, inserted = SparseIndex(), []
    for seq, pid in enumerate(rng.permutation(300).tolist(), start=1):
        score = 1.0 if pid % 3 else 2.0  # two tied groups
        index.upsert(pid, [3, 8], [score, 0.0], seq)
        inserted.append(pid)
    for seq, pid in enumerate(inserted[:40], start=1000):  # replaced: to the back
        index.upsert(pid, [3, 8], [1.0 if pid % 3 else 2.0, 0.0], seq)
        inserted.remove(pid)
        inserted.append(pid)
    want = [pid for pid in inserted if not pid % 3] + [pid for pid in inserted if pid % 3]
    for k in (5, 150, 300):
        assert [pid for pid, _ in index.search([3], [1.0], k)] == want[:k]


def test_live_rows_list_every_live_point() -> None:
    """Empty vectors included (they are stored), retired rows not; ascending int64."""
    index = SparseIndex()
    assert index.live_rows().tolist() == []
    index.upsert_many([("a", [1], [1.0], 1), ("b", [], [], 2), ("c", [2], [1.0], 3)])
    index.upsert("a", [3], [1.0], 4)  # replaced: a new row 3, row 0 retired
    index.delete("c")
    rows = index.live_rows()
    assert rows.dtype == np.int64 and rows.tolist() == [1, 3]
    assert index.point_ids(rows) == ["b", "a"]
    index.delete_many(["a", "b"])
    assert index.live_rows().tolist() == []


def test_precise_query_weights_are_not_rounded() -> None:
    """`precise` takes float64 weights as given (IDF still applies); by default a query's
    values are float32 like stored ones."""
    index = SparseIndex()
    index.upsert("a", [1, 2], [1.0, 1.0], 1)
    index.upsert("b", [2], [1.0], 2)
    weights = np.array([0.1, 0.2])  # not float32-exact
    rows, scores = index.scores([1, 2], weights, precise=True)
    assert rows.tolist() == [0, 1] and scores.tolist() == [0.1 + 0.2, 0.2]
    rounded = [float(np.float32(0.1)) + float(np.float32(0.2)), float(np.float32(0.2))]
    assert index.scores([1, 2], weights)[1].tolist() == rounded
    idf = index.idf([1, 2])
    _, scores = index.scores([1, 2], weights, precise=True, idf=True)
    assert scores.tolist() == [0.1 * idf[0] + 0.2 * idf[1], 0.2 * idf[1]]
    assert weights.tolist() == [0.1, 0.2]  # the caller's array is left as it was


def test_idf_on_a_hand_computed_example() -> None:
    index = SparseIndex()
    index.upsert(1, [7, 9], [1.0, 1.0], 1)
    for pid in (2, 3, 4):
        index.upsert(pid, [9], [2.0], pid)
    rare, common = math.log(10 / 3), math.log(10 / 9)  # N=4: df=1 and df=4
    assert index.document_frequency([7, 9, 8]).tolist() == [1, 4, 0]
    assert index.idf([7, 9]).tolist() == pytest.approx([rare, common], rel=1e-12)
    hits = index.search([7, 9], [1.0, 1.0], 10, idf=True)
    assert hits[0] == (1, pytest.approx(rare + common, rel=1e-12))
    assert [pid for pid, _ in hits[1:]] == [2, 3, 4]
    assert hits[1][1] == pytest.approx(2 * common, rel=1e-12)
    # the caller's N (Qdrant counts every point of the collection)
    total = index.search([7], [1.0], 1, idf=True, total_points=10)
    assert total[0][1] == pytest.approx(math.log((10 - 1 + 0.5) / 1.5 + 1), rel=1e-12)
    # stored values are untouched
    assert index.search([7, 9], [1.0, 1.0], 1)[0] == (1, 2.0)


# ------------------------------------------------------------------- concurrency


def test_writes_while_searching() -> None:
    index, ref = filled(500, seed=8)
    rng = np.random.default_rng(9)
    queries = [random_vector(rng) for _ in range(20)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def search() -> None:
        try:
            while not stop.is_set():
                for dims, values in queries:
                    hits = index.search(dims, values, 20, idf=True)
                    ids = [pid for pid, _ in hits]
                    assert len(set(ids)) == len(ids)  # a replace is never seen half done
                    scores = [score for _, score in hits]
                    assert scores == sorted(scores, reverse=True)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    readers = [threading.Thread(target=search) for _ in range(2)]
    for reader in readers:
        reader.start()
    seq, deadline = 1000, time.monotonic() + 0.5
    while time.monotonic() < deadline:
        seq += 1
        pid = int(rng.integers(0, 700))
        if rng.random() < 0.3:
            index.delete(pid, seq)
            ref.delete(pid)
        else:
            dims, values = random_vector(rng, signed=True)
            index.upsert(pid, dims, values, seq)
            ref.upsert(pid, dims, values)
    stop.set()
    for reader in readers:
        reader.join(timeout=10)
    assert not errors, errors[0]
    assert seq > 1100  # the writer was not starved
    check_state(index, ref)
    check_queries(index, ref, rng, 10)
