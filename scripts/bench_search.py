#!/usr/bin/env python3
"""Unfiltered top-10 search: raw hnswlib vs pgvector 0.8 vs the Waypoint service, one run.

For every dataset (default: ``wordnet-minilm`` from ``../shared/data`` and ``synth-100k``,
generated on first use into ``bench-out/data`` by ``../shared/bench/make_datasets.py``) it
measures recall@10 against exact ground truth, p50/p99 latency and QPS of

1. raw in-process hnswlib (M=16, ef_construction=100, 1 thread, sequential), ef sweep;
2. PostgreSQL 15 + pgvector 0.8 HNSW (m=16, ef_construction=64), ``hnsw.ef_search`` sweep,
   with 1 and 8 concurrent clients (a scratch cluster from ``scripts/setup_pgvector.sh``);
3. the Waypoint service over HTTP (Qdrant REST ``POST /collections/{c}/points/query`` with
   ``params.hnsw_ef``), 1 and 8 concurrent clients; started from this checkout on a fresh
   database unless ``--service-url`` points at a running one.

Clients are separate processes (spawned), each with one persistent connection (psycopg, or
a lean HTTP/1.1 keep-alive client with pre-built requests) sending its queries sequentially;
every client sends all ``--queries`` queries (starting at a different offset) after
``--warmup`` unmeasured ones. Latency is measured per request in the client; QPS = measured
requests / wall time of the measured window. Each row records ``other_cpu``, the share of the
machine used by foreign processes while it was measured (compare rows only when it is small).

Output: Markdown tables on stdout (per dataset, then "at matched recall": per system the
cheapest setting with recall@10 >= 0.95, or >= 0.90 on synth-* when nothing reaches 0.95),
progress and raw rows on stderr, raw rows as JSON lines in ``--out``.

Examples (from the repository root, with the project venv):
  .venv/bin/python scripts/bench_search.py
  .venv/bin/python scripts/bench_search.py --quick --datasets synth-100k --skip-service
  .venv/bin/python scripts/bench_search.py --service-url http://127.0.0.1:8000 --skip-pgvector
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    NCPU,
    REPO,
    CpuMeter,
    Dataset,
    JsonlWriter,
    LoadResult,
    PgQuerySpec,
    QdrantQuerySpec,
    find_dataset,
    lat_stats,
    load_dataset,
    machine_info,
    markdown_table,
    parent_pid,
    pids_listening_on,
    recall_at,
    run_clients,
    scratch_database,
    serving,
    shared_dir,
)

K = 10
T = TypeVar("T")
SYSTEMS = ("hnswlib", "pgvector", "service")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def ints(text: str) -> list[int]:
    """Parse "16,32,64" into [16, 32, 64]."""
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--datasets",
        default="wordnet-minilm,synth-100k",
        help="comma separated dataset names (shared/data/<name>, or synth-<N>)",
    )
    ap.add_argument("--queries", type=int, default=1000, help="queries per client")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short run: 200 queries, 20 warm-up queries (overrides both)",
    )
    ap.add_argument("--warmup", type=int, default=50, help="unmeasured queries per client")
    ap.add_argument("--clients", type=ints, default=[1, 8], help="concurrent clients to measure")
    ap.add_argument("--threads", type=int, default=NCPU, help="index build threads")
    ap.add_argument(
        "--min-window",
        type=float,
        default=1.0,
        help="hnswlib: repeat the query set (up to 50 passes) until a measurement "
        "lasts this many seconds",
    )
    ap.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.1,
        help="re-measure a point when foreign processes used more than this share "
        "of the machine during it",
    )
    ap.add_argument("--retries", type=int, default=2, help="re-measurements per point")
    ap.add_argument("--retry-pause", type=float, default=5.0, help="seconds before a retry")
    ap.add_argument("--skip-hnswlib", action="store_true")
    ap.add_argument("--skip-pgvector", action="store_true")
    ap.add_argument("--skip-service", action="store_true")
    g = ap.add_argument_group("hnswlib")
    g.add_argument("--hnsw-m", type=int, default=16)
    g.add_argument("--hnsw-efc", type=int, default=100)
    g.add_argument(
        "--hnsw-ef",
        type=ints,
        default=[16, 20, 24, 28, 32, 48, 64, 96, 128, 256],
        help="fine steps where the systems cross recall 0.95 (a coarse grid "
        "overstates the cheapest setting that reaches it)",
    )
    g = ap.add_argument_group("pgvector")
    g.add_argument(
        "--pg-dsn",
        help="use this database (needs the vector extension) instead of "
        "running scripts/setup_pgvector.sh",
    )
    g.add_argument("--pg-m", type=int, default=16)
    g.add_argument("--pg-efc", type=int, default=64)
    g.add_argument(
        "--pg-ef",
        type=ints,
        default=[16, 20, 25, 30, 40, 60, 80, 100, 200, 400],
        help="hnsw.ef_search",
    )
    g.add_argument(
        "--pg-reuse",
        action="store_true",
        help="keep the table + index after the run and reuse a matching one",
    )
    g = ap.add_argument_group("service")
    g.add_argument("--service-url", help="benchmark this running service instead of starting one")
    g.add_argument("--service-ef", type=ints, help="params.hnsw_ef sweep (default: --hnsw-ef)")
    g.add_argument(
        "--service-db",
        default="postgresql://postgres@127.0.0.1:5432",
        help="server on which a fresh waypoint_bench_<hex> database is created",
    )
    g.add_argument(
        "--service-reuse",
        action="store_true",
        help="with --service-url: keep an existing green collection of the right size",
    )
    g.add_argument("--upload-batch", type=int, default=1000, help="points per upsert request")
    g.add_argument("--service-workers", type=int, default=1, help="python -m app serve --workers")
    g.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service (repeatable)",
    )
    g.add_argument(
        "--ready-timeout",
        type=float,
        default=1800.0,
        help="seconds to wait for the service to start and for the collection to turn green",
    )
    g = ap.add_argument_group("files")
    g.add_argument("--shared", help="shared folder (default: ../shared beside the repository)")
    g.add_argument(
        "--cache-dir",
        type=Path,
        default=REPO / "bench-out" / "data",
        help="where generated datasets are kept",
    )
    g.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench-out" / "bench_search.jsonl",
        help="raw rows as JSON lines",
    )
    g.add_argument("--append", action="store_true", help="append to --out instead of replacing")
    g.add_argument("--recall-target", type=float, default=0.95)
    g.add_argument(
        "--synth-recall-target",
        type=float,
        default=0.90,
        help="fallback target on synth-* datasets when nothing reaches --recall-target",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.queries, args.warmup = 200, 20
    args.service_ef = args.service_ef or args.hnsw_ef
    return args


# ----------------------------------------------------------------------------------------------
# Result rows
# ----------------------------------------------------------------------------------------------
def search_row(
    rep: JsonlWriter,
    ds: Dataset,
    system: str,
    config: str,
    param_name: str,
    param: int,
    clients: int,
    recall: float,
    stats: dict,
    cpu: dict,
    requests: int,
    **extra: Any,
) -> dict:
    """Record one measured point of a sweep."""
    return rep.add(
        dataset=ds.name,
        system=system,
        phase="search",
        config=config,
        setting=f"{param_name}={param}",
        param=param,
        clients=clients,
        requests=requests,
        recall10=round(recall, 4),
        **stats,
        wall_s=cpu["wall_s"],
        **cpu_per_query(cpu, requests, in_process=system == "hnswlib"),
        **extra,
    )


def cpu_per_query(cpu: dict, requests: int, in_process: bool = False) -> dict:
    """Client and server CPU ms per request and the foreign load, from ``CpuMeter.stop()``.

    In process (raw hnswlib) all CPU is the client's: the server share is None.
    """

    def ms(seconds: float) -> float:
        return round(seconds * 1000 / requests, 3)

    return dict(
        client_cpu_ms_per_q=ms(cpu["client_cpu_s"]),
        server_cpu_ms_per_q=None if in_process else ms(cpu["server_cpu_s"]),
        other_cpu=cpu["other_cpu"],
    )


def least_noisy(
    measure: Callable[[], T], other_cpu: Callable[[T], float | None], args: argparse.Namespace
) -> tuple[T, int]:
    """Run ``measure`` until its foreign CPU load is <= --max-other-cpu (at most --retries
    repeats, --retry-pause s apart); return the least disturbed result and the attempt count."""
    best: T | None = None
    best_other = float("inf")
    attempt = 0
    for attempt in range(1, args.retries + 2):
        result = measure()
        other = other_cpu(result) or 0.0
        if other < best_other:
            best, best_other = result, other
        if other <= args.max_other_cpu or attempt > args.retries:
            break
        log(
            f"  other_cpu {other:.2f} > {args.max_other_cpu}: measuring again "
            f"({attempt}/{args.retries}) in {args.retry_pause:.0f} s"
        )
        time.sleep(args.retry_pause)
    assert best is not None
    return best, attempt


def load_row(res: LoadResult, gt: np.ndarray) -> tuple[float, dict, dict, int]:
    """recall, latency stats, cpu and request count of a load-generator run."""
    return res.recall(gt, K), res.stats(), res.cpu, res.requests


# ----------------------------------------------------------------------------------------------
# 1. hnswlib
# ----------------------------------------------------------------------------------------------
def bench_hnswlib(ds: Dataset, args: argparse.Namespace, rep: JsonlWriter) -> None:
    """Build an hnswlib index in-process and sweep ef with sequential single-thread queries."""
    import hnswlib

    n, d = ds.base.shape
    space = "l2" if ds.metric == "l2" else "cosine"
    config = f"M={args.hnsw_m},efc={args.hnsw_efc}"
    meter = CpuMeter()
    index = hnswlib.Index(space=space, dim=d)
    index.init_index(max_elements=n, M=args.hnsw_m, ef_construction=args.hnsw_efc, random_seed=100)
    index.set_num_threads(args.threads)
    log(f"{ds.name}: hnswlib build ({config}, {args.threads} threads)")
    s = meter.start()
    index.add_items(ds.base, np.arange(n))
    cpu = meter.stop(s)
    with tempfile.TemporaryDirectory() as tmp:
        index.save_index(f"{tmp}/index.bin")
        size = Path(f"{tmp}/index.bin").stat().st_size
    rep.add(
        dataset=ds.name,
        system="hnswlib",
        phase="build",
        config=config,
        threads=args.threads,
        index_mib=round(size / 2**20, 1),
        **cpu,
    )
    queries = ds.queries

    def measure() -> tuple[list[np.ndarray], list[np.ndarray], dict]:
        # one pass can take only ~20 ms: repeat it until the window is long enough to measure
        lat: list[np.ndarray] = []
        res: list[np.ndarray] = []
        clock = time.perf_counter
        s = meter.start()
        while True:
            pass_lat = np.empty(len(queries))
            for i, q in enumerate(queries):
                t0 = clock()
                labels, _ = index.knn_query(q, k=K, num_threads=1)
                pass_lat[i] = clock() - t0
                if not lat:
                    res.append(labels[0])
            lat.append(pass_lat)
            if clock() - s.t >= args.min_window or len(lat) >= 50:
                return lat, res, meter.stop(s)

    for ef in args.hnsw_ef:
        index.set_ef(max(ef, K))
        for q in queries[: args.warmup]:
            index.knn_query(q, k=K, num_threads=1)
        (lat, res, cpu), attempts = least_noisy(measure, lambda m: m[2]["other_cpu"], args)
        search_row(
            rep,
            ds,
            "hnswlib",
            config,
            "ef",
            ef,
            1,
            recall_at(res, ds.gt, K),
            lat_stats(np.concatenate(lat), cpu["wall_s"]),
            cpu,
            len(lat) * len(queries),
            passes=len(lat),
            attempts=attempts,
        )


# ----------------------------------------------------------------------------------------------
# 2. pgvector
# ----------------------------------------------------------------------------------------------
def setup_pgvector() -> str:
    """Run scripts/setup_pgvector.sh (idempotent) and return the DSN it prints."""
    script = Path(__file__).resolve().parent / "setup_pgvector.sh"
    log(f"running {script}")
    out = subprocess.run(
        ["bash", str(script), "start"], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    return out.strip().splitlines()[-1]


def pg_table(ds: Dataset) -> str:
    """The pgvector table of a dataset (kept between runs by ``--pg-reuse``)."""
    return "bench_search_" + re.sub(r"\W", "_", ds.name)


def pg_query_spec(ds: Dataset, dsn: str, ef: int) -> PgQuerySpec:
    """Top-K by the dataset's metric at ``hnsw.ef_search = ef``."""
    op = pg_operator(ds)
    # own SQL text per setting: psycopg's prepared plans are not re-planned (§5)
    sql = f"SELECT id FROM {pg_table(ds)} ORDER BY embedding {op} %s LIMIT {K} /* ef_search={ef} */"
    return PgQuerySpec(dsn, sql, ds.queries, (f"SET hnsw.ef_search = {ef}",))


