"""Resumable-query session caps hold under concurrency.

Many starts race on a server with two workers: the caps (`WAYPOINT_MAX_SESSIONS_PER_KEY`,
`WAYPOINT_MAX_SESSIONS`) must admit exactly as many sessions as they allow, never more,
and refuse the rest with a 429 in the dialect's envelope.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import LiveServer, fetch_row

STARTS = 100
PER_KEY, TOTAL = 30, 50
ADMIN, READER = "caps-admin-key", "caps-reader-key"
TOO_MANY = "Too many active resumable queries"


@pytest.fixture(scope="module")
def capped(server_factory) -> LiveServer:
    """One server for both tests (a start costs seconds): a Qdrant collection and an Upstash
    index, two keys. Either cap can be reached alone: one key stops at the per-key cap, two
    keys together at the total, which is below twice the per-key cap."""
    server = server_factory(
        {
            "WAYPOINT_MAX_SESSIONS_PER_KEY": str(PER_KEY),
            "WAYPOINT_MAX_SESSIONS": str(TOTAL),
            "WAYPOINT_WORKERS": "2",
            "WAYPOINT_API_KEY": ADMIN,
            "WAYPOINT_READ_ONLY_API_KEY": READER,
        }
    )
    with httpx.Client(base_url=server.url, timeout=60, headers={"api-key": ADMIN}) as client:
        created = client.put("/collections/caps", json={"vectors": {"size": 2, "distance": "Dot"}})
        assert created.status_code == 200, created.text
        points = {"points": [{"id": i, "vector": [1.0, float(i)]} for i in range(5)]}
        assert client.put("/collections/caps/points?wait=true", json=points).status_code == 200
        index = {"dimension": 2, "similarityFunction": "COSINE"}
        assert client.put("/upstash/capsidx", json=index).status_code == 200
        vectors = [{"id": f"v{i}", "vector": [1.0, 0.1 * i]} for i in range(5)]
        assert client.post("/upstash/capsidx/upsert", json=vectors).status_code == 200
    return server


@pytest.fixture(autouse=True)
def no_sessions(capped: LiveServer, database_url: str) -> None:
    """Both tests count every live row of the module's database: each starts from none."""
    fetch_row(database_url, "DELETE FROM resumable_queries")


def live_sessions(database_url: str) -> int:
    row = fetch_row(database_url, "SELECT count(*) FROM resumable_queries WHERE expires_at > now()")
    assert row is not None
    return row[0]


def race(requests: list[tuple[str, dict, dict]]) -> list[httpx.Response]:
    """Send every request at once, each on a connection of its own, so the supervisor deals
    them over both workers and the starts overlap in PostgreSQL."""
    barrier = threading.Barrier(len(requests))
    pool = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)

    with httpx.Client(timeout=60, limits=pool) as client:

        def send(request: tuple[str, dict, dict]) -> httpx.Response:
            url, body, headers = request
            barrier.wait()
            return client.post(url, json=body, headers=headers)

        with ThreadPoolExecutor(len(requests)) as threads:
            return list(threads.map(send, requests))


def test_per_key_cap_admits_exactly_the_cap_under_concurrency(
    capped: LiveServer, database_url: str
) -> None:
    url = f"{capped.url}/collections/caps/points/query/resumable"
    body = {"query": [1.0, 0.0], "limit": 1}
    answers = race([(url, body, {"api-key": ADMIN})] * STARTS)
    assert Counter(a.status_code for a in answers) == {200: PER_KEY, 429: STARTS - PER_KEY}
    for refused in (a.json() for a in answers if a.status_code == 429):
        assert refused["status"]["error"].startswith(f"{TOO_MANY} for this API key (")
    assert live_sessions(database_url) == PER_KEY
    # Refused starts took the lock and rolled back: a freed place is taken at once.
    handle = next(a for a in answers if a.status_code == 200).json()["result"]["id"]
    headers = {"api-key": ADMIN}
    assert httpx.delete(f"{url}/{handle}", headers=headers).status_code == 200
    assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 200
    assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 429


def test_total_cap_holds_across_keys_under_concurrency(
    capped: LiveServer, database_url: str
) -> None:
    url = f"{capped.url}/upstash/capsidx/resumable-query"
    body = {"vector": [1.0, 0.0], "topK": 1}
    keys = [{"Authorization": f"Bearer {key}"} for key in (ADMIN, READER)]
    answers = race([(url, body, keys[i % 2]) for i in range(STARTS)])
    assert Counter(a.status_code for a in answers) == {200: TOTAL, 429: STARTS - TOTAL}
    for refused in (a.json() for a in answers if a.status_code == 429):
        assert refused["status"] == 429 and refused["error"].startswith(TOO_MANY)
    assert live_sessions(database_url) == TOTAL
