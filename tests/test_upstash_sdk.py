"""The official Upstash SDK (0.8.0), sync `Index` and async `AsyncIndex`, against a live server.

One 2-dimensional COSINE index with namespaces "" and "ns"; every test starts from the same
seeded state, so the module can run again against a server that already ran it (the last
test does exactly that). Set `WAYPOINT_UPSTASH_TEST_URL` (and `WAYPOINT_UPSTASH_TEST_TOKEN`)
to run it against a server started elsewhere.

The sync and async clients differ only in returning values or coroutines, so each test is
written once and awaits through `call`.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from upstash_vector import AsyncIndex, Index, Vector
from upstash_vector.errors import ClientError, UpstashError
from upstash_vector.types import (
    Data,
    DeleteResult,
    DenseIndexInfo,
    FetchResult,
    InfoResult,
    MetadataUpdateMode,
    NamespaceInfo,
    QueryResult,
    RangeResult,
)

EXTERNAL = "WAYPOINT_UPSTASH_TEST_URL"
TOKEN = os.environ.get("WAYPOINT_UPSTASH_TEST_TOKEN", "token")
INDEX = "sdk"
ROOT = Path(__file__).resolve().parents[1]

MD0 = {"genre": "drama", "year": 2001, "tags": ["a", "b"]}
MD1 = {"genre": "comedy", "year": 2010}
MD3 = {"genre": "drama", "year": 2020, "info": {"lang": "en"}}
MD4 = {"genre": "comedy", "year": 1999}
VECTORS = {
    "id0": [0.1, 0.1],
    "id1": [1.0, 1.0],
    "id2": [2.0, 2.0],
    "id3": [3.0, 4.0],
    "id4": [0.1, 0.2],
    "5": [-1.0, 0.0],
}


def cosine(a: list[float], b: list[float]) -> float:
    """The documented score, (1 + cos) / 2, rounded through float32."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    similarity = x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
    return min(1.0, max(0.0, float(np.float32((1.0 + similarity) / 2.0))))


def scored(point_id: str, query: list[float], **fields: Any) -> QueryResult:
    return QueryResult(point_id, cosine(VECTORS[point_id], query), **fields)


