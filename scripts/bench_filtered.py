"""Filtered search: recall@10, p50/p99 and QPS at 50 %, 10 %, 1 % and 0.1 % selectivity.

Systems, on the same data and queries, in one run:

- the service (`POST /collections/{c}/points/query` with a Qdrant filter, payload indexes on
  the filtered fields), reporting the plan it chose (`waypoint-plan` header);
- pgvector 0.8 HNSW with `WHERE`, once with iterative scans off and once with
  `hnsw.iterative_scan = relaxed_order` (ef_search 40, as in shared/reference/baselines.md);
- raw hnswlib in process with a Python filter callback (ef 64).

Filters use the datasets' payload fields (shared/data/README.md): `c10` (10 values), `c100`
(100 values), independent of the vectors. 50 % = `c10 < 5`, 10 % = `c10 = v`, 1 % =
`c100 = v`, 0.1 % = `c10 = v AND c100 = w`, with v, w the query's own values. Exact ground
truth comes from the dataset (10 %, 1 %) or a numpy scan here (50 %, 0.1 %).

    python scripts/bench_filtered.py                       # both datasets, 1 client
    python scripts/bench_filtered.py --datasets synth-100k --queries 300 --clients 1,8
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    CpuMeter,
    Dataset,
    JsonlWriter,
    PgQuerySpec,
    QdrantQuerySpec,
    _PgClient,
    find_dataset,
    lat_stats,
    load_dataset,
    markdown_table,
    parent_pid,
    recall_at,
    run_clients,
    shared_dir,
)
from bench_search import REPO, log, setup_pgvector, started_service, wait_green

K = 10


@dataclass(frozen=True)
class Selectivity:
    """One filter family: per-query Qdrant filter, SQL predicate and boolean mask."""

    name: str
    qdrant: Callable[[int], dict]
    sql: str  # WHERE predicate with %s placeholders
    params: Callable[[int], tuple]
    mask: Callable[[int], np.ndarray]


def selectivities(ds: Dataset) -> list[Selectivity]:
    c10 = np.load(ds.path / "base_c10.npy").astype(np.int64)
    c100 = np.load(ds.path / "base_c100.npy").astype(np.int64)
    q10 = np.load(ds.path / "query_c10.npy").astype(np.int64)
    q100 = np.load(ds.path / "query_c100.npy").astype(np.int64)

    def match(key: str, value: int) -> dict:
        return {"key": key, "match": {"value": int(value)}}

    return [
        Selectivity(
            "50%",
            lambda i: {"must": [{"key": "c10", "match": {"any": [0, 1, 2, 3, 4]}}]},
            "c10 < 5",
            lambda i: (),
            lambda i: c10 < 5,
        ),
        Selectivity(
            "10%",
            lambda i: {"must": [match("c10", q10[i])]},
            "c10 = %s",
            lambda i: (int(q10[i]),),
            lambda i: c10 == q10[i],
        ),
        Selectivity(
            "1%",
            lambda i: {"must": [match("c100", q100[i])]},
            "c100 = %s",
            lambda i: (int(q100[i]),),
            lambda i: c100 == q100[i],
        ),
        Selectivity(
            "0.1%",
            lambda i: {"must": [match("c10", q10[i]), match("c100", q100[i])]},
            "c10 = %s AND c100 = %s",
            lambda i: (int(q10[i]), int(q100[i])),
            lambda i: (c10 == q10[i]) & (c100 == q100[i]),
        ),
    ]


def ground_truth(ds: Dataset, sel: Selectivity) -> np.ndarray:
    """Exact filtered top-10 ids per query (-1 pads), from the dataset or a numpy scan."""
    stored = {"10%": "gt_ids_c10.npy", "1%": "gt_ids_c100.npy"}.get(sel.name)
    if stored:
        return np.load(ds.path / stored)[: len(ds.queries), :K]
    return scanned_truth(ds, sel.mask)


def scanned_truth(ds: Dataset, mask: Callable[[int], np.ndarray]) -> np.ndarray:
    """Exact top-10 ids per query among the rows `mask(i)` passes (-1 pads), by numpy scan."""
    base = ds.base.astype(np.float32)
    if ds.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
    norms = np.einsum("ij,ij->i", base, base)
    out = np.full((len(ds.queries), K), -1, dtype=np.int64)
    for i, q in enumerate(ds.queries):
        rows = np.flatnonzero(mask(i))
        q = q / np.linalg.norm(q) if ds.metric == "cosine" else q
        dots = base[rows] @ q
        keys = norms[rows] - 2 * dots if ds.metric == "l2" else -dots
        best = rows[np.argsort(keys, kind="stable")[:K]]
        out[i, : len(best)] = best
    return out


# ------------------------------------------------------------------------ load specs


@dataclass
class FilteredQdrantSpec(QdrantQuerySpec):
    filters: list[dict] = field(default_factory=list)

    def body(self, i: int) -> bytes:
        doc = json.loads(super().body(i))
        doc["filter"] = self.filters[i]
        return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class FilteredPgSpec(PgQuerySpec):
    params: list[tuple] = field(default_factory=list)

    def open(self) -> _FilteredPgClient:
        return _FilteredPgClient(self)


class _FilteredPgClient(_PgClient):
    def query(self, i: int) -> list[int]:
        args = (*self.spec.params[i], self.spec.queries[i])
        return [r[0] for r in self.cur.execute(self.spec.sql, args, prepare=True).fetchall()]


def measure(spec: Any, args: argparse.Namespace, pids: Sequence[int]) -> dict[int, Any]:
    return {
        c: run_clients(spec, len(spec.queries), c, warmup=args.warmup, server_pids=pids)
        for c in args.clients
    }


def row_of(res: Any, gt: np.ndarray) -> dict:
    flat_results = [None] * len(gt)
    for order, results in zip(res.orders, res.results, strict=True):
        for idx, r in zip(order, results, strict=False):
            flat_results[idx] = r
    stats = lat_stats(res.latencies_s, res.wall_s)
    return {
        "recall10": round(recall_at(flat_results, gt), 4),
        "mean_rows": round(float(np.mean([len(r) for r in flat_results])), 2),
        **stats,
        "other_cpu": res.cpu.get("other_cpu"),
        "plan": ",".join(
            f"{k.split(':', 1)[1]}x{v}"
            for k, v in sorted(res.info.items())
            if k.startswith("plan:")
        ),
        "filter": ",".join(
            f"{k.split(':', 1)[1]}x{v}"
            for k, v in sorted(res.info.items())
            if k.startswith("filter:")
        ),
    }


# ----------------------------------------------------------------------------- systems


def bench_service(ds: Dataset, sels: list[Selectivity], gts: dict, args, rep) -> None:
    import httpx
    import msgspec

    coll = "filtered_" + re.sub(r"\W", "_", ds.name)
    c10 = np.load(ds.path / "base_c10.npy").astype(int)
    c100 = np.load(ds.path / "base_c100.npy").astype(int)
    with (
        started_service(args, f"filtered-{ds.name}") as svc,
        httpx.Client(base_url=svc.url, timeout=600) as http,
    ):
        distance = "Euclid" if ds.metric == "l2" else "Cosine"
        http.put(f"/collections/{coll}", json={"vectors": {"size": ds.dim, "distance": distance}})
        for field_name in ("c10", "c100"):
            http.put(
                f"/collections/{coll}/index",
                json={"field_name": field_name, "field_schema": "integer"},
            ).raise_for_status()
        log(f"{ds.name}: uploading {len(ds.base)} points with payloads")
        for lo in range(0, len(ds.base), 1000):
            hi = min(lo + 1000, len(ds.base))
            payloads = [{"c10": int(c10[i]), "c100": int(c100[i])} for i in range(lo, hi)]
            body = {
                "batch": {
                    "ids": list(range(lo, hi)),
                    "vectors": ds.base[lo:hi].tolist(),
                    "payloads": payloads,
                }
            }
            http.put(
                f"/collections/{coll}/points?wait=true",
                content=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
            ).raise_for_status()
        wait_green(http, coll, args.ready_timeout)
        for sel in sels:
            filters = [sel.qdrant(i) for i in range(len(ds.queries))]
            spec = FilteredQdrantSpec(
                svc.url, coll, ds.queries, K, {"hnsw_ef": 64}, filters=filters
            )
            for clients, res in measure(spec, args, svc.server_pids).items():
                log(f"{ds.name}: service {sel.name} {clients} client(s)")
                rep.add(
                    dataset=ds.name,
                    system="service",
                    selectivity=sel.name,
                    setting="hnsw_ef=64",
                    clients=clients,
                    **row_of(res, gts[sel.name]),
                )


def bench_pgvector(ds: Dataset, sels: list[Selectivity], gts: dict, args, rep, dsn) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    table = "bench_filtered_" + re.sub(r"\W", "_", ds.name)
    op, opclass = ("<->", "vector_l2_ops") if ds.metric == "l2" else ("<=>", "vector_cosine_ops")
    c10 = np.load(ds.path / "base_c10.npy").astype(int)
    c100 = np.load(ds.path / "base_c100.npy").astype(int)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        cur = conn.cursor()
        postmaster = parent_pid(cur.execute("SELECT pg_backend_pid()").fetchone()[0])
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(
            f"CREATE TABLE {table} (id int4 PRIMARY KEY, embedding vector({ds.dim}), "
            "c10 int4, c100 int4)"
        )
        log(f"{ds.name}: pgvector COPY + HNSW build (m=16, ef_construction=64)")
        with cur.copy(
            f"COPY {table} (id, embedding, c10, c100) FROM STDIN WITH (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["int4", "vector", "int4", "int4"])
            for i in range(len(ds.base)):
                cp.write_row((i, ds.base[i], int(c10[i]), int(c100[i])))
        cur.execute(f"SET max_parallel_maintenance_workers = {max(args.threads - 1, 0)}")
        cur.execute(
            f"CREATE INDEX ON {table} USING hnsw (embedding {opclass}) "
            "WITH (m = 16, ef_construction = 64)"
        )
        cur.execute(f"CREATE INDEX ON {table} (c10)")
        cur.execute(f"CREATE INDEX ON {table} (c100)")
        cur.execute(f"VACUUM ANALYZE {table}")
        for mode in ("off", "relaxed_order"):
            setup = ("SET hnsw.ef_search = 40", f"SET hnsw.iterative_scan = {mode}")
            for sel in sels:
                sql = (
                    f"SELECT id FROM {table} WHERE {sel.sql} ORDER BY embedding {op} %s "
                    f"LIMIT {K} /* {mode} */"
                )
                params = [sel.params(i) for i in range(len(ds.queries))]
                spec = FilteredPgSpec(dsn, sql, ds.queries, setup, params=params)
                for clients, res in measure(spec, args, [postmaster] if postmaster else []).items():
                    log(f"{ds.name}: pgvector {mode} {sel.name} {clients} client(s)")
                    rep.add(
                        dataset=ds.name,
                        system=f"pgvector {mode}",
                        selectivity=sel.name,
                        setting="ef_search=40",
                        clients=clients,
                        **row_of(res, gts[sel.name]),
                    )
        cur.execute(f"DROP TABLE {table}")


def bench_hnswlib(ds: Dataset, sels: list[Selectivity], gts: dict, args, rep) -> None:
    import hnswlib

    space = "l2" if ds.metric == "l2" else "cosine"
    index = hnswlib.Index(space=space, dim=ds.dim)
    index.init_index(max_elements=len(ds.base), M=16, ef_construction=100, random_seed=100)
    index.add_items(ds.base, np.arange(len(ds.base)), num_threads=args.threads)
    index.set_ef(64)
    for sel in sels:
        results, lat = [], []
        meter = CpuMeter([])
        started = meter.start()
        for i, q in enumerate(ds.queries):
            allowed = sel.mask(i)
            t = time.perf_counter()
            try:
                labels, _ = index.knn_query(q, k=K, filter=lambda label, a=allowed: bool(a[label]))
                found = labels[0].tolist()
            except RuntimeError:  # fewer than k reachable matches
                found = []
            lat.append(time.perf_counter() - t)
            results.append(found)
        cpu = meter.stop(started)
        rep.add(
            dataset=ds.name,
            system="hnswlib filter callback",
            selectivity=sel.name,
            setting="ef=64",
            clients=1,
            recall10=round(recall_at(results, gts[sel.name]), 4),
            mean_rows=round(float(np.mean([len(r) for r in results])), 2),
            **lat_stats(lat),
            other_cpu=cpu.get("other_cpu"),
            plan="",
        )


# ------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="wordnet-minilm,synth-100k")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-pgvector", action="store_true")
    ap.add_argument("--skip-hnswlib", action="store_true")
    ap.add_argument("--skip-service", action="store_true")
    ap.add_argument("--pg-dsn")
    ap.add_argument("--service-url")
    ap.add_argument("--service-db", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--ready-timeout", type=float, default=1800.0)
    ap.add_argument("--shared")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "bench_filtered.jsonl")
    return ap.parse_args(argv)


COLUMNS = [
    ("selectivity", "selectivity"),
    ("system", "system"),
    ("clients", "clients"),
    ("recall10", "recall@10"),
    ("mean_rows", "rows"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("qps", "QPS"),
    ("plan", "plan"),
    ("filter", "candidates from"),
    ("other_cpu", "other_cpu"),
]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shared = shared_dir(args.shared)
    rep = JsonlWriter(args.out)
    dsn = None if args.skip_pgvector else (args.pg_dsn or setup_pgvector())
    for name in args.datasets.split(","):
        ds = load_dataset(find_dataset(name, shared, args.cache_dir), args.queries)
        sels = selectivities(ds)
        gts = {sel.name: ground_truth(ds, sel) for sel in sels}
        if not args.skip_hnswlib:
            bench_hnswlib(ds, sels, gts, args, rep)
        if dsn:
            bench_pgvector(ds, sels, gts, args, rep, dsn)
        if not args.skip_service:
            bench_service(ds, sels, gts, args, rep)
        rows = sorted(
            (r for r in rep.rows if r.get("dataset") == ds.name),
            key=lambda r: ([s.name for s in sels].index(r["selectivity"]), r["system"]),
        )
        print(f"\n## {ds.name}\n\n{markdown_table(rows, COLUMNS)}\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
