"""`serve --pin-workers`: each worker process, every thread of it, on a CPU of its own."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from app.__main__ import _pins_workers
from app.server.affinity import least_used_cpu

# A supervisor with two workers, as uvicorn runs them: each worker starts a thread (as the
# search pool does) before pinning, pins itself, and reports the CPU of each of its threads
# once both have pinned (so the second chooses while the first is still alive).
SUPERVISOR = textwrap.dedent(
    """
    import json, multiprocessing as mp, os, sys, threading
    from app.server.affinity import pin_worker

    def worker(barrier, results):
        idle = threading.Event()
        threading.Thread(target=idle.wait, daemon=True).start()
        cpu = pin_worker()
        masks = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")]
        barrier.wait()
        results.put((cpu, masks))
        idle.set()

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        workers = [ctx.Process(target=worker, args=(barrier, results)) for _ in range(2)]
        for w in workers:
            w.start()
        print(json.dumps([results.get(timeout=60) for _ in workers]))
        for w in workers:
            w.join()
    """
)


# Two pinned workers stay alive while a third starts to take over from the one on the
# higher CPU (as in a rolling restart): it must take that CPU, not the tie-break's lowest.
TAKE_OVER = textwrap.dedent(
    """
    import json, multiprocessing as mp, os
    from app.server.affinity import REPLACES, pin_worker

    def worker(results, done):
        results.put((os.getpid(), pin_worker()))
        done.wait()

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        results, done = ctx.Queue(), ctx.Event()
        old = []
        for _ in range(2):  # one after the other: they choose different CPUs
            ctx.Process(target=worker, args=(results, done)).start()
            old.append(results.get(timeout=60))
        leaving = max(old, key=lambda pid_cpu: pid_cpu[1])
        os.environ[REPLACES] = str(leaving[0])
        ctx.Process(target=worker, args=(results, done)).start()
        new = results.get(timeout=60)
        done.set()
        print(json.dumps({"old": old, "leaving": leaving, "new": new}))
    """
)


def test_least_used_cpu_spreads_and_breaks_ties_low() -> None:
    assert least_used_cpu({0, 1, 2}, []) == 0
    assert least_used_cpu({0, 1, 2}, [0]) == 1
    assert least_used_cpu({0, 1, 2}, [0, 1, 2, 0]) == 1
    assert least_used_cpu({2, 3}, [0, 0, 2]) == 3  # CPUs this process may not use don't count


needs_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two CPUs",
)


def run_supervisor(tmp_path, source: str) -> Any:
    """Run a supervisor script (a file: spawned workers import their target from it) with
    its lock file under `tmp_path`; what it printed, as JSON."""
    script = tmp_path / "supervisor.py"
    script.write_text(source)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": repo, "TMPDIR": str(tmp_path)},
    )
    return json.loads(done.stdout)


@needs_two_cpus
def test_workers_pin_every_thread_to_different_cpus(tmp_path) -> None:
    (first, first_masks), (second, second_masks) = run_supervisor(tmp_path, SUPERVISOR)
    assert first != second
    assert {first, second} <= os.sched_getaffinity(0)
    assert first_masks == [[first]] * len(first_masks) and len(first_masks) >= 2
    assert second_masks == [[second]] * len(second_masks) and len(second_masks) >= 2


@needs_two_cpus
def test_a_worker_taking_over_from_another_takes_its_cpu(tmp_path) -> None:
    result = run_supervisor(tmp_path, TAKE_OVER)
    assert result["old"][0][1] != result["old"][1][1]
    assert result["new"][1] == result["leaving"][1] != min(cpu for _, cpu in result["old"])


def test_one_worker_is_not_pinned() -> None:
    """A lone worker pinned to one CPU would lose the others: the flag needs 2+ workers."""
    assert not _pins_workers(argparse.Namespace(pin_workers=True, workers=1))
    assert _pins_workers(argparse.Namespace(pin_workers=True, workers=2))
    assert not _pins_workers(argparse.Namespace(pin_workers=False, workers=4))


@needs_two_cpus
def test_a_stopped_server_leaves_no_lock_file(server_factory, tmp_path) -> None:
    """The workers' lock file lives as long as their supervisor, not in the temp dir forever."""
    env = {"WAYPOINT_WORKERS": "2", "WAYPOINT_PIN_WORKERS": "1", "TMPDIR": str(tmp_path)}
    server = server_factory(env)
    assert server.process is not None
    lock = tmp_path / f"waypoint-pin-{server.process.pid}.lock"
    assert lock.exists()  # the workers chose their CPUs under it
    server.stop()
    assert server.process.returncode == 0
    assert not lock.exists()
