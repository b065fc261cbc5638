"""The rest of the universal query API against local mode (the oracle): a query without a
query (points in id order), `order_by` in scroll and in `query`, collection aliases (seen by
a second worker too) and resumable recommend queries.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.qdrant_oracle import assert_same, assert_same_records, build, clients, random_filter

N, DIM = 300, 8


@pytest.fixture(scope="module")
def pair(server):
    remote, local = clients(server.url)
    build((remote, local), "qa", N, DIM, seed=31)
    build((remote, local), "qa_other", 50, DIM, seed=32)
    remote.create_payload_index("qa", "price", models.PayloadSchemaType.FLOAT)
    remote.create_payload_index("qa", "rank", models.PayloadSchemaType.INTEGER)
    remote.create_payload_index("qa", "city", models.PayloadSchemaType.KEYWORD)
    yield remote, local
    remote.close()


def test_query_without_query_lists_points_in_id_order(pair) -> None:
    remote, local = pair
    rng = np.random.default_rng(3)
    for case in range(30):
        args = {
            "query_filter": random_filter(rng),
            "limit": int(rng.integers(1, 20)),
            "offset": int(rng.integers(0, 30)),
            "with_payload": bool(rng.random() < 0.5),
        }
        got = remote.query_points("qa", **args).points
        want = local.query_points("qa", **args).points
        assert_same_records(got, want, f"case {case}: {args}")


def order_cases() -> list[models.OrderBy]:
    return [
        models.OrderBy(key="price"),
        models.OrderBy(key="price", direction=models.Direction.DESC),
        models.OrderBy(key="price", start_from=42.5),
        models.OrderBy(key="price", direction=models.Direction.DESC, start_from=60),
        models.OrderBy(key="rank"),  # arrays: one entry per value; floats count as numbers
        models.OrderBy(key="rank", direction=models.Direction.DESC, start_from=3),
    ]


def test_scroll_order_by_matches_local_mode(pair) -> None:
    remote, local = pair
    rng = np.random.default_rng(4)
    for order_by in order_cases():
        for _ in range(3):
            query_filter = random_filter(rng)
            got, got_next = remote.scroll(
                "qa", limit=25, order_by=order_by, scroll_filter=query_filter
            )
            want, _ = local.scroll("qa", limit=25, order_by=order_by, scroll_filter=query_filter)
            where = f"{order_by} {query_filter}"
            assert [(p.id, p.order_value) for p in got] == [(p.id, p.order_value) for p in want], (
                where
            )
            assert [p.payload for p in got] == [p.payload for p in want], where
            assert got_next is None
        assert len(want) > 0


def test_query_order_by_and_errors(pair) -> None:
    remote, local = pair
    query = models.OrderByQuery(order_by=models.OrderBy(key="price", direction="desc"))
    got = remote.query_points("qa", query=query, limit=7).points
    want = local.query_points("qa", query=query, limit=7).points
    assert [(p.id, p.order_value) for p in got] == [(p.id, p.order_value) for p in want]
    for key in ("city", "i"):  # a keyword index cannot order; `i` has no index at all
        with pytest.raises(UnexpectedResponse) as caught:
            remote.scroll("qa", order_by=key)
        assert caught.value.status_code == 400
        assert f"No range index for `order_by` key `{key}`" in caught.value.content.decode()
    with pytest.raises(UnexpectedResponse) as caught:
        remote.scroll("qa", order_by="price", offset=3)
    assert caught.value.status_code == 400


def test_order_by_datetimes(server) -> None:
    remote, local = clients(server.url)
    moments = ["2024-03-01T10:00:00Z", "2024-03-01T10:00:00+02:00", "2024-02-28", "junk"]
    points = [
        models.PointStruct(
            id=i,
            vector=[float(i), 1.0],
            payload={
                "when": moments[i % 4]
                if i % 5
                else [moments[i % 4], f"2023-0{1 + i % 9}-15T08:30:00"]
            },
        )
        for i in range(40)
    ]
    for client in (remote, local):
        client.create_collection("when", models.VectorParams(size=2, distance=models.Distance.DOT))
        client.upsert("when", points=points, wait=True)
    remote.create_payload_index("when", "when", models.PayloadSchemaType.DATETIME)
    for order_by in (
        models.OrderBy(key="when"),
        models.OrderBy(key="when", direction="desc", start_from="2024-03-01T09:00:00Z"),
    ):
        got, _ = remote.scroll("when", limit=30, order_by=order_by)
        want, _ = local.scroll("when", limit=30, order_by=order_by)
        assert [(p.id, p.order_value) for p in got] == [(p.id, p.order_value) for p in want]
        assert len(want) >= 10
    remote.close()


def test_aliases_resolve_everywhere_and_reach_other_workers(pair, server_factory) -> None:
    remote, local = pair
    actions = [
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name="qa", alias_name="live")
        ),
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name="qa_other", alias_name="spare")
        ),
    ]
    for client in (remote, local):
        assert client.update_collection_aliases(change_aliases_operations=actions)
    query = np.linspace(-1, 1, DIM).tolist()
    got = remote.query_points("live", query=query, using="cos", limit=5).points
    want = local.query_points("qa", query=query, using="cos", limit=5).points
    assert_same(got, want, "through the alias")
    assert remote.get_collection("live").points_count == N
    recommend = models.RecommendQuery(recommend=models.RecommendInput(positive=[1, 2]))
    lookup = models.LookupLocation(collection="spare")
    got = remote.query_points("live", query=recommend, using="dot", lookup_from=lookup).points
    want = local.query_points("qa", query=recommend, using="dot", lookup_from=lookup).points
    assert_same(got, want, "lookup_from an alias")
    assert sorted((a.alias_name, a.collection_name) for a in remote.get_aliases().aliases) == [
        ("live", "qa"),
        ("spare", "qa_other"),
    ]
    assert [a.alias_name for a in remote.get_collection_aliases("qa").aliases] == ["live"]

    # a second worker on the same database sees the aliases, and later changes
    other = server_factory()
    listed = httpx.get(f"{other.url}/aliases").json()["result"]["aliases"]
    assert {a["alias_name"] for a in listed} == {"live", "spare"}
    switch = [
        models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name="live")),
        models.RenameAliasOperation(
            rename_alias=models.RenameAlias(old_alias_name="spare", new_alias_name="live")
        ),
    ]
    assert remote.update_collection_aliases(change_aliases_operations=switch)
    info = httpx.get(f"{other.url}/collections/live").json()["result"]
    assert info["points_count"] == 50

    with pytest.raises(UnexpectedResponse) as caught:
        remote.update_collection_aliases(
            change_aliases_operations=[
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name="nope", alias_name="x")
                )
            ]
        )
    assert caught.value.status_code == 404
    assert "Not found: Collection `nope`" in caught.value.content.decode()
    remote.delete_collection("qa_other")
    assert remote.get_aliases().aliases == []


def test_resumable_recommend_pages_equal_a_recommend_query(pair, server) -> None:
    """average_vector: the session follows the average; best_score is refused clearly."""
    _, local = pair
    body = {
        "query": {"recommend": {"positive": [10, 11], "negative": [12]}},
        "using": "cos",
        "limit": 4,
        "with_payload": False,
    }
    url = f"{server.url}/collections/qa/points/query/resumable"
    first = httpx.post(url, json=body, timeout=30).json()["result"]
    pages = [first["points"]]
    for _ in range(3):
        response = httpx.post(f"{url}/{first['id']}/next", json={"limit": 4}, timeout=30)
        pages.append(response.json()["result"]["points"])
    got = [p for page in pages for p in page]
    recommend = models.RecommendQuery(
        recommend=models.RecommendInput(positive=[10, 11], negative=[12])
    )
    want = local.query_points("qa", query=recommend, using="cos", limit=16).points
    assert [p["id"] for p in got] == [p.id for p in want]
    np.testing.assert_allclose([p["score"] for p in got], [p.score for p in want], atol=1e-4)
    body["query"]["recommend"]["strategy"] = "best_score"
    refused = httpx.post(url, json=body, timeout=30)
    assert refused.status_code == 400
    assert "average_vector" in refused.json()["status"]["error"]
