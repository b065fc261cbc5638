"""Resumable queries over HTTP, pages of 10: quality, per-page cost by depth, state size.

For each dataset (synth-100k, wordnet-minilm) and a sample of queries, one run measures:

- page-1 recall@10 and cumulative recall after 1,000 and 10,000 results (exact numpy truth);
- server-side latency (`Server-Timing`) of pages 1, 10, 100 and 1000, warm (the worker's
  live engine) and cold (a second server started with `WAYPOINT_SESSION_CACHE=0`, so every
  page is resumed from the PostgreSQL row);
- k = 10 at one client, medians and p99 over every request of the walks above: a plain
  `points/query` (the baseline, measured in the same run), a start, a warm next page, a
  cold next page;
- k = 10 at eight clients (``--load-seconds`` each): plain queries per second against
  next pages per second, warm and cold, each client paging its own sessions;
- the session row's bytes (`state` + `emitted_seqs` + `recent_seqs`) at pages 10, 100
  and 1000;
- the same depths by re-query pagination (`points/query` with `offset`, k = returned + 10)
  and by pgvector `OFFSET` pagination (iterative scan relaxed_order, ef_search 40);
- with filters at 50 %, 10 % and 1 %: a full enumeration in pages of 1000 — complete,
  duplicate-free — with the engine mode the session row records.

    python scripts/bench_resumable.py                      # both datasets
    python scripts/bench_resumable.py --datasets synth-100k --queries 10 --skip-pgvector
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    Dataset,
    JsonlWriter,
    find_dataset,
    load_dataset,
    markdown_table,
    scratch_database,
    serving,
    shared_dir,
)
from bench_search import REPO, log, setup_pgvector, wait_green

PAGE = 10
DEPTHS = (1, 10, 100, 1000)
SELECTIVITY = {"50%": ("c10", [0, 1, 2, 3, 4]), "10%": ("c10", [3]), "1%": ("c100", [7])}
READY = {"ready_path": "/readyz", "timeout": 600.0}  # a service is used once it has loaded


def exact_order(ds: Dataset, q: np.ndarray, limit: int) -> np.ndarray:
    base = ds.base
    if ds.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        keys = -(base @ (q / np.linalg.norm(q)))
    else:
        keys = np.einsum("ij,ij->i", base, base) - 2 * (base @ q)
    return np.argsort(keys, kind="stable")[:limit]


def upload(http, coll: str, ds: Dataset) -> None:
    import msgspec

    c10 = np.load(ds.path / "base_c10.npy").astype(int)
    c100 = np.load(ds.path / "base_c100.npy").astype(int)
    distance = "Euclid" if ds.metric == "l2" else "Cosine"
    http.put(f"/collections/{coll}", json={"vectors": {"size": ds.dim, "distance": distance}})
    for field_name in ("c10", "c100"):
        http.put(
            f"/collections/{coll}/index", json={"field_name": field_name, "field_schema": "integer"}
        )
    for lo in range(0, len(ds.base), 1000):
        hi = min(lo + 1000, len(ds.base))
        body = {
            "batch": {
                "ids": list(range(lo, hi)),
                "vectors": ds.base[lo:hi].tolist(),
                "payloads": [{"c10": int(c10[i]), "c100": int(c100[i])} for i in range(lo, hi)],
            }
        }
        http.put(
            f"/collections/{coll}/points?wait=true",
            content=msgspec.json.encode(body),
            headers={"Content-Type": "application/json"},
        ).raise_for_status()
    wait_green(http, coll, 1800)


def timed(response) -> float:
    """Server-side milliseconds from the Server-Timing header."""
    header = response.headers.get("server-timing", "")
    match = re.search(r"dur=([0-9.]+)", header)
    return float(match.group(1)) if match else float("nan")


def walk(http, coll: str, q: np.ndarray, pages: int, sql=None):
    """Start a session and read `pages` pages of 10: ids and server ms per page, and (with
    `sql`) the row's bytes after each page of `DEPTHS`."""
    body = {"query": q.tolist(), "limit": PAGE, "with_payload": False}
    r = http.post(f"/collections/{coll}/points/query/resumable", json=body)
    r.raise_for_status()
    handle = r.json()["result"]["id"]
    ids = [[p["id"] for p in r.json()["result"]["points"]]]
    ms = [timed(r)]
    sizes = {}
    for page in range(2, pages + 1):
        r = http.post(
            f"/collections/{coll}/points/query/resumable/{handle}/next", json={"limit": PAGE}
        )
        r.raise_for_status()
        ids.append([p["id"] for p in r.json()["result"]["points"]])
        ms.append(timed(r))
        if sql is not None and page in DEPTHS:
            sizes[page] = state_bytes(sql, handle)
    return handle, ids, ms, sizes


