#!/usr/bin/env python3
"""Resumable query engine (app/index/resumable.py): quality, latency and state size.

For every dataset (default ``synth-100k``, generated on first use into ``bench-out/data``,
and ``wordnet-minilm`` from ``../shared/data``) it loads the vectors into a `Segment` with
the service's defaults (M=16, ef_construct=100), builds the graph (cached under
``bench-out/resumable`` with ``save_index``, since a build takes a minute), then for
``--queries`` held-out queries reads pages of 10 results:

* unfiltered, planner's choice: page-1 recall@10 and cumulative recall at 1,000 and 10,000
  results against an exact numpy ranking; warm latency of one ``next(10)`` at pages
  1 / 10 / 100 / 1000 (page 1 includes ``start()``; pages >1 are the median of the ten pages
  around it); cold latency at pages 100 and 1000 (``resume(state)`` + ``next(10)`` +
  ``state()``, the round trip of a request that missed the worker's cache); state size;
* the same with the walk's window fixed at ef (what the growing window buys);
* with random (uncorrelated) allow-masks of 50 / 10 / 1 %, and 10 % forced onto the graph:
  the mode chosen, page-1 recall, warm page latencies, and ``--full-reads`` queries read to
  the end, checking that every match comes back exactly once;
* with ``--numba`` (needs ``pip install numba``, not a dependency of the service): the walk
  loop compiled with numba against the Python walk, warm, from the same page-1 state.

Times are medians over queries (2 shared cores: read them as upper bounds). Output: Markdown
tables on stdout, progress on stderr.

Example (from the repository root):
  .venv/bin/python scripts/bench_resumable_engine.py --numba
  .venv/bin/python scripts/bench_resumable_engine.py --datasets synth-100k --queries 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hnswlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, find_dataset, load_dataset, markdown_table, shared_dir

sys.path.insert(0, str(REPO))
from app.index import resumable_graph
from app.index.resumable import ResumableQuery
from app.index.resumable_graph import (
    DISCOVERED,
    EMITTED,
    EXPANDED,
    PENDING,
    WINDOW_CAP,
    WINDOW_GROWTH,
    GraphWalk,
)
from app.index.segment import Segment
from app.models import Distance, HnswParams

PAGE = 10
PAGES = 1000
CHECKPOINTS = (1, 10, 100, 1000)
SELECTIVITIES = (0.5, 0.1, 0.01)
TARGETS = """Targets: page-1 recall >= 0.95; cumulative recall >= 0.99 at 1,000 and >= 0.95 at
10,000; warm page 100 <= 2x page 10 and page 1000 <= 5x page 10; cold page 1000 <= 25 ms;
state <= 2 / 4 / 16 KB at pages 10 / 100 / 1000."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the segment


