"""Payload and vector updates, and `points/batch`, against qdrant-client's local mode.

Every operation is applied to the live server and to `QdrantClient(":memory:")`; after each
step both must hold exactly the same points (ids, payloads, vectors).
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models

COLLECTION = "payload_ops"


@pytest.fixture(scope="module")
def clients(server):
    remote = QdrantClient(url=server.url, prefer_grpc=False, timeout=30)
    local = QdrantClient(":memory:")
    config = {
        "a": models.VectorParams(size=3, distance=models.Distance.DOT),
        "b": models.VectorParams(size=2, distance=models.Distance.EUCLID),
    }
    rng = np.random.default_rng(3)
    points = [
        models.PointStruct(
            id=i,
            vector={"a": rng.normal(size=3).tolist(), "b": rng.normal(size=2).tolist()},
            payload={"n": i, "tags": ["x", "y"], "nested": {"k": i % 3, "deep": {"z": 1}}},
        )
        for i in range(20)
    ]
    for client in (remote, local):
        client.create_collection(COLLECTION, vectors_config=config)
        client.upsert(COLLECTION, points, wait=True)
    return remote, local


def snapshot(client: QdrantClient) -> list[tuple]:
    records, _ = client.scroll(COLLECTION, limit=100, with_payload=True, with_vectors=True)
    return [
        (
            r.id,
            r.payload,
            {k: np.round(v, 5).tolist() for k, v in sorted((r.vector or {}).items())},
        )
        for r in records
    ]


def both(clients, call) -> None:
    remote, local = clients
    call(remote)
    call(local)
    assert snapshot(remote) == snapshot(local)


def test_set_payload_merges_and_sets_at_a_key(clients) -> None:
    both(clients, lambda c: c.set_payload(COLLECTION, {"n": -1, "new": True}, points=[1, 2]))
    both(clients, lambda c: c.set_payload(COLLECTION, {"k": 9, "w": "v"}, points=[3], key="nested"))
    both(clients, lambda c: c.set_payload(COLLECTION, {"q": 1}, points=[4], key="fresh.level"))


def test_overwrite_delete_and_clear_payload(clients) -> None:
    both(clients, lambda c: c.overwrite_payload(COLLECTION, {"only": 1}, points=[5]))
    both(clients, lambda c: c.delete_payload(COLLECTION, ["tags", "nested.deep"], points=[6, 7]))
    both(clients, lambda c: c.clear_payload(COLLECTION, points_selector=[8]))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("payload", {"payload": {"x": 1}, "points": [15, 99]}),
        ("payload/clear", {"points": [99, 15]}),
        ("payload/delete", {"keys": ["n"], "points": [15, 99]}),
    ],
)
def test_a_missing_point_is_404_and_nothing_changes(clients, server, path, body) -> None:
    remote, _ = clients
    before = snapshot(remote)
    response = httpx.post(f"{server.url}/collections/{COLLECTION}/points/{path}", json=body)
    assert response.status_code == 404
    assert "99" in response.json()["status"]["error"]
    assert snapshot(remote) == before


def test_update_and_delete_vectors(clients) -> None:
    update = [models.PointVectors(id=9, vector={"a": [1.0, 2.0, 3.0]})]
    both(clients, lambda c: c.update_vectors(COLLECTION, update))
    both(clients, lambda c: c.delete_vectors(COLLECTION, ["b"], points=[10, 11]))
    remote, _ = clients
    hits = remote.query_points(COLLECTION, query=[0.5, 0.5], using="b", limit=30).points
    assert {10, 11}.isdisjoint(h.id for h in hits)


def test_batch_applies_in_order(clients) -> None:
    operations = [
        models.UpsertOperation(
            upsert=models.PointsList(
                points=[models.PointStruct(id=50, vector={"a": [1, 1, 1]}, payload={"b": 1})]
            )
        ),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"c": 2}, points=[50])),
        models.DeleteOperation(delete=models.PointIdsList(points=[12])),
        models.ClearPayloadOperation(clear_payload=models.PointIdsList(points=[13])),
    ]
    both(clients, lambda c: c.batch_update_points(COLLECTION, operations))


def test_a_bad_operation_in_a_batch_writes_nothing(clients, server) -> None:
    remote, _ = clients
    before = snapshot(remote)
    body = {
        "operations": [
            {"set_payload": {"payload": {"bad": 1}, "points": [14]}},
            {"upsert": {"points": [{"id": 60, "vector": {"a": [1, 2]}}]}},  # wrong dimension
        ]
    }
    response = httpx.post(f"{server.url}/collections/{COLLECTION}/points/batch", json=body)
    assert response.status_code == 400
    assert "dimension" in response.json()["status"]["error"]
    assert snapshot(remote) == before
