"""What the workers of one server still have to do before a collection is `green`.

A collection's `status` is `green` once its graphs are built. With several workers each
applies the others' writes (the change feed) and builds its own graphs, so the worker
answering `GET /collections/{name}` may be done while another has not yet applied the last
write, or is still building and answers searches by exact scan: a client that waits for
green and then searches would meet that worker. So each worker publishes, in a small file
of its own in the folder its server shares with its workers (`WAYPOINT_COUNTERS_DIR`), the
write generation it has applied (`ChangeSignal`) and the namespaces it is building.

A file is rewritten when what it says changes, and at least every `BEAT_SECONDS`; one
older than `STALE_SECONDS` belongs to a worker that died or hangs (and is being replaced)
and no longer counts. Without a folder (one worker) there is nobody else to ask.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".building"
BEAT_SECONDS = 1.0
STALE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Peers:
    """What the other live workers of the server report."""

    building: frozenset[int] = frozenset()  # namespaces any of them is building
    applied: int | None = None  # the oldest write generation one of them has applied

    def behind(self, generation: int) -> bool:
        """Whether some worker has not applied every write up to `generation` yet."""
        return self.applied is not None and self.applied < generation


class BuildBoard:
    """This worker's published state, and the other workers'."""

    def __init__(self, folder: Path | None, owner: str | None = None) -> None:
        self.folder = folder
        self._path = folder / f"{owner or os.getpid()}{SUFFIX}" if folder else None
        self._published: dict | None = None
        self._published_at = 0.0
        self._failing = False  # the last write failed (warned once, until one succeeds)

    def publish(self, building: set[int], applied: int) -> None:
        """Say which namespaces this worker is building and which write generation it has
        applied (written only when that changed or the last write is `BEAT_SECONDS` old)."""
        if self._path is None:
            return
        state = {"applied": applied, "building": sorted(building)}
        now = time.monotonic()
        if state == self._published and now - self._published_at < BEAT_SECONDS:
            return
        try:
            self._write(state)
        except OSError as exc:  # the others then count this worker as silent: never fatal
            if not self._failing:
                log.warning("cannot publish this worker's state in %s: %s", self.folder, exc)
            self._failing = True
            return
        self._failing = False
        self._published, self._published_at = state, now

    def _write(self, state: dict) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=self._path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(state, out)
        os.replace(scratch, self._path)  # readers see the old state or the new one, whole

    def peers(self) -> Peers:
        """What the other live workers of this server report."""
        if self.folder is None:
            return Peers()
        building: set[int] = set()
        applied: list[int] = []
        oldest = time.time() - STALE_SECONDS
        for path in self.folder.glob(f"*{SUFFIX}"):
            if path == self._path:
                continue
            try:
                if path.stat().st_mtime >= oldest:
                    state = json.loads(path.read_text())
                    building.update(state["building"])
                    applied.append(state["applied"])
            except (OSError, ValueError, KeyError, TypeError):  # gone, or not a state
                continue
        return Peers(frozenset(building), min(applied, default=None))

    def close(self) -> None:
        """Withdraw this worker's state (a worker that stops has nothing left to do)."""
        if self._path is not None:
            self._path.unlink(missing_ok=True)