def pg_operator(ds: Dataset) -> str:
    """pgvector's distance operator for the dataset's metric (L2 or cosine)."""
    return "<->" if ds.metric == "l2" else "<=>"


def service_query_spec(ds: Dataset, url: str, ef: int) -> QdrantQuerySpec:
    """Top-K ``points/query`` on the dataset's collection at ``params.hnsw_ef = ef``."""
    return QdrantQuerySpec(url, service_collection(ds), ds.queries, K, {"hnsw_ef": ef})


def service_collection(ds: Dataset) -> str:
    return "bench_" + re.sub(r"\W", "_", ds.name)


def bench_pgvector(ds: Dataset, args: argparse.Namespace, rep: JsonlWriter, dsn: str) -> None:
    """Load the dataset with COPY, build the HNSW index and sweep hnsw.ef_search."""
    import psycopg
    import psycopg.sql
    from pgvector.psycopg import register_vector

    n, d = ds.base.shape
    opclass = "vector_l2_ops" if ds.metric == "l2" else "vector_cosine_ops"
    table = pg_table(ds)
    config = f"m={args.pg_m},efc={args.pg_efc}"
    sha = ds.meta.get("files", {}).get("base.npy", {}).get("sha256", "")[:16]
    fingerprint = f"{ds.name} n={n} d={d} base={sha} {config} {opclass}"

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        cur = conn.cursor()
        version = cur.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()[0]
        postmaster = parent_pid(cur.execute("SELECT pg_backend_pid()").fetchone()[0])
        meter = CpuMeter([postmaster] if postmaster else [])
        comment = cur.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)
        ).fetchone()[0]
        if args.pg_reuse and comment == fingerprint:
            log(f"{ds.name}: reusing pgvector table {table} ({fingerprint})")
            rep.add(
                dataset=ds.name,
                system="pgvector",
                phase="build",
                config=config,
                version=version,
                reused=True,
            )
        else:
            pg_load_and_build(ds, args, rep, cur, meter, table, opclass, config, version)
            cur.execute(
                psycopg.sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    psycopg.sql.Identifier(table), psycopg.sql.Literal(fingerprint)
                )
            )

        for ef in args.pg_ef:
            spec = pg_query_spec(ds, dsn, ef)
            cur.execute(spec.setup_sql[0])
            plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + spec.sql, (ds.queries[0],)))
            plan_name = "hnsw" if f"{table}_embedding_idx" in plan else "other"
            for clients in args.clients:
                log(f"{ds.name}: pgvector ef_search={ef}, {clients} client(s)")
                res, attempts = least_noisy(
                    lambda spec=spec, clients=clients: run_clients(
                        spec,
                        len(ds.queries),
                        clients,
                        warmup=args.warmup,
                        server_pids=[postmaster] if postmaster else [],
                    ),
                    lambda r: r.cpu["other_cpu"],
                    args,
                )
                rows = [len(r) for rs in res.results for r in rs]
                search_row(
                    rep,
                    ds,
                    "pgvector",
                    config,
                    "ef_search",
                    ef,
                    clients,
                    *load_row(res, ds.gt),
                    plan=plan_name,
                    mean_rows=round(float(np.mean(rows)), 2),
                    attempts=attempts,
                )
        if not args.pg_reuse:
            cur.execute(f"DROP TABLE {table}")


