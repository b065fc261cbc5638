"""`serve --workers N`: the supervisor deals each connection to the worker holding fewest."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from app.server import dealer

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")

ROOT = Path(__file__).resolve().parents[1]
TWO_WORKERS = {"WAYPOINT_WORKERS": "2"}


def workers_of(supervisor: int) -> list[int]:
    """The supervisor's worker processes (not its other children, such as the resource
    tracker multiprocessing starts)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return sorted(int(pid) for pid in children if b"spawn_main" in _cmdline(int(pid)))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def connections_held(pid: int, port: int) -> int:
    """Established TCP connections to `port` that process `pid` holds open."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            held += os.readlink(fd) in inodes
    return held


def split(supervisor: int, port: int) -> list[int]:
    return sorted(connections_held(pid, port) for pid in workers_of(supervisor))


def connect(port: int) -> socket.socket:
    """A keep-alive connection that has been served once (so a worker surely holds it)."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    return client


def kill_worker(pid: int) -> None:
    """SIGKILL a worker and wait until it is dead (a zombie until its supervisor reaps it).

    The signal is delivered asynchronously: a connection dealt in the instant before the
    worker dies is lost with it, as with any server process that is killed."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _state(pid) in ("Z", "X", None))


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_connections_spread_evenly_and_refill_the_emptier_worker(server_factory) -> None:
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    supervisor, port = server.process.pid, server.port
    # Ready workers are dealt to first: wait until both have loaded (and reported it).
    wait_for(lambda: server.log_path.read_text().count("loaded 0 vectors") == 2)
    time.sleep(0.5)
    clients = [connect(port) for _ in range(8)]
    assert split(supervisor, port) == [4, 4]

    for client in clients[:4]:  # whichever workers these were on
        client.close()
    wait_for(lambda: sum(split(supervisor, port)) == 4)
    time.sleep(0.5)  # workers report their counts on uvicorn's 0.1 s tick
    clients[:4] = [connect(port) for _ in range(4)]
    assert split(supervisor, port) == [4, 4]
    for client in clients:
        client.close()


def test_a_dead_worker_is_replaced_while_the_other_serves(server_factory) -> None:
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    first, second = workers_of(server.process.pid)
    kill_worker(first)
    for _ in range(20):  # every new connection goes to a worker that is still there
        assert httpx.get(f"{server.url}/collections", timeout=10).status_code == 200
    wait_for(lambda: len(workers_of(server.process.pid)) == 2)
    assert second in workers_of(server.process.pid)
    assert first not in workers_of(server.process.pid)
    server.wait_ready()


def test_workers_stop_when_their_supervisor_is_killed(server_factory) -> None:
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    workers = workers_of(server.process.pid)
    server.kill()
    for pid in workers:  # orphans, not reaped by us: gone once their status is zombie or none
        wait_for(lambda pid=pid: not _running(pid))


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_that_die_before_serving_stop_the_supervisor(tmp_path) -> None:
    """Not a restart loop: an app whose import crashes (a C extension built for another
    CPU dies of SIGILL, say) would crash every new worker the same way."""
    (tmp_path / "crashes_on_import.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    script = (
        "import sys, uvicorn\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from app.server.dealer import Supervisor\n"
        "config = uvicorn.Config('crashes_on_import:app', host='127.0.0.1', port=0, workers=2)\n"
        "sys.exit(Supervisor(config).run())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == STARTUP_FAILURE, done.stderr[-2000:]
    assert "failed to start (exit code -9)" in done.stderr


def test_a_stuck_worker_does_not_hold_up_connections_to_the_others(server_factory) -> None:
    """A stopped worker's socket pair fills up; the supervisor must not block on it."""
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    stuck, _ = workers_of(server.process.pid)
    os.kill(stuck, signal.SIGSTOP)
    try:
        # Twice as many connections as the stuck worker's socket pair holds (a few hundred
        # file descriptors in flight: 278 here), dealt about half to each worker.
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(700)]
        answered = httpx.get(f"{server.url}/healthz", timeout=10)
        assert answered.status_code == 200
        for client in idle:
            client.close()
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed as hung meanwhile
            os.kill(stuck, signal.SIGCONT)


