"""With no DATABASE_URL, `serve` runs an embedded PostgreSQL and stops it when it stops.

A server killed outright cannot stop it; the next `serve` on the same data folder takes the
running PostgreSQL over and must then stop it in its turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, LiveServer


def postmaster_pid(data_dir: Path) -> int:
    """The embedded PostgreSQL's pid, from the first line of its postmaster.pid."""
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_stopped(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data folder whose PostgreSQL, if a failing test left it running, is stopped after."""
    yield tmp_path
    if (tmp_path / "postgres" / "postmaster.pid").exists():
        pid = postmaster_pid(tmp_path)
        if is_running(pid):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown


def embedded_server(data_dir: Path, workers: int = 1) -> LiveServer:
    return LiveServer("", data_dir, {"WAYPOINT_WORKERS": str(workers)}).start()


@pytest.mark.parametrize(
    ("workers", "stop_signal"),
    [
        pytest.param(1, signal.SIGTERM, id="one-worker-SIGTERM"),
        pytest.param(1, signal.SIGINT, id="one-worker-SIGINT"),
        pytest.param(2, signal.SIGTERM, id="two-workers-SIGTERM"),
    ],
)
def test_stopping_serve_stops_its_embedded_postgres(
    data_dir: Path, workers: int, stop_signal: signal.Signals
) -> None:
    server = embedded_server(data_dir, workers)
    postgres = postmaster_pid(data_dir)
    assert is_running(postgres)

    assert server.process is not None
    server.process.send_signal(stop_signal)

    assert server.process.wait(timeout=30) == 0, server.log_path.read_text()[-2000:]
    assert "Traceback" not in server.log_path.read_text()
    assert wait_until_stopped(postgres), "the embedded PostgreSQL outlived the server"


def test_a_server_after_a_killed_one_stops_the_postgres_it_took_over(data_dir: Path) -> None:
    killed = embedded_server(data_dir)
    postgres = postmaster_pid(data_dir)
    killed.kill()
    assert is_running(postgres)  # nothing could stop it

    successor = embedded_server(data_dir)
    assert postmaster_pid(data_dir) == postgres  # reused, not started twice
    successor.stop()

    assert wait_until_stopped(postgres), "the dead server's handle kept PostgreSQL running"


def test_a_migrate_run_beside_the_server_leaves_its_postgres_running(data_dir: Path) -> None:
    """Each process holding the embedded PostgreSQL counts; only the last one stops it."""
    server = embedded_server(data_dir)
    postgres = postmaster_pid(data_dir)
    env = {**os.environ, "DATABASE_URL": "", "WAYPOINT_DATA_DIR": str(data_dir)}
    migrated = subprocess.run(
        [sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, capture_output=True
    )
    assert migrated.returncode == 0, migrated.stderr.decode()[-2000:]

    assert is_running(postgres)
    assert httpx.get(f"{server.url}/collections", timeout=10).status_code == 200
    server.stop()
    assert wait_until_stopped(postgres)
