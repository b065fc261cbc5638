"""Durability: whatever a server acknowledged survives a crash (SIGKILL) or a graceful stop,
and a new server on the same database answers the same queries identically."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

DIM = 8
N_POINTS = 500
N_QUERIES = 20
NAMES = {"cos": models.Distance.COSINE, "euc": models.Distance.EUCLID}


@contextmanager
def connect(server) -> Iterator[QdrantClient]:
    # No version probe: its background thread could outlive a server the test kills.
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    try:
        yield client
    finally:
        client.close()


def normalise(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = np.linalg.norm(vector)
    return (vector / (norm if norm else 1)).astype(np.float32)


class Expected:
    """What the service acknowledged, kept by the test: the truth a restart must keep."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.points: dict[int, tuple[dict[str, np.ndarray], dict]] = {}

    def make_points(self, ids) -> list[models.PointStruct]:
        structs = []
        for pid in ids:
            vectors = {n: self.rng.standard_normal(DIM).astype(np.float32) for n in NAMES}
            payload = {"id": pid, "half": pid % 2, "tag": f"p{pid}", "nested": {"x": [pid, 1]}}
            self.points[pid] = (vectors, payload)
            structs.append(
                models.PointStruct(
                    id=pid, vector={n: v.tolist() for n, v in vectors.items()}, payload=payload
                )
            )
        return structs

    def forget(self, ids) -> None:
        for pid in ids:
            self.points.pop(pid, None)

    def queries(self, count: int) -> list[tuple[str, list[float]]]:
        names = list(NAMES)
        return [
            (names[i % 2], self.rng.standard_normal(DIM).astype(np.float32).tolist())
            for i in range(count)
        ]


def create(client: QdrantClient, name: str) -> None:
    client.create_collection(
        name,
        vectors_config={n: models.VectorParams(size=DIM, distance=d) for n, d in NAMES.items()},
    )


def upload(client: QdrantClient, name: str, expected: Expected, ids, batch: int = 100) -> None:
    ids = list(ids)
    for start in range(0, len(ids), batch):
        points = expected.make_points(ids[start : start + batch])
        result = client.upsert(name, points=points, wait=True)
        assert result.status == models.UpdateStatus.COMPLETED


def answers(client: QdrantClient, name: str, queries) -> list[list[tuple]]:
    out = []
    for using, vector in queries:
        points = client.query_points(
            name, query=vector, using=using, limit=10, with_payload=True
        ).points
        out.append([(p.id, p.score, p.version, p.payload) for p in points])
    return out


def assert_same_answers(got: list[list[tuple]], want: list[list[tuple]]) -> None:
    assert len(got) == len(want)
    for got_hits, want_hits in zip(got, want, strict=True):
        assert [h[0] for h in got_hits] == [h[0] for h in want_hits]
        np.testing.assert_allclose(
            [h[1] for h in got_hits], [h[1] for h in want_hits], rtol=0, atol=1e-6
        )
        assert [h[2] for h in got_hits] == [h[2] for h in want_hits]  # versions persist
        assert [h[3] for h in got_hits] == [h[3] for h in want_hits]


def assert_has_everything(client: QdrantClient, name: str, expected: Expected) -> None:
    """Count, collection info, and every acknowledged point with its payload and vectors."""
    assert client.count(name, exact=True).count == len(expected.points)
    info = client.get_collection(name)
    assert info.points_count == len(expected.points)
    assert info.config.params.vectors == {
        n: models.VectorParams(size=DIM, distance=d) for n, d in NAMES.items()
    }
    ids = sorted(expected.points)
    records = client.retrieve(name, ids=ids, with_payload=True, with_vectors=True)
    assert [r.id for r in records] == ids
    for record in records:
        vectors, payload = expected.points[record.id]
        assert record.payload == payload
        np.testing.assert_allclose(record.vector["cos"], normalise(vectors["cos"]), atol=1e-6)
        assert record.vector["euc"] == vectors["euc"].tolist()
    scrolled: list = []
    offset = None
    while True:
        page, offset = client.scroll(name, limit=200, offset=offset, with_payload=False)
        scrolled.extend(r.id for r in page)
        if offset is None:
            break
    assert scrolled == ids


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_restart_keeps_points_and_answers(server_factory, how: str) -> None:
    name = f"restart_{how}"
    expected = Expected(seed=21 if how == "kill" else 22)
    first = server_factory()
    with connect(first) as client:
        create(client, name)
        upload(client, name, expected, range(N_POINTS))
        # Some acknowledged deletes and replacements must survive too.
        gone = [3, 99, 250, 499]
        client.delete(name, points_selector=models.PointIdsList(points=gone), wait=True)
        expected.forget(gone)
        upload(client, name, expected, [10, 20, 30])
        queries = expected.queries(N_QUERIES)
        before = answers(client, name, queries)
        assert_has_everything(client, name, expected)
    assert sum(len(hits) for hits in before) == 10 * N_QUERIES

    if how == "kill":
        first.kill()
    else:
        first.stop()
    assert first.process is not None
    # SIGKILL runs no shutdown code. SIGTERM must: uvicorn completes the shutdown, then
    # re-raises the signal, so -15 (or 0) with the lifespan's shutdown logged.
    shutdown_logged = "Application shutdown complete" in first.log_path.read_text()
    if how == "kill":
        assert first.process.returncode == -9
        assert not shutdown_logged
    else:
        assert first.process.returncode in (0, -15)
        assert shutdown_logged

    second = server_factory()
    with connect(second) as client:
        assert client.collection_exists(name)
        assert_has_everything(client, name, expected)
        assert_same_answers(answers(client, name, queries), before)
        # The restarted server keeps working: it takes writes and serves them.
        upload(client, name, expected, [N_POINTS + 1])
        assert client.count(name).count == len(expected.points)
    second.stop()


def test_wait_true_upserts_right_before_kill_survive(server_factory) -> None:
    name = "restart_last_write"
    expected = Expected(seed=23)
    server = server_factory()
    with connect(server) as client:
        create(client, name)
        upload(client, name, expected, range(50))
    for round_ in range(3):
        with connect(server) as client:
            # The last acknowledged write, then a crash with no pause in between.
            start = 1000 + 10 * round_
            upload(client, name, expected, range(start, start + 10), batch=10)
            client.upsert(name, points=expected.make_points([7]), wait=True)  # replace one
        server.kill()
        server = server_factory()
        with connect(server) as client:
            assert_has_everything(client, name, expected)
            vectors, _ = expected.points[start + 9]
            top = client.query_points(
                name, query=vectors["euc"].tolist(), using="euc", limit=1
            ).points[0]
            assert top.id == start + 9
            assert top.score == pytest.approx(0.0, abs=1e-6)
    server.stop()
