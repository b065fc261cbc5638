"""Hostile and careless requests (issue 21): each gets a clear 4xx in its dialect's envelope,
or the right answer, never a 5xx or a dropped connection; none holds up light requests sent
meanwhile on other connections; and none writes anything when refused.

The cases are `scripts/hostile.py`'s, which a reader runs against a live server; here they run
against a server of the suite's own, with two workers as deployments run it.
"""

from __future__ import annotations

import importlib.util
import sys

import httpx
import pytest

from tests.conftest import ROOT, fetch_row

STALL_BOUND = 1.0  # seconds a light request may wait while a heavy one is served


def _load_script():
    spec = importlib.util.spec_from_file_location("hostile", ROOT / "scripts" / "hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile"] = module
    spec.loader.exec_module(module)
    return module


hostile = _load_script()
CASES = {case.name: case for case in hostile.cases()}


@pytest.fixture(scope="module")
def live(server_factory):
    server = server_factory({"WAYPOINT_WORKERS": "2"})
    with httpx.Client(base_url=server.url, timeout=120) as http:
        hostile.prepare(http)
    return server


@pytest.fixture
def http(live) -> httpx.Client:
    with httpx.Client(base_url=live.url, timeout=120) as client:
        yield client


def _send(http: httpx.Client, case, content: bytes | None = None) -> httpx.Response:
    content = case.content() if content is None else content
    return http.request(
        case.method, case.path, content=content, headers={"content-type": "application/json"}
    )


def _assert_envelope(case, response: httpx.Response) -> None:
    assert response.status_code in case.expect, (response.status_code, response.text[:500])
    body = response.json()
    if response.status_code == 200:
        return
    if case.path.startswith("/upstash"):
        assert set(body) == {"error", "status"}, body
        assert body["status"] == response.status_code
        assert body["error"]
    else:
        assert set(body) == {"status", "time"}, body
        assert body["status"]["error"]


@pytest.mark.parametrize("name", list(CASES))
def test_case_gets_a_clear_answer_and_stalls_nothing(live, name: str) -> None:
    """Light requests go on four connections, so both workers serve some of them while the
    case is served by one."""
    case = CASES[name]
    content = case.content()
    watchers = [httpx.Client(base_url=live.url, timeout=120) for _ in range(4)]
    with httpx.Client(base_url=live.url, timeout=120) as http, hostile.Watch(watchers) as watch:
        response = _send(http, case, content)
    for client in watchers:
        client.close()
    _assert_envelope(case, response)
    assert not watch.failures, watch.failures
    assert watch.slowest <= STALL_BOUND, f"light requests waited {watch.slowest:.2f} s"


def test_refused_writes_write_nothing(live, http: httpx.Client, database_url: str) -> None:
    """Every refused write of the cases leaves the stored points as they were."""
    before = fetch_row(database_url, "SELECT count(*), max(seq) FROM points")
    refused = [
        case
        for case in CASES.values()
        if case.method in ("PUT", "POST")
        and ("upsert" in case.path or case.path.endswith("points"))
        and 400 in case.expect
    ]
    assert len(refused) >= 6
    for case in refused:
        assert _send(http, case).status_code == 400, case.name
    assert fetch_row(database_url, "SELECT count(*), max(seq) FROM points") == before


@pytest.mark.parametrize("endpoint", ["scroll", "count", "query", "delete"])
def test_a_filter_at_the_depth_limit_is_served(http: httpx.Client, endpoint: str) -> None:
    """The limit is where refusing starts, not where the back ends give out."""
    nothing = {"key": "a", "match": {"value": -1}}  # so that the delete deletes nothing
    at_limit = {"must": [hostile.nested_filter(31), nothing]}  # 32 levels of clauses
    path = f"/collections/{hostile.Q}/points/{endpoint}"
    response = http.post(path, json={"filter": at_limit}, params={"wait": "true"})
    assert response.status_code == 200, response.text[:300]
    too_deep = http.post(path, json={"filter": {"must": [hostile.nested_filter(32), nothing]}})
    assert too_deep.status_code == 400
    assert "WAYPOINT_MAX_FILTER_DEPTH" in too_deep.json()["status"]["error"]


