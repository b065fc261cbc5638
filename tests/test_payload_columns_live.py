"""Declared payload fields are answered from memory, and stay right through writes, index
changes, a second worker and a restart.

Every filtered query here is checked against a brute-force answer computed from what the
test itself wrote, and the `waypoint-plan-detail` header tells where the candidates came
from (`filter=memory`: payload columns, `filter=sql`: PostgreSQL).
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

N = 600
SLOW_POLL = {"WAYPOINT_SYNC_INTERVAL": "3600"}  # a second worker learns through the signal


class Model:
    """What the collection holds, as the test wrote it."""

    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        self.vectors = {i: rng.normal(size=8).astype(np.float32) for i in range(N)}
        self.payloads = {
            i: {"color": ["red", "green", "blue"][i % 3], "rank": i % 7} for i in range(N)
        }

    def nearest(self, query: np.ndarray, wanted, limit: int = 10) -> list[int]:
        ids = [i for i in self.vectors if wanted(self.payloads[i])]
        ids.sort(key=lambda i: (float(np.sum((self.vectors[i] - query) ** 2)), i))
        return ids[:limit]


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


@pytest.fixture(scope="module")
def first(server_factory, model: Model):
    server = server_factory(env=SLOW_POLL)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.put("/collections/cols", json={"vectors": {"size": 8, "distance": "Euclid"}})
        body = {
            "batch": {
                "ids": list(model.vectors),
                "vectors": [v.tolist() for v in model.vectors.values()],
                "payloads": list(model.payloads.values()),
            }
        }
        assert client.put("/collections/cols/points?wait=true", json=body).status_code == 200
    return server


def query(url: str, condition: dict, vector: np.ndarray) -> tuple[list[int], str]:
    body = {"query": vector.tolist(), "limit": 10, "filter": condition}
    response = httpx.post(f"{url}/collections/cols/points/query", json=body)
    assert response.status_code == 200, response.text
    detail = response.headers["waypoint-plan-detail"]
    source = dict(part.split("=") for part in detail.split(";"))["filter"]
    return [p["id"] for p in response.json()["result"]["points"]], source


RED = {"must": [{"key": "color", "match": {"value": "red"}}]}
NOT_RED_LOW = {
    "must_not": [{"key": "color", "match": {"value": "red"}}],
    "must": [{"key": "rank", "range": {"lt": 3}}],
}


def is_red(p: dict) -> bool:
    return p.get("color") == "red"


def not_red_low(p: dict) -> bool:
    return p.get("color") != "red" and isinstance(p.get("rank"), int) and p["rank"] < 3


def declare(url: str, field: str, schema: str) -> None:
    body = {"field_name": field, "field_schema": schema}
    response = httpx.put(f"{url}/collections/cols/index?wait=true", json=body)
    assert response.status_code == 200, response.text


def test_declared_fields_are_answered_from_memory(first, model: Model) -> None:
    probe = model.vectors[1] + 0.1
    assert query(first.url, RED, probe) == (model.nearest(probe, is_red), "sql")
    declare(first.url, "color", "keyword")
    assert query(first.url, RED, probe) == (model.nearest(probe, is_red), "memory")
    # a condition on an undeclared field sends the whole filter to PostgreSQL
    assert query(first.url, NOT_RED_LOW, probe) == (model.nearest(probe, not_red_low), "sql")
    declare(first.url, "rank", "integer")
    assert query(first.url, NOT_RED_LOW, probe) == (model.nearest(probe, not_red_low), "memory")


def test_writes_are_seen_by_the_next_query(first, model: Model) -> None:
    probe = model.vectors[2] + 0.1
    url = first.url
    # payload edits by id and by filter, a delete, an upsert with a new payload
    body = {"payload": {"color": "red"}, "points": [2, 5, 8]}
    assert httpx.post(f"{url}/collections/cols/points/payload?wait=true", json=body).is_success
    for i in (2, 5, 8):
        model.payloads[i]["color"] = "red"
    body = {"payload": {"rank": 100}, "filter": {"must": [{"key": "rank", "match": {"value": 1}}]}}
    assert httpx.post(f"{url}/collections/cols/points/payload?wait=true", json=body).is_success
    for payload in model.payloads.values():
        if payload["rank"] == 1:
            payload["rank"] = 100
    gone = model.nearest(probe, is_red, 3)
    body = {"points": gone}
    assert httpx.post(f"{url}/collections/cols/points/delete?wait=true", json=body).is_success
    for i in gone:
        del model.vectors[i], model.payloads[i]
    new = {"id": 10_000, "vector": probe.tolist(), "payload": {"color": "red", "rank": 0}}
    assert httpx.put(f"{url}/collections/cols/points?wait=true", json={"points": [new]}).is_success
    model.vectors[10_000], model.payloads[10_000] = probe, new["payload"]

    assert query(url, RED, probe) == (model.nearest(probe, is_red), "memory")
    assert query(url, NOT_RED_LOW, probe) == (model.nearest(probe, not_red_low), "memory")


def test_another_worker_and_a_restart_agree(first, server_factory, model: Model) -> None:
    second = server_factory(env=SLOW_POLL)
    probe = model.vectors[4] - 0.1
    assert query(second.url, RED, probe) == (model.nearest(probe, is_red), "memory")
    # a write on the first worker is read on the second, from its columns
    body = {"payload": {"color": "red"}, "points": [4]}
    assert httpx.post(
        f"{first.url}/collections/cols/points/payload?wait=true", json=body
    ).is_success
    model.payloads[4]["color"] = "red"
    assert query(second.url, RED, probe) == (model.nearest(probe, is_red), "memory")
    # dropping an index on one worker is seen by the other
    response = httpx.delete(f"{first.url}/collections/cols/index/color?wait=true")
    assert response.status_code == 200, response.text
    assert query(second.url, RED, probe) == (model.nearest(probe, is_red), "sql")
    declare(second.url, "color", "keyword")
    first.kill()
    restarted = server_factory(env=SLOW_POLL)
    assert query(restarted.url, RED, probe) == (model.nearest(probe, is_red), "memory")
    assert query(restarted.url, NOT_RED_LOW, probe) == (
        model.nearest(probe, not_red_low),
        "memory",
    )
