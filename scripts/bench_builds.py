#!/usr/bin/env python3
"""Two running builds of the service under the same `wrk` load, in interleaved rounds.

On these shared machines the speed drifts by ±30 % within minutes, and pgvector's cost with
it, so a change worth 5 % of the service's CPU is lost in `bench_paired.py`'s service /
pgvector ratio. Here two services (say a worktree of main and the working copy) run side by
side on their own ports over one database; each round sends the same `wrk` load (the
dataset's query bodies) to each, in ABBA order, and keeps per request: the server CPU (the
supervisor's process tree) and the context switches of its threads, with QPS and p99. The
summary gives the median of the per-round ratios B / A.

Example (both services hold the dataset's collection, e.g. started on one database):
  (cd /tmp/main-worktree && python -m app serve --port 6398 --workers 2 --pin-workers) &
  python -m app serve --port 6399 --workers 2 --pin-workers &
  .venv/bin/python scripts/bench_builds.py --a-url http://127.0.0.1:6398 \\
      --b-url http://127.0.0.1:6399 --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    REPO,
    CpuMeter,
    find_dataset,
    load_dataset,
    markdown_table,
    pids_listening_on,
    process_tree,
    shared_dir,
)
from bench_native_clients import run_wrk, write_wrk_files
from bench_paired import round_order
from bench_search import log, service_collection, url_port

BUILDS = ("a", "b")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--a-url", required=True, help="the reference build")
    ap.add_argument("--b-url", required=True, help="the build under test")
    ap.add_argument("--dataset", default="wordnet-minilm")
    ap.add_argument("--service-ef", type=int, default=28, help="params.hnsw_ef")
    ap.add_argument("--clients", type=int, default=8, help="wrk connections")
    ap.add_argument("--seconds", type=int, default=6, help="per measurement")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--shared", help="shared folder (default: ../shared beside the repository)")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")
    return ap.parse_args(argv)


def context_switches(root: int) -> int:
    """Voluntary and involuntary switches of every thread of `root` and its descendants."""
    total = 0
    for pid in process_tree(root):
        for task in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                status = task.read_text()
            except OSError:  # the thread ended meanwhile
                continue
            total += sum(
                int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line
            )
    return total


def measure(url: str, script: Path, clients: int, seconds: int) -> dict:
    (root,) = pids_listening_on(url_port(url))
    meter = CpuMeter([root])
    switches, window = context_switches(root), meter.start()
    result = run_wrk(url, script, clients, seconds)
    cpu, switches = meter.stop(window), context_switches(root) - switches
    requests = result["qps"] * cpu["wall_s"]
    return {
        **result,
        "cpu_ms_per_q": 1000 * cpu["server_cpu_s"] / requests,
        "switches_per_q": switches / requests,
        "other_cpu": cpu["other_cpu"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    ds = load_dataset(find_dataset(args.dataset, shared_dir(args.shared), args.cache_dir))
    urls = {"a": args.a_url, "b": args.b_url}
    runs: dict[str, list[dict]] = {build: [] for build in BUILDS}
    with tempfile.TemporaryDirectory() as folder:
        script = write_wrk_files(Path(folder), ds.queries, args.service_ef)
        collection = service_collection(ds)
        for round_no in range(args.rounds):
            for build in round_order(round_no, BUILDS):
                url = f"{urls[build]}/collections/{collection}/points/query"
                log(f"round {round_no + 1}/{args.rounds}: build {build}")
                runs[build].append(measure(url, script, args.clients, args.seconds))
    print(summary(runs, args))


def summary(runs: dict[str, list[dict]], args: argparse.Namespace) -> str:
    metrics = ("qps", "p99_ms", "cpu_ms_per_q", "switches_per_q")
    rows = []
    for metric in metrics:
        a = [run[metric] for run in runs["a"]]
        b = [run[metric] for run in runs["b"]]
        ratios = [y / x for x, y in zip(a, b, strict=True)]
        rows.append(
            {
                "metric": metric,
                "a": round(statistics.median(a), 3),
                "b": round(statistics.median(b), 3),
                "b_over_a": f"{statistics.median(ratios):.3f}",
                "range": f"{min(ratios):.3f}-{max(ratios):.3f}",
            }
        )
    columns = [
        ("metric", "metric (per request)"),
        ("a", f"A {args.a_url} (median)"),
        ("b", f"B {args.b_url} (median)"),
        ("b_over_a", "B / A (median of rounds)"),
        ("range", "range"),
    ]
    head = (
        f"## {args.dataset}: {args.clients} wrk connections, hnsw_ef={args.service_ef}, "
        f"{args.rounds} rounds of {args.seconds} s\n\n"
    )
    return head + markdown_table(rows, columns)


if __name__ == "__main__":
    main()
