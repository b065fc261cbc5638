"""Hostile and careless requests against a live server: every one must get a clear 4xx (or
the right answer), none a 5xx, and none may hold up light requests sent meanwhile.

    .venv/bin/python scripts/hostile.py --url http://127.0.0.1:6333 [--api-key KEY] [-k CASE]

It creates Qdrant collections `hostile_q` and `hostile_big` (5000 points of 384 dimensions)
and Upstash indexes `hostile_u` and `hostile_text` (with both embedding models), all made
anew each run, and sends each case below while
threads keep sending a light request (`GET /collections/hostile_q/exists`) on four other
connections, so that every worker of a server with up to four gets some. It prints one line a
case: the status, the seconds it took, the slowest light request meanwhile, and whether the
case held. It exits 1 when some
case gets a 5xx, an unexpected status, drops the connection, or stalls the light requests
past `--stall` seconds. The cases are those of issue 21 (what schemathesis and a careless
client found); the README's schemathesis recipe fuzzes the rest.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

Q = "hostile_q"
U = "hostile_u"
BIG = "hostile_big"  # 384 dimensions, like MiniLM embeddings
TEXT = "hostile_text"  # an Upstash index with both embedding models
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BIG_POINTS = 5000
LIGHT_CONNECTIONS = 4  # at least as many as the server has workers


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: object = None
    expect: tuple[int, ...] = (400, 413, 422)
    raw: bytes | None = None  # a body sent as it is (not JSON-encoded)

    def content(self) -> bytes | None:
        """The body as sent. Encode it before any timing starts: encoding tens of megabytes
        holds this process's GIL, and so its light-request threads, while it runs."""
        sys.setrecursionlimit(10_000)  # json.dumps of the deeply nested cases
        if self.raw is not None:
            return self.raw
        return None if self.body is None else json.dumps(self.body).encode()


def nested_filter(depth: int) -> dict:
    node: dict = {"key": "a", "match": {"value": 1}}
    for _ in range(depth):
        node = {"must": [node]}
    return node


def nested_object(depth: int) -> dict:
    node: dict = {"x": 1}
    for _ in range(depth):
        node = {"x": node}
    return node


def big_points(start: int, count: int) -> list[dict]:
    rng = random.Random(start)
    return [
        {
            "id": i,
            "vector": [rng.uniform(-1, 1) for _ in range(384)],
            "payload": {"n": i, "text": f"passage {i} " * 20},
        }
        for i in range(start, start + count)
    ]


