"""A collection is `green` only once every worker of the server has built its graphs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.services.building import STALE_SECONDS, SUFFIX, BuildBoard, Peers
from tests.conftest import fetch_row
from tests.test_dealer import TWO_WORKERS


def test_a_worker_sees_what_the_others_report_but_not_itself(tmp_path: Path) -> None:
    first, second, third = (BuildBoard(tmp_path, name) for name in ("1", "2", "3"))
    first.publish({4, 7}, applied=12)
    second.publish({7, 9}, applied=10)
    assert third.peers() == Peers(frozenset({4, 7, 9}), applied=10)
    assert first.peers() == Peers(frozenset({7, 9}), applied=10)
    first.publish(set(), applied=13)
    assert second.peers() == Peers(frozenset(), applied=13)
    assert third.peers() == Peers(frozenset({7, 9}), applied=10)


def test_peers_are_behind_until_each_applied_the_generation() -> None:
    assert Peers(applied=10).behind(11)
    assert not Peers(applied=11).behind(11)
    assert not Peers().behind(11)  # no other worker


def test_a_silent_worker_no_longer_counts(tmp_path: Path) -> None:
    """A worker that died (or hangs) stops rewriting its file; it must not keep a
    collection yellow for ever."""
    BuildBoard(tmp_path, "dead").publish({5}, applied=1)
    stale = time.time() - STALE_SECONDS - 1
    os.utime(tmp_path / f"dead{SUFFIX}", (stale, stale))
    assert BuildBoard(tmp_path, "alive").peers() == Peers()


def test_an_unchanged_state_is_rewritten_only_to_stay_fresh(tmp_path: Path) -> None:
    board = BuildBoard(tmp_path, "worker")
    board.publish({1}, applied=3)
    path = tmp_path / f"worker{SUFFIX}"
    written = path.stat().st_mtime_ns
    os.utime(path, ns=(written - 10**9, written - 10**9))
    board.publish({1}, applied=3)  # the same state, just published: not written again
    assert path.stat().st_mtime_ns == written - 10**9
    board.publish({1}, applied=4)
    assert json.loads(path.read_text()) == {"applied": 4, "building": [1]}


def test_a_stopped_worker_withdraws_its_state(tmp_path: Path) -> None:
    leaving = BuildBoard(tmp_path, "leaving")
    leaving.publish({3}, applied=1)
    leaving.close()
    assert BuildBoard(tmp_path, "staying").peers() == Peers()


def test_a_folder_that_cannot_be_written_is_not_fatal(tmp_path: Path, caplog) -> None:
    """Publishing runs in the worker's background loop beside the change feed: it must
    never raise (the others then count this worker as silent)."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    board = BuildBoard(blocked, "worker")
    board.publish({1}, applied=1)
    board.publish({1, 2}, applied=2)
    assert board.peers() == Peers()
    assert len([r for r in caplog.records if "cannot publish" in r.message]) == 1


def test_without_a_folder_a_worker_is_alone(tmp_path: Path) -> None:
    BuildBoard(tmp_path, "other").publish({1}, applied=1)
    alone = BuildBoard(None)
    alone.publish({2}, applied=1)
    assert alone.peers() == Peers()
    assert list(tmp_path.iterdir()) == [tmp_path / f"other{SUFFIX}"]


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("board")


@pytest.fixture(scope="module")
def url(server_factory, board_dir: Path) -> str:
    """One worker whose folder the tests write other workers' states into."""
    return server_factory({"WAYPOINT_COUNTERS_DIR": str(board_dir), "WAYPOINT_WORKERS": "1"}).url


def namespace_id(database_url: str, collection: str) -> int:
    query = (
        "SELECT n.id FROM namespaces n JOIN collections c ON c.id = n.collection_id"
        " WHERE c.name = $1 AND n.name = ''"
    )
    return fetch_row(database_url, query, collection)["id"]


