"""Workers on one host learn of each other's writes from a shared counter before a request.

After another worker's point write, a worker read PostgreSQL's whole catalog (later its
fingerprint, 2.5 ms of PostgreSQL with 1000 collections) as well as the new points: a
second counter, bumped only by catalog changes, tells it when the catalog must be read.
Two in-process workers sharing one signal folder, on one real database.
"""

from __future__ import annotations

import asyncio

import pytest

from app.db import repository
from app.models import CollectionConfig, Distance, VectorParams
from app.services.container import Services
from app.services.points import PointInput
from tests.test_remote_catch_up import make_services


@pytest.fixture
def workers(database_url: str, tmp_path) -> tuple[Services, Services]:
    from app.db.migrate import upgrade_async

    asyncio.run(upgrade_async(database_url))
    return make_services(database_url, tmp_path), make_services(database_url, tmp_path)


def test_only_catalog_changes_make_a_worker_read_the_catalog(
    workers: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = workers
    config = CollectionConfig(vectors={"": VectorParams(size=2, distance=Distance.DOT)})
    fingerprints = 0
    catalog_fingerprint = repository.catalog_fingerprint

    async def counted_fingerprint(conn):
        nonlocal fingerprints
        fingerprints += 1
        return await catalog_fingerprint(conn)

    monkeypatch.setattr(repository, "catalog_fingerprint", counted_fingerprint)

    async def catalog_reads_before_a_request() -> int:
        """Fingerprint queries: one to compare, one more as a changed catalog is read."""
        before = fingerprints
        await reader.current()
        return fingerprints - before

    async def scenario() -> list[tuple[int, object]]:
        await writer.load_segments()
        await reader.load_segments()
        seen: list[tuple[int, object]] = []
        await writer.collections.create("near", config)
        seen.append((await catalog_reads_before_a_request(), reader.catalog.find("near")))
        await writer.points.upsert("near", [PointInput(id=1, vectors={"": [1.0, 0.0]})])
        namespace_id = reader.catalog.get("near").namespaces[""]
        reads = await catalog_reads_before_a_request()
        seen.append((reads, len(reader.registry.get(namespace_id, ""))))
        await writer.payload_indexes.create("near", "colour", "keyword")
        reads = await catalog_reads_before_a_request()
        seen.append((reads, sorted(reader.registry.declared_fields(namespace_id))))
        await writer.points.upsert("near", [PointInput(id=2, vectors={"": [0.0, 1.0]})])
        reads = await catalog_reads_before_a_request()
        seen.append((reads, len(reader.registry.get(namespace_id, ""))))
        await writer.collections.delete("near")
        seen.append((await catalog_reads_before_a_request(), reader.catalog.find("near")))
        for services in (writer, reader):
            await services.stop()
        return seen

    created, written, indexed, written_again, deleted = asyncio.run(scenario())
    assert created[0] == 2 and created[1] is not None
    assert written == (0, 1)  # the point is there, the catalog was not looked at
    assert indexed == (2, ["colour"])
    assert written_again == (0, 2)
    assert deleted == (2, None)
