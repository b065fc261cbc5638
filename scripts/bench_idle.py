#!/usr/bin/env python3
"""What an idle service costs as its catalog grows: CPU with no request in flight.

Every worker polls PostgreSQL's change feed (`WAYPOINT_SYNC_INTERVAL`, 1 s by default) to
learn of writes made on other hosts. This script measures, on a running service, the CPU of
its process tree and of its database's PostgreSQL backends over `--seconds` with no
request, first as the service is, then after creating `--collections` more collections of
one point each (named `idle_bench_*`, kept for the next run), in interleaved rounds.

Example (from the repository root, with the project venv and a scratch database):
  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/waypoint_scale \\
      .venv/bin/python -m app serve --port 6401 --workers 2 &
  .venv/bin/python scripts/bench_idle.py --service-url http://127.0.0.1:6401 \\
      --database-url postgresql://postgres@127.0.0.1:5432/waypoint_scale
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import CpuMeter, markdown_table, pids_listening_on

PREFIX = "idle_bench_"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--service-url", required=True, help="a running service")
    ap.add_argument("--database-url", help="its database, to count its backends' CPU too")
    ap.add_argument("--collections", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0, help="one idle window")
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


def idle_cpu(server_root: int, database_url: str | None, seconds: float) -> dict[str, float]:
    """CPU (% of one core) of the service's tree and of its backends over an idle window."""
    service, backends = CpuMeter([server_root]), CpuMeter(backend_pids(database_url))
    started = service.start(), backends.start()
    time.sleep(seconds)
    used = service.stop(started[0]), backends.stop(started[1])
    return {
        "service_pct": round(used[0]["server_cpu_s"] / used[0]["wall_s"] * 100, 2),
        "backends_pct": round(used[1]["server_cpu_s"] / used[1]["wall_s"] * 100, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    (root,) = pids_listening_on(urlsplit(args.service_url).port or 80)
    rows = []
    with httpx.Client(base_url=args.service_url.rstrip("/"), timeout=60) as http:
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
                rows.append({"round": round_no, "collections": others + extra, **usage})
                print(f"# round {round_no + 1}: {rows[-1]}", flush=True)
    summary = []
    for count in sorted({row["collections"] for row in rows}):
        mine = [row for row in rows if row["collections"] == count]
        summary.append(
            {
                "collections": count,
                "service": statistics.median(row["service_pct"] for row in mine),
                "backends": statistics.median(row["backends_pct"] for row in mine),
            }
        )
    print(f"\n## Idle CPU, % of one core, medians of {args.rounds} windows of {args.seconds} s\n")
    columns = [("collections", "collections"), ("service", "service"), ("backends", "backends")]
    print(markdown_table(summary, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
