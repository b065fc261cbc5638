"""Qdrant endpoints Waypoint does not implement answer a clear 400 in Qdrant's envelope, not
a bare 404 that reads like a typo in the client; and resumable-query errors use Qdrant's
`Wrong input: ` category while the Upstash dialect keeps its own wording.

The list is qdrant-client 1.20's REST surface (`qdrant_client/http/api/*.py`) minus what
Waypoint routes, plus the legacy discovery and lock endpoints older clients still call. It is
written out here rather than imported from the app, so the test checks the wire, not itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

C = "unsup"  # one unnamed vector (2, Cosine) with a few points
MISSING = "unsup_missing"
KEY = "secret"

UNSUPPORTED = [
    # snapshots: collection, full storage and shard
    ("GET", f"/collections/{C}/snapshots", "snapshots"),
    ("POST", f"/collections/{C}/snapshots", "snapshots"),
    ("POST", f"/collections/{C}/snapshots/upload", "snapshots"),
    ("PUT", f"/collections/{C}/snapshots/recover", "snapshots"),
    ("GET", f"/collections/{C}/snapshots/s1.snapshot", "snapshots"),
    ("DELETE", f"/collections/{C}/snapshots/s1.snapshot", "snapshots"),
    ("GET", f"/collections/{MISSING}/snapshots", "snapshots"),
    ("GET", "/snapshots", "snapshots"),
    ("POST", "/snapshots", "snapshots"),
    ("GET", "/snapshots/full.snapshot", "snapshots"),
    ("DELETE", "/snapshots/full.snapshot", "snapshots"),
    ("GET", f"/collections/{C}/shards/0/snapshots", "snapshots"),
    ("POST", f"/collections/{C}/shards/0/snapshots", "snapshots"),
    ("POST", f"/collections/{C}/shards/0/snapshots/upload", "snapshots"),
    ("PUT", f"/collections/{C}/shards/0/snapshots/recover", "snapshots"),
    ("GET", f"/collections/{C}/shards/0/snapshots/s1.snapshot", "snapshots"),
    ("DELETE", f"/collections/{C}/shards/0/snapshots/s1.snapshot", "snapshots"),
    ("GET", f"/collections/{C}/shards/0/snapshot", "snapshots"),
    # named vectors added to / removed from an existing collection (Qdrant 1.16+)
    ("PUT", f"/collections/{C}/vectors/extra", "named vectors"),
    ("DELETE", f"/collections/{C}/vectors/extra", "named vectors"),
    # other collection and point APIs
    ("GET", f"/collections/{C}/optimizations", "optimization"),
    ("POST", f"/collections/{C}/facet", "facet"),
    ("POST", f"/collections/{C}/points/search/matrix/pairs", "distance matrices"),
    ("POST", f"/collections/{C}/points/search/matrix/offsets", "distance matrices"),
    ("POST", f"/collections/{C}/points/discover", "discovery"),
    ("POST", f"/collections/{C}/points/discover/batch", "discovery"),
    # distributed mode
    ("GET", "/cluster", "distributed"),
    ("GET", "/cluster/telemetry", "distributed"),
    ("POST", "/cluster/recover", "distributed"),
    ("DELETE", "/cluster/peer/2", "distributed"),
    ("GET", f"/collections/{C}/cluster", "distributed"),
    ("POST", f"/collections/{C}/cluster", "distributed"),
    ("GET", f"/collections/{C}/shards", "distributed"),
    ("PUT", f"/collections/{C}/shards", "distributed"),
    ("POST", f"/collections/{C}/shards/delete", "distributed"),
    # service
    ("GET", "/telemetry", "telemetry"),
    ("GET", "/locks", "locks"),
    ("POST", "/locks", "locks"),
    ("GET", "/issues", "issue reports"),
    ("DELETE", "/issues", "issue reports"),
    ("GET", "/quotas", "quotas"),
    ("PUT", "/quotas", "quotas"),
]


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as session:
        config = {"vectors": {"size": 2, "distance": "Cosine"}}
        assert session.put(f"/collections/{C}", json=config).status_code == 200
        points = [{"id": i, "vector": [1.0, i / 10]} for i in range(1, 6)]
        upserted = session.put(f"/collections/{C}/points?wait=true", json={"points": points})
        assert upserted.status_code == 200, upserted.text
        yield session


def qdrant_error(response: httpx.Response, status: int) -> str:
    """The message of a Qdrant error envelope `{"status": {"error": …}, "time": …}`."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"status", "time"}, body
    assert isinstance(body["time"], int | float)
    assert set(body["status"]) == {"error"}, body
    return body["status"]["error"]