def pg_load_and_build(
    ds: Dataset,
    args: argparse.Namespace,
    rep: JsonlWriter,
    cur: Any,
    meter: CpuMeter,
    table: str,
    opclass: str,
    config: str,
    version: str,
) -> None:
    """(Re)create the table, COPY the base vectors in (binary) and build the HNSW index."""
    n, d = ds.base.shape
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY, embedding vector({d}) NOT NULL)")
    log(f"{ds.name}: pgvector COPY {n} rows")
    s = meter.start()
    with cur.copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["int4", "vector"])
        for i in range(n):
            cp.write_row((i, ds.base[i]))
    cur.execute(f"VACUUM ANALYZE {table}")
    rep.add(
        dataset=ds.name,
        system="pgvector",
        phase="load",
        version=version,
        rows=n,
        table_mib=round(relation_size(cur, table, total=True) / 2**20, 1),
        **meter.stop(s),
    )
    cur.execute(f"SET max_parallel_maintenance_workers = {max(args.threads - 1, 0)}")
    mwm = cur.execute("SHOW maintenance_work_mem").fetchone()[0]
    log(f"{ds.name}: pgvector CREATE INDEX hnsw ({config}, maintenance_work_mem {mwm})")
    s = meter.start()
    cur.execute(
        f"CREATE INDEX {table}_embedding_idx ON {table} USING hnsw "
        f"(embedding {opclass}) WITH (m = {args.pg_m}, "
        f"ef_construction = {args.pg_efc})"
    )
    cpu = meter.stop(s)
    rep.add(
        dataset=ds.name,
        system="pgvector",
        phase="build",
        config=config,
        version=version,
        threads=args.threads,
        maintenance_work_mem=mwm,
        index_mib=round(relation_size(cur, f"{table}_embedding_idx") / 2**20, 1),
        **cpu,
    )