def state_bytes(conn, handle: str) -> dict:
    """The session row's bytes: engine state, returned seqs (folded and recent), mode."""
    row = conn.execute(
        "SELECT length(state), length(emitted_seqs), length(recent_seqs), mode"
        " FROM resumable_queries WHERE id = %s",
        (handle,),
    ).fetchone()
    state, seqs, recent, mode = int(row[0]), int(row[1]), int(row[2]), row[3]
    return {
        "state": state,
        "seqs": seqs,
        "recent": recent,
        "total": state + seqs + recent,
        "mode": mode,
    }


def plain_ms(http, coll: str, sample: np.ndarray, repeats: int = 3) -> list[float]:
    """Server ms of plain `points/query` calls, limit 10: the baseline."""
    ms = []
    for q in sample:
        body = {"query": q.tolist(), "limit": PAGE, "with_payload": False}
        for _ in range(repeats):
            ms.append(timed(http.post(f"/collections/{coll}/points/query", json=body)))
    return ms


def under_load(url: str, coll: str, sample: np.ndarray, kind: str, clients: int, seconds: float):
    """`clients` concurrent clients for `seconds`: plain queries, or next pages of their own
    sessions (a new session, not timed, every 100 pages). Requests per second, and the
    client-side and server-side ms of each request."""
    import asyncio

    import httpx

    async def client(i: int, deadline: float, out: list) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            turn, handle, pages = i, None, 0
            while time.perf_counter() < deadline:
                q = sample[turn % len(sample)].tolist()
                body = {"query": q, "limit": PAGE, "with_payload": False}
                if kind == "plain":
                    turn += clients
                    path = f"/collections/{coll}/points/query"
                else:
                    if handle is None or pages == 100:
                        turn += clients
                        if handle is not None:
                            await http.delete(
                                f"/collections/{coll}/points/query/resumable/{handle}"
                            )
                        r = await http.post(
                            f"/collections/{coll}/points/query/resumable", json=body
                        )
                        handle, pages = r.json()["result"]["id"], 0
                    path, body = (
                        f"/collections/{coll}/points/query/resumable/{handle}/next",
                        {"limit": PAGE},
                    )
                    pages += 1
                started = time.perf_counter()
                r = await http.post(path, json=body)
                r.raise_for_status()
                out.append(((time.perf_counter() - started) * 1000, timed(r)))
            if handle is not None:
                await http.delete(f"/collections/{coll}/points/query/resumable/{handle}")

    async def run() -> tuple[list, float]:
        out: list = []
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(client(i, deadline, out) for i in range(clients)))
        return out, time.perf_counter() - began

    out, took = asyncio.run(run())
    client_ms = [c for c, _ in out]
    server_ms = [s for _, s in out]
    return {
        "rps": round(len(out) / took, 1),
        "client_p50": round(float(np.median(client_ms)), 3),
        "client_p99": round(float(np.percentile(client_ms, 99)), 3),
        "server_p50": round(float(np.median(server_ms)), 3),
        "server_p99": round(float(np.percentile(server_ms, 99)), 3),
    }


