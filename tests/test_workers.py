"""Several server processes on one database answer as one: every write acknowledged by one
is visible to the next request to any other (read-your-writes across workers)."""

from __future__ import annotations

import httpx
import numpy as np


def put_points(url: str, collection: str, ids: list[int], vectors: np.ndarray) -> None:
    body = {"batch": {"ids": ids, "vectors": vectors.tolist()}}
    response = httpx.put(f"{url}/collections/{collection}/points?wait=true", json=body)
    assert response.status_code == 200, response.text


def nearest(url: str, collection: str, vector: np.ndarray, limit: int = 5) -> list[int]:
    body = {"query": vector.tolist(), "limit": limit}
    response = httpx.post(f"{url}/collections/{collection}/points/query", json=body)
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["result"]["points"]]


def count(url: str, collection: str) -> int:
    response = httpx.post(f"{url}/collections/{collection}/points/count", json={})
    assert response.status_code == 200, response.text
    return response.json()["result"]["count"]


def test_writes_on_one_worker_are_read_on_another(server_factory) -> None:
    # A long poll interval: what the second worker sees must come from the shared signal.
    slow_poll = {"WAYPOINT_SYNC_INTERVAL": "3600"}
    first, second = server_factory(env=slow_poll), server_factory(env=slow_poll)
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)

    created = httpx.put(
        f"{first.url}/collections/shared", json={"vectors": {"size": 8, "distance": "Euclid"}}
    )
    assert created.status_code == 200
    assert httpx.get(f"{second.url}/collections/shared/exists").json()["result"]["exists"]

    for start in range(0, 200, 20):  # alternate writers, read straight after on the other
        writer, reader = (first, second) if start % 40 else (second, first)
        put_points(
            writer.url, "shared", list(range(start, start + 20)), vectors[start : start + 20]
        )
        assert count(reader.url, "shared") == start + 20
        assert nearest(reader.url, "shared", vectors[start + 7], 1) == [start + 7]

    moved = vectors[3] + 100
    put_points(first.url, "shared", [3], moved[None, :])
    assert nearest(second.url, "shared", moved, 1) == [3]

    deleted = httpx.post(
        f"{second.url}/collections/shared/points/delete?wait=true", json={"points": [5]}
    )
    assert deleted.status_code == 200
    assert 5 not in nearest(first.url, "shared", vectors[5], 10)
    assert count(first.url, "shared") == 199

    assert httpx.delete(f"{second.url}/collections/shared").json()["result"] is True
    assert httpx.get(f"{first.url}/collections/shared").status_code == 404


def test_workers_on_other_hosts_catch_up_by_polling(server_factory, database_url: str) -> None:
    """Without the shared signal (another host), the poll brings writes within its interval."""
    import time

    first = server_factory(env={"WAYPOINT_SYNC_INTERVAL": "0.2"})
    remote = server_factory(
        env={"WAYPOINT_SYNC_INTERVAL": "0.2", "WAYPOINT_SIGNAL_DIR": str(first.data_dir / "other")}
    )
    httpx.put(f"{first.url}/collections/far", json={"vectors": {"size": 2, "distance": "Dot"}})
    put_points(first.url, "far", [1, 2], np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    # `count` is answered by PostgreSQL, searches by the remote's memory: wait for what the
    # poll brings (a search), not for what the database already holds (a count).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        known = httpx.get(f"{remote.url}/collections/far").status_code == 200
        if known and nearest(remote.url, "far", np.array([0.0, 1.0]), 1) == [2]:
            break
        time.sleep(0.1)
    assert nearest(remote.url, "far", np.array([0.0, 1.0]), 1) == [2]
    assert count(remote.url, "far") == 2