def relation_size(cur: Any, name: str, total: bool = False) -> int:
    """pg_relation_size / pg_total_relation_size of ``name`` in bytes."""
    fn = "pg_total_relation_size" if total else "pg_relation_size"
    return int(cur.execute(f"SELECT {fn}(%s::regclass)", (name,)).fetchone()[0])


# ----------------------------------------------------------------------------------------------
# 3. The service
# ----------------------------------------------------------------------------------------------
@dataclass
class Service:
    """A running service: base URL and the pids whose CPU counts as the server's."""

    url: str
    server_pids: list[int]


@contextlib.contextmanager
def started_service(args: argparse.Namespace, tag: str) -> Iterator[Service]:
    """Use ``--service-url``, or start ``python -m app serve`` on a fresh database.

    The database ``waypoint_bench_<hex>`` and the data directory are removed afterwards.
    """
    if args.service_url:
        port = url_port(args.service_url)
        yield Service(args.service_url.rstrip("/"), pids_listening_on(port) if port else [])
        return
    import psycopg

    data_dir = Path(tempfile.mkdtemp(prefix="waypoint-bench-"))
    env = {"WAYPOINT_DATA_DIR": str(data_dir)}
    env.update(dict(item.split("=", 1) for item in getattr(args, "service_env", []) or []))
    log_path = args.out.parent / f"service-{tag}.log"
    workers = getattr(args, "service_workers", 1)
    try:
        with scratch_database(args.service_db) as db_url:
            with psycopg.connect(db_url) as conn:
                db_postmaster = parent_pid(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            log(f"starting service: {workers} worker(s) on {db_url} (log {log_path})")
            timeout = min(args.ready_timeout, 120)
            with serving(db_url, log_path, workers=workers, env=env, timeout=timeout) as app:
                pids = [app.process.pid] + ([db_postmaster] if db_postmaster else [])
                yield Service(app.url, pids)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def url_port(url: str) -> int | None:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return u.port or (80 if u.scheme == "http" else None)


def bench_service(ds: Dataset, args: argparse.Namespace, rep: JsonlWriter, svc: Service) -> None:
    """Create a collection, upload the base vectors, wait for green, sweep params.hnsw_ef."""
    import httpx

    coll = service_collection(ds)
    with httpx.Client(base_url=svc.url, timeout=600) as http:
        info = None
        if args.service_reuse:
            info = reusable_collection(http, coll, ds, args.ready_timeout)
        if info is None:
            info = upload_collection(http, coll, ds, args, rep, CpuMeter(svc.server_pids))
        else:
            log(f"{ds.name}: reusing collection {coll} ({info.get('points_count')} points)")
        hnsw = (info.get("config") or {}).get("hnsw_config") or {}
        config = f"m={hnsw.get('m')},efc={hnsw.get('ef_construct')}" if hnsw else "default"
        r = http.post(
            f"/collections/{coll}/points/query",
            json={"query": ds.queries[0].tolist(), "limit": K, "with_payload": False},
        )
        log(f"{ds.name}: first query plan: {r.headers.get('waypoint-plan')}")

    for ef in args.service_ef:
        for clients in args.clients:
            log(f"{ds.name}: service hnsw_ef={ef}, {clients} client(s)")
            spec = service_query_spec(ds, svc.url, ef)
            res, attempts = least_noisy(
                lambda spec=spec, clients=clients: run_clients(
                    spec,
                    len(ds.queries),
                    clients,
                    warmup=args.warmup,
                    server_pids=svc.server_pids,
                    split_port=url_port(svc.url),
                ),
                lambda r: r.cpu["other_cpu"],
                args,
            )
            plans = {k.split(":", 1)[1]: v for k, v in res.info.items() if k.startswith("plan:")}
            search_row(
                rep,
                ds,
                "service",
                config,
                "hnsw_ef",
                ef,
                clients,
                *load_row(res, ds.gt),
                plan=",".join(sorted(plans)),
                conns=res.split,
                attempts=attempts,
            )


def reusable_collection(http: Any, coll: str, ds: Dataset, timeout: float) -> dict | None:
    """Info of an existing collection with all of the dataset's points, once green, else None.

    A service that has just started is still loading its segments and building their
    graphs (yellow): wait for that instead of taking the collection for a stale one.
    """
    deadline = time.monotonic() + timeout
    while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    r = http.get(f"/collections/{coll}")
    if r.status_code != 200:
        return None
    info = r.json().get("result") or {}
    vec = ((info.get("config") or {}).get("params") or {}).get("vectors") or {}
    if info.get("points_count") != len(ds.base) or vec.get("size") not in (None, ds.dim):
        return None
    return info if info.get("status") == "green" else wait_green(http, coll, timeout)


def upload_collection(
    http: Any, coll: str, ds: Dataset, args: argparse.Namespace, rep: JsonlWriter, meter: CpuMeter
) -> dict:
    """(Re)create ``coll``, upsert every base vector, wait until green; return its info."""
    import msgspec

    n, d = ds.base.shape
    distance = "Euclid" if ds.metric == "l2" else "Cosine"
    http.delete(f"/collections/{coll}")  # only matters for --service-url
    r = http.put(f"/collections/{coll}", json={"vectors": {"size": d, "distance": distance}})
    r.raise_for_status()
    log(f"{ds.name}: service upload {n} points in batches of {args.upload_batch}")
    request_s = 0.0
    s = meter.start()
    for lo in range(0, n, args.upload_batch):
        hi = min(lo + args.upload_batch, n)
        body = msgspec.json.encode(
            {"batch": {"ids": list(range(lo, hi)), "vectors": ds.base[lo:hi].tolist()}}
        )
        t0 = time.perf_counter()
        r = http.put(
            f"/collections/{coll}/points",
            params={"wait": "true"},
            content=body,
            headers={"Content-Type": "application/json"},
        )
        request_s += time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"upsert failed: HTTP {r.status_code} {r.text[:300]}")
    cpu = meter.stop(s)
    rep.add(
        dataset=ds.name,
        system="service",
        phase="load",
        rows=n,
        batch=args.upload_batch,
        request_s=round(request_s, 3),
        points_per_s=round(n / cpu["wall_s"], 1),
        **cpu,
    )
    log(f"{ds.name}: waiting for /readyz and collection status green")
    s = meter.start()
    info = wait_green(http, coll, args.ready_timeout)
    hnsw = (info.get("config") or {}).get("hnsw_config") or {}
    rep.add(
        dataset=ds.name,
        system="service",
        phase="build",
        config=f"m={hnsw.get('m')},efc={hnsw.get('ef_construct')}" if hnsw else "default",
        points_count=info.get("points_count"),
        **meter.stop(s),
    )
    return info


