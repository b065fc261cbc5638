"""Qdrant dialect errors over raw HTTP: the right status, Qdrant's envelope, never a 500, and
a rejected request writes nothing. Ends with a property test that throws random bodies at
every endpoint that takes one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NAMED = "err_named"  # vectors v (4, Cosine) and w (2, Dot)
PLAIN = "err_plain"  # one unnamed vector (3, Euclid)
FUZZ = "err_fuzz"  # the property tests' playground
MISSING = "err_missing"
JSON = {"content-type": "application/json"}


# ------------------------------------------------------------------------------- helpers


def assert_error(response: httpx.Response, status: int | None = None, contains: str = "") -> str:
    """The response is a Qdrant error envelope; returns its message."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "time"}, body
    assert isinstance(body["time"], int | float)
    assert set(body["status"]) == {"error"}, body
    message = body["status"]["error"]
    assert isinstance(message, str)
    assert message
    assert contains in message, (contains, message)
    return message


def assert_envelope(response: httpx.Response) -> None:
    """Any response of the Qdrant dialect: no 5xx, JSON, ok or error envelope."""
    assert response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert body["status"] == "ok"
        assert "result" in body
        assert isinstance(body["time"], int | float)
    else:
        assert_error(response)


def count(http: httpx.Client, name: str) -> int:
    response = http.post(f"/collections/{name}/points/count", json={"exact": True})
    assert response.status_code == 200, response.text
    return response.json()["result"]["count"]


def collection_names(http: httpx.Client) -> list[str]:
    return sorted(c["name"] for c in http.get("/collections").json()["result"]["collections"])


@contextmanager
def writes_nothing(http: httpx.Client) -> Iterator[None]:
    """The block changes no collection and no point count."""
    before = (collection_names(http), count(http, NAMED), count(http, PLAIN))
    yield
    after = (collection_names(http), count(http, NAMED), count(http, PLAIN))
    assert after == before


def raw(http: httpx.Client, method: str, path: str, text: str) -> httpx.Response:
    return http.request(method, path, content=text.encode(), headers=JSON)


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as session:
        for name, vectors, points in (
            (
                NAMED,
                {"v": {"size": 4, "distance": "Cosine"}, "w": {"size": 2, "distance": "Dot"}},
                [
                    {"id": i, "vector": {"v": [1, 2, 3, i], "w": [i, 1]}, "payload": {"i": i}}
                    for i in range(10)
                ],
            ),
            (
                PLAIN,
                {"size": 3, "distance": "Euclid"},
                [{"id": i, "vector": [i, 0, 1]} for i in range(5)],
            ),
            (
                FUZZ,
                {"v": {"size": 3, "distance": "Dot"}},
                [{"id": i, "vector": {"v": [i, 1, 2]}} for i in range(5)],
            ),
        ):
            assert session.put(f"/collections/{name}", json={"vectors": vectors}).status_code == 200
            response = session.put(f"/collections/{name}/points?wait=true", json={"points": points})
            assert response.status_code == 200, response.text
        yield session


# ------------------------------------------------------------------------- unknown collection