@pytest.mark.parametrize(
    ("method", "path", "what"), UNSUPPORTED, ids=[f"{m} {p}" for m, p, _ in UNSUPPORTED]
)
def test_unsupported_endpoint_is_a_clear_400(http, method: str, path: str, what: str) -> None:
    message = qdrant_error(http.request(method, path, json={}), 400)
    assert message.startswith("Bad request: "), message
    assert what in message, (what, message)
    assert message.endswith("not supported by Waypoint"), message


def test_unsupported_endpoints_change_nothing(http) -> None:
    """Creating a named vector is refused before anything is written."""
    http.put(f"/collections/{C}/vectors/extra", json={"size": 3, "distance": "Dot"})
    vectors = http.get(f"/collections/{C}").json()["result"]["config"]["params"]["vectors"]
    assert vectors == {"size": 2, "distance": "Cosine"}


def test_neighbouring_routes_still_answer(http) -> None:
    """The new routes share prefixes with real ones (`points/{id}`, `points/search`, …)."""
    assert http.get(f"/collections/{C}/points/1").json()["result"]["id"] == 1
    found = http.post(f"/collections/{C}/points/search", json={"vector": [1, 0], "limit": 2})
    assert len(found.json()["result"]) == 2
    recommended = http.post(
        f"/collections/{C}/points/recommend", json={"positive": [1], "limit": 2}
    )
    assert recommended.status_code == 200, recommended.text
    assert qdrant_error(http.get("/collections/nope/nothing"), 404)


def test_unsupported_endpoints_stay_out_of_the_openapi_document(http) -> None:
    paths = http.get("/schema/openapi.json").json()["paths"]
    assert "/collections/{collection_name}/points/query" in paths
    assert not [path for path in paths if "snapshot" in path or "cluster" in path]


def test_unsupported_endpoints_need_the_api_key(server_factory) -> None:
    """Like every other route: no key is a 401, a read-only key may not write."""
    env = {"WAYPOINT_API_KEY": KEY, "WAYPOINT_READ_ONLY_API_KEY": "reader"}
    url = server_factory(env=env).url
    assert qdrant_error(httpx.get(f"{url}/collections/{C}/snapshots"), 401)
    assert qdrant_error(httpx.post(f"{url}/snapshots", headers={"api-key": "reader"}), 403)
    read = httpx.get(f"{url}/telemetry", headers={"api-key": "reader"})
    assert "telemetry" in qdrant_error(read, 400)
    created = httpx.post(f"{url}/snapshots", headers={"api-key": KEY})
    assert "snapshots" in qdrant_error(created, 400)


# ---------------------------------------------------------------------- resumable wording

RESUMABLE = f"/collections/{C}/points/query/resumable"


def test_resumable_next_error_is_wrong_input(http) -> None:
    started = http.post(RESUMABLE, json={"query": [1, 0], "limit": 1})
    assert started.status_code == 200, started.text
    handle = started.json()["result"]["id"]
    response = http.post(f"{RESUMABLE}/{handle}/next", json={"limit": -1})
    message = qdrant_error(response, 400)
    assert message.startswith("Wrong input: the page size must be between 0 and "), message
    more = http.post(f"{RESUMABLE}/{handle}/next", json={"limit": 2})  # the session lives on
    assert len(more.json()["result"]["points"]) == 2


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ({"query": [1, 0], "limit": -1}, "Wrong input: the page size must be"),
        ({"query": [1, 0], "limit": 1, "max_idle": 0}, "Wrong input: max idle must be"),
        ({"query": [1, 0], "using": "nope"}, "Wrong input: Not existing vector name error"),
    ],
)
def test_resumable_start_errors_are_wrong_input(http, body: dict, start: str) -> None:
    message = qdrant_error(http.post(RESUMABLE, json=body), 400)
    assert message.startswith(start), message
    assert not message.startswith("Wrong input: Wrong input"), message


def test_upstash_resumable_errors_keep_their_own_wording(http) -> None:
    """The session service is shared; only the Qdrant edge adds Qdrant's category."""
    index = "/upstash/unsup_ux"
    created = http.put(index, json={"dimension": 2, "similarityFunction": "COSINE"})
    assert created.status_code == 200, created.text
    assert http.post(f"{index}/upsert", json={"id": "a", "vector": [1, 0]}).status_code == 200
    started = http.post(f"{index}/resumable-query", json={"vector": [1, 0], "topK": 1})
    handle = started.json()["result"]["uuid"]
    response = http.post(f"{index}/resumable-query-next", json={"uuid": handle, "additionalK": -1})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("the page size must be between 0 and ")
