"""Counters that every worker of one server adds to, reported whole by any of them.

`/metrics` is answered by whichever worker a connection was dealt to, yet a scrape must see
the whole server's counts, and a counter must never go down (Prometheus reads a drop as a
restart). So each worker keeps its counts in a small memory-mapped file of its own, in a
folder its server shares with all its workers (`WAYPOINT_COUNTERS_DIR`, made by `serve`
for several workers), and the totals are the sum over every file there. The file of a
worker that died stays, so totals do not drop when the worker is replaced.

Only its owner writes a file, so there are no locks: a count is an aligned 8-byte value
updated in place, and a new slot (label, then value) becomes visible to readers when the
slot count, written last, grows. Without a folder (one worker) the counts live in
anonymous memory and the totals are this worker's own.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

SLOT = 64  # bytes per counter: its key, NUL-padded, then an int64 count
KEY_BYTES = SLOT - 8
SIZE = 16 * mmap.PAGESIZE  # a header slot and ~1000 counters per worker
SEPARATOR = "\x1f"  # between a counter's family and its label in a stored key
SUFFIX = ".counters"


class Counters:
    """Counts by (family, label): added to by this worker, totalled over its server."""

    def __init__(self, folder: Path | None = None, owner: str | None = None) -> None:
        """`owner` begins the name of this worker's file in `folder` (default: the process
        id); the file is always a new one, so a reused process id never takes over the
        counts of the dead worker that had it."""
        self.folder = folder
        self._path: Path | None = None
        if folder is None:
            self._map = mmap.mmap(-1, SIZE)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            prefix = f"{owner or os.getpid()}-"
            fd, name = tempfile.mkstemp(suffix=SUFFIX, prefix=prefix, dir=folder)
            self._path = Path(name)
            try:
                os.ftruncate(fd, SIZE)
                self._map = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)
        self._used = ctypes.c_int64.from_buffer(self._map)  # slot 0 holds the slot count
        self._values: dict[tuple[str, str], ctypes.c_int64] = {}

    def add(self, family: str, label: str, amount: int = 1) -> None:
        """Add `amount` (0 makes the counter appear) to one counter of this worker."""
        value = self._values.get((family, label))
        if value is None:
            value = self._values[(family, label)] = self._new_slot(family, label)
        value.value += amount

    def totals(self, family: str) -> dict[str, int]:
        """One family's counts summed over every worker of the server, by label."""
        totals: Counter[str] = Counter(
            {label: value.value for (f, label), value in self._values.items() if f == family}
        )
        for counts in self._others():
            for (f, label), count in counts.items():
                if f == family:
                    totals[label] += count
        return dict(sorted(totals.items()))

    def close(self) -> None:
        del self._used
        self._values.clear()
        self._map.close()

    def _new_slot(self, family: str, label: str) -> ctypes.c_int64:
        key = f"{family}{SEPARATOR}{label}".encode()
        slot = self._used.value + 1
        if len(key) > KEY_BYTES or "\0" in family + label or (slot + 1) * SLOT > SIZE:
            raise ValueError(f"cannot keep a counter for {family} {label!r}")
        start = slot * SLOT
        self._map[start : start + KEY_BYTES] = key.ljust(KEY_BYTES, b"\0")
        value = ctypes.c_int64.from_buffer(self._map, start + KEY_BYTES)
        self._used.value = slot  # last: readers see the slot once it is complete
        return value

    def _others(self) -> list[dict[tuple[str, str], int]]:
        """The counts in the other workers' files (gone or unreadable files count nothing)."""
        if self.folder is None:
            return []
        found = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            if path != self._path:
                try:
                    found.append(read_counts(path.read_bytes()))
                except OSError:
                    continue
        return found


def read_counts(data: bytes) -> dict[tuple[str, str], int]:
    """The counters stored in a worker's file, by (family, label)."""
    if len(data) < SLOT:
        return {}
    used = min(int.from_bytes(data[:8], sys.byteorder, signed=True), len(data) // SLOT - 1)
    counts = {}
    for slot in range(1, used + 1):
        start = slot * SLOT
        family, _, label = (
            data[start : start + KEY_BYTES].rstrip(b"\0").decode().partition(SEPARATOR)
        )
        counts[(family, label)] = int.from_bytes(
            data[start + KEY_BYTES : start + SLOT], sys.byteorder, signed=True
        )
    return counts
