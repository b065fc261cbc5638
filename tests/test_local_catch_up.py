"""Workers on one host learn of each other's writes from a shared counter before a request.

After another worker's point write, a worker read PostgreSQL's whole catalog (later its
fingerprint, 2.5 ms of PostgreSQL with 1000 collections) as well as the new points: a
second counter, bumped only by catalog changes, tells it when the catalog must be read.
And it asked for newer rows of every namespace: the signal's ring of recent writes names
the namespaces written. Two in-process workers sharing one signal folder, on one real
database; and the signal alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from app.db import repository
from app.services.change_feed import ChangeSignal
from app.services.container import Services
from app.services.points import PointInput
from tests.test_remote_catch_up import TWO_D, CallCount, make_services


@pytest.fixture
def workers(database_url: str, tmp_path) -> tuple[Services, Services]:
    from app.db.migrate import upgrade_async

    asyncio.run(upgrade_async(database_url))
    return make_services(database_url, tmp_path), make_services(database_url, tmp_path)


def test_only_catalog_changes_make_a_worker_read_the_catalog(
    workers: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = workers
    fingerprints = CallCount(monkeypatch, repository, "catalog_fingerprint")

    def catalog_reads_before_a_request() -> Awaitable[int]:
        """Fingerprint queries (one, to compare, whether or not the catalog is read)."""
        return fingerprints.during(reader.current())

    async def scenario() -> list[tuple[int, object]]:
        await writer.load_segments()
        await reader.load_segments()
        seen: list[tuple[int, object]] = []
        await writer.collections.create("near", TWO_D)
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
    assert created[0] == 1 and created[1] is not None
    assert written == (0, 1)  # the point is there, the catalog was not looked at
    assert indexed == (1, ["colour"])
    assert written_again == (0, 2)
    assert deleted == (1, None)


def test_a_worker_asks_only_about_the_namespaces_written(
    workers: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = workers
    asked: list[set[int]] = []
    changed_rows = repository.changed_rows

    async def recorded_changed_rows(conn, since):
        asked.append(set(since))
        return await changed_rows(conn, since)

    async def scenario() -> tuple[int, int, int]:
        await writer.load_segments()
        await reader.load_segments()
        for name in ("left", "right"):
            await writer.collections.create(name, TWO_D)
        await reader.current()
        monkeypatch.setattr(repository, "changed_rows", recorded_changed_rows)
        await writer.points.upsert("left", [PointInput(id=1, vectors={"": [1.0, 0.0]})])
        await reader.current()
        await writer.points.upsert("right", [PointInput(id=1, vectors={"": [0.0, 1.0]})])
        await writer.points.upsert("left", [PointInput(id=2, vectors={"": [0.0, 1.0]})])
        await reader.current()
        await reader.feed.catch_up(force=True)  # a poll still asks about every namespace
        left, right = (reader.catalog.get(name).namespaces[""] for name in ("left", "right"))
        sizes = len(reader.registry.get(left, "")), len(reader.registry.get(right, ""))
        for services in (writer, reader):
            await services.stop()
        return left, right, sizes

    left, right, sizes = asyncio.run(scenario())
    assert asked[:2] == [{left}, {left, right}]
    assert {left, right} <= asked[2]
    assert sizes == (2, 1)


def test_the_signal_names_the_namespaces_written_while_its_ring_holds_them(tmp_path) -> None:
    signal = ChangeSignal("postgresql://nowhere/ring", tmp_path)
    try:
        start = signal.current()
        signal.bump(namespace_id=7)
        signal.bump(namespace_id=9)
        signal.bump(namespace_id=7)
        assert signal.since(start) == (start + 3, 0, frozenset({7, 9}))
        assert signal.since(start + 2).namespaces == frozenset({7})
        assert signal.since(start + 3).namespaces == frozenset()
        signal.bump(catalog=True)
        assert signal.since(start).namespaces is None  # a catalog change: anything
        assert signal.since(start + 4) == (start + 4, 1, frozenset())
        signal.bump()  # a write that named no namespace
        assert signal.since(start + 4).namespaces is None
        for _ in range(ChangeSignal.RING):
            signal.bump(namespace_id=3)
        newest = signal.current()
        assert signal.since(newest - ChangeSignal.RING).namespaces == frozenset({3})
        assert signal.since(newest - ChangeSignal.RING - 1).namespaces is None  # overwritten
        again = ChangeSignal("postgresql://nowhere/ring", tmp_path)  # another process's view
        try:
            assert again.since(newest - 1) == (newest, 1, frozenset({3}))
        finally:
            again.close()
    finally:
        signal.close()
