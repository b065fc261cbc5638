#!/usr/bin/env python3
"""The cheapest `points/query` any Python server could serve here: floors, against pgvector.

Issue #2 asks for 2x pgvector's QPS at matched recall. This measures how much room Python
leaves for that on this machine, whatever the service does around the search: minimal
servers that decode the request with msgspec, run the same hnswlib graph as the service
(M=16, ef_construction=100, the dataset's base vectors, cosine), encode the Qdrant answer
and nothing else (no collections, versions, exact re-scoring, auth or plan headers). Each
runs as two worker processes pinned to CPUs 0 and 1, as `serve --workers 2 --pin-workers`
(but each worker listens on a `SO_REUSEPORT` socket of its own, where the service's share
one, so clients spread over them by the kernel's hash), in four variants:

- `raw-inline`: an asyncio protocol on httptools (no ASGI), search on the event loop;
- `raw-hop`: the same, the search in a one-thread pool (a hop per request, as the
  issue's "CPU work never on the event loop" asks);
- `asgi-inline`: an ASGI app under uvicorn with the service's own protocol and loop
  (`app.server.protocol.CoalescingHttpToolsProtocol`, uvloop), search on the event loop;
- `asgi-hop`: the same with the one-thread pool.

Each variant is measured against pgvector by `bench_paired.py` (interleaved rounds, median
ratios), so it needs what that script needs: pgvector's table kept by
`bench_search.py --pg-reuse`. The graph is built once and cached under `--cache-dir`.

Example (from the repository root, with the project venv):
  .venv/bin/python scripts/bench_floor.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, find_dataset, load_dataset, shared_dir
from bench_search import log

VARIANTS = ("raw-inline", "raw-hop", "asgi-inline", "asgi-hop")
M, EF_CONSTRUCTION = 16, 100  # the service's defaults (Qdrant's)
CPUS = (0, 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--dataset", default="wordnet-minilm")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3, help="bench_paired rounds per variant")
    ap.add_argument("--port", type=int, default=6411)
    ap.add_argument("--shared", help="shared folder (default: ../shared beside the repository)")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "bench-out" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "bench_floor.jsonl")
    ap.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)  # a server process
    ap.add_argument("--graph", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------- the servers
class Params(msgspec.Struct):
    hnsw_ef: int | None = None


class Query(msgspec.Struct):
    query: list[float]
    limit: int = 10
    params: Params | None = None
    with_payload: bool = False


class ScoredPoint(msgspec.Struct):
    id: int
    version: int
    score: float


class Answer(msgspec.Struct):
    result: dict[str, list[ScoredPoint]]
    status: str
    time: float


def answerer(graph_path: Path, dim: int) -> Callable[[bytes], bytes]:
    """Request body -> response body: decode, normalise, knn_query, encode."""
    import hnswlib

    graph = hnswlib.Index("ip", dim)
    graph.load_index(str(graph_path))
    decode, encode = msgspec.json.Decoder(Query).decode, msgspec.json.Encoder().encode

    def answer(body: bytes) -> bytes:
        started = time.perf_counter()
        query = decode(body)
        vector = np.asarray(query.query, dtype=np.float32)
        vector /= np.sqrt(vector @ vector)
        ef = query.params.hnsw_ef if query.params and query.params.hnsw_ef else EF_CONSTRUCTION
        labels, distances = graph.knn_query(vector, k=max(ef, query.limit), num_threads=1)
        limit = query.limit
        best = zip(labels[0, :limit].tolist(), distances[0, :limit].tolist(), strict=True)
        points = [ScoredPoint(label, label + 1, 1.0 - distance) for label, distance in best]
        return encode(Answer({"points": points}, "ok", time.perf_counter() - started))

    return answer


def response(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


class RawProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive on httptools, answering every request with `answer`."""

    def __init__(self, answer: Callable[[bytes], bytes], hop: bool) -> None:
        import httptools

        self.answer, self.hop = answer, hop
        self.parser = httptools.HttpRequestParser(self)
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body, self.chunks = b"".join(self.chunks), []
        if not self.hop:
            self.transport.write(response(self.answer(body)))
            return
        future = asyncio.get_running_loop().run_in_executor(None, self.answer, body)
        future.add_done_callback(lambda done: self.transport.write(response(done.result())))


