"""Recall of recommend queries on the graph path, on 50,000 real text embeddings.

Data: the first 50,000 WordNet passages of ../shared/data/wordnet-minilm (384-d MiniLM,
Cosine). Ground truth is computed here with numpy from the definitions (qdrant-client local
mode's formulas), over exactly those points, with the example ids left out. Every strategy
must keep recall@10 >= 0.95 while the server answers from the hnswlib graph (negative-only
best_score is a farthest-point search, answered by an exact scan: its recall is 1).
"""

from __future__ import annotations

import time

import httpx
import msgspec
import numpy as np
import pytest

from tests.test_recall import DATA, upload, wait_green

N_POINTS = 50_000
CASES = 60
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not present")


def sigm(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # -inf (no positives) is never the chosen branch
        return 0.5 * (x / (1 + np.abs(x)) + 1)


def exact_top10(unit: np.ndarray, strategy: str, pos: list[int], neg: list[int]) -> list[int]:
    """The 10 best ids by the strategy's definition (Cosine: similarities are dot products)."""
    p, n = unit[pos], unit[neg]
    if strategy == "average_vector":
        query = p.mean(0) + p.mean(0) - n.mean(0) if neg else p.mean(0)
        scores = unit @ (query / np.linalg.norm(query))
    else:
        sp, sn = unit @ p.T, unit @ n.T
        if strategy == "sum_scores":
            scores = sp.sum(1) - sn.sum(1)
        else:
            best_pos = sp.max(1) if pos else np.full(len(unit), -np.inf)
            best_neg = sn.max(1) if neg else np.full(len(unit), -np.inf)
            scores = np.where(best_pos > best_neg, sigm(best_pos), -sigm(best_neg))
    scores[pos + neg] = -np.inf
    return np.argsort(-scores, kind="stable")[:10].tolist()


def cases(rng: np.random.Generator) -> list[tuple[str, list[int], list[int]]]:
    """Each strategy with positives and negatives; best_score also negative-only."""
    out = []
    for strategy in ("average_vector", "best_score", "sum_scores"):
        for _ in range(CASES):
            pos = rng.choice(N_POINTS, size=int(rng.integers(1, 4)), replace=False).tolist()
            neg = rng.choice(N_POINTS, size=int(rng.integers(0, 3)), replace=False).tolist()
            out.append((strategy, pos, neg))
    for _ in range(CASES):
        neg = rng.choice(N_POINTS, size=int(rng.integers(1, 3)), replace=False).tolist()
        out.append(("best_score", [], neg))
    return out


def test_recommend_recall_on_the_graph_path(server) -> None:
    base = np.load(DATA / "base.npy")[:N_POINTS].astype(np.float32)
    unit = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float64)
    recalls: dict[str, list[float]] = {}
    timings: dict[str, list[float]] = {}
    with httpx.Client(base_url=server.url, timeout=300) as client:
        started = time.perf_counter()
        upload(client, "reco_big", base)
        uploaded = time.perf_counter()
        wait_green(client, "reco_big")
        queried = time.perf_counter()
        print(f"upload {uploaded - started:.1f} s, index {queried - uploaded:.1f} s")
        for strategy, pos, neg in cases(np.random.default_rng(8)):
            body = {
                "query": {"recommend": {"positive": pos, "negative": neg, "strategy": strategy}}
            }
            response = client.post(
                "/collections/reco_big/points/query",
                content=msgspec.json.encode({**body, "limit": 10}),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
            timings.setdefault(strategy if pos else "negative-only", []).append(
                response.elapsed.total_seconds()
            )
            assert response.headers["waypoint-plan"] == ("hnsw" if pos else "exact")
            got = {p["id"] for p in response.json()["result"]["points"]}
            key = strategy if pos else f"{strategy} (negative-only)"
            recalls.setdefault(key, []).append(
                len(got & set(exact_top10(unit, strategy, pos, neg))) / 10
            )
    print(f"queries {time.perf_counter() - queried:.1f} s; mean ms per query:")
    print({key: round(1000 * float(np.mean(values)), 1) for key, values in timings.items()})
    summary = {key: round(float(np.mean(values)), 4) for key, values in recalls.items()}
    print(f"recommend recall@10 on the graph path: {summary}")
    for key, value in summary.items():
        assert value >= 0.95, f"{key}: recall@10 = {value}"