def cases() -> list[Case]:
    many = list(range(40_000))
    big = f"/collections/{BIG}/points"
    query = [0.01 * (i % 7) for i in range(384)]
    pts = f"/collections/{Q}/points"
    up = f"/upstash/{U}"
    long_name = "n" * 3000
    huge = list(range(1_000_000))
    text = f"/upstash/{TEXT}"
    words = " ".join(f"w{i % 5000}" for i in range(1_000_000))  # 6.9 MB of text
    return [
        # 1. filters whose compilation used to block the event loop
        Case(
            "upstash 4000 OR",
            "POST",
            f"{up}/query",
            {
                "vector": [0.1, 0.2],
                "topK": 5,
                "filter": " OR ".join(f"a = {i}" for i in range(4000)),
            },
            expect=(200, 400),
        ),
        Case(
            "qdrant text 8000 words",
            "POST",
            f"{pts}/scroll",
            {
                "filter": {"must": [{"key": "t", "match": {"text": " ".join(["w"] * 8000)}}]},
            },
            expect=(200, 400),
        ),
        Case(
            "qdrant should 500",
            "POST",
            f"{pts}/count",
            {
                "filter": {"should": [{"key": "a", "match": {"value": i}} for i in range(500)]},
            },
            expect=(200,),
        ),
        Case(
            "qdrant should 20000",
            "POST",
            f"{pts}/scroll",
            {
                "filter": {"should": [{"key": "a", "match": {"value": i}} for i in range(20_000)]},
            },
            expect=(200, 400),
        ),
        # 2. nesting
        Case(
            "qdrant filter depth 200 (scroll)",
            "POST",
            f"{pts}/scroll",
            {"filter": nested_filter(200)},
        ),
        Case(
            "qdrant filter depth 200 (count)",
            "POST",
            f"{pts}/count",
            {"filter": nested_filter(200)},
        ),
        Case(
            "qdrant filter depth 200 (query)",
            "POST",
            f"{pts}/query",
            {"filter": nested_filter(200)},
        ),
        Case(
            "qdrant filter depth 200 (delete)",
            "POST",
            f"{pts}/delete",
            {"filter": nested_filter(200)},
        ),
        Case(
            "upstash 400 parentheses",
            "POST",
            f"{up}/query",
            {
                "vector": [0.1, 0.2],
                "filter": "(" * 400 + "a = 1" + ")" * 400,
            },
        ),
        *(
            Case(
                f"qdrant payload depth {depth}",
                "PUT",
                pts,
                {
                    "points": [{"id": 1, "vector": [0.1, 0.2], "payload": nested_object(depth)}],
                },
            )
            for depth in (100, 1000)
        ),
        *(
            Case(
                f"upstash metadata depth {depth}",
                "POST",
                f"{up}/upsert",
                {
                    "id": "deep",
                    "vector": [0.1, 0.2],
                    "metadata": nested_object(depth),
                },
            )
            for depth in (100, 1000)
        ),
        Case(
            "qdrant set payload depth 100",
            "POST",
            f"{pts}/payload",
            {
                "payload": nested_object(100),
                "points": [1],
            },
        ),
        # 3. more values than PostgreSQL binds in one statement
        Case(
            "qdrant match.any 40000",
            "POST",
            f"{pts}/count",
            {
                "filter": {"must": [{"key": "a", "match": {"any": many}}]},
            },
            expect=(200,),
        ),
        Case(
            "qdrant match.except 40000",
            "POST",
            f"{pts}/count",
            {
                "filter": {"must": [{"key": "a", "match": {"except": many}}]},
            },
            expect=(200,),
        ),
        Case(
            "qdrant has_id 40000",
            "POST",
            f"{pts}/count",
            {
                "filter": {"must": [{"has_id": many}]},
            },
            expect=(200,),
        ),
        Case("qdrant retrieve 40000", "POST", pts, {"ids": many}, expect=(200,)),
        Case(
            "qdrant set payload 40000 points",
            "POST",
            f"{pts}/payload",
            {
                "payload": {"z": 1},
                "points": many,
            },
            expect=(404,),
        ),  # as Qdrant: most of those points do not exist
        Case(
            "upstash IN 40000",
            "POST",
            f"{up}/query",
            {
                "vector": [0.1, 0.2],
                "filter": f"a IN ({', '.join(map(str, many))})",
            },
            expect=(200,),
        ),
        Case(
            "upstash fetch 40000",
            "POST",
            f"{up}/fetch",
            {"ids": [str(i) for i in many]},
            expect=(200,),
        ),
        Case(
            "upstash delete 40000",
            "POST",
            f"{up}/delete",
            {"ids": [str(i) for i in many]},
            expect=(200,),
        ),
        # 4. keys larger than a PostgreSQL index row
        Case(
            "upstash id 3000 chars",
            "POST",
            f"{up}/upsert",
            {"id": "i" * 3000, "vector": [0.1, 0.2]},
        ),
        Case(
            "upstash id 1 MB", "POST", f"{up}/upsert", {"id": "i" * 1_000_000, "vector": [0.1, 0.2]}
        ),
        Case(
            "upstash namespace 3000 chars",
            "POST",
            f"{up}/upsert/{long_name}",
            {"id": "a", "vector": [0.1, 0.2]},
        ),
        Case(
            "qdrant index field 3000 chars",
            "PUT",
            f"/collections/{Q}/index",
            {"field_name": long_name, "field_schema": "keyword"},
        ),
        Case(
            "qdrant alias 3000 chars",
            "POST",
            "/collections/aliases",
            {
                "actions": [{"create_alias": {"collection_name": Q, "alias_name": long_name}}],
            },
        ),
        # 5. integers Python will not read from text
        Case(
            "upstash 4301-digit integer",
            "POST",
            f"{up}/query",
            {
                "vector": [0.1, 0.2],
                "filter": "a = " + "9" * 4301,
            },
        ),
        # 6. DDL quoting
        Case(
            "qdrant index field with backslash",
            "PUT",
            f"/collections/{Q}/index",
            {"field_name": "k\\", "field_schema": "keyword"},
            expect=(200,),
        ),
        Case(
            "qdrant index field with quotes",
            "PUT",
            f"/collections/{Q}/index",
            {"field_name": "k'\"$$x", "field_schema": "keyword"},
            expect=(200,),
        ),
        # 7. an index whose name holds a slash
        Case(
            "qdrant index a/b created",
            "PUT",
            f"/collections/{Q}/index",
            {"field_name": "a/b", "field_schema": "keyword"},
            expect=(200,),
        ),
        Case("qdrant index a/b dropped", "DELETE", f"/collections/{Q}/index/a%2Fb", expect=(200,)),
        # 9. smaller
        Case("qdrant query limit 1e9", "POST", f"{pts}/query", {"limit": 1_000_000_000}),
        Case("qdrant scroll limit 1e9", "POST", f"{pts}/scroll", {"limit": 1_000_000_000}),
        Case("qdrant snapshots", "GET", f"/collections/{Q}/snapshots"),
        Case("qdrant facet", "POST", f"/collections/{Q}/facet", {"key": "a"}),
        Case("qdrant matrix pairs", "POST", f"/collections/{Q}/points/search/matrix/pairs", {}),
        Case("qdrant cluster", "GET", "/cluster"),
        Case(
            "qdrant vectors name",
            "PUT",
            f"/collections/{Q}/vectors/extra",
            {"size": 2, "distance": "Dot"},
        ),
        Case(
            "qdrant resumable next unknown",
            "POST",
            f"/collections/{Q}/points/resumable/00000000-0000-0000-0000-000000000000/next",
            {"limit": 1},
            expect=(404,),
        ),
        Case("not JSON", "POST", f"{pts}/query", raw=b'{"limit": '),
        # large legitimate requests: decoded, validated and rendered off the event loop
        Case(
            "qdrant upsert 3000 x 384",
            "PUT",
            f"{big}?wait=true",
            {"points": big_points(BIG_POINTS, 3000)},
            expect=(200,),
        ),
        Case(
            "qdrant upsert over the body limit",
            "PUT",
            f"{big}?wait=true",
            {"points": big_points(BIG_POINTS, 5000)},
            expect=(413,),
        ),
        Case(
            "qdrant retrieve 5000 with vectors",
            "POST",
            big,
            {"ids": list(range(5000)), "with_vector": True, "with_payload": True},
            expect=(200,),
        ),
        Case(
            "qdrant query 10000 with vectors",
            "POST",
            f"{big}/query",
            {"query": query, "limit": 10_000, "with_vector": True, "with_payload": True},
            expect=(200,),
        ),
        Case(
            "qdrant scroll 10000 with vectors",
            "POST",
            f"{big}/scroll",
            {"limit": 10_000, "with_vector": True, "with_payload": True},
            expect=(200,),
        ),
        # 8. sparse vectors and hybrid queries
        Case(
            "qdrant sparse upsert 1M entries",
            "PUT",
            f"{pts}?wait=true",
            {"points": [{"id": 1, "vector": {"t": {"indices": huge, "values": [1] * len(huge)}}}]},
        ),
        Case(
            "qdrant sparse query 1M entries",
            "POST",
            f"{pts}/query",
            {"query": {"indices": huge, "values": [1.0] * len(huge)}, "using": "t"},
        ),
        Case(
            "qdrant sparse null value",
            "PUT",
            f"{pts}?wait=true",
            {"points": [{"id": 1, "vector": {"t": {"indices": [1], "values": [None]}}}]},
        ),
        Case(
            "qdrant 1000 prefetches",
            "POST",
            f"{pts}/query",
            {
                "prefetch": [{"query": {"indices": [1], "values": [1.0]}, "using": "t"}] * 1000,
                "query": {"fusion": "rrf"},
            },
        ),
        Case(
            "qdrant prefetch limit 10^9",
            "POST",
            f"{pts}/query",
            {
                "prefetch": [{"query": [1.0, 0.0], "limit": 10**9}],
                "query": {"fusion": "dbsf"},
            },
        ),
        Case(
            "upstash sparse vector on a dense index",
            "POST",
            f"{up}/upsert",
            [{"id": "s", "vector": [0.1, 0.2], "sparseVector": {"indices": [1], "values": [1]}}],
        ),
        # 6. text models: long texts and many of them are embedded off the event loop
        Case("upstash query-data of 7 MB", "POST", f"{text}/query-data", {"data": words}, (200,)),
        Case(
            "upstash upsert-data of 7 MB",
            "POST",
            f"{text}/upsert-data",
            [{"id": "long", "data": words}],
            expect=(200,),
        ),
        Case(
            "upstash upsert-data of 500 texts",
            "POST",
            f"{text}/upsert-data",
            [
                {"id": f"t{i}", "data": f"passage number {i} about item {i % 17}"}
                for i in range(500)
            ],
            expect=(200,),
        ),
        Case(
            "qdrant 500 documents",
            "PUT",
            f"{big}?wait=true",
            {
                "points": [
                    {"id": 10_000 + i, "vector": {"text": f"document {i}", "model": MINILM}}
                    for i in range(500)
                ]
            },
            expect=(200,),
        ),
        Case(
            "qdrant document of an unknown model",
            "POST",
            f"{big}/query",
            {"query": {"text": "x", "model": "openai/text-embedding-3-large"}},
        ),
        Case("upstash data without a model", "POST", f"{up}/query-data", {"data": "x"}),
        Case("upstash empty data", "POST", f"{text}/query-data", {"data": ""}),
    ]