UNKNOWN_COLLECTION_CALLS = [
    ("GET", f"/collections/{MISSING}", None),
    ("PATCH", f"/collections/{MISSING}", {"optimizers_config": {}}),
    ("PUT", f"/collections/{MISSING}/points", {"points": [{"id": 1, "vector": [1, 2, 3]}]}),
    ("POST", f"/collections/{MISSING}/points", {"ids": [1]}),
    ("GET", f"/collections/{MISSING}/points/1", None),
    ("POST", f"/collections/{MISSING}/points/delete", {"points": [1]}),
    ("POST", f"/collections/{MISSING}/points/scroll", {"limit": 3}),
    ("POST", f"/collections/{MISSING}/points/count", {"exact": True}),
    ("POST", f"/collections/{MISSING}/points/query", {"query": [1, 2, 3]}),
    ("POST", f"/collections/{MISSING}/points/query/batch", {"searches": [{"query": [1, 2]}]}),
    ("POST", f"/collections/{MISSING}/points/search", {"vector": [1, 2, 3], "limit": 3}),
    (
        "POST",
        f"/collections/{MISSING}/points/search/batch",
        {"searches": [{"vector": [1, 2, 3], "limit": 3}]},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    UNKNOWN_COLLECTION_CALLS,
    ids=[f"{m} {p}" for m, p, _ in UNKNOWN_COLLECTION_CALLS],
)
def test_unknown_collection_is_404(http, method: str, path: str, body) -> None:
    with writes_nothing(http):
        response = http.request(method, path, json=body)
        message = assert_error(response, 404)
    assert message == f"Not found: Collection `{MISSING}` doesn't exist!"
    assert http.get(f"/collections/{MISSING}/exists").json()["result"] == {"exists": False}


# ---------------------------------------------------------------------------- bad vectors

WRONG_DIMENSION = [
    (
        "PUT",
        f"/collections/{NAMED}/points",
        {"points": [{"id": 50, "vector": {"v": [1, 2, 3]}}]},
        4,
    ),
    (
        "PUT",
        f"/collections/{NAMED}/points",
        {"batch": {"ids": [50, 51], "vectors": {"v": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}}},
        4,
    ),
    ("PUT", f"/collections/{PLAIN}/points", {"points": [{"id": 50, "vector": [1, 2, 3, 4]}]}, 3),
    ("PUT", f"/collections/{PLAIN}/points", {"batch": {"ids": [50], "vectors": [[1.0]]}}, 3),
    ("POST", f"/collections/{NAMED}/points/query", {"query": [1, 2, 3], "using": "v"}, 4),
    ("POST", f"/collections/{PLAIN}/points/query", {"query": {"nearest": [1, 2, 3, 4, 5]}}, 3),
    (
        "POST",
        f"/collections/{NAMED}/points/search",
        {"vector": {"name": "v", "vector": [1, 2]}, "limit": 3},
        4,
    ),
    (
        "POST",
        f"/collections/{NAMED}/points/query/batch",
        {"searches": [{"query": [1, 2, 3, 4], "using": "v"}, {"query": [1], "using": "w"}]},
        2,
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), WRONG_DIMENSION)
def test_wrong_dimension_is_400_naming_the_expected_size(http, method, path, body, expected):
    with writes_nothing(http):
        message = assert_error(http.request(method, path, json=body), 400)
    assert f"expected dim: {expected}" in message


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_vector_values_are_400(http, literal: str) -> None:
    bodies = [
        ("PUT", f"/collections/{NAMED}/points", '{"points":[{"id":60,"vector":{"v":[1,%s,2,3]}}]}'),
        ("PUT", f"/collections/{PLAIN}/points", '{"points":[{"id":60,"vector":[1,%s,2]}]}'),
        ("PUT", f"/collections/{PLAIN}/points", '{"batch":{"ids":[60],"vectors":[[%s,1,2]]}}'),
        ("POST", f"/collections/{NAMED}/points/query", '{"query":[1,%s,2,3],"using":"v"}'),
        ("POST", f"/collections/{PLAIN}/points/query", '{"query":{"nearest":[1,%s,2]}}'),
        ("POST", f"/collections/{PLAIN}/points/search", '{"vector":[1,2,%s],"limit":2}'),
    ]
    with writes_nothing(http):
        for method, path, template in bodies:
            assert_error(raw(http, method, path, template % literal), 400)


def test_float32_overflow_is_400(http) -> None:
    """1e39 is a finite JSON number but infinite as float32: rejected, not stored as inf."""
    with writes_nothing(http):
        body = {"points": [{"id": 61, "vector": [1e39, 0, 0]}]}
        assert_error(http.put(f"/collections/{PLAIN}/points", json=body), 400)


UNKNOWN_NAME = [
    ("PUT", f"/collections/{NAMED}/points", {"points": [{"id": 70, "vector": {"x": [1, 2]}}]}),
    (
        "PUT",
        f"/collections/{NAMED}/points",
        {"batch": {"ids": [70], "vectors": {"v": [[1, 2, 3, 4]], "x": [[1, 2]]}}},
    ),
    ("PUT", f"/collections/{PLAIN}/points", {"points": [{"id": 70, "vector": {"x": [1, 2, 3]}}]}),
    ("POST", f"/collections/{NAMED}/points/query", {"query": [1, 2], "using": "x"}),
    ("POST", f"/collections/{NAMED}/points/query", {"query": 1, "using": "x"}),
    ("POST", f"/collections/{PLAIN}/points/query", {"query": [1, 2, 3], "using": "x"}),
    (
        "POST",
        f"/collections/{NAMED}/points/query/batch",
        {"searches": [{"query": [1, 2], "using": "w"}, {"query": [1, 2], "using": "x"}]},
    ),
    (
        "POST",
        f"/collections/{NAMED}/points/search",
        {"vector": {"name": "x", "vector": [1, 2]}, "limit": 3},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), UNKNOWN_NAME)
def test_unknown_vector_name(http, method, path, body) -> None:
    with writes_nothing(http):
        assert_error(http.request(method, path, json=body), contains="Not existing vector name")


# --------------------------------------------------------------------- malformed and mistyped

MALFORMED = {
    "garbage": "not json",
    "single_quotes": "{'points': []}",
    "trailing_comma": '{"points": [],}',
    "unclosed_string": '{"points": "',
    "truncated": '{"points": [{"id": 1, "vector": [1, 2, 3]}',
    "bad_escape": '{"points": "\\q"}',
    "two_documents": '{"points": []} {"points": []}',
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_json_is_400_format_error(http, name: str) -> None:
    with writes_nothing(http):
        for method, path in (
            ("PUT", f"/collections/{PLAIN}/points"),
            ("POST", f"/collections/{PLAIN}/points/query"),
        ):
            response = raw(http, method, path, MALFORMED[name])
            assert_error(response, 400, contains="Format error in JSON body")


MISTYPED = {
    "query_limit_string": (
        "POST",
        f"/collections/{NAMED}/points/query",
        {"query": [1, 2], "using": "w", "limit": "x"},
    ),
    "scroll_limit_string": ("POST", f"/collections/{NAMED}/points/scroll", {"limit": "x"}),
    "search_limit_string": (
        "POST",
        f"/collections/{NAMED}/points/search",
        {"vector": {"name": "w", "vector": [1, 2]}, "limit": "x"},
    ),
    "retrieve_ids_bool": ("POST", f"/collections/{NAMED}/points", {"ids": [True]}),
    "delete_ids_bool": ("POST", f"/collections/{NAMED}/points/delete", {"points": [True]}),
    "upsert_id_bool": (
        "PUT",
        f"/collections/{PLAIN}/points",
        {"points": [{"id": True, "vector": [1, 2, 3]}]},
    ),
    "upsert_points_not_list": ("PUT", f"/collections/{PLAIN}/points", {"points": "x"}),
    "unnamed_vector_of_strings": (
        "PUT",
        f"/collections/{PLAIN}/points",
        {"points": [{"id": 80, "vector": ["a", "b", "c"]}]},
    ),
    "batch_vector_of_strings": (
        "PUT",
        f"/collections/{PLAIN}/points",
        {"batch": {"ids": [80], "vectors": [["a", "b", "c"]]}},
    ),
    "named_vector_of_strings": (
        "PUT",
        f"/collections/{NAMED}/points",
        {"points": [{"id": 80, "vector": {"w": ["a", "b"]}}]},
    ),
    "query_vector_of_strings": (
        "POST",
        f"/collections/{PLAIN}/points/query",
        {"query": ["a", "b", "c"]},
    ),
    "searches_not_list": ("POST", f"/collections/{NAMED}/points/query/batch", {"searches": 1}),
    "payload_not_object": (
        "PUT",
        f"/collections/{PLAIN}/points",
        {"points": [{"id": 80, "vector": [1, 2, 3], "payload": [1]}]},
    ),
}


@pytest.mark.parametrize("name", list(MISTYPED))
def test_wrong_types_are_422(http, name: str) -> None:
    method, path, body = MISTYPED[name]
    with writes_nothing(http):
        assert_error(http.request(method, path, json=body), 422)


def test_vector_of_strings_is_rejected_in_every_form(http) -> None:
    """Whatever the status, a vector of strings is a 4xx that writes nothing."""
    with writes_nothing(http):
        for name in (n for n in MISTYPED if "strings" in n):
            method, path, body = MISTYPED[name]
            assert_error(http.request(method, path, json=body))


# ------------------------------------------------------------------------ atomic batches


def _good_points(named: bool, n: int = 50) -> list[dict]:
    if named:
        return [
            {"id": 1000 + i, "vector": {"v": [1, 1, 1, i], "w": [1, i]}, "payload": {"i": i}}
            for i in range(n)
        ]
    return [{"id": 1000 + i, "vector": [i, 1, 1], "payload": {"i": i}} for i in range(n)]


def _spoil(points: list[dict], index: int, **change) -> list[dict]:
    points = [dict(p) for p in points]
    points[index].update(change)
    return points


BAD_BATCHES = {
    "wrong_dim_named": (NAMED, _spoil(_good_points(True), 37, vector={"v": [1, 2, 3]})),
    "unknown_name": (NAMED, _spoil(_good_points(True), 12, vector={"q": [1, 2]})),
    "bad_id_negative": (PLAIN, _spoil(_good_points(False), 49, id=-1)),
    "bad_id_string": (PLAIN, _spoil(_good_points(False), 0, id="not-a-uuid")),
    "bad_id_too_big": (PLAIN, _spoil(_good_points(False), 20, id=2**64)),
    "wrong_dim_plain": (PLAIN, _spoil(_good_points(False), 25, vector=[1, 2])),
    "strings_plain": (PLAIN, _spoil(_good_points(False), 30, vector=["a", "b", "c"])),
    "overflow_plain": (PLAIN, _spoil(_good_points(False), 31, vector=[1e39, 1, 1])),
    "payload_not_object": (PLAIN, _spoil(_good_points(False), 45, payload="x")),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_one_bad_point_writes_none(http, case: str) -> None:
    collection, points = BAD_BATCHES[case]
    with writes_nothing(http):
        response = http.put(f"/collections/{collection}/points?wait=true", json={"points": points})
        assert_error(response)
    ids = [p["id"] for p in _good_points(False)]
    found = http.post(f"/collections/{collection}/points", json={"ids": ids}).json()["result"]
    assert found == []


@pytest.mark.parametrize(
    ("collection", "batch"),
    [
        (PLAIN, {"ids": [1100, 1101, 1102], "vectors": [[1, 2, 3], [1, 2, 3], [1, 2]]}),
        (PLAIN, {"ids": [1100, 1101, "zzz"], "vectors": [[1, 2, 3]] * 3}),
        (PLAIN, {"ids": [1100, 1101], "vectors": [[1, 2, 3]] * 3}),
        (PLAIN, {"ids": [1100, 1101], "vectors": [[1, 2, 3]] * 2, "payloads": [{}]}),
        (NAMED, {"ids": [1100, 1101], "vectors": {"v": [[1, 2, 3, 4]] * 2, "w": [[1, 2]]}}),
    ],
)
def test_one_bad_entry_in_batch_form_writes_none(http, collection: str, batch: dict) -> None:
    with writes_nothing(http):
        assert_error(http.put(f"/collections/{collection}/points", json={"batch": batch}))
    found = http.post(f"/collections/{collection}/points", json={"ids": [1100, 1101]})
    assert found.json()["result"] == []


# ------------------------------------------------------------------------------ collections


def test_create_existing_collection_is_409(http) -> None:
    before = http.get(f"/collections/{NAMED}").json()["result"]
    with writes_nothing(http):
        response = http.put(
            f"/collections/{NAMED}", json={"vectors": {"size": 8, "distance": "Dot"}}
        )
        assert_error(response, 409, contains="already exists")
    after = http.get(f"/collections/{NAMED}").json()["result"]
    assert after["config"] == before["config"]
    assert after["points_count"] == before["points_count"]


@pytest.mark.parametrize(
    "vectors",
    [
        {"size": 4, "distance": "Foo"},
        {"size": 4, "distance": ""},
        {"size": 4, "distance": 5},
        {"size": 4, "distance": None},
        {"size": 4},
        {"a": {"size": 4, "distance": "Cosine"}, "b": {"size": 4, "distance": "Nope"}},
        {"size": 0, "distance": "Dot"},
        {"size": -3, "distance": "Dot"},
        {"size": "4", "distance": "Dot"},
        {"a": 4},
    ],
)
def test_bad_vector_config_creates_nothing(http, vectors: dict) -> None:
    with writes_nothing(http):
        assert_error(http.put("/collections/err_new", json={"vectors": vectors}))
    assert http.get("/collections/err_new/exists").json()["result"] == {"exists": False}


# ----------------------------------------------------------------- the NUL character
# PostgreSQL's text and jsonb cannot hold U+0000, so no payload, name or stored setting can
# contain it: a request that would store one, or filter on one, is a 400 that writes nothing.

NUL = "a\u0000b"

NUL_WRITES = {
    "payload value": (
        "PUT",
        f"/collections/{PLAIN}/points?wait=true",
        {"points": [{"id": 1200, "vector": [1, 2, 3], "payload": {"k": NUL}}]},
    ),
    "payload key": (
        "PUT",
        f"/collections/{PLAIN}/points?wait=true",
        {"points": [{"id": 1200, "vector": [1, 2, 3], "payload": {NUL: 1}}]},
    ),
    "deep in a batch": (
        "PUT",
        f"/collections/{PLAIN}/points?wait=true",
        {
            "batch": {
                "ids": [1200, 1201],
                "vectors": [[1, 2, 3], [1, 2, 3]],
                "payloads": [{}, {"k": [{"deep": NUL}]}],
            }
        },
    ),
    "set payload": (
        "POST",
        f"/collections/{PLAIN}/points/payload?wait=true",
        {"payload": {"k": NUL}, "points": [1]},
    ),
    "overwrite payload": (
        "PUT",
        f"/collections/{PLAIN}/points/payload?wait=true",
        {"payload": {"k": NUL}, "points": [1]},
    ),
    "payload index field": (
        "PUT",
        f"/collections/{PLAIN}/index?wait=true",
        {"field_name": NUL, "field_schema": "keyword"},
    ),
    "alias": (
        "POST",
        "/collections/aliases",
        {"actions": [{"create_alias": {"collection_name": PLAIN, "alias_name": NUL}}]},
    ),
    "collection setting": (
        "PUT",
        "/collections/err_nul",
        {"vectors": {"size": 2, "distance": "Dot"}, "optimizers_config": {"x": NUL}},
    ),
}


def plain_state(http: httpx.Client) -> tuple:
    """What a rejected write to PLAIN must leave as it was: some points with their payloads,
    the aliases and the declared payload indexes."""
    points = http.post(
        f"/collections/{PLAIN}/points", json={"ids": [1, 1200, 1201], "with_payload": True}
    )
    info = http.get(f"/collections/{PLAIN}").json()["result"]
    return points.json()["result"], http.get("/aliases").json()["result"], info["payload_schema"]


@pytest.mark.parametrize("case", list(NUL_WRITES))
def test_nul_character_is_400_and_writes_nothing(http, case: str) -> None:
    method, path, body = NUL_WRITES[case]
    before = plain_state(http)
    with writes_nothing(http):
        assert_error(http.request(method, path, json=body), 400, contains="NUL")
    assert plain_state(http) == before


NUL_FILTERS = [
    {"must": [{"key": "i", "match": {"value": NUL}}]},
    {"must": [{"key": NUL, "match": {"value": "x"}}]},
    {"should": [{"key": "i", "match": {"any": ["x", NUL]}}]},
    {"must_not": [{"key": "i", "match": {"except": [NUL]}}]},
    {"must": [{"key": "i", "match": {"text": NUL}}]},
]


@pytest.mark.parametrize("flt", NUL_FILTERS)
@pytest.mark.parametrize(
    ("route", "body"),
    [("scroll", {}), ("count", {"exact": True}), ("query", {"query": [1, 2, 3, 4], "using": "v"})],
)
def test_nul_character_in_a_filter_is_400(http, flt: dict, route: str, body: dict) -> None:
    """Whichever way the filter would be evaluated (in memory or in SQL), the answer is the same."""
    response = http.post(f"/collections/{NAMED}/points/{route}", json={**body, "filter": flt})
    assert_error(response, 400, contains="NUL")


@pytest.mark.parametrize("schema", [[None, None], ["keyword"], {"type": ["keyword"]}, {"a": 1}])
def test_payload_index_schema_of_the_wrong_shape_is_400(http, schema) -> None:
    before = plain_state(http)
    response = http.put(
        f"/collections/{PLAIN}/index?wait=true", json={"field_name": "f", "field_schema": schema}
    )
    assert_error(response, 400, contains="field_schema")
    assert plain_state(http) == before


# --------------------------------------------------------------------- limits and offsets

NEGATIVE = [
    ("POST", f"/collections/{NAMED}/points/query", {"query": [1, 2], "using": "w", "limit": -1}),
    ("POST", f"/collections/{NAMED}/points/query", {"query": [1, 2], "using": "w", "offset": -1}),
    ("POST", f"/collections/{NAMED}/points/query", {"query": 1, "using": "w", "offset": -5}),
    (
        "POST",
        f"/collections/{NAMED}/points/query/batch",
        {"searches": [{"query": [1, 2], "using": "w", "limit": -2}]},
    ),
    (
        "POST",
        f"/collections/{NAMED}/points/search",
        {"vector": {"name": "w", "vector": [1, 2]}, "limit": -1},
    ),
    (
        "POST",
        f"/collections/{NAMED}/points/search",
        {"vector": {"name": "w", "vector": [1, 2]}, "limit": 3, "offset": -1},
    ),
    ("POST", f"/collections/{NAMED}/points/scroll", {"limit": -1}),
]


@pytest.mark.parametrize(("method", "path", "body"), NEGATIVE)
def test_negative_limit_or_offset_is_4xx(http, method, path, body) -> None:
    assert_error(http.request(method, path, json=body))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            f"/collections/{NAMED}/points/query",
            {"query": [1, 2], "using": "w", "limit": 2**63},
        ),
        (
            "POST",
            f"/collections/{NAMED}/points/query",
            {"query": [1, 2], "using": "w", "offset": 2**64},
        ),
        (
            "POST",
            f"/collections/{NAMED}/points/query",
            {"query": [1, 2], "using": "w", "limit": 10**30},
        ),
        *[
            ("POST", f"/collections/{NAMED}/points/scroll", {"limit": limit})
            for limit in (2**63 - 1, 2**63, 10**30)
        ],
        ("POST", f"/collections/{NAMED}/points/scroll", {"limit": 2**63 - 2}),
        ("POST", f"/collections/{NAMED}/points/scroll", {"offset": 2**64}),
        ("POST", f"/collections/{NAMED}/points", {"ids": [2**64, 2**70]}),
        ("POST", f"/collections/{NAMED}/points/delete", {"points": [10**30]}),
    ],
)
def test_huge_numbers_never_500(http, method, path, body) -> None:
    with writes_nothing(http):
        assert_envelope(http.request(method, path, json=body))


