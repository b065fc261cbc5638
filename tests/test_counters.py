"""Counters of several workers: any worker reports the whole server's counts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.services.counters import Counters
from tests.test_dealer import TWO_WORKERS, split, wait_for, workers_of


def test_totals_add_up_every_workers_counts_as_they_change(tmp_path: Path) -> None:
    first, second = Counters(tmp_path, "first"), Counters(tmp_path, "second")
    first.add("plans", "hnsw", 3)
    second.add("plans", "exact")
    second.add("plans", "hnsw")
    first.add("modes", "graph", 0)
    assert first.totals("plans") == second.totals("plans") == {"exact": 1, "hnsw": 4}
    second.add("plans", "exact", 2)  # an existing slot, updated in place
    assert first.totals("plans") == {"exact": 3, "hnsw": 4}
    assert second.totals("modes") == {"graph": 0}


@pytest.mark.parametrize("owners", [("gone", "replacement"), ("4242", "4242")])
def test_a_stopped_workers_counts_stay_in_the_totals(tmp_path: Path, owners) -> None:
    """Also when its replacement has the same process id (a reused pid)."""
    gone = Counters(tmp_path, owners[0])
    gone.add("plans", "hnsw", 5)
    gone.close()
    replacement = Counters(tmp_path, owners[1])
    replacement.add("plans", "hnsw")
    assert replacement.totals("plans") == {"hnsw": 6}


def test_a_missing_folder_is_made(tmp_path: Path) -> None:
    counters = Counters(tmp_path / "gone" / "away", "first")
    counters.add("plans", "exact")
    assert counters.totals("plans") == {"exact": 1}


def test_without_a_folder_a_worker_counts_alone(tmp_path: Path) -> None:
    alone = Counters()
    alone.add("plans", "exact")
    Counters(tmp_path, "other").add("plans", "exact", 7)
    assert alone.totals("plans") == {"exact": 1}


def test_keys_that_do_not_fit_a_slot_are_refused() -> None:
    with pytest.raises(ValueError):
        Counters().add("plans", "x" * 80)


def metric(client: httpx.Client, line_start: str) -> int:
    lines = client.get("/metrics").text.splitlines()
    return int(next(line for line in lines if line.startswith(line_start)).rsplit(" ", 1)[1])


@contextlib.contextmanager
def one_client_per_worker(url: str, supervisor: int) -> Iterator[tuple[httpx.Client, ...]]:
    """Two keep-alive clients, dealt to different workers (retried until both are ready)."""
    port = httpx.URL(url).port
    assert port is not None
    for _ in range(200):
        clients = httpx.Client(base_url=url), httpx.Client(base_url=url)
        for client in clients:
            assert client.get("/healthz").status_code == 200
        if split(supervisor, port) == [1, 1]:
            break
        for client in clients:
            client.close()
        time.sleep(0.1)
    else:
        pytest.fail("the connections were not dealt one to each worker")
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def test_metrics_count_the_searches_of_every_worker(server_factory) -> None:
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    supervisor = server.process.pid
    exact = 'waypoint_search_plans_total{plan="exact"}'
    with one_client_per_worker(server.url, supervisor) as (a, b):
        config = {"vectors": {"size": 2, "distance": "Dot"}}
        assert a.put("/collections/counted", json=config).status_code == 200
        points = {"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}]}
        assert a.put("/collections/counted/points?wait=true", json=points).status_code == 200
        for client, searches in ((a, 3), (b, 2)):
            for _ in range(searches):
                response = client.post("/collections/counted/points/query", json={"query": [1, 1]})
                assert response.status_code == 200
        assert metric(a, exact) == metric(b, exact) == 5

    # A worker dies and the supervisor replaces it: neither worker counts fewer searches.
    dead = workers_of(supervisor)[0]
    os.kill(dead, signal.SIGKILL)
    wait_for(lambda: dead not in workers_of(supervisor) and len(workers_of(supervisor)) == 2)
    with one_client_per_worker(server.url, supervisor) as (c, d):
        assert metric(c, exact) == metric(d, exact) == 5


def test_serve_removes_counter_folders_of_killed_supervisors(monkeypatch) -> None:
    from app.__main__ import COUNTERS_PREFIX, _share_counters
    from app.services.change_feed import shared_memory_dir

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    base = shared_memory_dir()
    stale = base / f"{COUNTERS_PREFIX}{ended.pid}-killed"
    alive = base / f"{COUNTERS_PREFIX}{os.getppid()}-running"
    stale.mkdir()
    alive.mkdir()
    # `_share_counters` sets the variable in this process: make monkeypatch remove it after,
    # or every server the rest of the session starts would inherit a folder that is gone.
    monkeypatch.setenv("WAYPOINT_COUNTERS_DIR", "")
    try:
        mine = Path(_share_counters())
        assert not stale.exists() and alive.exists()
        assert mine.name.startswith(f"{COUNTERS_PREFIX}{os.getpid()}-")
        assert os.environ["WAYPOINT_COUNTERS_DIR"] == str(mine)
        mine.rmdir()
    finally:
        for folder in (stale, alive):
            if folder.exists():
                folder.rmdir()