def test_status_is_yellow_while_another_worker_builds_or_lags(
    url: str, board_dir: Path, database_url: str
) -> None:
    """The worker answering has applied and built everything; another worker of the same
    server says it is still building this collection, or has not applied every write yet:
    the collection is yellow until that worker is done, or goes silent."""
    body = {"vectors": {"size": 4, "distance": "Cosine"}}
    assert httpx.put(f"{url}/collections/board", json=body).status_code == 200
    points = [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}]
    assert httpx.put(f"{url}/collections/board/points?wait=true", json={"points": points})
    status = lambda: httpx.get(f"{url}/collections/board").json()["result"]["status"]  # noqa: E731
    assert status() == "green"
    board = namespace_id(database_url, "board")
    other = BuildBoard(board_dir, "other-worker")
    up_to_date = 2**62  # a generation no write reaches
    other.publish({board + 1000}, up_to_date)  # another collection's
    assert status() == "green"
    other.publish({board}, up_to_date)
    assert status() == "yellow"
    other.publish(set(), up_to_date)
    assert status() == "green"
    other.publish(set(), applied=-1)  # behind the write just acknowledged
    assert status() == "yellow"
    other.publish({board}, up_to_date)
    stale = time.time() - STALE_SECONDS - 1
    os.utime(board_dir / f"other-worker{SUFFIX}", (stale, stale))
    assert status() == "green"


def test_a_write_to_another_collection_leaves_a_collection_green(url: str, board_dir: Path) -> None:
    """Another worker that has not applied a write to `busy` yet keeps `busy` yellow, not
    `calm`: a client waiting for `calm` to be green is not held up by writes elsewhere."""
    body = {"vectors": {"size": 2, "distance": "Dot"}}
    for name in ("calm", "busy"):
        assert httpx.put(f"{url}/collections/{name}", json=body).status_code == 200
    point = {"points": [{"id": 1, "vector": [0.5, 0.5]}]}
    assert httpx.put(f"{url}/collections/calm/points?wait=true", json=point).status_code == 200
    time.sleep(1.0)  # the answering worker publishes what it has applied
    (own,) = [p for p in board_dir.glob(f"*{SUFFIX}") if p.stem.isdigit()]
    applied = json.loads(own.read_text())["applied"]
    other = BuildBoard(board_dir, "lagging-worker")
    other.publish(set(), applied)  # has everything up to and with the write to calm
    status = lambda name: httpx.get(f"{url}/collections/{name}").json()["result"]["status"]  # noqa: E731
    assert status("calm") == "green"
    assert httpx.put(f"{url}/collections/busy/points?wait=true", json=point).status_code == 200
    assert status("busy") == "yellow"
    assert status("calm") == "green"
    other.close()
    assert status("busy") == "green"


def test_once_green_every_worker_searches_its_graph(server_factory) -> None:
    """Two workers: the one a write lands on applies it at once, the other on its next
    request or poll, and each builds its own graph. Once the collection reads green, no
    worker answers by exact scan any more."""
    server = server_factory({**TWO_WORKERS, "WAYPOINT_EXACT_THRESHOLD": "300"})
    vectors = np.random.default_rng(5).normal(size=(6000, 8)).round(4).tolist()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.put("/collections/both", json={"vectors": {"size": 8, "distance": "Euclid"}})
        body = {"batch": {"ids": list(range(len(vectors))), "vectors": vectors}}
        assert client.put("/collections/both/points?wait=true", json=body).is_success
        deadline = time.monotonic() + 120
        while client.get("/collections/both").json()["result"]["status"] != "green":
            assert time.monotonic() < deadline, "never green"
            time.sleep(0.05)
    plans = [  # a new connection each: dealt to both workers in turn
        httpx.post(
            f"{server.url}/collections/both/points/query", json={"query": vectors[i], "limit": 5}
        ).headers["waypoint-plan"]
        for i in range(20)
    ]
    assert plans == ["hnsw"] * 20