def spread(ms: list[float]) -> dict:
    return {
        "median": round(float(np.median(ms)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "n": len(ms),
    }


def bench_dataset(ds: Dataset, args, rep: JsonlWriter, pg_dsn: str | None) -> None:
    import httpx
    import psycopg

    coll = "resumable_" + re.sub(r"\W", "_", ds.name)
    out_dir = args.out.parent
    sample = ds.queries[: args.queries]
    with scratch_database(args.service_db) as url:
        with (
            serving(
                url, out_dir / f"resumable-{ds.name}.log", workers=args.workers, **READY
            ) as warm,
            httpx.Client(base_url=warm.url, timeout=600) as http,
            psycopg.connect(url, autocommit=True) as sql,
        ):
            log(f"{ds.name}: uploading")
            upload(http, coll, ds)
            walk(http, coll, ds.queries[-1], 2)  # warm-up: the first session builds caches
            # Before any timing: BLAS threads spin for a while after a product, on the cores
            # the server needs.
            truths = [exact_order(ds, q, 10_000) for q in sample]
            time.sleep(1)
            plain = plain_ms(http, coll, sample)
            starts, nexts = [], []
            for i, (q, truth) in enumerate(zip(sample, truths, strict=True)):
                handle, pages, ms, sizes = walk(http, coll, q, args.pages, sql)
                starts.append(ms[0])
                nexts.extend(ms[1:])
                flat = [x for page in pages for x in page]
                assert len(flat) == len(set(flat)), "duplicate in a session"
                rep.add(
                    dataset=ds.name,
                    system="resumable",
                    query=i,
                    page1_recall=len(set(pages[0]) & set(truth[:10].tolist())) / 10,
                    cum_recall_1000=len(set(flat[:1000]) & set(truth[:1000].tolist())) / 1000,
                    cum_recall_10000=(
                        len(set(flat[:10_000]) & set(truth.tolist())) / 10_000
                        if len(flat) >= 10_000
                        else None
                    ),
                    **{f"warm_ms_p{d}": ms[d - 1] for d in DEPTHS if d <= len(ms)},
                    **{f"row_bytes_p{d}": size["total"] for d, size in sizes.items()},
                    **{f"state_bytes_p{d}": size["state"] for d, size in sizes.items()},
                    mode=state_bytes(sql, handle)["mode"],
                )
                log(f"{ds.name}: query {i} done")
            plain += plain_ms(http, coll, sample)  # before and after the walks
            rep.add(dataset=ds.name, system="one client", kind="plain query", **spread(plain))
            rep.add(dataset=ds.name, system="one client", kind="start", **spread(starts))
            rep.add(dataset=ds.name, system="one client", kind="warm next", **spread(nexts))
            for clients in (1, 8):
                for kind in ("plain", "next"):
                    load = under_load(warm.url, coll, sample, kind, clients, args.load_seconds)
                    name = "plain query" if kind == "plain" else "warm next"
                    rep.add(dataset=ds.name, system="load", clients=clients, kind=name, **load)
            for depth in DEPTHS:  # re-query pagination: k = returned + 10
                ms = []
                for q in sample:
                    body = {
                        "query": q.tolist(),
                        "limit": PAGE,
                        "offset": (depth - 1) * PAGE,
                        "with_payload": False,
                        "params": {"hnsw_ef": max(64, depth * PAGE)},
                    }
                    ms.append(timed(http.post(f"/collections/{coll}/points/query", json=body)))
                rep.add(
                    dataset=ds.name,
                    system="re-query",
                    depth=depth,
                    server_ms=round(float(np.median(ms)), 3),
                )
            with (
                serving(
                    url,
                    out_dir / f"resumable-cold-{ds.name}.log",
                    workers=args.workers,
                    env={"WAYPOINT_SESSION_CACHE": "0"},
                    **READY,
                ) as cold,
                httpx.Client(base_url=cold.url, timeout=600) as cold_http,
            ):
                cold_nexts = []
                walk(cold_http, coll, ds.queries[-1], 2)
                for i, q in enumerate(sample):
                    _, _, ms, _ = walk(cold_http, coll, q, args.pages)
                    cold_nexts.extend(ms[1:])
                    rep.add(
                        dataset=ds.name,
                        system="resumable cold",
                        query=i,
                        **{f"cold_ms_p{d}": ms[d - 1] for d in DEPTHS if d <= len(ms)},
                    )
                rep.add(
                    dataset=ds.name, system="one client", kind="cold next", **spread(cold_nexts)
                )
                for clients in (1, 8):
                    load = under_load(cold.url, coll, sample, "next", clients, args.load_seconds)
                    rep.add(
                        dataset=ds.name, system="load", clients=clients, kind="cold next", **load
                    )
            for name, (key, values) in SELECTIVITY.items():
                enumerate_filtered(http, sql, ds, coll, name, key, values, args, rep)
        if pg_dsn:
            bench_pg_offset(ds, pg_dsn, args, rep)


def enumerate_filtered(http, sql, ds, coll, name, key, values, args, rep) -> None:
    column = np.load(ds.path / f"base_{key}.npy").astype(int)
    expected = set(np.flatnonzero(np.isin(column, values)).tolist())
    flt = {"must": [{"key": key, "match": {"any": values}}]}
    for i, q in enumerate(ds.queries[: args.filtered_queries]):
        started = time.perf_counter()
        body = {"query": q.tolist(), "limit": 1000, "filter": flt, "with_payload": False}
        r = http.post(f"/collections/{coll}/points/query/resumable", json=body)
        r.raise_for_status()
        handle = r.json()["result"]["id"]
        mode = state_bytes(sql, handle)["mode"]
        seen = [p["id"] for p in r.json()["result"]["points"]]
        while page := http.post(
            f"/collections/{coll}/points/query/resumable/{handle}/next", json={"limit": 1000}
        ).json()["result"]["points"]:
            seen.extend(p["id"] for p in page)
        rep.add(
            dataset=ds.name,
            system="resumable filtered",
            selectivity=name,
            query=i,
            matching=len(expected),
            returned=len(seen),
            duplicates=len(seen) - len(set(seen)),
            complete=set(seen) == expected,
            mode=mode,
            seconds=round(time.perf_counter() - started, 2),
        )


def bench_pg_offset(ds: Dataset, dsn: str, args, rep) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    table = "bench_resumable_" + re.sub(r"\W", "_", ds.name)
    op, opclass = ("<->", "vector_l2_ops") if ds.metric == "l2" else ("<=>", "vector_cosine_ops")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY, embedding vector({ds.dim}))")
        with conn.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "vector"])
            for i in range(len(ds.base)):
                cp.write_row((i, ds.base[i]))
        conn.execute(
            f"CREATE INDEX ON {table} USING hnsw (embedding {opclass}) "
            "WITH (m = 16, ef_construction = 64)"
        )
        conn.execute("SET hnsw.ef_search = 40")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        for depth in DEPTHS:
            ms = []
            for q in ds.queries[: args.queries]:
                t = time.perf_counter()
                conn.execute(
                    f"SELECT id FROM {table} ORDER BY embedding {op} %s "
                    f"LIMIT {PAGE} OFFSET {(depth - 1) * PAGE}",
                    (q,),
                ).fetchall()
                ms.append((time.perf_counter() - t) * 1000)
            rep.add(
                dataset=ds.name,
                system="pgvector OFFSET relaxed_order",
                depth=depth,
                server_ms=round(float(np.median(ms)), 3),
            )
        conn.execute(f"DROP TABLE {table}")