async def call(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base_url(request: pytest.FixtureRequest) -> str:
    server = os.environ.get(EXTERNAL)
    if not server:
        server = request.getfixturevalue("server_factory")(env={"WAYPOINT_API_KEY": TOKEN}).url
    url = f"{server}/upstash/{INDEX}"
    created = httpx.put(
        url,
        json={"dimension": 2, "similarityFunction": "COSINE"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert created.status_code in (200, 409), created.text  # 409: an earlier run made it
    info = Index(url=url, token=TOKEN).info()
    assert (info.dimension, info.similarity_function) == (2, "COSINE")
    return url


@pytest.fixture(params=["sync", "async"])
def index(request: pytest.FixtureRequest, base_url: str) -> Index | AsyncIndex:
    kind = Index if request.param == "sync" else AsyncIndex
    return kind(url=base_url, token=TOKEN)


async def clean(index: Index | AsyncIndex) -> None:
    for namespace in await call(index.list_namespaces()):
        if namespace:
            await call(index.delete_namespace(namespace))
    await call(index.reset())


async def seed(index: Index | AsyncIndex) -> None:
    """Six vectors in "" (tuples, dicts, `Vector`s with numpy and int ids), three in "ns"."""
    await clean(index)
    tuples = [("id0", [0.1, 0.1], MD0, "zero"), ("id1", [1.0, 1.0], MD1), ("id2", [2.0, 2.0])]
    assert await call(index.upsert(tuples)) == "Success"
    as_dict = {"id": "id3", "vector": [3.0, 4.0], "metadata": MD3, "data": "three"}
    assert await call(index.upsert([as_dict])) == "Success"
    objects = [
        Vector(id="id4", vector=np.array([0.1, 0.2]), metadata=MD4, data="four"),
        Vector(id=5, vector=[-1.0, 0.0]),
    ]
    assert await call(index.upsert(objects)) == "Success"
    in_ns = [("z", [1.0, 0.0], {"k": 1}), ("y", [3.0, 0.0], {"k": 2}, "why"), ("x", [0.0, 1.0])]
    assert await call(index.upsert(in_ns, namespace="ns")) == "Success"


def dense_info(vectors: int, namespaces: dict[str, int]) -> InfoResult:
    return InfoResult(
        vector_count=vectors,
        pending_vector_count=0,
        index_size=vectors * 2 * 4,
        dimension=2,
        similarity_function="COSINE",
        dense_index=DenseIndexInfo(dimension=2, similarity_function="COSINE", embedding_model=""),
        sparse_index=None,
        namespaces={name: NamespaceInfo(count, 0) for name, count in namespaces.items()},
    )


# --------------------------------------------------------------------- tests


async def test_upsert_forms_info_and_namespaces(index) -> None:
    await seed(index)
    assert await call(index.info()) == dense_info(9, {"": 6, "ns": 3})
    assert await call(index.list_namespaces()) == ["", "ns"]
    for data_only in (Data(id="d", data="text"), Vector(id="d", data="text")):
        with pytest.raises(UpstashError, match="no embedding model"):
            await call(index.upsert([data_only]))
    with pytest.raises(UpstashError, match=r"Invalid vector dimension: 3, expected: 2"):
        await call(index.upsert([("bad", [1.0, 2.0, 3.0])]))
    # An upsert replaces the whole vector: metadata and data not sent are gone.
    assert await call(index.upsert([("id0", [2.0, 2.5], {"genre": "new"})])) == "Success"
    fetched = await call(
        index.fetch("id0", include_vectors=True, include_metadata=True, include_data=True)
    )
    assert fetched == [FetchResult("id0", vector=[2.0, 2.5], metadata={"genre": "new"})]
    assert await call(index.info()) == dense_info(9, {"": 6, "ns": 3})


async def test_fetch_by_ids_and_prefix(index) -> None:
    await seed(index)
    everything = {"include_vectors": True, "include_metadata": True, "include_data": True}
    assert await call(index.fetch(["id0", "missing", "5", "id3"], **everything)) == [
        FetchResult("id0", vector=[0.1, 0.1], metadata=MD0, data="zero"),
        None,
        FetchResult("5", vector=[-1.0, 0.0]),
        FetchResult("id3", vector=[3.0, 4.0], metadata=MD3, data="three"),
    ]
    assert await call(index.fetch("id4")) == [FetchResult("id4")]
    assert await call(index.fetch(["id4"], include_vectors=True)) == [
        FetchResult("id4", vector=[0.1, 0.2])
    ]
    assert await call(index.fetch(prefix="id", include_data=True)) == [
        FetchResult("id0", data="zero"),
        FetchResult("id1"),
        FetchResult("id2"),
        FetchResult("id3", data="three"),
        FetchResult("id4", data="four"),
    ]
    in_ns = await call(index.fetch(["z", "id0"], namespace="ns", include_metadata=True))
    assert in_ns == [FetchResult("z", metadata={"k": 1}), None]
    assert await call(index.fetch(["id0"], namespace="nowhere")) == [None]
    assert await call(index.list_namespaces()) == ["", "ns"]


async def test_query_scores_ties_fields_and_namespaces(index) -> None:
    await seed(index)
    everything = {"include_vectors": True, "include_metadata": True, "include_data": True}
    assert await call(index.query([1.0, 1.0], top_k=3, **everything)) == [
        QueryResult("id0", 1.0, vector=[0.1, 0.1], metadata=MD0, data="zero"),
        QueryResult("id1", 1.0, vector=[1.0, 1.0], metadata=MD1),
        QueryResult("id2", 1.0, vector=[2.0, 2.0]),
    ]
    assert await call(index.query([1.0, 1.0], top_k=1)) == [QueryResult("id0", 1.0)]
    assert await call(index.query([1.0, 0.0])) == [
        scored(point_id, [1.0, 0.0]) for point_id in ("id0", "id1", "id2", "id3", "id4", "5")
    ]
    assert (await call(index.query([1.0, 0.0])))[-1].score == 0.0  # opposite direction
    assert await call(index.query([1.0, 0.0], namespace="ns", include_data=True)) == [
        QueryResult("z", 1.0),
        QueryResult("y", 1.0, data="why"),
        QueryResult("x", 0.5),
    ]
    assert await call(index.query([1.0, 0.0], namespace="nowhere")) == []
    assert await call(index.list_namespaces()) == ["", "ns"]
    with pytest.raises(UpstashError, match=r"Invalid vector dimension: 1, expected: 2"):
        await call(index.query([1.0]))


async def test_query_filters(index) -> None:
    await seed(index)
    up = [0.0, 1.0]
    drama = await call(
        index.query(up, filter="genre = 'drama' AND year >= 2001", include_metadata=True)
    )
    assert drama == [scored("id3", up, metadata=MD3), scored("id0", up, metadata=MD0)]
    expected = {
        "tags CONTAINS 'a'": ["id0"],
        "info.lang = 'en' OR year < 2000": ["id4", "id3"],
        "HAS NOT FIELD genre": ["id2", "5"],
        "genre GLOB 'com*'": ["id4", "id1"],
        "genre NOT IN ('drama') AND year > 2000": ["id1"],
        "year > 2100": [],
    }
    for text, ids in expected.items():
        assert [r.id for r in await call(index.query(up, filter=text))] == ids, text
    with pytest.raises(UpstashError):
        await call(index.query(up, filter="genre = "))


async def test_query_many(index) -> None:
    await seed(index)
    right, up = [1.0, 0.0], [0.0, 1.0]
    many = await call(
        index.query_many(
            queries=[
                {"vector": right, "top_k": 2, "include_data": True},
                {
                    "vector": up,
                    "filter": "genre = 'comedy'",
                    "include_metadata": True,
                    "include_vectors": True,
                },
            ]
        )
    )
    assert many == [
        [scored("id0", right, data="zero"), scored("id1", right)],
        [
            scored("id4", up, vector=[0.1, 0.2], metadata=MD4),
            scored("id1", up, vector=[1.0, 1.0], metadata=MD1),
        ],
    ]
    # One query goes out as a single object and comes back as a one-element list.
    single = await call(
        index.query_many(queries=[{"vector": [1.0, 1.0], "top_k": 1}], namespace="ns")
    )
    assert single == [[QueryResult("z", cosine([1.0, 0.0], [1.0, 1.0]))]]


async def test_resumable_queries(index) -> None:
    await seed(index)
    up = [0.0, 1.0]
    scores, handle = await call(index.resumable_query(up, top_k=2, include_metadata=True))
    assert scores == [scored("id4", up, metadata=MD4), scored("id3", up, metadata=MD3)]
    assert await call(handle.fetch_next(3)) == [
        scored("id0", up, metadata=MD0),
        scored("id1", up, metadata=MD1),
        scored("id2", up),
    ]
    assert await call(handle.fetch_next(5)) == [QueryResult("5", 0.5)]
    assert await call(handle.fetch_next(1)) == []
    await call(handle.stop())
    with pytest.raises(UpstashError):
        await call(handle.fetch_next(1))
    with pytest.raises(UpstashError):
        await call(handle.stop())

    # The filter and the include flags hold for the whole life of the query.
    right = [1.0, 0.0]
    scores, handle = await call(
        index.resumable_query(
            right, top_k=1, filter="genre = 'comedy'", include_vectors=True, include_data=True
        )
    )
    assert scores == [scored("id1", right, vector=[1.0, 1.0])]
    assert await call(handle.fetch_next(5)) == [
        scored("id4", right, vector=[0.1, 0.2], data="four")
    ]
    await call(handle.stop())

    scores, handle = await call(index.resumable_query(right, namespace="nowhere"))
    assert scores == [] and await call(handle.fetch_next(3)) == []
    await call(handle.stop())
    assert await call(index.list_namespaces()) == ["", "ns"]


async def test_range(index) -> None:
    await seed(index)
    first = await call(index.range(limit=4, include_metadata=True))
    assert first.vectors == [
        FetchResult("id0", metadata=MD0),
        FetchResult("id1", metadata=MD1),
        FetchResult("id2"),
        FetchResult("id3", metadata=MD3),
    ]
    assert first.next_cursor.isdigit()  # opaque: the write order position to continue at
    rest = await call(
        index.range(cursor=first.next_cursor, limit=4, include_vectors=True, include_data=True)
    )
    assert rest == RangeResult(
        next_cursor="",
        vectors=[FetchResult("id4", vector=[0.1, 0.2], data="four"), FetchResult("5", [-1.0, 0.0])],
    )
    assert (await call(index.range(limit=6))).next_cursor == ""
    in_ns = await call(index.range(cursor="0", limit=10, namespace="ns", include_data=True))
    assert in_ns == RangeResult(
        "", [FetchResult("z"), FetchResult("y", data="why"), FetchResult("x")]
    )
    assert await call(index.range(limit=5, namespace="nowhere")) == RangeResult("", [])

    assert await read_pages(index, [2, 2, 2], prefix="id") == [
        ["id0", "id1"],
        ["id2", "id3"],
        ["id4"],
    ]
    # Insertion order, not id order: id-10 comes after id-9.
    many = [(f"id-{i}", [1.0, float(i)]) for i in range(20)]
    assert await call(index.upsert(many, namespace="pages")) == "Success"
    pages = await read_pages(index, [4, 8, 8], namespace="pages")
    assert pages == [
        [f"id-{i}" for i in chunk] for chunk in (range(4), range(4, 12), range(12, 20))
    ]


async def read_pages(index, limits: list[int], **options: Any) -> list[list[str]]:
    """Page through a range with the given page sizes; the last cursor must be ""."""
    pages, cursor = [], ""
    for limit in limits:
        page = await call(index.range(cursor=cursor, limit=limit, **options))
        pages.append([vector.id for vector in page.vectors])
        cursor = page.next_cursor
    assert cursor == ""
    return pages


async def test_update(index) -> None:
    await seed(index)
    everything = {"include_vectors": True, "include_metadata": True, "include_data": True}
    assert await call(index.update("id1", metadata={"genre": "thriller"})) is True
    assert await call(index.fetch("id1", **everything)) == [
        FetchResult("id1", vector=[1.0, 1.0], metadata={"genre": "thriller"})
    ]
    patch = {"year": None, "info": {"lang": "fr", "alt": "de"}, "new": [1]}
    assert await call(
        index.update("id3", metadata=patch, metadata_update_mode=MetadataUpdateMode.PATCH)
    )
    assert await call(index.fetch("id3", include_metadata=True)) == [
        FetchResult(
            "id3", metadata={"genre": "drama", "info": {"lang": "fr", "alt": "de"}, "new": [1]}
        )
    ]
    assert await call(index.update("id0", vector=[0.3, 0.7], data="zero v2")) is True
    assert await call(index.fetch("id0", **everything)) == [
        FetchResult("id0", vector=[0.3, 0.7], metadata=MD0, data="zero v2")
    ]
    assert await call(index.query([0.3, 0.7], top_k=1)) == [QueryResult("id0", 1.0)]
    thrillers = await call(index.query([1.0, 0.0], filter="genre = 'thriller'"))
    assert [r.id for r in thrillers] == ["id1"]

    assert await call(index.update("ghost", metadata={"a": 1})) is False
    assert await call(index.fetch("ghost")) == [None]
    assert await call(index.update("z", data="zed", namespace="ns")) is True
    assert await call(index.fetch("z", namespace="ns", include_data=True)) == [
        FetchResult("z", data="zed")
    ]
    assert await call(index.update("z", data="zed", namespace="nowhere")) is False
    assert await call(index.list_namespaces()) == ["", "ns"]
    with pytest.raises(UpstashError, match="Invalid vector dimension"):
        await call(index.update("id0", vector=[1.0]))
    # Range order is write order: updated vectors move to the end.
    order = [v.id for v in (await call(index.range(limit=10))).vectors]
    assert order == ["id2", "id4", "5", "id1", "id3", "id0"]


async def test_delete(index) -> None:
    await seed(index)
    assert await call(index.delete("id1")) == DeleteResult(deleted=1)
    assert await call(index.delete(["id2", "ghost", "id2"])) == DeleteResult(deleted=1)
    assert await call(index.delete(["id2"])) == DeleteResult(deleted=0)
    assert await call(index.delete(prefix="id")) == DeleteResult(deleted=3)
    assert await call(index.fetch(["id0", "5"])) == [None, FetchResult("5")]
    assert await call(index.delete(filter="k >= 2", namespace="ns")) == DeleteResult(deleted=1)
    assert [r.id for r in await call(index.query([1.0, 0.0], namespace="ns"))] == ["z", "x"]
    assert await call(index.delete("z", namespace="nowhere")) == DeleteResult(deleted=0)
    with pytest.raises(UpstashError, match="exactly one of ids, prefix or filter"):
        await call(index.delete(ids=["x"], prefix="x", namespace="ns"))
    assert await call(index.info()) == dense_info(3, {"": 1, "ns": 2})


async def test_reset_and_namespaces(index) -> None:
    await seed(index)
    assert await call(index.reset(namespace="ns")) == "Success"
    assert await call(index.info()) == dense_info(6, {"": 6, "ns": 0})
    assert await call(index.reset(namespace="nowhere")) == "Success"
    assert await call(index.list_namespaces()) == ["", "ns"]

    assert await call(index.delete_namespace("ns")) is None
    assert await call(index.list_namespaces()) == [""]
    with pytest.raises(UpstashError, match=f"Namespace ns for the index {INDEX} does not exist"):
        await call(index.delete_namespace("ns"))
    if isinstance(index, AsyncIndex):
        with pytest.raises(ClientError):  # the async client refuses before sending
            await index.delete_namespace("")
    else:
        with pytest.raises(UpstashError, match="Cannot delete the default namespace"):
            index.delete_namespace("")

    assert await call(index.upsert([("z", [1.0, 0.0])], namespace="ns")) == "Success"
    assert await call(index.reset()) == "Success"  # the default namespace only
    assert await call(index.info()) == dense_info(1, {"": 0, "ns": 1})
    assert await call(index.upsert([("id0", [0.1, 0.1])])) == "Success"
    assert await call(index.reset(all=True)) == "Success"
    assert await call(index.info()) == dense_info(0, {"": 0, "ns": 0})


async def test_errors_reach_the_sdk_as_upstash_errors(base_url: str) -> None:
    with pytest.raises(UpstashError, match="Unauthorized"):
        Index(url=base_url, token="wrong").info()
    missing = base_url.replace(f"/upstash/{INDEX}", "/upstash/no-such-index")
    with pytest.raises(UpstashError, match="Index no-such-index does not exist"):
        await AsyncIndex(url=missing, token=TOKEN).fetch(["a"])


def test_the_module_passes_again_against_the_same_server(base_url: str) -> None:
    if os.environ.get(EXTERNAL):
        pytest.skip("this is the second run")
    server = base_url.split("/upstash/")[0]
    rerun = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=ROOT,
        env={**os.environ, EXTERNAL: server, "WAYPOINT_UPSTASH_TEST_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-2000:]