def test_a_hung_worker_is_killed_and_replaced(server_factory) -> None:
    """A worker whose event loop no longer runs (here: stopped) sends no more reports;
    after uvicorn's worker health-check timeout (5 s) the supervisor kills it and starts
    another, instead of dealing connections to it for ever."""
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    supervisor = server.process.pid
    wait_for(lambda: server.log_path.read_text().count(" vectors in ") == 2)  # both serve
    hung, healthy = workers_of(supervisor)
    os.kill(hung, signal.SIGSTOP)
    try:
        wait_for(lambda: hung not in workers_of(supervisor) and len(workers_of(supervisor)) == 2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    assert healthy in workers_of(supervisor)
    assert f"Worker [{hung}] sent no report" in server.log_path.read_text()
    server.wait_ready()
    assert httpx.get(f"{server.url}/collections", timeout=10).status_code == 200


def test_a_replacement_worker_gets_no_connections_until_it_is_ready(server_factory) -> None:
    """A new worker serves before it has loaded its segments and built their graphs;
    connections dealt to it meanwhile would wait and get 503 while its sibling is ready."""
    server = server_factory({**TWO_WORKERS, "WAYPOINT_EXACT_THRESHOLD": "1000"})
    assert server.process is not None
    name = "dealt_readiness"
    created = httpx.put(
        f"{server.url}/collections/{name}", json={"vectors": {"size": 64, "distance": "Dot"}}
    )
    assert created.status_code == 200
    vectors = np.random.default_rng(5).normal(size=(40_000, 64)).astype(np.float32)
    for start in range(0, len(vectors), 4000):
        batch = {
            "ids": list(range(start, start + 4000)),
            "vectors": vectors[start : start + 4000].tolist(),
        }
        put = httpx.put(
            f"{server.url}/collections/{name}/points?wait=true", json={"batch": batch}, timeout=60
        )
        assert put.status_code == 200
    workers = workers_of(server.process.pid)
    wait_for(lambda: all(_idle(pid) for pid in workers), timeout=60)  # both graphs built
    first = workers[0]
    kill_worker(first)
    deadline = time.monotonic() + 8  # the replacement starts, loads and builds meanwhile
    while time.monotonic() < deadline:
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert first not in workers_of(server.process.pid)


def _idle(pid: int, seconds: float = 0.5) -> bool:
    """The process used no CPU for `seconds` (a worker has built its graphs)."""
    before = _cpu_ticks(pid)
    time.sleep(seconds)
    return _cpu_ticks(pid) - before <= 1


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_sighup_restarts_the_workers_one_at_a_time_without_dropping_a_request(
    server_factory,
) -> None:
    """As with uvicorn's own workers, SIGHUP replaces every worker: a new one starts, and
    once it is ready an old one stops; pinned replacements take the CPUs of the old ones.

    Every request on a new connection is answered. A keep-alive connection to a worker
    that leaves is closed by it, and a request the client sends at that moment meets the
    close (HTTP/1.1 lets clients retry idempotent requests then, RFC 9112 9.3.1): the
    client retries once, on a new connection, and must be answered there."""
    server = server_factory({**TWO_WORKERS, "WAYPOINT_PIN_WORKERS": "1"})
    assert server.process is not None
    supervisor = server.process.pid
    wait_for(lambda: server.log_path.read_text().count(" vectors in ") == 2)  # both serve
    old = set(workers_of(supervisor))
    os.kill(supervisor, signal.SIGHUP)
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=server.url, timeout=10) as keep_alive:
        while old & set(workers_of(supervisor)) or len(workers_of(supervisor)) != 2:
            assert time.monotonic() < deadline, "the workers were not all replaced"
            assert httpx.get(f"{server.url}/collections", timeout=10).status_code == 200
            try:
                answered = keep_alive.get("/collections")
            except httpx.TransportError:  # closed by its leaving worker as the request went
                answered = keep_alive.get("/collections")
            assert answered.status_code == 200
    assert server.process.poll() is None
    new = workers_of(supervisor)
    if len(os.sched_getaffinity(0)) >= 2:
        assert {frozenset(os.sched_getaffinity(pid)) for pid in new} == {
            frozenset({cpu}) for cpu in sorted(os.sched_getaffinity(0))[:2]
        }
    assert "Restarting 2 workers, one at a time" in server.log_path.read_text()


