#!/usr/bin/env python3
"""Where a resumable page's time goes, stage by stage, against a plain query in the same run.

A served Waypoint (one worker, a scratch database) holds ``--dataset`` (default
wordnet-minilm, 100k x 384, graph mode). For ``--queries`` query vectors it sends a plain
``points/query`` (limit 10), starts a resumable query (page 1 of 10) and reads ``--pages``
more pages of 10, then does the same on a second server with ``WAYPOINT_SESSION_CACHE=0``
(cold: every page rebuilt from the PostgreSQL row). Each answer's ``Server-Timing`` header
carries the total (``app``) and the stages the session service timed (``app.stages``):

- ``read``: the session row (a page this worker did not serve last); ``lock``: the row
  locked (with BEGIN), after a page lost a race;
- ``open``: the engine resumed from the row (cold, or a start's);
- ``engine``: the engine's next k results; ``points``: reading those points;
- ``park``: encoding the engine state and the returned seqs (when the engine ran);
  ``write``: the row's conditional UPDATE (a start: the capped INSERT transaction);
  ``commit``; ``caps``: a start's early cap count.

Printed: the median of each, per kind of request (plain, start, warm next, cold next), and
the share of the total the stages do not account for (HTTP, routing, rendering).

    python scripts/bench_resumable_stages.py --queries 20 --pages 100
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import find_dataset, load_dataset, scratch_database, serving, shared_dir
from bench_resumable import READY, upload
from bench_search import REPO, log

PAGE = 10
STAGES = ("read", "lock", "open", "engine", "points", "park", "write", "commit", "caps")


def timings(response) -> dict[str, float]:
    """Milliseconds by name from the Server-Timing header (`app` is the total)."""
    header = response.headers.get("server-timing", "")
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([0-9.]+)", header)}


def walk(http, coll: str, q: np.ndarray, pages: int) -> tuple[dict, list[dict]]:
    """A session's start and its next pages, each as its timings."""
    body = {"query": q.tolist(), "limit": PAGE, "with_payload": False}
    started = http.post(f"/collections/{coll}/points/query/resumable", json=body)
    started.raise_for_status()
    handle = started.json()["result"]["id"]
    nexts = []
    for _ in range(pages):
        page = http.post(
            f"/collections/{coll}/points/query/resumable/{handle}/next", json={"limit": PAGE}
        )
        page.raise_for_status()
        nexts.append(timings(page))
    http.delete(f"/collections/{coll}/points/query/resumable/{handle}")
    return timings(started), nexts


def table(kinds: dict[str, list[dict]]) -> str:
    """Medians per stage, and the total's mean and p99 (pages that run the engine and
    store its state are fewer than those served from its read-ahead, and dearer)."""
    names = ["app", *STAGES, "other"]
    head = ["app mean", "app p99", *names]
    lines = ["| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for kind, rows in kinds.items():
        for row in rows:
            row["other"] = row["app"] - sum(row.get(s, 0.0) for s in STAGES)
        totals = [r["app"] for r in rows]
        cells = [f"{np.mean(totals):.2f}", f"{np.percentile(totals, 99):.2f}"]
        cells += [f"{np.median([r.get(n, 0.0) for r in rows]):.2f}" for n in names]
        lines.append(f"| {kind} (ms, median of {len(rows)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="wordnet-minilm")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--service-db", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")
    args = ap.parse_args()
    import httpx

    ds = load_dataset(find_dataset(args.dataset, shared_dir(None), args.cache_dir), args.queries)
    coll = "stages_" + re.sub(r"\W", "_", ds.name)
    out = REPO / "bench-out"
    kinds: dict[str, list[dict]] = {"plain query": [], "start": [], "warm next": []}
    with scratch_database(args.service_db) as url:
        with (
            serving(url, out / "stages-warm.log", **READY) as warm,
            httpx.Client(base_url=warm.url, timeout=600) as http,
        ):
            log(f"{ds.name}: uploading")
            upload(http, coll, ds)
            for q in ds.queries[: args.queries]:
                body = {"query": q.tolist(), "limit": PAGE, "with_payload": False}
                for _ in range(3):
                    kinds["plain query"].append(
                        timings(http.post(f"/collections/{coll}/points/query", json=body))
                    )
                start, nexts = walk(http, coll, q, args.pages)
                kinds["start"].append(start)
                kinds["warm next"].extend(nexts)
        kinds["cold next"] = []
        env = {"WAYPOINT_SESSION_CACHE": "0"}
        with (
            serving(url, out / "stages-cold.log", env=env, **READY) as cold,
            httpx.Client(base_url=cold.url, timeout=600) as http,
        ):
            for q in ds.queries[: args.queries]:
                kinds["cold next"].extend(walk(http, coll, q, args.pages)[1])
    print(table(kinds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