# ------------------------------------------------------------------------- routes, methods


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", f"/collections/{NAMED}/nope"),
        ("POST", f"/collections/{NAMED}/points/nope/deeper"),
        ("POST", "/v1/collections"),
    ],
)
def test_unknown_route_is_404_envelope(http, method: str, path: str) -> None:
    assert_error(http.request(method, path, json={}), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", f"/collections/{NAMED}/points/query", "POST"),
        ("PUT", f"/collections/{NAMED}/points/scroll", "POST"),
        ("DELETE", f"/collections/{NAMED}/points/count", "POST"),
        ("POST", "/collections", "GET"),
        ("DELETE", f"/collections/{NAMED}/exists", "GET"),
    ],
)
def test_wrong_method_is_405_envelope(http, method: str, path: str, allowed: str) -> None:
    """With the `Allow` header a 405 must carry (RFC 9110)."""
    with writes_nothing(http):
        response = http.request(method, path, json={})
        assert_error(response, 405)
    assert allowed in response.headers["allow"].split(", ")


# --------------------------------------------------------------------- property: any body

FIELD_NAMES = [
    "points",
    "batch",
    "ids",
    "id",
    "vector",
    "vectors",
    "payload",
    "payloads",
    "query",
    "nearest",
    "using",
    "limit",
    "offset",
    "filter",
    "must",
    "with_payload",
    "with_vector",
    "with_vectors",
    "include",
    "exclude",
    "score_threshold",
    "params",
    "hnsw_ef",
    "exact",
    "searches",
    "prefetch",
    "size",
    "distance",
    "hnsw_config",
    "m",
    "name",
    "v",
    "sparse_vectors",
    "order_by",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-3, max_value=12)
    | st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["Cosine", "Dot", "Euclid", "v", "00000000-0000-0000-0000-000000000001"])
)
vectors = st.lists(st.floats(-10, 10, width=32), min_size=0, max_size=5)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=6)
json_values = st.recursive(
    scalars | vectors,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
bodies = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6) | json_values