class Watch:
    """Keeps sending a light request on each of several connections (one at least on every
    worker, as the server deals new connections to the worker holding fewest); remembers the
    slowest answer and any failure."""

    def __init__(self, clients: list[httpx.Client]) -> None:
        self.clients = clients
        self.slowest = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.run, args=(c,), daemon=True) for c in clients]

    def run(self, http: httpx.Client) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                response = http.get(f"/collections/{Q}/exists")
                if response.status_code != 200:
                    self.failures.append(f"light request: {response.status_code}")
            except httpx.HTTPError as exc:
                self.failures.append(f"light request: {exc!r}")
            self.slowest = max(self.slowest, time.perf_counter() - started)
            time.sleep(0.02)

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        time.sleep(0.05)  # every connection is open before the heavy request goes
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def prepare(http: httpx.Client) -> None:
    http.delete(f"/collections/{BIG}")
    must(http.put(f"/collections/{BIG}", json={"vectors": {"size": 384, "distance": "Cosine"}}))
    for start in range(0, BIG_POINTS, 1000):
        must(
            http.put(
                f"/collections/{BIG}/points?wait=true", json={"points": big_points(start, 1000)}
            )
        )
    http.delete(f"/collections/{Q}")
    http.post(f"/upstash/{U}/reset/all")
    http.request("DELETE", f"/upstash/{U}")
    must(
        http.put(
            f"/collections/{Q}",
            json={
                "vectors": {"size": 2, "distance": "Cosine"},
                "sparse_vectors": {"t": {"modifier": "idf"}},
            },
        )
    )
    must(
        http.put(
            f"/collections/{Q}/points?wait=true",
            json={
                "points": [
                    {"id": i, "vector": [1.0, i / 100], "payload": {"a": i, "t": "w x"}}
                    for i in range(100)
                ]
            },
        )
    )
    http.delete(f"/collections/{TEXT}")
    models = {"embeddingModel": MINILM, "sparseEmbeddingModel": "BM25"}
    must(http.put(f"/upstash/{TEXT}", json=models))
    created = http.put(f"/upstash/{U}", json={"dimension": 2, "similarityFunction": "COSINE"})
    if created.status_code not in (200, 409):
        must(created)
    must(
        http.post(
            f"/upstash/{U}/upsert",
            json=[
                {"id": str(i), "vector": [1.0, i / 100], "metadata": {"a": i}} for i in range(100)
            ],
        )
    )


