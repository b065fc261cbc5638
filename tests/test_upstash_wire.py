"""The Upstash dialect on the wire, below the SDK: the documented verbs, the error envelope
for every kind of failure, batch flattening, `random`, `rename-namespace`, the scores of
each similarity function, and namespace changes seen by a second server process."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from litestar import Litestar, post
from litestar.testing import TestClient
from upstash_vector import Index

from app.api.envelope import handle_error

TOKEN = "token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def servers(server_factory) -> tuple[str, str]:
    env = {"WAYPOINT_API_KEY": TOKEN}
    return server_factory(env=env).url, server_factory(env=env).url


@pytest.fixture(scope="module")
def wire(servers) -> str:
    """An index with "" = {a: [1, 0], b: [0, 1] (metadata), c: [1, 1] (data)} and "ns"."""
    url = f"{servers[0]}/upstash/wire"
    created = httpx.put(url, json={"dimension": 2, "similarityFunction": "COSINE"}, headers=AUTH)
    assert created.json() == {"result": "Success"}
    vectors = [
        {"id": "a", "vector": [1.0, 0.0]},
        {"id": "b", "vector": [0.0, 1.0], "metadata": {"m": 1}},
        {"id": "c", "vector": [1.0, 1.0], "data": "see"},
    ]
    assert send(url, "/upsert", vectors) == "Success"
    assert send(url, "/upsert/ns", {"id": 7, "vector": [0.5, 0.5]}) == "Success"  # one object
    return url


def request(url: str, path: str, body: Any = None, method: str = "POST") -> httpx.Response:
    content = None if body is None else httpx.Request("POST", "/", json=body).content
    return httpx.request(method, f"{url}{path}", content=content, headers=AUTH, timeout=30)


def send(url: str, path: str, body: Any = None, method: str = "POST") -> Any:
    """The `result` of a successful call."""
    response = request(url, path, body, method)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def failure(url: str, path: str, body: Any = None, method: str = "POST") -> tuple[int, str]:
    """Status and message of a failed call, checking Upstash's `{"error", "status"}` shape."""
    response = request(url, path, body, method)
    payload = response.json()
    assert set(payload) == {"error", "status"}, payload
    assert payload["status"] == response.status_code
    return response.status_code, payload["error"]


def test_documented_verbs_are_accepted(wire) -> None:
    assert send(wire, "/info", method="GET")["namespaces"] == {
        "": {"vectorCount": 3, "pendingVectorCount": 0},
        "ns": {"vectorCount": 1, "pendingVectorCount": 0},
    }
    assert send(wire, "/list-namespaces", method="GET") == ["", "ns"]
    fetched = send(wire, "/fetch", {"ids": ["b", "7"], "includeMetadata": True}, method="GET")
    assert fetched == [{"id": "b", "metadata": {"m": 1}}, None]
    assert send(wire, "/fetch/ns", {"ids": [7]}, method="GET") == [{"id": "7"}]
    page = send(wire, "/range", {"cursor": "0", "limit": 2, "includeData": True}, method="GET")
    assert page["vectors"] == [{"id": "a"}, {"id": "b"}] and page["nextCursor"].isdigit()
    assert send(wire, "/random/nowhere", method="GET") is None
    assert send(wire, "/upsert/tmp", [{"id": "t", "vector": [1, 0]}]) == "Success"
    assert send(wire, "/delete/tmp", {"ids": "t"}, method="DELETE") == {"deleted": 1}
    assert send(wire, "/reset/tmp", method="DELETE") == "Success"
    assert send(wire, "/delete-namespace/tmp", method="DELETE") == "Success"
    assert send(wire, "/list-namespaces", method="GET") == ["", "ns"]


def test_query_batches_flatten_as_documented(wire) -> None:
    one = {"vector": [1.0, 0.0], "topK": 1}
    other = {"vector": [0.0, 1.0], "topK": 1, "includeMetadata": True}
    assert send(wire, "/query", one) == [{"id": "a", "score": 1.0}]
    assert send(wire, "/query", [one]) == [{"id": "a", "score": 1.0}]
    assert send(wire, "/query", [one, other]) == [
        [{"id": "a", "score": 1.0}],
        [{"id": "b", "score": 1.0, "metadata": {"m": 1}}],
    ]
    assert send(wire, "/query", []) == []
    # Batch items carry only what the client set: topK 10, no fields, no filter.
    assert send(wire, "/query", [{"vector": [1.0, 0.0]}, {"vector": [0.0, 1.0]}])[1] == [
        {"id": "b", "score": 1.0},
        {"id": "c", "score": pytest.approx(0.8535534143447876, abs=0)},
        {"id": "a", "score": 0.5},
    ]


def test_random_returns_a_stored_vector(wire) -> None:
    stored = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0]}
    seen = set()
    for _ in range(30):
        picked = send(wire, "/random")
        assert set(picked) == {"id", "vector"} and picked["vector"] == stored[picked["id"]]
        seen.add(picked["id"])
    assert len(seen) > 1
    assert send(wire, "/random/ns") == {"id": "7", "vector": [0.5, 0.5]}


