"""Wires the services of one worker together and loads its segments from PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import repository
from app.db.database import Database
from app.errors import NotReady
from app.index.registry import IndexRegistry
from app.models import VectorParams
from app.services.building import BuildBoard
from app.services.catalog import Catalog
from app.services.change_feed import ChangeFeed, ChangeSignal, upsert_sparse
from app.services.collections import CollectionService
from app.services.columns import ColumnKeeper
from app.services.counters import Counters
from app.services.cpu import CpuPool
from app.services.embedding import EmbeddingService
from app.services.payload_indexes import PayloadIndexService
from app.services.points import PointService
from app.services.search import SearchService
from app.services.sessions import SessionService
from app.settings import Settings

log = logging.getLogger(__name__)

LOAD_WAIT_SECONDS = 300.0
PUBLISH_BUILDING_SECONDS = 0.25  # how soon other workers learn that this one builds


class Services:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.catalog = Catalog()
        self.registry = IndexRegistry(settings.exact_threshold, settings.build_threads)
        self.cpu = CpuPool(settings.search_threads)
        self.counters = Counters(settings.counters_dir)
        self.board = BuildBoard(settings.counters_dir)  # what each worker is building
        self.columns = ColumnKeeper(db, self.catalog, self.registry, self.cpu)
        signal = ChangeSignal(db.url, settings.signal_dir)
        self.feed = ChangeFeed(db, self.catalog, self.registry, self.cpu, signal, self.columns)
        self.collections = CollectionService(
            db,
            self.catalog,
            self.registry,
            self.board,
            self.feed.signal,
            self.feed.committed_to_catalog,
            self.feed.lock,
        )
        self.points = PointService(
            db, self.catalog, self.registry, self.cpu, self.feed.committed_points
        )
        self.search = SearchService(self.points, self.counters)
        self.embedding = EmbeddingService(self.cpu)
        self.payload_indexes = PayloadIndexService(
            db, self.catalog, self.feed.committed_to_catalog, self.columns
        )
        self.sessions = SessionService(
            db,
            self.catalog,
            self.registry,
            self.cpu,
            self.counters,
            max_sessions=settings.max_sessions,
            max_sessions_per_key=settings.max_sessions_per_key,
            cache_size=settings.session_cache,
        )
        self.loaded = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Every segment is loaded and every graph that is due has been built."""
        return self.loaded.is_set() and not self.registry.busy(
            {ns for c in self.catalog.all() for ns in c.namespaces.values()}
        )

    async def current(self) -> Services:
        """Wait for the start-up load, then apply other workers' writes, before a request.

        Requests never see a half-loaded segment, and see every write any worker on this
        host has acknowledged (read-your-writes across workers).
        """
        if not self.loaded.is_set():
            try:
                await asyncio.wait_for(self.loaded.wait(), LOAD_WAIT_SECONDS)
            except TimeoutError:
                raise NotReady("Service is still loading its indexes, retry later") from None
        await self.feed.ensure_current()
        return self

    async def start(self) -> None:
        self.registry.start()

    async def run_background(self) -> None:
        """Load the segments, then follow the change feed and reap idle sessions."""
        await self.load_segments()
        await asyncio.gather(
            self.feed.poll(self.settings.sync_interval),
            self.reap_sessions(self.settings.reap_interval),
            self.publish_building(PUBLISH_BUILDING_SECONDS),
        )

    async def publish_building(self, interval: float) -> None:
        """Background loop: tell the other workers what this one has applied and builds."""
        if self.board.folder is None:
            return  # one worker: nobody to tell
        while True:
            self.board.publish(self.registry.building(), self.feed.seen)
            await asyncio.sleep(interval)

    async def reap_sessions(self, interval: float) -> None:
        """Background loop: delete resumable queries idle past their max idle time."""
        while True:
            await asyncio.sleep(interval)
            try:
                reaped = await self.sessions.reap()
                if reaped:
                    log.info("reaped %d idle resumable queries", reaped)
            except Exception:
                log.exception("reaping idle resumable queries failed")

    async def load_segments(self) -> None:
        """Read every stored vector into memory; the indexer builds graphs as they fill.

        One REPEATABLE READ snapshot covers the catalog, the vectors and the per-namespace
        high-water marks, so the change feed continues exactly where the load stopped.
        """
        started = time.perf_counter()
        total = 0
        async with self.db.snapshot() as conn:
            await self.catalog.load(conn)
            self.feed.applied.update(await repository.latest_seqs(conn))
            for collection in self.catalog.all():
                for namespace_id in collection.namespaces.values():
                    for vector_name, params in collection.config.vectors.items():
                        total += await self._load_segment(conn, namespace_id, vector_name, params)
                    for vector_name in collection.config.sparse_vectors:
                        total += await self._load_sparse(conn, namespace_id, vector_name)
            await self.columns.sync(conn)
        self.loaded.set()
        self.registry.notify()
        log.info("loaded %d vectors in %.1f s", total, time.perf_counter() - started)

    async def _load_segment(
        self, conn: AsyncConnection, namespace_id: int, vector_name: str, params: VectorParams
    ) -> int:
        segment = self.registry.ensure(namespace_id, vector_name, params)
        loaded = 0
        async for batch in repository.stream_vectors(conn, namespace_id, vector_name):
            raw = b"".join(v.vector for v in batch)
            vectors = np.frombuffer(raw, dtype=np.float32).reshape(len(batch), params.size)
            await self.cpu.run(
                segment.upsert, [v.id for v in batch], vectors, [v.seq for v in batch]
            )
            loaded += len(batch)
        return loaded

    async def _load_sparse(self, conn: AsyncConnection, namespace_id: int, vector_name: str) -> int:
        index = self.registry.ensure_sparse(namespace_id, vector_name)
        loaded = 0
        async for batch in repository.stream_vectors(conn, namespace_id, vector_name):
            await self.cpu.run(upsert_sparse, index, [(v.id, v.seq, v.vector) for v in batch])
            loaded += len(batch)
        return loaded

    async def stop(self) -> None:
        await asyncio.to_thread(self.registry.stop)
        await asyncio.to_thread(self.cpu.shutdown)
        await self.db.dispose()
        self.feed.signal.close()
        self.counters.close()
        self.board.close()
