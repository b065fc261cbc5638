"""`PATCH /collections/{name}` (qdrant-client's `update_collection`): the change is stored,
shown by collection info, kept across a restart and followed by every worker; graph
parameters rebuild the graphs; bad changes are refused whole."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from tests.test_qdrant_errors import assert_error

TWO_WORKERS = {"WAYPOINT_WORKERS": "2"}


def config(http: httpx.Client, name: str) -> dict:
    response = http.get(f"/collections/{name}")
    assert response.status_code == 200, response.text
    return response.json()["result"]["config"]


def wait_green(http: httpx.Client, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while http.get(f"/collections/{name}").json()["result"]["status"] != "green":
        assert time.monotonic() < deadline, "never green"
        time.sleep(0.05)


def plans(url: str, name: str, queries: list[list[float]]) -> list[str]:
    """The plan of each query, each on a new connection (dealt to every worker in turn)."""
    return [
        httpx.post(f"{url}/collections/{name}/points/query", json={"query": q, "limit": 5}).headers[
            "waypoint-plan"
        ]
        for q in queries
    ]


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(TWO_WORKERS)


def test_a_change_is_shown_and_kept_across_a_restart(server_factory) -> None:
    first = server_factory()
    client = QdrantClient(url=first.url, prefer_grpc=False, timeout=30)
    client.create_collection(
        "tuned",
        vectors_config={
            "text": models.VectorParams(size=4, distance=models.Distance.COSINE),
            "image": models.VectorParams(
                size=2,
                distance=models.Distance.DOT,
                hnsw_config=models.HnswConfigDiff(m=24),
            ),
        },
    )
    assert client.update_collection(
        "tuned",
        hnsw_config=models.HnswConfigDiff(ef_construct=123, full_scan_threshold=2000),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=5000),
        vectors_config={"image": models.VectorParamsDiff(hnsw_config=models.HnswConfigDiff(m=8))},
    )
    assert client.update_collection(
        "tuned",
        collection_params=models.CollectionParamsDiff(replication_factor=2, on_disk_payload=False),
    )

    def check(info: models.CollectionInfo) -> None:
        assert info.config.hnsw_config.ef_construct == 123
        assert info.config.hnsw_config.full_scan_threshold == 2000
        assert info.config.hnsw_config.m == 16  # unchanged
        assert info.config.optimizer_config.indexing_threshold == 5000
        assert info.config.params.replication_factor == 2
        assert info.config.params.on_disk_payload is False
        vectors = info.config.params.vectors
        assert vectors["image"].hnsw_config.m == 8
        assert vectors["text"].hnsw_config is None  # follows the collection's
        assert vectors["text"].size == 4

    check(client.get_collection("tuned"))

    scalar = models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99)
    )
    assert client.update_collection("tuned", quantization_config=scalar)
    assert client.get_collection("tuned").config.quantization_config == scalar
    assert client.update_collection("tuned", quantization_config=models.Disabled.DISABLED)
    assert client.get_collection("tuned").config.quantization_config is None
    first.stop()
    second = server_factory(database=first.database_url)
    check(QdrantClient(url=second.url, prefer_grpc=False, timeout=30).get_collection("tuned"))


def test_full_scan_threshold_switches_every_worker_between_scan_and_graph(server) -> None:
    vectors = np.random.default_rng(7).normal(size=(3000, 32)).round(4).tolist()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        http.put("/collections/switch", json={"vectors": {"size": 32, "distance": "Euclid"}})
        body = {"batch": {"ids": list(range(len(vectors))), "vectors": vectors}}
        assert http.put("/collections/switch/points?wait=true", json=body).is_success
        wait_green(http, "switch")
        # 10000 KB of 32-d float32 vectors is 80,000 points: every search scans
        assert set(plans(server.url, "switch", vectors[:8])) == {"exact"}

        change = {"hnsw_config": {"full_scan_threshold": 10}}  # 80 points
        assert http.patch("/collections/switch", json=change).json()["result"] is True
        wait_green(http, "switch")
        assert set(plans(server.url, "switch", vectors[:8])) == {"hnsw"}
        assert config(http, "switch")["hnsw_config"]["full_scan_threshold"] == 10


def test_new_graph_parameters_rebuild_the_graphs(server) -> None:
    vectors = np.random.default_rng(8).normal(size=(3000, 8)).round(4).tolist()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        http.put(
            "/collections/rebuilt",
            json={
                "vectors": {"size": 8, "distance": "Euclid"},
                "hnsw_config": {"full_scan_threshold": 10},
            },
        )
        body = {"batch": {"ids": list(range(len(vectors))), "vectors": vectors}}
        assert http.put("/collections/rebuilt/points?wait=true", json=body).is_success
        wait_green(http, "rebuilt")

        change = {"hnsw_config": {"m": 8, "ef_construct": 40}}
        assert http.patch("/collections/rebuilt", json=change).json()["result"] is True
        # every worker rebuilds its graph (tests/test_segment.py shows the new one is used):
        # yellow until the last is done, then green, and the rebuilt graphs find the points
        wait_green(http, "rebuilt")
        assert config(http, "rebuilt")["hnsw_config"]["m"] == 8
        for i, vector in enumerate(vectors[:8]):
            query = {"query": vector, "params": {"hnsw_ef": 256}}
            found = http.post("/collections/rebuilt/points/query", json=query)
            assert found.headers["waypoint-plan"] == "hnsw"
            assert found.json()["result"]["points"][0]["id"] == i


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"vectors": {"nope": {"on_disk": True}}}, 400, "Not existing vector name error: nope"),
        ({"hnsw_config": {"ef_construct": 2}}, 400, "ef_construct 4..4096"),
        ({"hnsw_config": {"full_scan_threshold": 5}}, 400, "full_scan_threshold"),
        ({"hnsw_config": {"m": "many"}}, 400, "must be integers"),
        ({"hnsw_config": [16]}, 400, "hnsw_config must be an object"),
        ({"vectors": {"": {"hnsw_config": {"m": 1}}}}, 400, "vectors.hnsw_config.m"),
        ({"params": {"replication_factor": 0}}, 400, "replication_factor"),
        ({"optimizers_config": 7}, 400, "optimizers_config must be an object"),
        ({"sparse_vectors": {"s": {}}}, 400, "Not existing vector name error: s"),
    ],
)
def test_a_bad_change_is_refused_and_changes_nothing(server, change, status, message) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        if http.get("/collections/refused/exists").json()["result"]["exists"] is False:
            http.put("/collections/refused", json={"vectors": {"size": 3, "distance": "Dot"}})
        before = config(http, "refused")
        # a valid part next to the bad one must not be applied either
        assert_error(
            http.patch("/collections/refused", json={"hnsw_config": {"m": 30}} | change),
            status,
            message,
        )
        assert config(http, "refused") == before


def test_updating_a_missing_collection_is_404(server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.patch("/collections/absent", json={"optimizers_config": {}})
    assert_error(response, 404, "Collection `absent` doesn't exist")