def test_rename_namespace(wire) -> None:
    assert send(wire, "/upsert/old", [{"id": "o", "vector": [1, 0], "data": "kept"}]) == "Success"
    assert send(wire, "/upsert/taken", [{"id": "t", "vector": [0, 1]}]) == "Success"
    rename = {"namespace": "old", "newNamespace": "new"}
    assert send(wire, "/rename-namespace", rename) == {"renamed": True}
    assert send(wire, "/fetch/new", {"ids": ["o"], "includeData": True}) == [
        {"id": "o", "data": "kept"}
    ]
    assert "old" not in send(wire, "/list-namespaces")
    assert send(wire, "/rename-namespace", {"namespace": "new", "newNamespace": "new"}) == {
        "renamed": False
    }
    taken = {"namespace": "new", "newNamespace": "taken"}
    assert failure(wire, "/rename-namespace", taken)[0] == 400
    assert send(wire, "/rename-namespace", {**taken, "deleteExisting": True}) == {"renamed": True}
    assert send(wire, "/fetch/taken", {"ids": ["o", "t"]}) == [{"id": "o"}, None]
    assert failure(wire, "/rename-namespace", {"namespace": "", "newNamespace": "x"})[0] == 400
    assert failure(wire, "/rename-namespace", {"namespace": "gone", "newNamespace": "x"}) == (
        404,
        "Namespace gone for the index wire does not exist",
    )
    assert send(wire, "/delete-namespace/taken") == "Success"


def test_every_failure_uses_the_error_envelope(wire, servers) -> None:
    assert failure(wire, "/no-such-route") == (404, "Not Found")
    assert failure(wire, "/info", method="PATCH") == (405, "Method Not Allowed")
    assert "GET" in request(wire, "/info", method="PATCH").headers["allow"]
    status, message = failure(wire, "/query", {"vector": "up"})
    assert status == 422 and message.startswith("Validation error in JSON body")
    assert failure(wire, "/range", {"limit": "all"}, method="GET")[0] == 422
    malformed = httpx.post(f"{wire}/upsert", content=b"{nope", headers=AUTH)
    assert malformed.json()["status"] == 400 and "error" in malformed.json()
    assert failure(wire, "/query", {"vector": [1.0, 0.0, 0.0]}) == (
        422,
        "Invalid vector dimension: 3, expected: 2",
    )
    no_model = "Embedding data is not supported: this index has no embedding model"
    assert failure(wire, "/upsert-data", [{"id": "d", "data": "x"}]) == (400, no_model)
    for path in ("/query-data", "/resumable-query-data/ns"):
        assert failure(wire, path, {"data": "x"}) == (400, f"{no_model}: query with a vector")
    sparse = {"id": "s", "vector": [1, 0], "sparseVector": {"indices": [1], "values": [1.0]}}
    assert failure(wire, "/upsert", [sparse])[0] == 400
    assert failure(wire, "/fetch", {})[0] == 400
    assert failure(wire, "/range", {"cursor": "x", "limit": 1})[0] == 400
    assert failure(wire, "/delete-namespace") == (400, "Cannot delete the default namespace")
    assert (
        failure(wire, "/update", {"id": "a", "metadataUpdateMode": "MERGE", "data": "x"})[0] == 400
    )
    assert failure(wire.replace("/wire", "/ghost"), "/info") == (404, "Index ghost does not exist")
    unauthorized = httpx.post(f"{wire}/info", headers={"Authorization": "Bearer nope"})
    assert unauthorized.json()["status"] == 401
    qdrant = httpx.put(
        f"{servers[0]}/collections/q",
        json={"vectors": {"size": 2, "distance": "Dot"}},
        headers={"api-key": TOKEN},
    )
    assert qdrant.status_code == 200
    assert failure(f"{servers[0]}/upstash/q", "/info")[0] == 404


NUL = "a\u0000b"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/upsert", [{"id": "n1", "vector": [1, 0], "metadata": {"m": NUL}}]),
        ("/upsert", [{"id": "n1", "vector": [1, 0], "metadata": {NUL: 1}}]),
        ("/upsert", [{"id": "n1", "vector": [1, 0], "data": NUL}]),
        ("/upsert", [{"id": "n1", "vector": [1, 0]}, {"id": NUL, "vector": [0, 1]}]),
        ("/upsert/a%00b", [{"id": "n1", "vector": [1, 0]}]),
        ("/update", {"id": "a", "metadata": {"m": NUL}}),
        ("/query", {"vector": [1, 0], "topK": 2, "filter": "m = 'a\u0000b'"}),
        ("/resumable-query", {"vector": [1, 0], "topK": 2, "filter": "a\u0000b = 1"}),
        ("/delete", {"filter": "m = 'a\u0000b'"}),
    ],
)
def test_nul_character_is_400_and_writes_nothing(wire, path: str, body: Any) -> None:
    """PostgreSQL's text and jsonb cannot hold U+0000: a request carrying one, to store or to
    filter on, is a 400 in Upstash's envelope and changes nothing."""
    before = send(wire, "/info", method="GET")
    fetch = {"ids": ["n1", "a", "b"], "includeMetadata": True, "includeData": True}
    fetched = send(wire, "/fetch", fetch)
    status, message = failure(wire, path, body)
    assert status == 400 and "NUL" in message, message
    assert send(wire, "/info", method="GET") == before
    assert send(wire, "/fetch", fetch) == fetched


