"""A catalog reload racing a collection change must not undo it.

The change feed reloads the catalog from PostgreSQL (on its poll, or when another worker
wrote). If it read the catalog just before this worker committed a new collection and
compared after the worker had added it, it dropped the new collection from memory: the
next upsert answered 404. Run in-process against a real database, with the reload started
right before each create so the two interleave.
"""

from __future__ import annotations

import asyncio

import pytest

from app.db.database import Database
from app.db.migrate import upgrade_async
from app.models import CollectionConfig, Distance, VectorParams
from app.services.container import Services
from app.services.upstash import UpstashService, index_config
from app.settings import Settings


@pytest.fixture
def services(database_url: str, tmp_path) -> Services:
    asyncio.run(upgrade_async(database_url))
    settings = Settings(database_url=database_url, signal_dir=tmp_path)
    return Services(settings, Database(database_url))


def test_a_reload_never_drops_a_collection_created_meanwhile(services: Services) -> None:
    config = CollectionConfig(vectors={"": VectorParams(size=2, distance=Distance.DOT)})

    async def race() -> list[str]:
        await services.load_segments()
        lost = []
        for i in range(30):
            reload = asyncio.create_task(services.feed.catch_up(force=True))
            await asyncio.sleep(0)  # the reload reads the catalog first
            await services.collections.create(f"raced{i}", config)
            await reload
            if services.catalog.find(f"raced{i}") is None:
                lost.append(f"raced{i}")
        await services.db.dispose()
        return lost

    assert asyncio.run(race()) == []


def test_a_reload_never_brings_back_a_namespace_deleted_or_renamed_meanwhile(
    services: Services,
) -> None:
    """The same race for Upstash namespaces: a reload that read the catalog before a delete
    or rename committed put the old names back, until the next poll."""

    async def race() -> list[int]:
        await services.load_segments()
        await services.collections.create("spaces", index_config(2, "COSINE"), dialect="upstash")
        upstash = UpstashService.of(services)
        stale = []
        for i in range(30):
            await services.collections.ensure_namespace("spaces", f"gone{i}")
            await services.collections.ensure_namespace("spaces", f"old{i}")
            reload = asyncio.create_task(services.feed.catch_up(force=True))
            await asyncio.sleep(0)  # the reload reads the catalog first
            await upstash.delete_namespace("spaces", f"gone{i}")
            await upstash.rename_namespace("spaces", f"old{i}", f"new{i}")
            await reload
            names = upstash.list_namespaces("spaces")
            if f"gone{i}" in names or f"old{i}" in names or f"new{i}" not in names:
                stale.append(i)
        await services.db.dispose()
        return stale

    assert asyncio.run(race()) == []
