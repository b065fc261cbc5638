"""The segments' readers-writer lock: searches share it, a write has it alone, and a waiting
write goes before new searches."""

from __future__ import annotations

import threading
import time

from app.index.locks import ReadWriteLock

WAIT = 5.0  # seconds a thread may take to get where the test expects it


def test_readers_share_the_lock() -> None:
    lock = ReadWriteLock()
    both_inside = threading.Barrier(2, timeout=WAIT)

    def read() -> None:
        with lock.reading():
            both_inside.wait()  # breaks (raises) unless the other reader is inside too

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not both_inside.broken


def test_a_writer_waits_for_readers_and_new_readers_wait_for_it() -> None:
    lock = ReadWriteLock()
    order: list[str] = []
    reader_inside, release_reader = threading.Event(), threading.Event()

    def first_reader() -> None:
        with lock.reading():
            reader_inside.set()
            release_reader.wait(WAIT)
            order.append("first reader out")

    def writer() -> None:
        with lock.writing():
            order.append("writer")

    def late_reader() -> None:
        with lock.reading():
            order.append("late reader")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    assert reader_inside.wait(WAIT)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    _until(lambda: lock._waiting_writers == 1)
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    time.sleep(0.05)  # the late reader would be inside by now if it did not wait
    assert order == []
    release_reader.set()
    for thread in threads:
        thread.join(WAIT)
    assert order == ["first reader out", "writer", "late reader"]
    assert lock._readers == 0 and not lock._writer


def _until(condition, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
