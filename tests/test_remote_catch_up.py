"""A worker on another host (no shared write signal) learns of changes from its poll.

The poll reads the catalog, then the points. It published the collection first, so while
the points were being read a request found the collection known and its segments empty:
searches answered nothing for a collection that held points. And it read every collection
again on every poll, however idle: with 1000 collections a worker used 8.5 % of a CPU
doing nothing. Two in-process workers on one real database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import numpy as np
import pytest

from app.db import repository
from app.db.database import Database
from app.db.migrate import upgrade_async
from app.errors import CollectionNotFound
from app.models import CollectionConfig, Distance, VectorParams
from app.services.collections import AliasAction, ConfigChange
from app.services.container import Services
from app.services.points import PointInput
from app.services.search import SearchRequest
from app.services.upstash import UpstashService
from app.settings import Settings


def make_services(database_url: str, signal_dir) -> Services:
    settings = Settings(database_url=database_url, signal_dir=signal_dir)
    return Services(settings, Database(database_url))


TWO_D = CollectionConfig(vectors={"": VectorParams(size=2, distance=Distance.DOT)})


class CallCount:
    """Counts the calls of an async function replaced in its module (`calls`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.calls = 0
        original = getattr(module, name)

        async def counted(*args, **kwargs):
            self.calls += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    async def during(self, awaitable: Awaitable[object]) -> int:
        """The calls made while `awaitable` runs."""
        before = self.calls
        await awaitable
        return self.calls - before


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
    changed_rows = repository.changed_rows

    async def held_changed_rows(conn, since):
        found = await changed_rows(conn, since)
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
        monkeypatch.setattr(repository, "changed_rows", held_changed_rows)
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


def test_an_idle_poll_reads_no_catalog_and_every_catalog_change_is_seen(
    hosts: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, remote = hosts
    catalog_reads = CallCount(monkeypatch, repository, "select_collections")

    def poll() -> Awaitable[int]:
        """Catalog reads of one remote poll."""
        return catalog_reads.during(remote.feed.catch_up(force=True))

    def view() -> dict:
        """What the remote knows of the collections named `seen*`."""
        seen = remote.catalog.find("seen")
        assert seen is not None
        return {
            "collections": sorted(c.name for c in remote.catalog.all() if c.name[:4] == "seen"),
            "aliases": remote.catalog.aliases(),
            "namespaces": sorted(seen.namespaces),
            "ef_construct": seen.config.hnsw.ef_construct,
            "fields": sorted(remote.registry.declared_fields(seen.namespaces[""])),
        }

    async def scenario() -> list[tuple[int, dict]]:
        await writer.load_segments()
        await remote.load_segments()
        upstash = UpstashService.of(writer)
        changes = [
            lambda: writer.collections.create("seen_too", TWO_D),
            lambda: writer.collections.update("seen", ConfigChange(hnsw={"ef_construct": 64})),
            lambda: writer.collections.update_aliases(
                [AliasAction("create", "seen_alias", collection="seen")]
            ),
            lambda: writer.collections.ensure_namespace("seen", "ns"),
            lambda: upstash.rename_namespace("seen", "ns", "renamed"),
            lambda: writer.payload_indexes.create("seen", "colour", "keyword"),
            lambda: writer.payload_indexes.delete("seen", "colour"),
            lambda: upstash.delete_namespace("seen", "renamed"),
            lambda: writer.collections.delete("seen_too"),
        ]
        await writer.collections.create("seen", TWO_D, dialect="upstash")
        seen = [(await poll(), view()), (await poll(), view())]
        for change in changes:
            await change()
            seen.append((await poll(), view()))
            seen.append((await poll(), view()))  # idle again
        for services in (writer, remote):
            await services.stop()
        return seen

    seen = asyncio.run(scenario())
    assert [reads for reads, _ in seen] == [1, 0] * 10  # each change read once, then idle
    views = [view for _, view in seen[::2]]
    assert views[0]["collections"] == ["seen"]
    assert views[1]["collections"] == ["seen", "seen_too"]
    assert views[2]["ef_construct"] == 64
    assert views[3]["aliases"] == {"seen_alias": "seen"}
    assert views[4]["namespaces"] == ["", "ns"]
    assert views[5]["namespaces"] == ["", "renamed"]
    assert views[6]["fields"] == ["colour"]
    assert views[7]["fields"] == []
    assert views[8]["namespaces"] == [""]
    assert views[9]["collections"] == ["seen"]
    assert seen[-1][1] == seen[-2][1]  # an idle poll changes nothing


def test_a_change_made_here_and_undone_elsewhere_is_seen(
    hosts: tuple[Services, Services],
) -> None:
    """The catalog kept the fingerprint of its last read across this worker's own changes:
    a collection created here and deleted on another host brought PostgreSQL back to that
    fingerprint, and the poll kept showing the deleted collection."""
    writer, remote = hosts

    async def scenario() -> tuple[bool, bool]:
        await writer.load_segments()
        await remote.load_segments()
        await remote.collections.create("undone", TWO_D)
        await writer.feed.catch_up(force=True)
        await writer.collections.delete("undone")
        await remote.feed.catch_up(force=True)
        known = remote.catalog.find("undone") is not None
        await writer.collections.create("kept", TWO_D)
        await remote.feed.catch_up(force=True)
        kept = remote.catalog.find("kept") is not None
        for services in (writer, remote):
            await services.stop()
        return known, kept

    assert asyncio.run(scenario()) == (False, True)
