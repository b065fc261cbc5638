#!/usr/bin/env python3
"""Where a `points/query` request's CPU goes, layer by layer, in process (no sockets).

It starts the service's application in this process on a database that holds the
benchmark collection (`bench_search.py --service-url … --service-reuse` leaves it), waits
until every graph is built, pins itself to one CPU and times the same queries through ever
more of the request path, each stage including the ones before it:

1. `knn_query` on the segment's graph (k = hnsw_ef, as the segment asks);
2. `Segment.search` (query normalisation, read lock, contenders, exact re-scoring);
3. `SearchService.search` (collection and vector checks, the float32 query, records);
4. `query_answer` (the Qdrant request parsed, scored points rendered, plan headers);
5. the fast path's answer (JSON decoded from the body and encoded);
6. the fast path's ASGI call (routing, the body received, the response sent).

CPU time per query (`time.process_time`), median of `--rounds` passes of `--queries`. With
`--inline` the CPU pool calls its functions on the event loop instead of a pool thread:
the cost of the hop, one request at a time.

Example (from the repository root, with the project venv):
  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/waypoint_prof \\
      .venv/bin/python scripts/bench_stages.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, find_dataset, load_dataset, markdown_table, shared_dir
from bench_search import service_collection

Stage = Callable[[int], Awaitable[Any]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--dataset", default="wordnet-minilm")
    ap.add_argument("--ef", type=int, default=28, help="params.hnsw_ef")
    ap.add_argument("--queries", type=int, default=3000, help="queries per stage and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=0, help="the CPU to pin this process to")
    ap.add_argument("--inline", action="store_true", help="search on the event loop")
    ap.add_argument("--shared", help="shared folder (default: ../shared beside the repository)")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")
    return ap.parse_args(argv)


def run_inline() -> None:
    """Make the CPU pool call its functions directly (a measurement build only)."""
    from app.services.cpu import CpuPool

    async def run(self: CpuPool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    CpuPool.run = run  # type: ignore[method-assign]


async def cpu_per_call(stage: Stage, calls: int) -> float:
    """CPU µs per call of `stage`, after a warm-up."""
    for i in range(min(300, calls)):
        await stage(i)
    started = time.process_time()
    for i in range(calls):
        await stage(i)
    return (time.process_time() - started) / calls * 1e6


def stages(app: Any, name: str, queries: np.ndarray, ef: int) -> dict[str, Stage]:
    """The six stages, each over `queries` (indexed modulo their number)."""
    from app.api.qdrant import parse, schemas
    from app.api.qdrant.controllers import query_answer
    from app.api.qdrant.fastpath import _decode, route_of
    from app.index import scoring

    services = app.app.state.services
    collection = services.catalog.get(name)
    segment = services.registry.get(collection.namespaces[""], "")
    n = len(queries)
    bodies = [
        json.dumps({"query": q.tolist(), "limit": 10, "params": {"hnsw_ef": ef}}).encode()
        for q in queries
    ]
    decoded = [_decode(body, schemas.QueryPoints) for body in bodies]
    requests = [parse.query_request(d) for d in decoded]
    prepared = [scoring.prepare(q, segment.distance) for q in queries]
    path = f"/collections/{name}/points/query"
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": []}
    route = route_of(scope)

    async def knn(i: int) -> Any:
        return segment._graph.knn_query(prepared[i % n], k=ef, num_threads=1)

    async def segment_search(i: int) -> Any:
        return segment.search(queries[i % n], 10, ef=ef)

    async def service_search(i: int) -> Any:
        return await services.search.search(name, requests[i % n])

    async def answer(i: int) -> Any:
        return await query_answer(services, name, decoded[i % n])

    async def fast_answer(i: int) -> Any:
        return await app._answer(scope, route, bodies[i % n], time.perf_counter())

    async def asgi_call(i: int) -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": bodies[i % n], "more_body": False}

        async def send(message: dict) -> None:
            pass

        await app(scope, receive, send)

    return {
        "knn_query": knn,
        "Segment.search": segment_search,
        "SearchService.search": service_search,
        "query_answer": answer,
        "fast path answer": fast_answer,
        "fast path ASGI call": asgi_call,
    }


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    from app.asgi import create_asgi

    ds = load_dataset(find_dataset(args.dataset, shared_dir(args.shared), args.cache_dir), 1000)
    app = create_asgi()
    async with app.app.lifespan():
        services = app.app.state.services
        while not services.ready:
            await asyncio.sleep(0.2)
        by_stage = stages(app, service_collection(ds), ds.queries, args.ef)
        results: dict[str, list[float]] = {stage: [] for stage in by_stage}
        for _ in range(args.rounds):
            for stage, call in by_stage.items():
                results[stage].append(await cpu_per_call(call, args.queries))
        return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL to the database holding the benchmark collection")
    sys.path.insert(0, str(REPO))
    os.sched_setaffinity(0, {args.cpu})
    if args.inline:
        run_inline()
    results = asyncio.run(measure(args))
    where = "on the event loop" if args.inline else "through the CPU pool"
    print(f"## {args.dataset}: CPU per query by stage, search {where}, hnsw_ef={args.ef}\n")
    rows, before = [], 0.0
    for stage, values in results.items():
        median = statistics.median(values)
        rows.append({"stage": stage, "us": f"{median:.1f}", "added": f"{median - before:+.1f}"})
        before = median
    columns = [("stage", "stage (includes the ones above)"), ("us", "µs per query")]
    print(markdown_table(rows, [*columns, ("added", "added µs")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
