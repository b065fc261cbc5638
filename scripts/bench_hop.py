#!/usr/bin/env python
"""What one hop from the event loop to the search pool and back costs, with the event loop
and the pool threads free to run on any CPU, and with all of them pinned to one CPU (as
`serve --pin-workers` does).

Every request a worker serves makes this hop once (`app.services.cpu.CpuPool.run`), so its
cost is paid per query on top of the search. The call itself does nothing: what is measured
is the wake-ups, the futures and the loop turns. Each setting runs in a fresh process on
uvloop (the server's loop), one hop in flight at a time, as at one client.

    .venv/bin/python scripts/bench_hop.py [--hops 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure(hops: int) -> dict[str, float]:
    """Per hop: process CPU, event-loop thread CPU and wall time, in µs (in this process)."""
    import uvloop

    from app.services.cpu import CpuPool

    async def run() -> dict[str, float]:
        pool = CpuPool(2)
        for _ in range(200):  # start the pool threads, warm the caches
            await pool.run(int)
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        for _ in range(hops):
            await pool.run(int)
        per_hop = {
            "process_cpu_us": (time.process_time() - cpu) / hops * 1e6,
            "loop_thread_cpu_us": (time.thread_time() - loop_cpu) / hops * 1e6,
            "wall_us": (time.perf_counter() - wall) / hops * 1e6,
        }
        pool.shutdown()
        return per_hop

    return uvloop.run(run())


def one_round(hops: int, cpus: set[int] | None) -> dict[str, float]:
    """`measure` in a fresh process, pinned to `cpus` when given."""
    code = f"import json, bench_hop; print(json.dumps(bench_hop.measure({hops})))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'scripts'}"},
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per setting")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    settings = {f"any of CPUs {cpus}": None, f"pinned to CPU {cpus[0]}": {cpus[0]}}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, pinned in settings.items():
            results[name].append(one_round(args.hops, pinned))
    print(f"one hop through CpuPool, medians of {args.rounds} rounds of {args.hops} hops")
    print("| threads | process CPU µs | event-loop thread CPU µs | wall µs |")
    print("|---|---|---|---|")
    for name, rounds in results.items():
        cells = [
            f"{statistics.median(r[key] for r in rounds):.1f}"
            for key in ("process_cpu_us", "loop_thread_cpu_us", "wall_us")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