def build_segment(name: str, base: np.ndarray, distance: Distance, cache: Path) -> Segment:
    """A segment holding `base` (point id = row), its graph loaded from `cache` if present."""
    segment = Segment(base.shape[1], distance, HnswParams(), exact_threshold=20_000)
    ids = list(range(len(base)))
    segment.upsert(ids, base, [i + 1 for i in ids])
    path = cache / f"{name}-m16-efc100.hnsw"
    if path.exists():
        install_graph(segment, path)
        log(f"# {name}: graph loaded from {path}")
        return segment
    started = time.perf_counter()
    while segment.needs_indexing:
        segment.index_step()
    log(f"# {name}: graph built in {time.perf_counter() - started:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    assert segment._graph is not None
    segment._graph.save_index(str(path))
    return segment


def install_graph(segment: Segment, path: Path) -> None:
    """What `index_step()` would leave behind, from a saved index (every row alive)."""
    space = "l2" if segment.distance is Distance.EUCLID else "ip"
    graph = hnswlib.Index(space=space, dim=segment.dim)
    graph.load_index(str(path), max_elements=2 * segment._count)
    segment._graph, segment._graph_rows, segment._graph_live = graph, segment._count, len(segment)


def exact_ranking(
    segment: Segment, query: np.ndarray, depth: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """The `depth` best of `rows` (default all) by brute force in float64, ties by row."""
    rows = np.arange(segment._count) if rows is None else rows
    vectors = segment._vectors[rows].astype(np.float64)
    q = query.astype(np.float64)
    if segment.distance is Distance.COSINE:
        q /= np.linalg.norm(q)
    keys = ((vectors - q) ** 2).sum(1) if segment.distance is Distance.EUCLID else -(vectors @ q)
    best = np.argpartition(keys, depth)[:depth] if depth < len(rows) else np.arange(len(rows))
    return rows[best[np.lexsort((best, keys[best]))]]


# ---------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """What one query's walk through the pages measured."""

    ids: list[int] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)  # per page, page 1 includes start()
    cold_ms: dict[int, tuple[float, float]] = field(default_factory=dict)  # wall, CPU
    state_kb: dict[int, float] = field(default_factory=dict)
    mode: str = ""


def timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def read_pages(segment: Segment, query: np.ndarray, pages: int, **options: object) -> Run:
    """Read `pages` pages warm; at each checkpoint also time a cold resume of the next one."""
    run = Run()
    query_, start_ms = timed(lambda: ResumableQuery.start(segment, query, **options))
    live: ResumableQuery = query_  # type: ignore[assignment]
    for page in range(1, pages + 1):
        if page in CHECKPOINTS and page > 1:
            run.cold_ms[page] = cold_page(segment, live.state(), options.get("allow"))
        result, ms = timed(lambda: live.next(PAGE))
        run.warm_ms.append(ms + (start_ms if page == 1 else 0))
        run.ids += [point for point, _ in result]  # type: ignore[attr-defined]
        if page in CHECKPOINTS:
            run.state_kb[page] = len(live.state()) / 1024
    run.mode = live.mode
    return run


def cold_page(segment: Segment, state: bytes, allow: object) -> tuple[float, float]:
    """One request that missed the cache: resume, serve a page, store the new state.

    Returns (wall ms, CPU ms of this thread): on a shared machine the CPU time is the
    engine's own cost, the wall time adds waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    query = ResumableQuery.resume(segment, state, allow=allow)  # type: ignore[arg-type]
    query.next(PAGE)
    query.state()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def page_ms(runs: list[Run], page: int) -> float:
    """Median over queries of the median of the ten pages around `page` (page 1 alone)."""
    window = slice(0, 1) if page == 1 else slice(page - 6, page + 4)
    return statistics.median(statistics.median(run.warm_ms[window]) for run in runs)


def cold_cell(runs: list[Run], page: int) -> str:
    """Median cold latency as "wall / CPU" ms."""
    wall = statistics.median(run.cold_ms[page][0] for run in runs)
    cpu = statistics.median(run.cold_ms[page][1] for run in runs)
    return f"{wall:.1f} / {cpu:.1f}"


def recall(ids: list[int], truth: np.ndarray) -> float:
    return len(set(ids) & set(truth.tolist())) / len(truth)


# ---------------------------------------------------------------------------- scenarios


def unfiltered(label: str, segment: Segment, queries: np.ndarray) -> dict:
    """Pages 1-1000 of every query, unfiltered, planner's choice."""
    truths = [exact_ranking(segment, query, PAGE * PAGES) for query in queries]
    runs, r1, r1k, r10k = [], [], [], []
    for i, (query, truth) in enumerate(zip(queries, truths, strict=True)):
        run = read_pages(segment, query, PAGES)
        assert len(run.ids) == len(set(run.ids)), "duplicate results"
        runs.append(run)
        r1.append(recall(run.ids[:10], truth[:10]))
        r1k.append(recall(run.ids[:1000], truth[:1000]))
        r10k.append(recall(run.ids, truth))
        log(f"  {label} query {i}: recall {r1[-1]:.2f} / {r1k[-1]:.3f} / {r10k[-1]:.3f}")
    med = statistics.median
    return {
        "dataset": label,
        "mode": "/".join(sorted({run.mode for run in runs})),
        "r1": statistics.mean(r1),
        "r1k": statistics.mean(r1k),
        "r10k": statistics.mean(r10k),
        **{f"w{p}": page_ms(runs, p) for p in CHECKPOINTS},
        **{f"c{p}": cold_cell(runs, p) for p in (100, 1000)},
        **{f"s{p}": med(run.state_kb[p] for run in runs) for p in (10, 100, 1000)},
    }


def fixed_window(label: str, segment: Segment, queries: np.ndarray) -> dict:
    """The same with the walk's window fixed at ef, for comparison."""
    growth = resumable_graph.WINDOW_GROWTH
    resumable_graph.WINDOW_GROWTH = 0
    try:
        return unfiltered(f"{label} (window fixed at ef)", segment, queries)
    finally:
        resumable_graph.WINDOW_GROWTH = growth


def filtered(
    name: str,
    segment: Segment,
    queries: np.ndarray,
    share: float,
    full_reads: int,
    mode: str | None,
) -> dict:
    """Pages 1-100 under a random allow-mask; the first `full_reads` queries read to the end."""
    rng = np.random.default_rng(int(share * 1000))
    masks = [rng.random(segment._count) < share for _ in queries]
    truths = [
        exact_ranking(segment, q, PAGE, np.flatnonzero(m))
        for q, m in zip(queries, masks, strict=True)
    ]
    runs, r1, complete, duplicates, modes = [], [], [], 0, set()
    for i, (query, mask, truth) in enumerate(zip(queries, masks, truths, strict=True)):
        options = {
            "allow": lambda rows, m=mask: m[rows],
            "expected_matches": int(mask.sum()),
            "mode": mode,
        }
        run = read_pages(segment, query, 100, **options)
        runs.append(run)
        r1.append(recall(run.ids[:10], truth))
        modes.add(run.mode)
        if i < full_reads:
            (count, dups, final), ms = timed(lambda o=options, q=query: read_to_end(segment, q, o))
            complete.append(count - dups == int(mask.sum()))
            duplicates += dups
            modes.add(final)
            log(f"  {name} {share:.0%} query {i}: all {count} in {ms / 1000:.1f} s, {dups} dups")
    med = statistics.median
    return {
        "dataset": name,
        "filter": f"{share:.0%}" + (" (forced graph)" if mode else ""),
        "mode": "/".join(sorted(modes)),
        "r1": statistics.mean(r1),
        **{f"w{p}": page_ms(runs, p) for p in (1, 10, 100)},
        "c100": cold_cell(runs, 100),
        "s100": med(run.state_kb[100] for run in runs),
        "complete": f"{sum(complete)}/{len(complete)}",
        "dups": duplicates,
    }


def read_to_end(segment: Segment, query: np.ndarray, options: dict) -> tuple[int, int, str]:
    """Read everything: (points returned, duplicates, final mode)."""
    live = ResumableQuery.start(segment, query, **options)
    seen: list[int] = []
    while page := live.next(100):
        seen += [point for point, _ in page]  # type: ignore[misc]
    return len(seen), len(seen) - len(set(seen)), live.mode


# ---------------------------------------------------------------------------- numba experiment


def numba_comparison(label: str, segment: Segment, queries: np.ndarray) -> dict:
    """Warm pages of the Python walk vs the same walk compiled with numba (`--numba`).

    Both continue from the same state after page 1 (the Python walk's), so they explore the
    same graph in the same order; only the keys' last bits differ (loops vs einsum).
    """
    take = numba_take()
    timings: dict[str, dict[int, list[float]]] = {"python": {}, "numba": {}}
    recalls: dict[str, list[float]] = {"python": [], "numba": []}
    truths = [exact_ranking(segment, query, 1000) for query in queries]
    for query, truth in zip(queries, truths, strict=True):
        live = ResumableQuery.start(segment, query)
        first = [point for point, _ in live.next(PAGE)]
        compiled = NumbaWalk(live._engine, segment, take)  # type: ignore[arg-type]
        readers = {
            "python": lambda live=live: [point for point, _ in live.next(PAGE)],
            "numba": lambda compiled=compiled: compiled.next(PAGE),
        }
        for name, read in readers.items():
            ids, times = list(first), []
            for _ in range(2, PAGES + 1):
                page, ms = timed(read)
                ids += page  # type: ignore[arg-type]
                times.append(ms)
            for page_no in (10, 100, 1000):
                window = times[page_no - 7 : page_no + 3]
                timings[name].setdefault(page_no, []).append(statistics.median(window))
            recalls[name].append(recall(ids[:1000], truth))
    row: dict = {"dataset": label}
    for name in timings:
        for page_no, values in timings[name].items():
            row[f"{name}{page_no}"] = statistics.median(values)
        row[f"{name}_r1k"] = statistics.mean(recalls[name])
    return row


def numba_take() -> Callable:
    """Compile the walk loop (`GraphWalk.take` without teleport and budget) with numba."""
    from numba import njit  # an experiment: numba is not a dependency of the service

    @njit(inline="always")
    def less(k1, r1, k2, r2):
        return k1 < k2 or (k1 == k2 and r1 < r2)

    @njit
    def push(keys, rows, size, key, row):
        i = size
        keys[i], rows[i] = key, row
        while i > 0:
            parent = (i - 1) >> 1
            if not less(keys[i], rows[i], keys[parent], rows[parent]):
                break
            keys[i], keys[parent] = keys[parent], keys[i]
            rows[i], rows[parent] = rows[parent], rows[i]
            i = parent
        return size + 1

    @njit
    def pop(keys, rows, size):
        key, row = keys[0], rows[0]
        size -= 1
        keys[0], rows[0] = keys[size], rows[size]
        i = 0
        while True:
            left, best = 2 * i + 1, i
            if left < size and less(keys[left], rows[left], keys[best], rows[best]):
                best = left
            if left + 1 < size and less(keys[left + 1], rows[left + 1], keys[best], rows[best]):
                best = left + 1
            if best == i:
                return key, row, size
            keys[i], keys[best] = keys[best], keys[i]
            rows[i], rows[best] = rows[best], rows[i]
            i = best

    @njit(inline="always")
    def key_of(vectors, row, q, sq, qn2, euclid, exact):
        if exact:
            acc = 0.0
            for j in range(q.shape[0]):
                acc += np.float64(vectors[row, j]) * np.float64(q[j])
        else:
            acc32 = np.float32(0.0)
            for j in range(q.shape[0]):
                acc32 += vectors[row, j] * q[j]
            acc = np.float64(acc32)
        return sq[row] - 2.0 * acc + qn2 if euclid else -acc

    @njit
    def offer(w, ovf, sizes, status, capacity, key, row):
        """Into the sorted window; sizes = [frontier, window, overflow, emissions]."""
        wk, wr = w
        n = sizes[1]
        if n >= capacity and not less(key, row, wk[n - 1], wr[n - 1]):
            return False
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if less(wk[mid], wr[mid], key, row):
                lo = mid + 1
            else:
                hi = mid
        wk[lo + 1 : n + 1], wr[lo + 1 : n + 1] = wk[lo:n].copy(), wr[lo:n].copy()
        wk[lo], wr[lo] = key, row
        status[row] |= PENDING
        if n + 1 > capacity:
            if status[wr[n]] & EXPANDED:
                sizes[2] = push(ovf[0], ovf[1], sizes[2], wk[n], wr[n])
            else:
                status[wr[n]] &= ~np.uint8(PENDING)
            n -= 1
        sizes[1] = n + 1
        return True

    @njit
    def take(
        n,
        links,
        vectors,
        sq,
        q,
        qn2,
        euclid,
        match,
        status,
        front,
        w,
        ovf,
        sizes,
        ef,
        batch,
        slack,
        out,
        popped,
    ):
        count_out, (fk, fr), (wk, wr), (ok, orr) = 0, front, w, ovf
        while count_out < n:
            capacity = min(max(ef, WINDOW_GROWTH * sizes[3]), WINDOW_CAP)
            while sizes[2] > 0 and (
                sizes[1] < capacity or less(ok[0], orr[0], wk[sizes[1] - 1], wr[sizes[1] - 1])
            ):
                key, row, sizes[2] = pop(ok, orr, sizes[2])
                offer(w, ovf, sizes, status, capacity, key, row)
            if sizes[0] > 0 and (sizes[1] < capacity or fk[0] <= wk[sizes[1] - 1]):
                limit = wk[sizes[1] - 1] if sizes[1] >= capacity else np.inf
                count = 0
                while sizes[0] > 0 and count < batch and (count == 0 or fk[0] <= limit):
                    _, popped[count], sizes[0] = pop(fk, fr, sizes[0])
                    status[popped[count]] |= EXPANDED
                    count += 1
                for i in range(count):
                    for nb in links[popped[i]] if popped[i] < links.shape[0] else links[:0, 0]:
                        if nb < 0 or status[nb] != 0:
                            continue
                        status[nb] |= DISCOVERED
                        priority = key_of(vectors, nb, q, sq, qn2, euclid, False)
                        sizes[0] = push(fk, fr, sizes[0], priority, nb)
                        if match[nb] and (
                            sizes[1] < capacity or priority <= wk[sizes[1] - 1] + slack
                        ):
                            key = key_of(vectors, nb, q, sq, qn2, euclid, True)
                            offer(w, ovf, sizes, status, capacity, key, nb)
                for row in popped[:count]:
                    if match[row] and status[row] & (EMITTED | PENDING) == 0:
                        key = key_of(vectors, row, q, sq, qn2, euclid, True)
                        if not offer(w, ovf, sizes, status, capacity, key, row):
                            sizes[2] = push(ok, orr, sizes[2], key, row)
                            status[row] |= PENDING
            elif sizes[1] > 0:
                out[count_out] = wr[0]
                count_out += 1
                wk[: sizes[1] - 1], wr[: sizes[1] - 1] = (
                    wk[1 : sizes[1]].copy(),
                    wr[1 : sizes[1]].copy(),
                )
                sizes[1] -= 1
                sizes[3] += 1
                status[out[count_out - 1]] = (status[out[count_out - 1]] | EMITTED) & ~np.uint8(
                    PENDING
                )
            else:
                break
        return count_out

    return take


class NumbaWalk:
    """A Python `GraphWalk`'s state moved into arrays for the compiled loop."""

    def __init__(self, walk: GraphWalk, segment: Segment, take: Callable) -> None:
        rows = len(walk.status)
        scorer = walk._scorer
        self._take = take
        self._static = (
            walk._level0.links,
            segment._vectors,
            walk._sq_norms,
            scorer.query,
            scorer.query_norm**2,
            scorer.distance is Distance.EUCLID,
            walk.match,
        )
        self.status = walk.status.copy()
        unexpanded = np.flatnonzero(self.status & (DISCOVERED | EXPANDED) == DISCOVERED)
        priorities = walk._fast_keys(unexpanded)
        order = np.lexsort((unexpanded, priorities))  # a sorted array is a heap
        self.front = (_grown(priorities[order], rows), _grown(unexpanded[order], rows))
        window = np.array(walk.window, dtype=np.float64).reshape(-1, 2)
        self.window = (
            _grown(window[:, 0], 2 * WINDOW_CAP),
            _grown(window[:, 1].astype(np.int64), 2 * WINDOW_CAP),
        )
        overflow = np.array(sorted(walk.overflow), dtype=np.float64).reshape(-1, 2)
        self.overflow = (
            _grown(overflow[:, 0], rows),
            _grown(overflow[:, 1].astype(np.int64), rows),
        )
        self.sizes = np.array([len(unexpanded), len(window), len(overflow), walk.emissions])
        self._params = (walk.ef, walk.batch, walk._slack)
        self._out, self._popped = np.empty(1024, dtype=np.int64), np.empty(64, dtype=np.int64)

    def next(self, k: int) -> list[int]:
        links, vectors, sq, q, qn2, euclid, match = self._static
        ef, batch, slack = self._params
        got = self._take(
            k,
            links,
            vectors,
            sq,
            q,
            qn2,
            euclid,
            match,
            self.status,
            self.front,
            self.window,
            self.overflow,
            self.sizes,
            ef,
            batch,
            slack,
            self._out,
            self._popped,
        )
        return self._out[:got].tolist()


def _grown(values: np.ndarray, size: int) -> np.ndarray:
    out = np.empty(max(size, len(values)) + 1, dtype=values.dtype)
    out[: len(values)] = values
    return out


# ---------------------------------------------------------------------------- main


UNFILTERED = [
    ("dataset", "dataset"),
    ("mode", "mode"),
    ("r1", "p1 recall@10"),
    ("r1k", "cum recall 1k"),
    ("r10k", "cum recall 10k"),
    ("w1", "warm p1 ms"),
    ("w10", "warm p10 ms"),
    ("w100", "warm p100 ms"),
    ("w1000", "warm p1000 ms"),
    ("c100", "cold p100 ms wall / CPU"),
    ("c1000", "cold p1000 ms wall / CPU"),
    ("s10", "state p10 KB"),
    ("s100", "state p100 KB"),
    ("s1000", "state p1000 KB"),
]
FILTERED = [
    ("dataset", "dataset"),
    ("filter", "allow"),
    ("mode", "mode"),
    ("r1", "p1 recall@10"),
    ("w1", "warm p1 ms"),
    ("w10", "warm p10 ms"),
    ("w100", "warm p100 ms"),
    ("c100", "cold p100 ms wall / CPU"),
    ("s100", "state p100 KB"),
    ("complete", "complete"),
    ("dups", "dups"),
]
NUMBA = [
    ("dataset", "dataset"),
    ("python10", "python p10 ms"),
    ("python100", "python p100 ms"),
    ("python1000", "python p1000 ms"),
    ("python_r1k", "python cum 1k"),
    ("numba10", "numba p10 ms"),
    ("numba100", "numba p100 ms"),
    ("numba1000", "numba p1000 ms"),
    ("numba_r1k", "numba cum 1k"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--datasets", default="synth-100k,wordnet-minilm")
    parser.add_argument("--queries", type=int, default=20, help="queries per scenario")
    parser.add_argument("--full-reads", type=int, default=2, help="reads to the end per filter")
    parser.add_argument("--numba", action="store_true", help="also time the walk under numba")
    parser.add_argument("--shared", default=None, help="the shared folder")
    parser.add_argument("--cache", default=str(REPO / "bench-out"), help="data and graphs")
    args = parser.parse_args()
    cache = Path(args.cache)
    plain, masked, compiled = [], [], []
    for name in args.datasets.split(","):
        dataset = load_dataset(find_dataset(name, shared_dir(args.shared), cache / "data"))
        distance = Distance.EUCLID if dataset.metric == "l2" else Distance.COSINE
        segment = build_segment(name, dataset.base, distance, cache / "resumable")
        queries = dataset.queries[: args.queries]
        plain.append(unfiltered(name, segment, queries))
        plain.append(fixed_window(name, segment, queries))
        for share, mode in [*((s, None) for s in SELECTIVITIES), (0.1, "graph")]:
            masked.append(filtered(name, segment, queries, share, args.full_reads, mode))
        if args.numba:
            compiled.append(numba_comparison(name, segment, queries))
    print("### Unfiltered, pages of 10\n")
    print(markdown_table(plain, UNFILTERED))
    print("\n### Random allow-masks, pages of 10 (pages 1-100; `complete`: full reads)\n")
    print(markdown_table(masked, FILTERED))
    if compiled:
        print(
            "\n### The walk in Python vs compiled with numba (warm, from the same page-1 state)\n"
        )
        print(markdown_table(compiled, NUMBA))
    print("\n" + TARGETS)


if __name__ == "__main__":
    main()