def _refill_upstash(http: httpx.Client) -> None:
    """The Upstash index's 100 points again (a case above deletes them)."""
    points = [{"id": str(i), "vector": [1.0, i / 100], "metadata": {"a": i}} for i in range(100)]
    assert http.post(f"/upstash/{hostile.U}/upsert", json=points).status_code == 200


def test_upstash_parentheses_at_the_limit_are_served(http: httpx.Client) -> None:
    _refill_upstash(http)
    query = {"vector": [0.1, 0.2], "topK": 3, "includeMetadata": True}
    deep = {**query, "filter": "(" * 32 + "a = 3" + ")" * 32}
    response = http.post(f"/upstash/{hostile.U}/query", json=deep)
    assert response.status_code == 200, response.text
    assert [hit["metadata"]["a"] for hit in response.json()["result"]] == [3]
    deeper = {**query, "filter": "(" * 33 + "a = 3" + ")" * 33}
    assert http.post(f"/upstash/{hostile.U}/query", json=deeper).status_code == 400


def test_many_ids_are_answered_in_full(http: httpx.Client) -> None:
    """40,000 ids is a fair request: bound as one array, not one parameter each."""
    ids = list(range(40_000))
    found = http.post(f"/collections/{hostile.Q}/points", json={"ids": ids})
    assert found.status_code == 200
    assert sorted(p["id"] for p in found.json()["result"]) == list(range(100))
    counted = http.post(
        f"/collections/{hostile.Q}/points/count",
        json={"filter": {"must": [{"key": "a", "match": {"any": ids}}]}, "exact": True},
    )
    assert counted.json()["result"]["count"] == 100
    excluded = http.post(
        f"/collections/{hostile.Q}/points/count",
        json={"filter": {"must": [{"key": "a", "match": {"except": ids[5:]}}]}, "exact": True},
    )
    assert excluded.json()["result"]["count"] == 5
    _refill_upstash(http)
    fetched = http.post(f"/upstash/{hostile.U}/fetch", json={"ids": [str(i) for i in ids]})
    assert len([hit for hit in fetched.json()["result"] if hit]) == 100


def test_a_large_filter_answers_as_its_small_equivalent(http: httpx.Client) -> None:
    """A filter past the off-loop threshold (its SQL rendered in a pool thread and sent to the
    driver as it is) selects exactly what the same filter stated compactly does."""
    conditions = [{"key": "a", "range": {"gte": i, "lt": i + 1}} for i in range(0, 60, 3)]
    large = {"should": conditions}
    small = {"must": [{"key": "a", "match": {"any": list(range(0, 60, 3))}}]}
    with_text = {"should": [*conditions, {"key": "t", "match": {"text": "x"}}]}  # rechecked
    assert scrolled_ids(http, large) == scrolled_ids(http, small) == list(range(0, 60, 3))
    assert scrolled_ids(http, with_text) == scrolled_ids(http, None)  # every text holds "x"
    path = f"/collections/{hostile.Q}/points/count"
    counted = http.post(path, json={"filter": large, "exact": True})
    assert counted.json()["result"]["count"] == 20


def scrolled_ids(http: httpx.Client, filter_: dict | None) -> list[int]:
    body = {"filter": filter_, "limit": 1000}
    response = http.post(f"/collections/{hostile.Q}/points/scroll", json=body)
    assert response.status_code == 200, response.text[:300]
    return [point["id"] for point in response.json()["result"]["points"]]


def test_limits_are_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable in (
        "WAYPOINT_MAX_FILTER_DEPTH",
        "WAYPOINT_MAX_FILTER_CONDITIONS",
        "WAYPOINT_MAX_PAYLOAD_DEPTH",
        "WAYPOINT_MAX_NAME_BYTES",
        "WAYPOINT_MAX_ID_BYTES",
        "WAYPOINT_MAX_RESULT_POINTS",
    ):
        assert f"`{variable}`" in readme, variable
