"""Recall of the HNSW path on real text embeddings, and the exact path below the threshold.

Data: the first 50,000 WordNet passages of ../shared/data/wordnet-minilm (384-d MiniLM
embeddings); ground truth is computed here by brute force over exactly those points.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wordnet-minilm"
N_POINTS = 50_000
N_QUERIES = 200

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not present")


def upload(client: httpx.Client, name: str, vectors: np.ndarray, batch: int = 2500) -> None:
    client.put(f"/collections/{name}", json={"vectors": {"size": 384, "distance": "Cosine"}})
    for start in range(0, len(vectors), batch):
        body = msgspec.json.encode(
            {
                "batch": {
                    "ids": list(range(start, min(start + batch, len(vectors)))),
                    "vectors": vectors[start : start + batch].tolist(),
                }
            }
        )
        response = client.put(
            f"/collections/{name}/points?wait=true",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text


def wait_green(client: httpx.Client, name: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get(f"/collections/{name}").json()["result"]
        if info["status"] == "green":
            return info
        time.sleep(0.5)
    raise TimeoutError(f"collection {name} never finished indexing")


def query(client: httpx.Client, name: str, vector: np.ndarray, **extra) -> httpx.Response:
    body = msgspec.json.encode({"query": vector.tolist(), "limit": 10, **extra})
    response = client.post(
        f"/collections/{name}/points/query",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response


def exact_top10(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q.astype(np.float64) @ base.T.astype(np.float64)), axis=1)[:, :10]


def test_hnsw_recall_and_exact_below_threshold(server) -> None:
    base = np.load(DATA / "base.npy")[:N_POINTS].astype(np.float32)
    queries = np.load(DATA / "queries.npy")[:N_QUERIES].astype(np.float32)
    truth = exact_top10(base, queries)
    with httpx.Client(base_url=server.url, timeout=300) as client:
        upload(client, "big", base)
        info = wait_green(client, "big")
        assert info["points_count"] == N_POINTS
        assert info["indexed_vectors_count"] == N_POINTS

        recalls = []
        for vector, expected in zip(queries, truth, strict=True):
            response = query(client, "big", vector)
            assert response.headers["waypoint-plan"] == "hnsw"
            ids = [p["id"] for p in response.json()["result"]["points"]]
            recalls.append(len(set(ids) & set(expected.tolist())) / 10)
        assert np.mean(recalls) >= 0.95, f"recall@10 = {np.mean(recalls):.3f}"

        # `exact: true` forces the exact plan on the same large collection.
        response = query(client, "big", queries[0], params={"exact": True})
        assert response.headers["waypoint-plan"] == "exact"
        assert [p["id"] for p in response.json()["result"]["points"]] == truth[0].tolist()

        # Below the threshold every query is an exact scan and equals brute force.
        small = base[:5000]
        upload(client, "small", small)
        small_truth = exact_top10(small, queries[:50])
        for vector, expected in zip(queries[:50], small_truth, strict=True):
            response = query(client, "small", vector)
            assert response.headers["waypoint-plan"] == "exact"
            assert [p["id"] for p in response.json()["result"]["points"]] == expected.tolist()
