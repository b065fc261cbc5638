"""A small readers-writer lock: hnswlib searches may run in parallel, writes may not.

hnswlib's `knn_query` is safe against other searches but not against `add_items`,
`mark_deleted` or `resize_index` (nmslib/hnswlib#29, #562), so every segment guards its graph
with one of these. Writers are preferred so a stream of searches cannot starve an upsert.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._reading = _Reading(self)

    def reading(self) -> _Reading:
        """A context in which the graph may be searched (shared with other readers)."""
        return self._reading

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """`ReadWriteLock.reading()`: one object per lock, entered by any number of threads (a
    class, not a generator: it is entered on every search, and this costs half as much)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock._cond:
            while lock._writer or lock._waiting_writers:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._cond:
            lock._readers -= 1
            if not lock._readers:
                lock._cond.notify_all()
