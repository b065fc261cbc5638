"""Resumable queries end to end: both dialects, real servers, real PostgreSQL rows.

Invariants checked: no point twice in a session; every returned point exists when returned;
reading until empty returns every point that existed throughout — also across a server
restart (SIGKILL), a second server process, and concurrent upserts and deletes.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from upstash_vector import AsyncIndex, Index, Vector
from upstash_vector.errors import UpstashError

from tests.conftest import fetch_row

DIM = 16
N_POINTS = 3000
SETTINGS = {"WAYPOINT_EXACT_THRESHOLD": "500", "WAYPOINT_REAP_INTERVAL": "0.3"}


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, DIM))
    return (centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def servers(server_factory):
    first = server_factory(env=SETTINGS)
    vectors = clustered(N_POINTS, seed=1)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        client.put("/collections/res", json={"vectors": {"size": DIM, "distance": "Cosine"}})
        for start in range(0, N_POINTS, 1000):
            body = {
                "batch": {
                    "ids": list(range(start, start + 1000)),
                    "vectors": vectors[start : start + 1000].tolist(),
                    "payloads": [{"n": i} for i in range(start, start + 1000)],
                }
            }
            assert client.put("/collections/res/points?wait=true", json=body).status_code == 200
        while client.get("/collections/res").json()["result"]["status"] != "green":
            time.sleep(0.2)
    return {"first": first, "factory": server_factory, "vectors": vectors}


def start(url: str, vector: np.ndarray, limit: int = 10, **extra) -> tuple[str, list[dict]]:
    body = {"query": vector.tolist(), "limit": limit, "with_payload": True, **extra}
    response = httpx.post(f"{url}/collections/res/points/query/resumable", json=body, timeout=60)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    return result["id"], result["points"]


def next_page(url: str, handle: str, limit: int = 10) -> list[dict]:
    response = httpx.post(
        f"{url}/collections/res/points/query/resumable/{handle}/next",
        json={"limit": limit},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]["points"]


def read_all(urls: list[str], handle: str, first: list[dict], limit: int = 100) -> list[int]:
    """Page until empty, round-robin over the given servers."""
    ids = [p["id"] for p in first]
    turn = 0
    while page := next_page(urls[turn % len(urls)], handle, limit):
        ids.extend(p["id"] for p in page)
        turn += 1
    return ids


def test_first_pages_follow_exact_order_and_enumeration_is_complete(servers) -> None:
    url, vectors = servers["first"].url, servers["vectors"]
    query = clustered(1, seed=9)[0]
    handle, first = start(url, query, limit=10)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = np.argsort(-(unit @ (query / np.linalg.norm(query))))
    assert len({p["id"] for p in first} & set(exact[:10].tolist())) >= 9
    ids = read_all([url], handle, first)
    assert len(ids) == len(set(ids)) == N_POINTS
    assert all(isinstance(p["payload"]["n"], int) for p in first)


def test_continues_after_sigkill_restart_and_on_a_second_process(servers) -> None:
    factory, first = servers["factory"], servers["first"]
    handle, page = start(first.url, clustered(1, seed=10)[0], limit=50)
    seen = [p["id"] for p in page]
    for _ in range(5):
        seen.extend(p["id"] for p in next_page(first.url, handle, 50))
    first.kill()
    # The third keeps no live engines: every page it serves is rebuilt from the row.
    second, third = factory(env=SETTINGS), factory(env={**SETTINGS, "WAYPOINT_SESSION_CACHE": "0"})
    servers["first"] = second
    seen.extend(read_all([second.url, third.url], handle, [], limit=200))
    assert len(seen) == len(set(seen)) == N_POINTS


def test_concurrent_deletes_never_return_deleted_points(servers) -> None:
    url, vectors = servers["first"].url, servers["vectors"]
    handle, page = start(url, vectors[0], limit=100)
    seen = {p["id"] for p in page}
    doomed = [i for i in range(0, N_POINTS, 7) if i not in seen]
    deleted = httpx.post(f"{url}/collections/res/points/delete?wait=true", json={"points": doomed})
    assert deleted.status_code == 200
    added = clustered(20, seed=11)
    body = {"batch": {"ids": list(range(10_000, 10_020)), "vectors": added.tolist()}}
    assert httpx.put(f"{url}/collections/res/points?wait=true", json=body).status_code == 200
    rest = read_all([url], handle, [], limit=150)
    everything = list(seen) + rest
    assert len(everything) == len(set(everything))
    assert set(doomed).isdisjoint(rest)
    survivors = set(range(N_POINTS)) - set(doomed)
    assert survivors <= set(everything)
    assert set(everything) - survivors <= set(range(10_000, 10_020))


def test_concurrent_next_calls_on_one_handle_share_the_results(servers) -> None:
    url = servers["first"].url
    handle, first = start(url, clustered(1, seed=12)[0], limit=1)
    with ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(lambda _: next_page(url, handle, 25), range(8)))
    ids = [p["id"] for page in pages for p in page] + [p["id"] for p in first]
    assert len(ids) == len(set(ids)) == 201


def test_stopped_unknown_and_foreign_handles_are_errors(servers) -> None:
    url = servers["first"].url
    handle, _ = start(url, clustered(1, seed=13)[0])
    assert httpx.delete(f"{url}/collections/res/points/query/resumable/{handle}").json()["result"]
    for bad in (handle, "not-a-uuid", "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"):
        response = httpx.post(
            f"{url}/collections/res/points/query/resumable/{bad}/next", json={"limit": 1}
        )
        assert response.status_code == 404
        assert "Resumable query" in response.json()["status"]["error"]


def test_session_rows_are_inspectable_in_sql(servers, database_url: str) -> None:
    url = servers["first"].url
    handle, _ = start(url, clustered(1, seed=14)[0], limit=5)
    next_page(url, handle, 5)

    found = fetch_row(
        database_url,
        "SELECT mode, emitted, length(state) AS bytes, max_idle_seconds,"
        " expires_at > last_touched AS live FROM resumable_queries WHERE id = $1",
        handle,
    )
    assert found["emitted"] == 10 and found["live"] and found["bytes"] > 0
    assert found["mode"] in ("exact", "graph") and found["max_idle_seconds"] == 3600


def timed_page(url: str, handle: str, limit: int) -> tuple[list[dict], str]:
    """A next page and its Server-Timing header (the stages the service timed)."""
    response = httpx.post(
        f"{url}/collections/res/points/query/resumable/{handle}/next",
        json={"limit": limit},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]["points"], response.headers["server-timing"]


def count(url: str) -> int:
    """The points in the collection now (earlier tests delete and add some)."""
    response = httpx.post(f"{url}/collections/res/points/count", json={"exact": True})
    return response.json()["result"]["count"]


@pytest.fixture(scope="module")
def second(servers):
    """Another worker process on the same database (its own live sessions)."""
    return servers["factory"](env=SETTINGS)


def test_the_worker_holding_a_session_continues_it_without_the_row_lock(servers) -> None:
    """Served from memory: one conditional UPDATE, no `SELECT … FOR UPDATE` (no `lock`)."""
    url = servers["first"].url
    handle, _ = start(url, clustered(1, seed=20)[0])
    for _ in range(3):
        points, timing = timed_page(url, handle, 10)
        assert len(points) == 10
        assert "engine;" in timing and "write;" in timing
        assert "lock;" not in timing and "read;" not in timing


def test_a_stale_worker_finds_the_row_moved_on_and_pages_from_the_row(servers, second) -> None:
    """Pages alternate between two workers that each keep the session: every time, the
    worker's own engine is one version behind the row (the other worker served the last
    page), so its page is dropped and served again from the row as read. No point twice,
    every point by the end."""
    first = servers["first"]
    handle, page = start(first.url, clustered(1, seed=21)[0], limit=100)
    seen = [p["id"] for p in page]
    timings = []
    for turn in range(N_POINTS):
        points, timing = timed_page((second.url, first.url)[turn % 2], handle, 100)
        if not points:
            break
        seen.extend(p["id"] for p in points)
        timings.append(timing)
    assert len(seen) == len(set(seen)) == count(first.url)
    assert len(timings) > 4 and all("read;" in timing for timing in timings)


def test_two_workers_racing_on_one_handle_share_the_results(servers, second) -> None:
    urls = [servers["first"].url, second.url]
    handle, first = start(urls[0], clustered(1, seed=22)[0], limit=1)
    with ThreadPoolExecutor(6) as pool:
        pages = list(pool.map(lambda turn: next_page(urls[turn % 2], handle, 25), range(24)))
    ids = [p["id"] for page in pages for p in page] + [p["id"] for p in first]
    assert len(ids) == len(set(ids)) == 601
    rest = read_all(urls, handle, [], limit=500)
    assert len(set(ids) | set(rest)) == len(ids) + len(rest) == count(urls[0])


def test_a_page_computed_from_a_row_that_moved_on_is_computed_again_under_the_lock(
    servers, second
) -> None:
    """Racing workers: a page computed from the row as read loses to another worker's
    page (its conditional UPDATE finds the version gone), is dropped and computed again
    with the row locked (`read` then `lock` in its timing). Nothing twice, nothing lost."""
    urls = [servers["first"].url, second.url]
    for seed in range(30, 40):
        handle, first = start(urls[0], clustered(1, seed=seed)[0], limit=1)
        with ThreadPoolExecutor(8) as pool:
            turns = [(urls[turn % 2], handle, 20) for turn in range(32)]
            pages = list(pool.map(lambda args: timed_page(*args), turns))
        ids = [p["id"] for page, _ in pages for p in page] + [p["id"] for p in first]
        assert len(ids) == len(set(ids)) == 641
        if any("read;" in timing and "lock;" in timing for _, timing in pages):
            break
    else:
        pytest.fail("no page lost a race in ten rounds of 32 concurrent pages")


def test_a_session_without_payload_or_filter_reads_its_pages_from_memory(servers) -> None:
    """As a plain query does: the same ids, scores and versions as a session reading its
    points back from PostgreSQL, without the `points` stage."""
    url = servers["first"].url
    query = clustered(1, seed=23)[0]
    bare, bare_first = start(url, query, limit=20, with_payload=False, with_vector=True)
    full, full_first = start(url, query, limit=20, with_payload=True, with_vector=True)
    pages = [(bare_first, full_first)]
    for _ in range(5):
        points, timing = timed_page(url, bare, 20)
        assert "engine;" in timing and "points;" not in timing
        pages.append((points, next_page(url, full, 20)))
    for mine, theirs in pages:
        assert all("payload" not in p or p["payload"] is None for p in mine)
        strip = [{k: p[k] for k in ("id", "score", "version", "vector")} for p in theirs]
        assert [{k: p[k] for k in ("id", "score", "version", "vector")} for p in mine] == strip


def test_pages_from_the_read_ahead_append_seqs_and_leave_the_state_alone(
    servers, database_url: str
) -> None:
    """A page that ran the engine stores its state with the next pages read ahead; the
    pages served from them only append their seqs to `recent_seqs`."""
    url = servers["first"].url
    handle, _ = start(url, clustered(1, seed=24)[0])
    row = (
        "SELECT state, emitted, length(recent_seqs) AS recent FROM resumable_queries WHERE id = $1"
    )
    next_page(url, handle)  # runs the engine: state stored anew, four pages ahead
    stored = fetch_row(database_url, row, handle)
    assert stored["recent"] == 0 and stored["emitted"] == 20
    for page in range(1, 4):
        next_page(url, handle)
        found = fetch_row(database_url, row, handle)
        assert found["state"] == stored["state"] and found["recent"] == 8 * 10 * page


def test_another_worker_continues_after_pages_from_the_read_ahead(servers, second) -> None:
    """The seqs those pages appended are excluded too where the state does not apply."""
    first = servers["first"].url
    handle, page = start(first, clustered(1, seed=25)[0])
    seen = [p["id"] for p in page]
    for _ in range(3):  # the engine, then two pages from the read-ahead
        seen.extend(p["id"] for p in next_page(first, handle))
    seen = read_all([second.url], handle, [], limit=100) + seen
    assert len(seen) == len(set(seen)) == count(first)


@pytest.fixture(scope="module")
def uncached(servers):
    """A worker keeping no live engine: every page is resumed from the row."""
    return servers["factory"](env={**SETTINGS, "WAYPOINT_SESSION_CACHE": "0"})


def test_a_worker_without_engine_cache_serves_the_read_ahead_from_the_row(
    servers, uncached
) -> None:
    """Its own state applies (the same segment), so pages come from the stored read-ahead,
    less what was returned since it was stored: no point twice, every point by the end."""
    handle, page = start(uncached.url, clustered(1, seed=26)[0], limit=10)
    seen = [p["id"] for p in page]
    while points := next_page(uncached.url, handle, 10):
        seen.extend(p["id"] for p in points)
    assert len(seen) == len(set(seen)) == count(uncached.url)


# ----------------------------------------------------------------- Upstash SDK


@pytest.fixture(scope="module")
def upstash(server_factory):
    server = server_factory(
        env={
            **SETTINGS,
            "WAYPOINT_API_KEY": "token",
            "WAYPOINT_MAX_SESSIONS_PER_KEY": "3",
        }
    )
    created = httpx.put(
        f"{server.url}/upstash/docs",
        json={"dimension": 2, "similarityFunction": "COSINE"},
        headers={"Authorization": "Bearer token"},
    )
    assert created.status_code == 200, created.text
    index = Index(url=f"{server.url}/upstash/docs", token="token")
    index.upsert(
        vectors=[
            Vector(id=f"id{i}", vector=[1.0, 0.1 * i], metadata={"i": i}, data=f"d{i}")
            for i in range(5)
        ]
    )
    return server


def test_upstash_sync_start_fetch_next_stop(upstash) -> None:
    index = Index(url=f"{upstash.url}/upstash/docs", token="token")
    scores, handle = index.resumable_query(
        vector=[1.0, 0.0], top_k=2, include_metadata=True, include_vectors=True, include_data=True
    )
    assert [s.id for s in scores] == ["id0", "id1"]
    assert scores[0].score == 1.0 and scores[0].vector == [1.0, 0.0]
    assert scores[1].metadata == {"i": 1} and scores[1].data == "d1"
    assert [s.id for s in handle.fetch_next(2)] == ["id2", "id3"]
    assert [s.id for s in handle.fetch_next(1)] == ["id4"]
    assert handle.fetch_next(1) == []
    handle.stop()
    with pytest.raises(UpstashError):
        handle.fetch_next(1)
    with pytest.raises(UpstashError):
        handle.stop()


def test_upstash_filter_is_frozen_for_the_session(upstash) -> None:
    index = Index(url=f"{upstash.url}/upstash/docs", token="token")
    scores, handle = index.resumable_query(
        vector=[1.0, 0.0], top_k=1, filter="i >= 2 AND i != 3", include_metadata=True
    )
    assert [(s.id, s.metadata) for s in scores] == [("id2", {"i": 2})]
    assert [s.id for s in handle.fetch_next(5)] == ["id4"]
    assert handle.fetch_next(5) == []
    handle.stop()


def test_upstash_async_and_missing_namespace(upstash) -> None:
    async def run() -> None:
        index = AsyncIndex(url=f"{upstash.url}/upstash/docs", token="token")
        scores, handle = await index.resumable_query(vector=[0.0, 1.0], top_k=3)
        assert [s.id for s in scores] == ["id4", "id3", "id2"]
        assert all(s.metadata is None and s.vector is None for s in scores)
        assert [s.id for s in await handle.fetch_next(5)] == ["id1", "id0"]
        await handle.stop()
        scores, handle = await index.resumable_query(vector=[1.0, 0.0], namespace="nope")
        assert scores == [] and await handle.fetch_next(3) == []
        await handle.stop()
        info = await index.info()
        assert "nope" not in info.namespaces

    asyncio.run(run())


def test_upstash_idle_expiry_and_session_cap(upstash) -> None:
    index = Index(url=f"{upstash.url}/upstash/docs", token="token")
    _, idle = index.resumable_query(vector=[1.0, 0.0], top_k=1, max_idle=1)
    time.sleep(2.0)
    with pytest.raises(UpstashError, match=r"expired|not found"):
        idle.fetch_next(1)
    handles = [index.resumable_query(vector=[1.0, 0.0], top_k=1)[1] for _ in range(3)]
    with pytest.raises(UpstashError, match="Too many"):
        index.resumable_query(vector=[1.0, 0.0], top_k=1)
    over = httpx.post(
        f"{upstash.url}/upstash/docs/resumable-query",
        json={"vector": [1.0, 0.0], "topK": 1},
        headers={"Authorization": "Bearer token"},
    )
    assert (over.status_code, over.headers.get("retry-after")) == (429, "1")
    for handle in handles:
        handle.stop()
    index.resumable_query(vector=[1.0, 0.0], top_k=1)[1].stop()