def must(response: httpx.Response) -> None:
    if response.status_code != 200:
        sys.exit(f"setup failed: {response.status_code} {response.text[:300]}")


def run_case(http: httpx.Client, watchers: list[httpx.Client], case: Case, stall: float) -> bool:
    content = case.content()
    response: httpx.Response | str
    with Watch(watchers) as watch:
        started = time.perf_counter()
        try:
            response = http.request(
                case.method,
                case.path,
                content=content,
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            response = repr(exc)
        took = time.perf_counter() - started
    # decoding the answer holds this process's GIL, so only once the light requests stopped
    status, text = (
        (0, response) if isinstance(response, str) else (response.status_code, response.text)
    )
    held = status in case.expect and watch.slowest <= stall and not watch.failures
    mark = "ok  " if held else "FAIL"
    print(
        f"{mark} {status:3d} {took:7.2f}s light≤{watch.slowest:5.2f}s  {case.name}"
        f"{'' if held else '  ' + (text[:200] + ' ' + '; '.join(watch.failures[:2]))}"
    )
    return held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:6333")
    parser.add_argument("--api-key")
    parser.add_argument(
        "--stall",
        type=float,
        default=0.5,
        help="slowest light request allowed during a case, seconds",
    )
    parser.add_argument("-k", dest="only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    headers = {"api-key": args.api_key} if args.api_key else {}
    make: Callable[[], httpx.Client] = lambda: httpx.Client(  # noqa: E731
        base_url=args.url, headers=headers, timeout=120
    )
    watchers = [make() for _ in range(LIGHT_CONNECTIONS)]
    with make() as http:
        prepare(http)
        with Watch(watchers) as idle:
            time.sleep(2.0)
        print(f"baseline: light requests alone, slowest {idle.slowest:.3f}s in 2 s")
        chosen = [c for c in cases() if not args.only or args.only in c.name]
        failed = [c.name for c in chosen if not run_case(http, watchers, c, args.stall)]
    for client in watchers:
        client.close()
    print(f"{len(chosen) - len(failed)} held, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
