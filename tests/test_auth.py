"""API keys: `WAYPOINT_API_KEY` may do anything, `WAYPOINT_READ_ONLY_API_KEY` may only read,
anything else gets a 401 in Qdrant's envelope; health probes stay open."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

ADMIN = "secret"
READER = "reader"
C = "auth_c"


@pytest.fixture(scope="module")
def secured(server_factory):
    return server_factory(env={"WAYPOINT_API_KEY": ADMIN, "WAYPOINT_READ_ONLY_API_KEY": READER})


@pytest.fixture(scope="module")
def http(secured) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured.url, timeout=30) as session:
        admin = {"api-key": ADMIN}
        response = session.put(
            f"/collections/{C}",
            json={"vectors": {"size": 3, "distance": "Dot"}},
            headers=admin,
        )
        assert response.status_code == 200, response.text
        points = [{"id": i, "vector": [1, i, 0], "payload": {"i": i}} for i in range(5)]
        response = session.put(
            f"/collections/{C}/points?wait=true", json={"points": points}, headers=admin
        )
        assert response.status_code == 200, response.text
        yield session


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"status", "time"}
    assert isinstance(body["status"]["error"], str)
    assert body["status"]["error"]
    return body["status"]["error"]


def count(http: httpx.Client) -> int:
    response = http.post(f"/collections/{C}/points/count", json={}, headers={"api-key": ADMIN})
    assert response.status_code == 200, response.text
    return response.json()["result"]["count"]


def names(http: httpx.Client) -> list[str]:
    response = http.get("/collections", headers={"api-key": ADMIN})
    return sorted(c["name"] for c in response.json()["result"]["collections"])


READS = [
    ("GET", "/collections", None),
    ("GET", f"/collections/{C}", None),
    ("GET", f"/collections/{C}/exists", None),
    ("GET", f"/collections/{C}/points/1", None),
    ("POST", f"/collections/{C}/points/query", {"query": [1, 0, 0], "limit": 2}),
    ("POST", f"/collections/{C}/points/query/batch", {"searches": [{"query": [1, 0, 0]}]}),
    ("POST", f"/collections/{C}/points/search", {"vector": [1, 0, 0], "limit": 2}),
    (
        "POST",
        f"/collections/{C}/points/search/batch",
        {"searches": [{"vector": [1, 0, 0], "limit": 2}]},
    ),
    ("POST", f"/collections/{C}/points/scroll", {"limit": 2}),
    ("POST", f"/collections/{C}/points/count", {}),
    ("POST", f"/collections/{C}/points", {"ids": [1, 2]}),
]

WRITES = [
    ("PUT", f"/collections/{C}/points", {"points": [{"id": 100, "vector": [1, 2, 3]}]}),
    ("POST", f"/collections/{C}/points/delete", {"points": [1]}),
    ("PUT", "/collections/auth_other", {"vectors": {"size": 2, "distance": "Dot"}}),
    ("DELETE", f"/collections/{C}", None),
    ("PATCH", f"/collections/{C}", {"optimizers_config": {}}),
]

ALL = READS + WRITES


def _id(call) -> str:
    return f"{call[0]} {call[1]}"


def send(http: httpx.Client, call, headers: dict[str, str] | None = None) -> httpx.Response:
    method, path, body = call
    return http.request(method, path, json=body, headers=headers or {})


# ---------------------------------------------------------------------- no key, wrong key


@pytest.mark.parametrize("call", ALL, ids=_id)
def test_no_key_is_401(http, call) -> None:
    before = (names(http), count(http))
    assert_error(send(http, call), 401)
    assert (names(http), count(http)) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"api-key": "wrong"},
        {"api-key": ADMIN + "x"},
        {"api-key": ADMIN[:-1]},
        {"api-key": ADMIN.upper()},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {ADMIN}"},
        {"authorization": ADMIN},
        {"authorization": "Bearer"},
        {"api-key": ""},
        {"x-api-key": ADMIN},
    ],
    ids=lambda h: repr(h),
)
def test_wrong_key_is_401(http, headers: dict[str, str]) -> None:
    before = (names(http), count(http))
    for call in (READS[0], READS[4], WRITES[0], WRITES[2]):
        assert_error(send(http, call, headers), 401)
    assert (names(http), count(http)) == before


# ---------------------------------------------------------------------------- admin key


@pytest.mark.parametrize(
    "headers",
    [{"api-key": ADMIN}, {"authorization": f"Bearer {ADMIN}"}, {"Api-Key": ADMIN}],
    ids=["api-key", "bearer", "header-case"],
)
def test_admin_key_may_write(http, headers: dict[str, str]) -> None:
    name = "auth_admin_writes"
    create = {"vectors": {"size": 2, "distance": "Dot"}}
    response = http.put(f"/collections/{name}", json=create, headers=headers)
    assert response.status_code == 200, response.text
    upsert = {"points": [{"id": 1, "vector": [1, 2]}, {"id": 2, "vector": [2, 1]}]}
    response = http.put(f"/collections/{name}/points?wait=true", json=upsert, headers=headers)
    assert response.status_code == 200, response.text
    response = http.post(
        f"/collections/{name}/points/delete", json={"points": [1]}, headers=headers
    )
    assert response.status_code == 200, response.text
    response = http.post(f"/collections/{name}/points/count", json={}, headers=headers)
    assert response.json()["result"] == {"count": 1}
    response = http.post(
        f"/collections/{name}/points/query", json={"query": [1, 1]}, headers=headers
    )
    assert [p["id"] for p in response.json()["result"]["points"]] == [2]
    assert http.delete(f"/collections/{name}", headers=headers).status_code == 200
    assert name not in names(http)


@pytest.mark.parametrize("call", READS, ids=_id)
def test_admin_key_may_read(http, call) -> None:
    assert send(http, call, {"api-key": ADMIN}).status_code == 200


# --------------------------------------------------------------------------- reader key


@pytest.mark.parametrize("call", READS, ids=_id)
@pytest.mark.parametrize(
    "headers", [{"api-key": READER}, {"authorization": f"Bearer {READER}"}], ids=["hdr", "bearer"]
)
def test_read_only_key_may_read(http, call, headers: dict[str, str]) -> None:
    response = send(http, call, headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("call", WRITES, ids=_id)
def test_read_only_key_may_not_write(http, call) -> None:
    before = (names(http), count(http))
    assert_error(send(http, call, {"api-key": READER}), 403)
    assert_error(send(http, call, {"authorization": f"Bearer {READER}"}), 403)
    assert (names(http), count(http)) == before
    assert C in names(http)


def test_read_only_results_are_real(http) -> None:
    reader = {"api-key": READER}
    response = http.post(
        f"/collections/{C}/points/query",
        json={"query": [0, 1, 0], "limit": 2, "with_payload": True},
        headers=reader,
    )
    points = response.json()["result"]["points"]
    assert [(p["id"], p["payload"]) for p in points] == [(4, {"i": 4}), (3, {"i": 3})]
    response = http.post(f"/collections/{C}/points/scroll", json={"limit": 10}, headers=reader)
    assert [p["id"] for p in response.json()["result"]["points"]] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------- open probes


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_probes_need_no_key(http, path: str) -> None:
    assert http.get(path).status_code == 200
    assert http.get(path, headers={"api-key": "wrong"}).status_code == 200


def test_version_document_needs_no_key_like_qdrant(http) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.json()["version"].startswith("1.")


def test_version_document_with_key(http) -> None:
    for key in (ADMIN, READER):
        response = http.get("/", headers={"api-key": key})
        assert response.status_code == 200
        assert response.json()["version"].startswith("1.")


# ------------------------------------------------------------------------ qdrant-client


def _client(url: str, api_key: str) -> QdrantClient:
    """A client with a key over plain http, after its version probe thread has finished."""
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = QdrantClient(url=url, api_key=api_key, prefer_grpc=False)
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=30)
    # The client itself warns that a key travels over http; the version probe must not warn.
    problems = [str(w.message) for w in caught if "insecure connection" not in str(w.message)]
    assert problems == []
    return client


def test_qdrant_client_with_admin_key(secured) -> None:
    client = _client(f"http://127.0.0.1:{secured.port}", ADMIN)
    try:
        name = "auth_client"
        client.create_collection(
            name, vectors_config=models.VectorParams(size=2, distance="Euclid")
        )
        client.upsert(
            name,
            points=[models.PointStruct(id=i, vector=[i, 0], payload={"i": i}) for i in range(4)],
        )
        assert client.count(name).count == 4
        hits = client.query_points(name, query=[2.2, 0], limit=2).points
        assert [h.id for h in hits] == [2, 3]
        assert client.retrieve(name, ids=[1])[0].payload == {"i": 1}
        client.delete_collection(name)
        assert not client.collection_exists(name)
    finally:
        client.close()


def test_qdrant_client_with_read_only_key(secured) -> None:
    client = _client(f"http://127.0.0.1:{secured.port}", READER)
    try:
        assert client.count(C).count == 5
        assert [h.id for h in client.query_points(C, query=[0, 1, 0], limit=1).points] == [4]
        with pytest.raises(UnexpectedResponse) as excinfo:
            client.upsert(C, points=[models.PointStruct(id=9, vector=[1, 1, 1])])
        assert excinfo.value.status_code == 403
    finally:
        client.close()


def test_qdrant_client_with_wrong_key(secured) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = QdrantClient(
            url=f"http://127.0.0.1:{secured.port}", api_key="nope", check_compatibility=False
        )
    try:
        with pytest.raises(UnexpectedResponse) as excinfo:
            client.get_collections()
        assert excinfo.value.status_code == 401
    finally:
        client.close()