def summary(rows: list[dict], name: str) -> str:
    mine = [r for r in rows if r.get("dataset") == name]
    walks = [r for r in mine if r["system"] == "resumable"]
    cold = [r for r in mine if r["system"] == "resumable cold"]

    def med(rs: list[dict], key: str) -> float | None:
        values = [r[key] for r in rs if r.get(key) is not None]
        return round(float(np.median(values)), 3) if values else None

    lines = [
        {"metric": "page-1 recall@10", "value": med(walks, "page1_recall")},
        {"metric": "cumulative recall @1,000", "value": med(walks, "cum_recall_1000")},
        {"metric": "cumulative recall @10,000", "value": med(walks, "cum_recall_10000")},
        {"metric": "engine mode", "value": ",".join(sorted({r["mode"] for r in walks}))},
    ]
    for depth in DEPTHS[1:]:
        row, state = med(walks, f"row_bytes_p{depth}"), med(walks, f"state_bytes_p{depth}")
        lines.append(
            {"metric": f"row bytes at page {depth} (engine state)", "value": f"{row} ({state})"}
        )
    one = {r["kind"]: r for r in mine if r["system"] == "one client"}
    base = one.get("plain query", {}).get("median")
    for kind, r in one.items():
        ratio = f", {r['median'] / base:.2f}x plain" if base and kind != "plain query" else ""
        lines.append(
            {
                "metric": f"1 client, {kind}: server ms median / p99",
                "value": f"{r['median']} / {r['p99']}{ratio}",
            }
        )
    loads = [r for r in mine if r["system"] == "load"]
    for clients in sorted({r["clients"] for r in loads}):
        at = {r["kind"]: r for r in loads if r["clients"] == clients}
        plain = at.get("plain query", {}).get("rps")
        for kind, r in at.items():
            share = f", {r['rps'] / plain:.0%} of plain" if plain and kind != "plain query" else ""
            lines.append(
                {
                    "metric": f"{clients} clients, {kind}: per s (client ms p50 / p99)",
                    "value": f"{r['rps']}{share} ({r['client_p50']} / {r['client_p99']})",
                }
            )
    for depth in DEPTHS:
        lines.append(
            {
                "metric": f"page {depth} warm / cold ms (server)",
                "value": f"{med(walks, f'warm_ms_p{depth}')} / {med(cold, f'cold_ms_p{depth}')}",
            }
        )
    for r in mine:
        if r["system"] in ("re-query", "pgvector OFFSET relaxed_order"):
            lines.append({"metric": f"{r['system']} page {r['depth']} ms", "value": r["server_ms"]})
    filtered = [r for r in mine if r["system"] == "resumable filtered"]
    for sel in SELECTIVITY:
        rs = [r for r in filtered if r["selectivity"] == sel]
        if rs:
            lines.append(
                {
                    "metric": f"filter {sel}: complete, duplicates, mode",
                    "value": f"{all(r['complete'] for r in rs)}, "
                    f"{sum(r['duplicates'] for r in rs)}, "
                    f"{','.join(sorted({r['mode'] for r in rs}))}",
                }
            )
    return markdown_table(lines, [("metric", "metric"), ("value", name)])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="synth-100k,wordnet-minilm")
    ap.add_argument("--queries", type=int, default=10, help="sessions walked per dataset")
    ap.add_argument("--pages", type=int, default=1000, help="pages of 10 per session")
    ap.add_argument("--filtered-queries", type=int, default=2)
    ap.add_argument("--load-seconds", type=float, default=10.0, help="per load measurement")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--skip-pgvector", action="store_true")
    ap.add_argument("--pg-dsn")
    ap.add_argument("--service-db", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--shared")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "bench_resumable.jsonl")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shared = shared_dir(args.shared)
    rep = JsonlWriter(args.out)
    dsn = None if args.skip_pgvector else (args.pg_dsn or setup_pgvector())
    for name in args.datasets.split(","):
        ds = load_dataset(find_dataset(name, shared, args.cache_dir), args.queries)
        bench_dataset(ds, args, rep, dsn)
        print(f"\n## {ds.name}\n\n{summary(rep.rows, ds.name)}\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