FUZZ_ENDPOINTS = {
    "query": ("POST", f"/collections/{FUZZ}/points/query"),
    "query_batch": ("POST", f"/collections/{FUZZ}/points/query/batch"),
    "upsert": ("PUT", f"/collections/{FUZZ}/points"),
    "scroll": ("POST", f"/collections/{FUZZ}/points/scroll"),
    "retrieve": ("POST", f"/collections/{FUZZ}/points"),
    "delete": ("POST", f"/collections/{FUZZ}/points/delete"),
    "count": ("POST", f"/collections/{FUZZ}/points/count"),
    "create": ("PUT", "/collections/err_fuzz_new"),
}

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _send(http: httpx.Client, endpoint: str, content: bytes) -> None:
    method, path = FUZZ_ENDPOINTS[endpoint]
    response = http.request(method, path, content=content, headers=JSON)
    try:
        assert_envelope(response)
    finally:
        if endpoint == "create" and response.status_code == 200:
            assert http.delete("/collections/err_fuzz_new").status_code == 200


@pytest.mark.parametrize(
    "endpoint",
    list(FUZZ_ENDPOINTS),
)
@FUZZ_SETTINGS
@given(body=bodies)
def test_random_json_bodies_never_500(http, endpoint: str, body) -> None:
    _send(http, endpoint, json.dumps(body, allow_nan=True).encode())


@pytest.mark.parametrize("endpoint", list(FUZZ_ENDPOINTS))
@settings(FUZZ_SETTINGS, max_examples=50)
@given(content=st.binary(max_size=200))
def test_random_bytes_never_500(http, endpoint: str, content: bytes) -> None:
    _send(http, endpoint, content)


def test_fuzzing_left_the_service_usable(http) -> None:
    assert count(http, NAMED) == 10
    assert count(http, PLAIN) == 5
    response = http.post(
        f"/collections/{PLAIN}/points/query", json={"query": [0, 0, 1], "limit": 1}
    )
    assert response.json()["result"]["points"][0]["id"] == 0
    assert math.isclose(response.json()["result"]["points"][0]["score"], 0.0, abs_tol=1e-6)
