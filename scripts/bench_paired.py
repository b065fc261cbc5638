#!/usr/bin/env python3
"""The service against pgvector at one setting each, in interleaved rounds: median ratios.

`bench_search.py` measures each system once, one after the other. On a shared machine whose
speed drifts by ±30 % within minutes, one such pair can be off by as much as the effect we
want to see. Here every round measures both systems back to back, for each client count,
alternating which goes first (ABBA), and the ratio of each adjacent pair is kept: drift
that spans a round moves both sides of its ratio alike. The summary gives the median of
the per-round ratios, with their range, and the median QPS and latency of each side.

It needs what `bench_search.py` leaves behind: a running service holding the dataset's
collection (`--service-url`; `bench_search.py --service-url URL --service-reuse` uploads it)
and pgvector's table (`bench_search.py --pg-reuse` keeps it).

Example (from the repository root, with the project venv; a service on port 6399):
  .venv/bin/python scripts/bench_paired.py --service-url http://127.0.0.1:6399 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    REPO,
    JsonlWriter,
    LoadResult,
    find_dataset,
    load_dataset,
    machine_info,
    markdown_table,
    parent_pid,
    pids_listening_on,
    run_clients,
    shared_dir,
)
from bench_search import (
    K,
    cpu_per_query,
    ints,
    log,
    pg_query_spec,
    pg_table,
    service_query_spec,
    setup_pgvector,
    url_port,
)

SYSTEMS = ("pgvector", "service")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_pair_arguments(ap, rounds=5)
    ap.add_argument("--queries", type=int, default=1000, help="queries per client")
    ap.add_argument("--warmup", type=int, default=50, help="unmeasured queries per client")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "bench_paired.jsonl")
    return ap.parse_args(argv)


def add_pair_arguments(ap: argparse.ArgumentParser, rounds: int) -> None:
    """The options of every service-against-pgvector comparison: the matched pair, where
    each runs, how many rounds and clients."""
    ap.add_argument("--dataset", default="wordnet-minilm")
    ap.add_argument("--service-url", required=True, help="a running service with the collection")
    # defaults: the pair that reaches the same recall@10 (.952) on wordnet-minilm
    ap.add_argument("--service-ef", type=int, default=28, help="params.hnsw_ef")
    ap.add_argument("--pg-dsn", help="pgvector database (default: scripts/setup_pgvector.sh)")
    ap.add_argument("--pg-ef", type=int, default=25, help="hnsw.ef_search")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--clients", type=ints, default=[1, 8])
    ap.add_argument("--shared", help="shared folder (default: ../shared beside the repository)")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")


def round_order(round_no: int, sides: tuple[str, ...] = SYSTEMS) -> tuple[str, ...]:
    """Which side goes first in a round, alternating (ABBA): drift within a round then
    moves both sides of its ratio alike."""
    return sides if round_no % 2 == 0 else sides[::-1]


def pg_server_pids(dsn: str, table: str) -> list[int]:
    """The pgvector postmaster (its backends are its children); exits if the table is gone."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            raise SystemExit(f"no pgvector table {table}: run bench_search.py --pg-reuse first")
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    postmaster = parent_pid(backend)
    return [postmaster] if postmaster else []


def measured_row(system: str, round_no: int, clients: int, res: LoadResult, gt) -> dict:
    stats = res.stats()
    return dict(
        system=system,
        round=round_no,
        clients=clients,
        recall10=round(res.recall(gt, K), 4),
        qps=stats["qps"],
        p50_ms=stats["p50_ms"],
        p99_ms=stats["p99_ms"],
        conns=res.split,
        **cpu_per_query(res.cpu, res.requests),
    )


def summary(rows: list[dict], clients: Sequence[int]) -> list[dict]:
    """Per client count: median QPS / p99 of each side and the median per-round ratio."""
    out = []
    for c in clients:
        by_round = {}
        for r in rows:
            if r["clients"] == c:
                by_round.setdefault(r["round"], {})[r["system"]] = r
        pairs = [p for p in by_round.values() if set(p) == set(SYSTEMS)]
        ratios = sorted(p["service"]["qps"] / p["pgvector"]["qps"] for p in pairs)
        line: dict = {"clients": c, "rounds": len(pairs)}
        for system in SYSTEMS:
            sides = [p[system] for p in pairs]
            line[f"{system}_recall"] = statistics.median(s["recall10"] for s in sides)
            line[f"{system}_qps"] = round(statistics.median(s["qps"] for s in sides))
            line[f"{system}_p99"] = round(statistics.median(s["p99_ms"] for s in sides), 2)
            line[f"{system}_cpu"] = statistics.median(s["server_cpu_ms_per_q"] for s in sides)
        line["ratio"] = f"{statistics.median(ratios):.2f}x"
        line["range"] = f"{ratios[0]:.2f}-{ratios[-1]:.2f}x"
        splits = Counter(p["service"]["conns"] for p in pairs)
        line["conns"] = ", ".join(f"{split} x{n}" for split, n in sorted(splits.items()))
        out.append(line)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ds = load_dataset(
        find_dataset(args.dataset, shared_dir(args.shared), args.cache_dir), args.queries
    )
    dsn = args.pg_dsn or setup_pgvector()
    port = url_port(args.service_url)
    servers = {
        "pgvector": pg_server_pids(dsn, pg_table(ds)),
        "service": pids_listening_on(port) if port else [],
    }
    specs = {
        "pgvector": pg_query_spec(ds, dsn, args.pg_ef),
        "service": service_query_spec(ds, args.service_url.rstrip("/"), args.service_ef),
    }
    rep = JsonlWriter(args.out, run_id="paired")
    rep.add(phase="env", **machine_info(), argv=sys.argv[1:])
    rows = []
    for round_no in range(args.rounds):
        order = round_order(round_no)
        for clients in args.clients:
            for system in order:
                log(f"round {round_no + 1}/{args.rounds}: {system}, {clients} client(s)")
                res = run_clients(
                    specs[system],
                    len(ds.queries),
                    clients,
                    warmup=args.warmup,
                    server_pids=servers[system],
                    split_port=port if system == "service" else None,
                )
                row = measured_row(system, round_no, clients, res, ds.gt)
                rep.add(phase="paired", dataset=ds.name, **row)
                rows.append(row)
    print(
        f"## {ds.name}: service hnsw_ef={args.service_ef} vs pgvector "
        f"ef_search={args.pg_ef}, {args.rounds} interleaved rounds (medians)\n"
    )
    cols = [
        ("clients", "clients"),
        ("rounds", "rounds"),
        ("pgvector_recall", "pgvector R@10"),
        ("pgvector_qps", "pgvector QPS"),
        ("pgvector_p99", "pgvector p99 ms"),
        ("pgvector_cpu", "pgvector server CPU ms/q"),
        ("service_recall", "service R@10"),
        ("service_qps", "service QPS"),
        ("service_p99", "service p99 ms"),
        ("service_cpu", "service server CPU ms/q"),
        ("ratio", "service/pgvector QPS"),
        ("range", "ratio range"),
        ("conns", "service connections per worker (rounds)"),
    ]
    print(markdown_table(summary(rows, args.clients), cols))
    print(f"\nraw rows: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
