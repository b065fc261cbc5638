"""Keeping several workers (processes, hosts) on one database consistent.

Each worker applies its own writes to its segments right after commit. Writes made by other
workers reach it through the change feed: every namespace remembers the last seq it applied,
and `catch_up()` applies what PostgreSQL holds beyond it (points and their vectors,
tombstones, new or dropped collections).

When to catch up: workers on one host share a generation counter in a tiny memory-mapped
file (one per database) that every committed write bumps, so a worker notices another's
write on its very next request and catches up before answering: read-your-writes across
workers. A second counter counts the writes that changed the catalog (collections,
namespaces, aliases, payload indexes): after a point write the catalog is not looked at.
The rest of the page remembers which namespace each recent point write went to, so
catching up with a few writes asks PostgreSQL about those namespaces, not every one.
Workers on other hosts see writes within `sync_interval` seconds (a poll), which compares
a fingerprint of the catalog tables first.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import hashlib
import logging
import mmap
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from app.db import repository
from app.db.database import Database
from app.index.registry import IndexRegistry
from app.index.sparse import SparseIndex
from app.models import Collection, PointId, SparseVector
from app.services.catalog import Catalog
from app.services.columns import ColumnKeeper
from app.services.cpu import CpuPool

log = logging.getLogger(__name__)


ANY_NAMESPACE = -1  # a write the ring cannot narrow down: a catalog change


class Generations(NamedTuple):
    write: int
    catalog: int
    namespaces: frozenset[int] | None  # written since the generation asked about; None: unknown


class ChangeSignal:
    """Write generation counters shared by every process on this host using one database:
    one bumped by every committed write, one by those that changed the catalog, and a ring
    of (write generation, namespace id) for the last `RING` writes."""

    RING = (mmap.PAGESIZE - 16) // 16  # what fits in the page after the two counters

    def __init__(self, database_key: str, folder: Path | None = None) -> None:
        folder = folder or shared_memory_dir()
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(database_key.encode()).hexdigest()[:20]
        self.path = folder / f"waypoint-{digest}.gen"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < mmap.PAGESIZE:
                os.ftruncate(self._fd, mmap.PAGESIZE)
        self._map = mmap.mmap(self._fd, mmap.PAGESIZE)
        self._counter = ctypes.c_int64.from_buffer(self._map)
        self._catalog_counter = ctypes.c_int64.from_buffer(self._map, 8)
        self._ring = (ctypes.c_int64 * (2 * self.RING)).from_buffer(self._map, 16)

    def _locked(self):
        return _FileLock(self._fd)

    def current(self) -> int:
        """The write generation (one unlocked read: asked before every request)."""
        return self._counter.value

    def since(self, seen: int) -> Generations:
        """The generations, and the namespaces written after write generation `seen`, as
        `bump`s left them (read under the lock, so no half-counted write is seen). The
        namespaces are unknown after a catalog change, or a write older than the ring, or
        one counted by a build that kept no ring."""
        with self._locked():
            write, catalog = self._counter.value, self._catalog_counter.value
            return Generations(write, catalog, self._written(seen, write))

    def _written(self, seen: int, write: int) -> frozenset[int] | None:
        """The namespaces written in generations (seen, write], or None: unknown."""
        if not 0 <= write - seen <= self.RING:
            return None
        written = set()
        for generation in range(seen + 1, write + 1):
            slot = 2 * (generation % self.RING)
            namespace_id = self._ring[slot + 1]
            if self._ring[slot] != generation or namespace_id == ANY_NAMESPACE:
                return None
            written.add(namespace_id)
        return frozenset(written)

    def bump(self, catalog: bool = False, namespace_id: int | None = None) -> tuple[int, int]:
        """Count a committed write, to the catalog or to one namespace's points (None: to
        any); the new write and catalog generations."""
        with self._locked():
            self._counter.value += 1
            self._catalog_counter.value += catalog
            generation = self._counter.value
            slot = 2 * (generation % self.RING)
            written = ANY_NAMESPACE if catalog or namespace_id is None else namespace_id
            self._ring[slot], self._ring[slot + 1] = generation, written
            return generation, self._catalog_counter.value

    def close(self) -> None:
        del self._counter, self._catalog_counter, self._ring
        self._map.close()
        os.close(self._fd)


def shared_memory_dir() -> Path:
    """Where processes of this host share small files: memory-backed when possible."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class _FileLock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class ChangeFeed:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        registry: IndexRegistry,
        cpu: CpuPool,
        signal: ChangeSignal,
        columns: ColumnKeeper,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.cpu = cpu
        self.signal = signal
        self.columns = columns
        self.applied: dict[int, int] = {}  # namespace id -> last seq applied from the feed
        self._seen, self._seen_catalog, _ = signal.since(0)
        # held while PostgreSQL's catalog is reloaded and applied; this worker's own catalog
        # changes take it too, so a reload never reads before one commits and applies after
        self.lock = asyncio.Lock()

    @property
    def seen(self) -> int:
        """The write generation this worker has applied every write up to."""
        return self._seen

    async def ensure_current(self) -> None:
        """Catch up first if any worker on this host committed since we last looked."""
        if self.signal.current() != self._seen:
            await self.catch_up()

    def _committed(self, catalog: bool = False, namespace_id: int | None = None) -> None:
        """Announce a write this worker committed (and already applied to its segments and
        catalog); `catalog`: it changed collections, namespaces, aliases or payload indexes;
        `namespace_id`: it wrote only that namespace's points."""
        seen = self._seen
        generation, catalog_generation = self.signal.bump(catalog, namespace_id)
        if generation == seen + 1:  # nobody else wrote in between: nothing to fetch
            self._seen, self._seen_catalog = generation, catalog_generation

    def committed_points(self, namespace_id: int) -> None:
        """Announce committed point writes to one namespace (the point service's `on_commit`)."""
        self._committed(namespace_id=namespace_id)

    def committed_to_catalog(self) -> None:
        """Announce a committed change of the catalog (the catalog keepers' `on_commit`).

        The catalog's fingerprint no longer describes it, and PostgreSQL could come back to
        that one (the change undone elsewhere): the next catch-up must read it again.
        """
        self.catalog.fingerprint = ""
        self._committed(catalog=True)

    async def catch_up(self, force: bool = False) -> None:
        """Apply what PostgreSQL holds beyond what this worker has: collections, then points.

        A collection or namespace new to this worker is published only once its points are
        in its segments: requests answered meanwhile do not know it yet, rather than find
        it empty.
        """
        async with self.lock:
            target, catalog_target, written = self.signal.since(self._seen)
            if target == self._seen and not force:
                return
            catalog_changed = force or catalog_target != self._seen_catalog
            fresh = await self._changed_catalog() if catalog_changed else None
            if fresh is None:
                await self._apply_point_changes(self.catalog, None if force else written)
            else:
                for collection in fresh.all():
                    namespaces = collection.namespaces.values()
                    self.registry.configure(namespaces, collection.config)
                await self.columns.sync(collections=fresh.all())
                await self._apply_point_changes(fresh)
                self._publish(fresh)
            self._seen, self._seen_catalog = target, catalog_target

    async def _changed_catalog(self) -> Catalog | None:
        """PostgreSQL's catalog, or None while it is still the one this worker last read:
        an idle poll then costs one small query, not a reload of every collection."""
        async with self.db.connect() as conn:
            fingerprint = await repository.catalog_fingerprint(conn)
            if fingerprint == self.catalog.fingerprint:
                return None
            fresh = Catalog()
            await fresh.load(conn, fingerprint)
        return fresh

    def _publish(self, fresh: Catalog) -> None:
        """Make this worker's catalog what PostgreSQL's was when `fresh` was read."""
        self.catalog.fingerprint = fresh.fingerprint
        self.catalog.set_aliases(fresh.aliases())
        known = {c.id: c for c in self.catalog.all()}
        current = {c.id: c for c in fresh.all()}
        for collection_id, collection in known.items():
            if collection_id not in current:
                self.catalog.remove(collection.name)
                self.registry.drop_namespaces(set(collection.namespaces.values()))
        for collection_id, collection in current.items():
            old = known.get(collection_id)
            if old is None:
                self.catalog.add(collection)
            else:  # its settings may have changed; namespaces created, renamed or dropped
                old.config = collection.config
                gone = set(old.namespaces.values()) - set(collection.namespaces.values())
                if gone:  # a scan of every segment: not once per collection on every poll
                    self.registry.drop_namespaces(gone)
                old.namespaces.clear()
                old.namespaces.update(collection.namespaces)

    async def _apply_point_changes(
        self, fresh: Catalog, written: frozenset[int] | None = None
    ) -> None:
        """Apply the namespaces' rows and tombstones newer than their applied seqs: all
        namespaces, or only the `written` ones (the others have nothing new)."""
        live = {
            namespace_id: collection
            for collection in fresh.all()
            for namespace_id in collection.namespaces.values()
            if written is None or namespace_id in written
        }
        since = {ns: self.applied.setdefault(ns, 0) for ns in live}
        if not since:
            return
        async with self.db.connect() as conn:
            rows = await repository.changed_rows(conn, since)
        if not rows.points and not rows.tombstones:
            return
        changes, tombstones = await self.cpu.run(repository.as_changes, rows)
        await self.cpu.run(_apply, self.registry, live, changes, tombstones)
        for change in changes:
            self._advance(change.namespace_id, change.seq)
        for stone in tombstones:
            self._advance(stone.namespace_id, stone.seq)
        self.registry.notify()
        log.debug("applied %d writes and %d deletes", len(changes), len(tombstones))

    def _advance(self, namespace_id: int, seq: int) -> None:
        self.applied[namespace_id] = max(self.applied.get(namespace_id, 0), seq)

    async def poll(self, interval: float) -> None:
        """Background loop: pick up writes from workers on other hosts."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.catch_up(force=True)
            except Exception:
                log.exception("catching up with the change feed failed")


def _apply(
    registry: IndexRegistry,
    live: dict[int, Collection],
    changes: list[repository.PointChange],
    tombstones: list[repository.Tombstone],
) -> None:
    """Apply fetched writes segment by segment (and sparse index by index), in batches.

    Order does not matter: segments keep the newest version of every point and ignore an
    older write or a delete that predates the point's current vector.
    """
    point_seqs = {change.id: change.seq for change in changes}
    upserts: defaultdict[tuple[int, str], list[tuple[PointId, int, bytes]]] = defaultdict(list)
    deletes: defaultdict[tuple[int, str], list[tuple[PointId, int]]] = defaultdict(list)
    for change in changes:
        for vector_name in live[change.namespace_id].config.vector_names():
            stored = change.vectors.get(vector_name)
            key = (change.namespace_id, vector_name)
            if stored is None:
                deletes[key].append((change.id, change.seq))
            else:
                upserts[key].append((change.id, stored[0], stored[1]))
    for stone in tombstones:
        for vector_name in live[stone.namespace_id].config.vector_names():
            deletes[(stone.namespace_id, vector_name)].append((stone.id, stone.seq))
    for (namespace_id, vector_name), rows in upserts.items():
        config = live[namespace_id].config
        if config.is_sparse(vector_name):
            upsert_sparse(registry.ensure_sparse(namespace_id, vector_name), rows)
            continue
        params = config.vectors[vector_name]
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
        segment = registry.ensure(namespace_id, vector_name, params)
        segment.upsert(
            [r[0] for r in rows], vectors.reshape(len(rows), params.size), [r[1] for r in rows]
        )
        segment.set_versions([r[0] for r in rows], [point_seqs[r[0]] for r in rows])
    for (namespace_id, vector_name), rows in deletes.items():
        config = live[namespace_id].config
        ids, seqs = [r[0] for r in rows], [r[1] for r in rows]
        if config.is_sparse(vector_name):
            registry.ensure_sparse(namespace_id, vector_name).delete_many(ids, seqs)
        else:
            registry.ensure(namespace_id, vector_name, config.vectors[vector_name]).delete(
                ids, seqs
            )
    _apply_to_columns(registry, changes, tombstones)


def upsert_sparse(index: SparseIndex, rows: list[tuple[PointId, int, bytes]]) -> None:
    """Store (id, seq, stored bytes) rows of one sparse vector name in its index."""
    decoded = ((pid, SparseVector.frombytes(raw), seq) for pid, seq, raw in rows)
    index.upsert_many((pid, v.indices, v.values, seq) for pid, v, seq in decoded)


def _apply_to_columns(
    registry: IndexRegistry,
    changes: list[repository.PointChange],
    tombstones: list[repository.Tombstone],
) -> None:
    """Keep in-memory payload columns in step with other workers' writes."""
    for change in changes:
        if (columns := registry.columns(change.namespace_id)) is not None:
            columns.put([(change.id, change.seq, change.payload)])
    for stone in tombstones:
        if (columns := registry.columns(stone.namespace_id)) is not None:
            columns.remove([(stone.id, stone.seq)])