def wait_green(http: Any, coll: str, timeout: float) -> dict:
    """Poll /readyz until 200 and the collection until status green; return its info."""
    deadline = time.monotonic() + timeout
    ready = False
    while time.monotonic() < deadline:
        if not ready:
            ready = http.get("/readyz").status_code == 200
        if ready:
            r = http.get(f"/collections/{coll}")
            if r.status_code == 200 and (r.json().get("result") or {}).get("status") == "green":
                return r.json()["result"]
        time.sleep(0.5)
    raise RuntimeError(f"collection {coll} not green after {timeout:.0f} s")


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
def dataset_tables(rows: list[dict], name: str) -> str:
    """Markdown tables of one dataset's build and search rows."""
    mine = [r for r in rows if r.get("dataset") == name]
    build = [r for r in mine if r["phase"] in ("load", "build")]
    search = [r for r in mine if r["phase"] == "search"]
    cols_build = [
        ("system", "system"),
        ("phase", "phase"),
        ("config", "config"),
        ("wall_s", "wall s"),
        ("points_per_s", "points/s"),
        ("index_mib", "index MiB"),
        ("table_mib", "table MiB"),
        ("other_cpu", "other_cpu"),
    ]
    cols_search = [
        ("system", "system"),
        ("setting", "setting"),
        ("clients", "clients"),
        ("recall10", "recall@10"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("qps", "QPS"),
        ("server_cpu_ms_per_q", "server CPU ms/q"),
        ("client_cpu_ms_per_q", "client CPU ms/q"),
        ("other_cpu", "other_cpu"),
        ("plan", "plan"),
    ]
    parts = [f"## {name}", ""]
    if build:
        parts += [markdown_table(build, cols_build), ""]
    if search:
        parts += [markdown_table(search, cols_search), ""]
    return "\n".join(parts)


def matched_recall(
    rows: list[dict],
    datasets: Sequence[str],
    clients: Sequence[int],
    target: float,
    synth_target: float,
) -> list[dict]:
    """Per dataset and system: the cheapest setting whose 1-client recall@10 >= target.

    On synth-* datasets a system that never reaches ``target`` is judged at ``synth_target``.
    Adds QPS and p50/p99 for every client count and the service / pgvector QPS ratios.
    """
    out: list[dict] = []
    for name in datasets:
        picked: dict[str, dict] = {}
        for system in SYSTEMS:
            search = [
                r
                for r in rows
                if r.get("dataset") == name
                and r.get("system") == system
                and r.get("phase") == "search"
            ]
            single = sorted((r for r in search if r["clients"] == 1), key=lambda r: r["param"])
            if not single:
                continue
            goal = target
            if name.startswith("synth") and not any(r["recall10"] >= target for r in single):
                goal = synth_target
            hit = next((r for r in single if r["recall10"] >= goal), None)
            row: dict[str, Any] = {"dataset": name, "system": system, "target": goal}
            if hit is None:
                best = max(single, key=lambda r: r["recall10"])
                row.update(setting=f"none (best {best['setting']})", recall10=best["recall10"])
                out.append(row)
                continue
            row.update(setting=hit["setting"], recall10=hit["recall10"], plan=hit.get("plan"))
            for c in clients:
                r = next(
                    (x for x in search if x["param"] == hit["param"] and x["clients"] == c), None
                )
                if r:
                    row[f"qps_{c}"] = r["qps"]
                    row[f"lat_{c}"] = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"
            picked[system] = row
            out.append(row)
        svc, pg = picked.get("service"), picked.get("pgvector")
        if svc and pg:
            for c in clients:
                if svc.get(f"qps_{c}") and pg.get(f"qps_{c}"):
                    svc[f"ratio_{c}"] = f"{svc[f'qps_{c}'] / pg[f'qps_{c}']:.2f}x"
    return out


def summary_table(summary: list[dict], clients: Sequence[int]) -> str:
    """Markdown for ``matched_recall`` rows."""
    cols = [
        ("dataset", "dataset"),
        ("system", "system"),
        ("target", "target R"),
        ("setting", "cheapest setting"),
        ("recall10", "recall@10"),
    ]
    for c in clients:
        cols += [(f"qps_{c}", f"QPS {c}c"), (f"lat_{c}", f"p50/p99 ms {c}c")]
    cols += [(f"ratio_{c}", f"service/pgvector QPS {c}c") for c in clients]
    cols.append(("plan", "plan"))
    return markdown_table(summary, cols)


def overhead_lines(rows: list[dict], datasets: Sequence[str]) -> list[str]:
    """Service p50 minus raw hnswlib p50 at the same (lowest common) ef, 1 client."""
    lines = []
    for name in datasets:

        def p50(system: str, name: str = name) -> dict[int, float]:
            return {
                r["param"]: r["p50_ms"]
                for r in rows
                if r.get("dataset") == name
                and r.get("system") == system
                and r.get("phase") == "search"
                and r.get("clients") == 1
            }

        h, s = p50("hnswlib"), p50("service")
        common = sorted(set(h) & set(s))
        if common:
            ef = common[0]
            lines.append(
                f"- {name}: service p50 - hnswlib p50 at ef={ef}: "
                f"{s[ef] - h[ef]:.3f} ms ({s[ef]:.3f} vs {h[ef]:.3f})"
            )
    return lines


def log(msg: str) -> None:
    """Progress message on stderr."""
    print(f"# [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run every selected system on every dataset and print the tables."""
    args = parse_args(argv)
    shared = shared_dir(args.shared)
    names = [x.strip() for x in args.datasets.split(",") if x.strip()]
    run_id = time.strftime("%Y%m%dT%H%M%S")
    rep = JsonlWriter(args.out, append=args.append, run_id=run_id)
    rep.add(
        phase="env",
        **machine_info(),
        argv=sys.argv[1:],
        queries=args.queries,
        warmup=args.warmup,
        clients=args.clients,
    )
    pg_dsn = args.pg_dsn
    for name in names:
        ds = load_dataset(find_dataset(name, shared, args.cache_dir), args.queries)
        log(f"{ds.name}: base {ds.base.shape}, {len(ds.queries)} queries, metric {ds.metric}")
        if not args.skip_hnswlib:
            bench_hnswlib(ds, args, rep)
        if not args.skip_pgvector:
            pg_dsn = pg_dsn or setup_pgvector()
            bench_pgvector(ds, args, rep, pg_dsn)
        if not args.skip_service:
            with started_service(args, ds.name) as svc:
                bench_service(ds, args, rep, svc)
        print(dataset_tables(rep.rows, ds.name), flush=True)

    summary = matched_recall(
        rep.rows, names, args.clients, args.recall_target, args.synth_recall_target
    )
    print(
        f"## At matched recall (cheapest setting with 1-client recall@10 ≥ "
        f"{args.recall_target}; synth-* ≥ {args.synth_recall_target} if nothing reaches it)\n"
    )
    print(summary_table(summary, args.clients))
    lines = overhead_lines(rep.rows, names)
    if lines:
        print("\nService overhead over raw hnswlib (1 client):\n" + "\n".join(lines))
    noisy = [r for r in rep.rows if (r.get("other_cpu") or 0) > 0.1]
    if noisy:
        print(
            f"\nWARNING: {len(noisy)} rows measured with other_cpu > 0.1 (foreign load); "
            "compare them with care."
        )
    print(f"\nraw rows: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