def asgi_app(answer: Callable[[bytes], bytes], hop: bool) -> Callable[..., Any]:
    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if hop:
            out = await asyncio.get_running_loop().run_in_executor(None, answer, body)
        else:
            out = answer(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(out)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


def serve_worker(variant: str, port: int, answer: Callable[[bytes], bytes]) -> None:
    """One worker on a SO_REUSEPORT socket, its loop and its one pool thread."""
    import uvloop

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    hop = variant.endswith("-hop")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        if variant.startswith("raw"):
            server = await loop.create_server(lambda: RawProtocol(answer, hop), sock=sock)
            await server.serve_forever()
        else:
            import uvicorn

            from app.server.protocol import CoalescingHttpToolsProtocol

            config = uvicorn.Config(
                asgi_app(answer, hop),
                http=CoalescingHttpToolsProtocol,
                loop="none",
                lifespan="off",
                log_level="warning",
                access_log=False,
            )
            await uvicorn.Server(config).serve(sockets=[sock])

    uvloop.run(run())


def serve(variant: str, port: int, graph_path: Path, dim: int) -> None:
    """Two workers, one per CPU (forked after loading the graph: it is shared)."""
    sys.path.insert(0, str(REPO))
    answer = answerer(graph_path, dim)
    children = []
    for cpu in CPUS:
        pid = os.fork()
        if pid == 0:
            os.sched_setaffinity(0, {cpu})
            serve_worker(variant, port, answer)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------- the measuring
def graph_file(args: argparse.Namespace) -> tuple[Path, int]:
    """The dataset's graph, built on first use (cosine: unit vectors, inner product)."""
    import hnswlib

    ds = load_dataset(find_dataset(args.dataset, shared_dir(args.shared), args.cache_dir))
    path = args.cache_dir / f"{ds.name}-hnsw-m{M}-efc{EF_CONSTRUCTION}.bin"
    if not path.exists():
        log(f"building the {ds.name} graph ({len(ds.base)} vectors) into {path}")
        base = ds.base / np.linalg.norm(ds.base, axis=1, keepdims=True)
        graph = hnswlib.Index("ip", ds.dim)
        graph.init_index(len(base), M=M, ef_construction=EF_CONSTRUCTION)
        graph.add_items(base.astype(np.float32), np.arange(len(base)))
        path.parent.mkdir(parents=True, exist_ok=True)
        graph.save_index(str(path))
    return path, ds.dim


@contextlib.contextmanager
def floor_server(variant: str, port: int, graph: Path, dim: int) -> Iterator[str]:
    """A floor server running in a subprocess; its URL."""
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        variant,
        "--port",
        str(port),
        "--graph",
        str(graph),
        "--dim",
        str(dim),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"floor server {variant} did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.graph, args.dim)
        return 0
    graph, dim = graph_file(args)
    for variant in args.variants.split(","):
        log(f"floor {variant}")
        with floor_server(variant, args.port, graph, dim) as url:
            table = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("bench_paired.py")),
                    "--dataset",
                    args.dataset,
                    "--service-url",
                    url,
                    "--rounds",
                    str(args.rounds),
                    "--out",
                    str(args.out),
                    "--cache-dir",
                    str(args.cache_dir),
                    *(["--shared", args.shared] if args.shared else []),
                ],
                check=True,
                text=True,
                stdout=subprocess.PIPE,
            ).stdout
        print(f"### floor: {variant}\n")
        print("\n".join(line for line in table.splitlines() if line.startswith("|")) + "\n")
    print(f"raw rows: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