def test_workers_leave_sighup_to_their_supervisor(server_factory) -> None:
    """A hang-up sent to the whole process group (a closed terminal) reaches the workers
    too: they ignore it, and the supervisor's rolling restart replaces them in order."""
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    workers = workers_of(server.process.pid)
    for pid in workers:
        os.kill(pid, signal.SIGHUP)
    time.sleep(1.0)
    assert workers_of(server.process.pid) == workers
    assert all(_running(pid) for pid in workers)


def test_the_resource_tracker_outlives_a_hang_up(server_factory) -> None:
    """A hang-up sent to the whole process group reaches multiprocessing's resource tracker
    too; it must ignore it (dying, it would be relaunched by the next worker start with a
    warning, and its record of the workers' shared resources would be lost)."""
    server = server_factory(TWO_WORKERS)
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    trackers = [
        int(pid)
        for pid in children.read_text().split()
        if b"resource_tracker" in _cmdline(int(pid))
    ]
    assert len(trackers) == 1
    os.kill(trackers[0], signal.SIGHUP)
    time.sleep(0.5)
    assert _running(trackers[0])


BREAKS_ON_RESTART = """
import os, sys
if os.path.exists(os.path.join(os.path.dirname(__file__), "broken")):
    sys.exit(1)  # a deploy that broke the app: new workers cannot import it


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
"""


def test_a_restart_whose_new_worker_cannot_start_keeps_the_old_workers(tmp_path) -> None:
    (tmp_path / "breaks_on_restart.py").write_text(BREAKS_ON_RESTART)
    script = (
        "import sys, uvicorn\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from app.server.dealer import Supervisor\n"
        "config = uvicorn.Config('breaks_on_restart:app', host='127.0.0.1', port=0, workers=2)\n"
        "sys.exit(Supervisor(config).run())\n"
    )
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=out)
    try:
        wait_for(lambda: len(workers_of(supervisor.pid)) == 2)
        old = workers_of(supervisor.pid)
        wait_for(lambda: log.read_text().count("Application startup complete") == 2)
        (tmp_path / "broken").touch()
        supervisor.send_signal(signal.SIGHUP)
        wait_for(lambda: "restart stopped" in log.read_text())
        assert workers_of(supervisor.pid) == old
        assert supervisor.poll() is None
    finally:
        supervisor.terminate()
        assert supervisor.wait(timeout=30) == 0


def test_a_ready_worker_stops_asking_its_app_whether_it_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check walks every segment of every collection; a worker reported on every tick
    (10 times a second), so with 1000 collections an idle worker spent ~2 % of a CPU on
    it. The supervisor ignores later dips anyway: once ready, a worker stays ready."""
    answers = iter([False, False, True, False, False])
    asked: list[bool] = []

    def readiness() -> bool:
        asked.append(next(answers))
        return asked[-1]

    monkeypatch.setattr(dealer, "_readiness", readiness)
    worker_end, supervisor_end = socket.socketpair()
    with worker_end, supervisor_end:
        worker_end.setblocking(False)
        server = dealer.DealtServer(uvicorn.Config(app=None), worker_end)
        reported = []
        for _ in range(5):
            server._report()
            reported.append(server.reported[2])
    assert asked == [False, False, True]
    assert reported == [False, False, True, True, True]
