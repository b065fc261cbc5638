#!/usr/bin/env python
"""Filtered search inside one segment, without HTTP or PostgreSQL: CPU per query, recall@10
and the plan, for filters passing 50 %, 30 %, 20 %, 10 % and 5 % of the rows.

It isolates what `Segment.search` does with a filter's rows (exact scan, graph search with
the filter applied after, or hnswlib's filtered search), so two commits can be compared on
the same machine minutes apart. Filters are random subsets (independent of the vectors).

    .venv/bin/python scripts/bench_segment_filtered.py [--dataset wordnet-minilm] [--queries 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import load_dataset, recall_at, shared_dir
from bench_filtered import scanned_truth

from app.index.segment import Segment
from app.models import Distance, HnswParams

SHARES = (0.5, 0.3, 0.2, 0.1, 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="wordnet-minilm")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", type=int, default=64, help="hnsw_ef, as bench_filtered.py")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes; the best counts")
    parser.add_argument(
        "--exact-threshold",
        type=int,
        default=None,
        help="points/candidates up to which a search scans (default: the segment's own)",
    )
    args = parser.parse_args()
    ds = load_dataset(shared_dir() / "data" / args.dataset, args.queries)
    distance = Distance.EUCLID if ds.metric == "l2" else Distance.COSINE
    segment = Segment(ds.dim, distance, HnswParams(), exact_threshold=args.exact_threshold)
    segment.upsert(list(range(len(ds.base))), ds.base, list(range(1, len(ds.base) + 1)))
    started = time.perf_counter()
    while segment.needs_indexing:
        segment.index_step()
    print(f"{args.dataset}: graph built in {time.perf_counter() - started:.0f} s,", end=" ")
    print(f"scans up to {segment.exact_threshold} points, {segment.filtered_threshold} candidates")
    print("| filter passes | plan | recall@10 | CPU ms / query |")
    print("|---|---|---|---|")
    for share in SHARES:
        passes = np.random.default_rng(1).random(len(ds.base)) < share
        allowed = np.flatnonzero(passes)
        truth = scanned_truth(ds, lambda _, passes=passes: passes)
        best = float("inf")
        for _ in range(args.rounds):
            cpu = time.thread_time()
            hits = [segment.search(q, 10, ef=args.ef, allowed=allowed) for q in ds.queries]
            best = min(best, (time.thread_time() - cpu) / len(ds.queries) * 1e3)
        recall = recall_at([h.ids for h in hits], truth)
        print(f"| {share:.0%} | {hits[0].plan} | {recall:.4f} | {best:.3f} |")


if __name__ == "__main__":
    main()
