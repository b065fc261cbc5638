#!/usr/bin/env python3
"""The service against pgvector with C load generators on both sides: wrk and pgbench.

`bench_paired.py` drives both systems from Python client processes, which take CPU from the
same two cores the servers run on (the psycopg client more than the HTTP one). This runs
the same matched pair with the leanest clients there are, in interleaved rounds: `wrk`
POSTs the dataset's query bodies in turn over keep-alive connections, `pgbench` runs the
top-k query with the query vector read from a table by a sub-select (one primary-key
lookup more for pgvector, on a 1000-row table). Recall is not measured here (the clients
discard the answers; `bench_paired.py` measures it at the same settings).

It needs `wrk` and `pgbench` (Debian packages wrk and postgresql), a running
service holding the dataset's collection and pgvector's table, as `bench_paired.py` does.

Example (from the repository root, with the project venv; a service on port 6399):
  .venv/bin/python scripts/bench_native_clients.py --service-url http://127.0.0.1:6399
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    Dataset,
    find_dataset,
    load_dataset,
    machine_info,
    markdown_table,
    shared_dir,
)
from bench_paired import SYSTEMS, add_pair_arguments, round_order
from bench_search import K, log, pg_operator, pg_table, service_collection, setup_pgvector

WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local started = 0
function setup(thread) thread:set("first", started); started = started + 1 end
function init(args) i = first * 125 end
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_pair_arguments(ap, rounds=3)
    ap.add_argument("--seconds", type=int, default=10, help="per measurement")
    return ap.parse_args(argv)


def write_wrk_files(folder: Path, queries: np.ndarray, ef: int) -> Path:
    """One JSON body per line and the Lua script that sends them in turn; returns the script."""
    bodies = folder / "bodies.txt"
    with bodies.open("w") as out:
        for query in queries:
            body = {"query": query.tolist(), "limit": K, "params": {"hnsw_ef": ef}}
            out.write(json.dumps(body, separators=(",", ":")) + "\n")
    script = folder / "bodies.lua"
    script.write_text(WRK_SCRIPT % {"bodies": bodies})
    return script


def write_pgbench_files(folder: Path, dsn: str, ds: Dataset) -> Path:
    """The queries as a table beside the dataset's, and the pgbench script that uses them."""
    import psycopg

    table, queries = pg_table(ds), ds.queries
    queries_table = f"{table}_queries"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {queries_table}")
        conn.execute(f"CREATE TABLE {queries_table} (i int PRIMARY KEY, v vector)")
        with conn.cursor().copy(f"COPY {queries_table} (i, v) FROM STDIN") as copy:
            for i, query in enumerate(queries):
                copy.write_row((i, "[" + ",".join(map(repr, query.tolist())) + "]"))
    script = folder / "query.sql"
    script.write_text(
        f"\\set i random(0, {len(queries) - 1})\n"
        f"SELECT id FROM {table} ORDER BY embedding {pg_operator(ds)} "
        f"(SELECT v FROM {queries_table} WHERE i = :i) LIMIT {K};\n"
    )
    return script


def run_wrk(url: str, script: Path, clients: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        text=True,
        capture_output=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return {
        "qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50_ms": _wrk_ms(re.search(r"\s50%\s+(\S+)", out)[1]),
        "p99_ms": _wrk_ms(re.search(r"\s99%\s+(\S+)", out)[1]),
    }


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_pgbench(dsn: str, script: Path, ef: int, clients: int, seconds: int) -> dict:
    """pgbench with prepared statements, per-transaction latencies logged for percentiles."""
    with tempfile.TemporaryDirectory() as logs:
        prefix = Path(logs) / "tx"
        command = ["pgbench", "-n", "-M", "prepared", f"-c{clients}", f"-j{clients}"]
        command += [f"-T{seconds}", "-f", str(script), "-l", f"--log-prefix={prefix}", dsn]
        env = {**os.environ, "PGOPTIONS": f"-c hnsw.ef_search={ef}"}
        out = subprocess.run(command, check=True, text=True, capture_output=True, env=env).stdout
        latencies_us = [
            int(line.split()[2]) for path in Path(logs).iterdir() for line in path.open()
        ]
    return {
        "qps": float(re.search(r"tps = ([\d.]+)", out)[1]),
        "p50_ms": float(np.percentile(latencies_us, 50)) / 1000,
        "p99_ms": float(np.percentile(latencies_us, 99)) / 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install wrk postgresql")
    ds = load_dataset(find_dataset(args.dataset, shared_dir(args.shared), args.cache_dir), 1000)
    dsn = args.pg_dsn or setup_pgvector()
    url = f"{args.service_url.rstrip('/')}/collections/{service_collection(ds)}/points/query"
    log(f"machine: {machine_info()}")
    with tempfile.TemporaryDirectory() as folder:
        lua = write_wrk_files(Path(folder), ds.queries, args.service_ef)
        sql = write_pgbench_files(Path(folder), dsn, ds)
        rows = []
        for clients in args.clients:
            runs = {
                "pgvector": partial(run_pgbench, dsn, sql, args.pg_ef, clients, args.seconds),
                "service": partial(run_wrk, url, lua, clients, args.seconds),
            }
            rows.append(summary_row(clients, paired_rounds(runs, args.rounds, clients)))
    print(
        f"\n## {ds.name}: service hnsw_ef={args.service_ef} (wrk) against pgvector "
        f"ef_search={args.pg_ef} (pgbench), {args.rounds} rounds of {args.seconds} s "
        "(medians)\n"
    )
    columns = [(key, key) for key in rows[0]]
    print(markdown_table(rows, columns))
    return 0


def paired_rounds(runs: dict[str, Callable[[], dict]], rounds: int, clients: int) -> dict:
    """Each system's measurement in every round, alternating which goes first."""
    by_system: dict[str, list[dict]] = {system: [] for system in SYSTEMS}
    for round_ in range(rounds):
        for system in round_order(round_):
            by_system[system].append(runs[system]())
        measured = {system: by_system[system][-1] for system in SYSTEMS}
        log(f"{clients} client(s), round {round_ + 1}: {measured}")
    return by_system


def summary_row(clients: int, by_system: dict[str, list[dict]]) -> dict:
    """Medians of each system, and of the per-round QPS ratios with their range."""
    row: dict = {"clients": clients}
    for system, runs in by_system.items():
        for key in ("qps", "p50_ms", "p99_ms"):
            row[f"{system} {key}"] = round(statistics.median(r[key] for r in runs), 2)
    pairs = zip(by_system["service"], by_system["pgvector"], strict=True)
    ratios = [service["qps"] / pg["qps"] for service, pg in pairs]
    row["service/pgvector QPS"] = f"{statistics.median(ratios):.2f}x"
    row["ratio range"] = f"{min(ratios):.2f}-{max(ratios):.2f}x"
    return row


if __name__ == "__main__":
    sys.exit(main())