def test_internal_errors_use_the_envelope_too() -> None:
    @post("/upstash/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    app = Litestar([broken], exception_handlers={Exception: handle_error})
    with TestClient(app) as client:
        response = client.post("/upstash/broken")
    assert response.status_code == 500
    assert response.json() == {"error": "Service internal error: RuntimeError", "status": 500}


@pytest.mark.parametrize(
    ("similarity", "stored", "query", "expected"),
    [
        ("EUCLIDEAN", [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [0.0, 0.0], [1.0, 1.0, 1.0 / 3.0]),
        ("DOT_PRODUCT", [[0.6, 0.8], [-1.0, 0.0], [3.0, 4.0]], [1.0, 0.0], [1.0, 0.8, 0.0]),
        ("COSINE", [[0.0, 1.0], [-2.0, 0.0], [5.0, 0.0]], [1.0, 0.0], [1.0, 0.5, 0.0]),
    ],
)
def test_scores_per_similarity_function(servers, similarity, stored, query, expected) -> None:
    """Reference §5: normalised to [0, 1], float32-rounded, clamped (a DOT_PRODUCT of
    vectors that are not unit length would exceed 1); ties by insertion order."""
    url = f"{servers[0]}/upstash/{similarity.lower()}"
    created = httpx.put(url, json={"dimension": 2, "similarityFunction": similarity}, headers=AUTH)
    assert created.json() == {"result": "Success"}
    send(url, "/upsert", [{"id": f"v{i}", "vector": v} for i, v in enumerate(stored)])
    scores = [(hit["id"], hit["score"]) for hit in send(url, "/query", {"vector": query})]
    assert [score for _, score in scores] == [float(np.float32(s)) for s in expected]
    if similarity == "EUCLIDEAN":
        assert [point_id for point_id, _ in scores] == ["v0", "v2", "v1"]
    assert Index(url=url, token=TOKEN).info().similarity_function == similarity


def test_index_creation_errors(servers) -> None:
    url = f"{servers[0]}/upstash/made"
    assert failure(url, "", {"dimension": 2, "similarityFunction": "HAMMING"}, method="PUT") == (
        400,
        "similarityFunction must be COSINE, EUCLIDEAN or DOT_PRODUCT",
    )
    assert failure(url, "", {"dimension": 0}, method="PUT")[0] == 400
    assert send(url, "", {"dimension": 4}, method="PUT") == "Success"  # COSINE by default
    assert failure(url, "", {"dimension": 4}, method="PUT")[0] == 409


def test_namespace_changes_reach_a_second_server_at_once(servers) -> None:
    first = Index(url=f"{servers[0]}/upstash/shared", token=TOKEN)
    second = Index(url=f"{servers[1]}/upstash/shared", token=TOKEN)
    created = httpx.put(
        f"{servers[1]}/upstash/shared", json={"dimension": 2}, headers=AUTH
    )  # made on the second server, used on the first straight away
    assert created.json() == {"result": "Success"}
    first.upsert([("p", [1.0, 0.0], {"n": 1})], namespace="one")
    assert second.list_namespaces() == ["", "one"]
    assert second.query([1.0, 0.0], namespace="one", include_metadata=True)[0].metadata == {"n": 1}
    second.update("p", metadata={"n": 2}, namespace="one")
    assert first.fetch("p", namespace="one", include_metadata=True)[0].metadata == {"n": 2}
    assert second.delete("p", namespace="one").deleted == 1
    assert first.query([1.0, 0.0], namespace="one") == []
    first.upsert([("q", [0.0, 1.0])], namespace="one")
    assert httpx.post(
        f"{servers[0]}/upstash/shared/rename-namespace",
        json={"namespace": "one", "newNamespace": "two"},
        headers=AUTH,
    ).json() == {"result": {"renamed": True}}
    assert second.list_namespaces() == ["", "two"]
    assert [r.id for r in second.query([0.0, 1.0], namespace="two")] == ["q"]
    second.delete_namespace("two")
    assert first.list_namespaces() == [""]
    assert first.query([0.0, 1.0], namespace="two") == []
    first.upsert([("r", [1.0, 0.0])])
    second.reset()
    assert first.info().vector_count == 0
