"""A worker on another host (no shared write signal) learns of a collection from its poll.

The poll reads the catalog, then the points. It published the collection first, so while
the points were being read a request found the collection known and its segments empty:
searches answered nothing for a collection that held points. Two in-process workers on one
real database, with the remote's read of the points held open.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.db import repository
from app.db.database import Database
from app.db.migrate import upgrade_async
from app.errors import CollectionNotFound
from app.models import CollectionConfig, Distance, VectorParams
from app.services.container import Services
from app.services.points import PointInput
from app.services.search import SearchRequest
from app.settings import Settings


def make_services(database_url: str, signal_dir) -> Services:
    settings = Settings(database_url=database_url, signal_dir=signal_dir)
    return Services(settings, Database(database_url))


@pytest.fixture
def hosts(database_url: str, tmp_path) -> tuple[Services, Services]:
    asyncio.run(upgrade_async(database_url))
    return make_services(database_url, tmp_path / "a"), make_services(database_url, tmp_path / "b")


def test_a_polled_collection_is_published_only_with_its_points(
    hosts: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, remote = hosts
    config = CollectionConfig(vectors={"": VectorParams(size=4, distance=Distance.DOT)})
    vectors = np.random.default_rng(5).normal(size=(50, 4)).tolist()
    points = [PointInput(id=i, vectors={"": v}) for i, v in enumerate(vectors)]
    reading, release = asyncio.Event(), asyncio.Event()
    changes_since = repository.changes_since

    async def held_changes_since(conn, since):
        found = await changes_since(conn, since)
        reading.set()
        await release.wait()
        return found

    async def nearest(services: Services) -> list[int] | str:
        request = SearchRequest(vector=vectors[7], limit=1)
        try:
            return [p.id for p in (await services.search.search("far", request)).points]
        except CollectionNotFound:
            return "not found"

    async def scenario() -> tuple[list[int] | str, list[int] | str, int]:
        await writer.load_segments()
        await remote.load_segments()
        await writer.collections.create("far", config)
        await writer.points.upsert("far", points)
        monkeypatch.setattr(repository, "changes_since", held_changes_since)
        poll = asyncio.create_task(remote.feed.catch_up(force=True))
        await reading.wait()
        while_reading = await nearest(remote)
        release.set()
        await poll
        after = await nearest(remote)
        namespace_id = remote.catalog.get("far").namespaces[""]
        loaded = len(remote.registry.get(namespace_id, ""))
        for services in (writer, remote):
            await services.stop()
        return while_reading, after, loaded

    while_reading, after, loaded = asyncio.run(scenario())
    assert while_reading == "not found"  # not [] from segments not filled yet
    best = int(np.argmax(np.asarray(vectors, dtype=np.float32) @ np.float32(vectors[7])))
    assert after == [best]
    assert loaded == 50
