"""Pinning each worker process to a CPU of its own (`serve --pin-workers`).

A worker's event loop hands every search to a pool thread and takes the answer back: two
thread wake-ups per request. When the two threads sit on different CPUs each wake-up is an
inter-processor interrupt, and on a virtual machine the idle vCPU it lands on must first be
resumed by the hypervisor, so an empty hop through the pool costs several times more CPU
across CPUs than within one (`scripts/bench_hop.py`; figures in docs/benchmarks.md). Pinning a
worker, all its threads, to one CPU keeps both wake-ups local; with as many workers as CPUs
no parallelism is lost, since the other CPUs serve the other workers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

REPLACES = "WAYPOINT_REPLACES_WORKER"  # env of a worker started to take over from another: its pid


def least_used_cpu(allowed: Iterable[int], taken: Iterable[int]) -> int:
    """The allowed CPU the fewest siblings are pinned to (the lowest number on a tie)."""
    counts = Counter(taken)
    return min(sorted(allowed), key=lambda cpu: counts[cpu])


def pin_worker() -> int | None:
    """Pin this process, every thread of it, to the CPU its sibling workers use least.

    Siblings are the other children of this process's parent (the server's supervisor); a
    lock file keyed by the parent serialises the choice, so workers that start together
    spread over the CPUs, and a restarted worker takes the CPU its predecessor left. A
    worker started to take over from one still running (a rolling restart; its pid in
    `REPLACES`) does not count that one, so it takes its CPU. Returns the CPU, or None where
    affinity cannot be set (not Linux).
    """
    if not hasattr(os, "sched_setaffinity"):
        log.warning("--pin-workers: this platform cannot pin processes; not pinned")
        return None
    allowed, parent = os.sched_getaffinity(0), os.getppid()
    with _siblings_lock(parent):
        cpu = least_used_cpu(allowed, _sibling_cpus(parent))
        for thread in _threads():
            os.sched_setaffinity(thread, {cpu})
    log.info("worker %d pinned to CPU %d", os.getpid(), cpu)
    return cpu


def _sibling_cpus(parent: int) -> list[int]:
    """The CPU of each sibling pinned to exactly one (others are not workers, or unpinned)."""
    cpus = []
    leaving = int(os.environ.get(REPLACES) or 0)
    for pid in _children(parent):
        if pid in (os.getpid(), leaving):
            continue
        try:
            mask = os.sched_getaffinity(pid)
        except OSError:  # exited meanwhile
            continue
        if len(mask) == 1:
            cpus.extend(mask)
    return cpus


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _threads() -> list[int]:
    """Thread ids of this process: affinity is per thread, and threads started before the
    pinning keep their own."""
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def forget_workers() -> None:
    """In the supervisor, once its workers are gone: remove the lock file they chose under."""
    _lock_path(os.getpid()).unlink(missing_ok=True)


def _lock_path(parent: int) -> Path:
    return Path(tempfile.gettempdir()) / f"waypoint-pin-{parent}.lock"


@contextmanager
def _siblings_lock(parent: int) -> Iterator[None]:
    """An exclusive lock on a file shared by the children of one parent."""
    fd = os.open(_lock_path(parent), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock
