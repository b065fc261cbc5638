#!/usr/bin/env python3
"""What a growing catalog costs a running service: idle CPU, and writes across workers.

Every worker polls PostgreSQL's change feed (`WAYPOINT_SYNC_INTERVAL`, 1 s by default) to
learn of writes made on other hosts, and catches up with another worker's write on this
host before its next request. This script measures, on a running service (two or more
workers), first as the service is, then after creating `--collections` more collections of
one point each (named `idle_bench_*`, kept for the next run), in interleaved rounds:

- idle: the CPU of the service's process tree and of its database's PostgreSQL backends
  over `--seconds` with no request;
- writes: two clients (one connection each, so on two workers) upserting one point per
  request with `wait=true` into one collection, `--writes` each: writes per second and
  CPU per write. Each request follows the other worker's write, so each catches up first.

Example (from the repository root, with the project venv and a scratch database):
  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/waypoint_scale \\
      .venv/bin/python -m app serve --port 6401 --workers 2 &
  .venv/bin/python scripts/bench_catalog_scale.py --service-url http://127.0.0.1:6401 \\
      --database-url postgresql://postgres@127.0.0.1:5432/waypoint_scale
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import CpuMeter, markdown_table, pids_listening_on

PREFIX = "idle_bench_"
WRITTEN = "catalog_scale_writes"  # the collection the write phase upserts into


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--service-url", required=True, help="a running service")
    ap.add_argument("--database-url", help="its database, to count its backends' CPU too")
    ap.add_argument("--collections", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=15.0, help="one idle window")
    ap.add_argument("--writes", type=int, default=1000, help="upserts per client and round")
    ap.add_argument("--rounds", type=int, default=3)
    return ap.parse_args(argv)


def bench_collections(http: httpx.Client) -> list[str]:
    names = [c["name"] for c in http.get("/collections").json()["result"]["collections"]]
    return [name for name in names if name.startswith(PREFIX)]


def create_collections(http: httpx.Client, count: int) -> None:
    """Collections `idle_bench_0 … count-1` with one point each (the missing ones)."""
    existing = set(bench_collections(http))
    for i in range(count):
        name = f"{PREFIX}{i}"
        if name in existing:
            continue
        created = http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Dot"}})
        created.raise_for_status()
        point = {"id": 1, "vector": [1.0, 0.0, 0.0, 0.0], "payload": {"i": i}}
        upserted = http.put(f"/collections/{name}/points?wait=true", json={"points": [point]})
        upserted.raise_for_status()


def delete_collections(http: httpx.Client) -> None:
    for name in bench_collections(http):
        http.delete(f"/collections/{name}").raise_for_status()


def backend_pids(database_url: str | None) -> list[int]:
    """The PostgreSQL backends connected to the service's database (not this script's)."""
    if not database_url:
        return []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def cpu_during(
    work: Callable[[], object], server_root: int, database_url: str | None
) -> tuple[float, float, float]:
    """Wall seconds of `work`, and the CPU seconds of the service's tree and of its
    backends meanwhile."""
    service, backends = CpuMeter([server_root]), CpuMeter(backend_pids(database_url))
    started = service.start(), backends.start()
    work()
    used = service.stop(started[0]), backends.stop(started[1])
    return used[0]["wall_s"], used[0]["server_cpu_s"], used[1]["server_cpu_s"]


def idle_cpu(server_root: int, database_url: str | None, seconds: float) -> dict[str, float]:
    """CPU (% of one core) of the service's tree and of its backends over an idle window."""
    wall, service, backends = cpu_during(lambda: time.sleep(seconds), server_root, database_url)
    return {
        "service_pct": round(service / wall * 100, 2),
        "backends_pct": round(backends / wall * 100, 2),
    }


def write_load(
    url: str, server_root: int, database_url: str | None, writes: int, round_no: int
) -> dict[str, float]:
    """Two clients upserting one point per request: writes/s and CPU ms per write."""

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(writes):
                point = {"id": (round_no * 2 + number) * writes + i, "vector": [1.0, 2.0, 3.0]}
                path = f"/collections/{WRITTEN}/points?wait=true"
                http.put(path, json={"points": [point]}).raise_for_status()

    def both_clients() -> None:
        clients = [threading.Thread(target=client, args=(number,)) for number in range(2)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()

    wall, service, backends = cpu_during(both_clients, server_root, database_url)
    total = 2 * writes
    return {
        "writes_per_s": round(total / wall, 1),
        "service_ms_per_write": round(service / total * 1000, 3),
        "backends_ms_per_write": round(backends / total * 1000, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    (root,) = pids_listening_on(urlsplit(args.service_url).port or 80)
    rows = []
    url = args.service_url.rstrip("/")
    with httpx.Client(base_url=url, timeout=60) as http:
        http.delete(f"/collections/{WRITTEN}").raise_for_status()
        created = http.put(
            f"/collections/{WRITTEN}", json={"vectors": {"size": 3, "distance": "Dot"}}
        )
        created.raise_for_status()
        total = len(http.get("/collections").json()["result"]["collections"])
        others = total - len(bench_collections(http))
        for round_no in range(args.rounds):
            for extra in (0, args.collections):
                if extra:
                    create_collections(http, extra)
                else:
                    delete_collections(http)
                time.sleep(2)  # the workers' polls settle on the new catalog
                usage = idle_cpu(root, args.database_url, args.seconds)
                usage |= write_load(url, root, args.database_url, args.writes, round_no)
                rows.append({"round": round_no, "collections": others + extra, **usage})
                print(f"# round {round_no + 1}: {rows[-1]}", flush=True)
    print(f"\n## Medians of {args.rounds} rounds (idle: windows of {args.seconds} s)\n")
    print(markdown_table(summarise(rows), COLUMNS))
    return 0


COLUMNS = [
    ("collections", "collections"),
    ("service_pct", "idle CPU %, service"),
    ("backends_pct", "idle CPU %, backends"),
    ("writes_per_s", "writes/s, 2 clients"),
    ("service_ms_per_write", "service CPU ms/write"),
    ("backends_ms_per_write", "backends CPU ms/write"),
]


def summarise(rows: list[dict]) -> list[dict]:
    """One row per catalog size: the median of every measurement over the rounds."""
    summary = []
    for count in sorted({row["collections"] for row in rows}):
        mine = [row for row in rows if row["collections"] == count]
        medians = {key: statistics.median(row[key] for row in mine) for key, _ in COLUMNS[1:]}
        summary.append({"collections": count, **medians})
    return summary


if __name__ == "__main__":
    sys.exit(main())
