"""Shared helpers for Waypoint's benchmark scripts.

Ideas (recall@k, latency statistics, foreign-CPU accounting, dataset layout) follow
``../shared/bench/bench_baselines.py`` so that numbers stay comparable with
``../shared/reference/baselines.md``; the code is copied here so that scripts only need the
shared *data*, not the shared code.

Contents:

* locating the shared folder and datasets (``shared_dir``, ``load_dataset``);
* ``recall_at`` / ``lat_stats`` / ``markdown_table`` / ``JsonlWriter``;
* ``CpuMeter``: wall time, CPU of the load generator, CPU of the server process trees, and the
  share of the machine used by *other* processes during a measurement (``other_cpu``);
* ``run_clients``: a closed-loop load generator with one *process* per client (spawned), each
  with one persistent connection and sequential requests, measuring latency client-side;
* client specs for it: ``PgQuerySpec`` (psycopg + pgvector) and ``QdrantQuerySpec`` (HTTP,
  Qdrant REST ``points/query`` with pre-encoded JSON bodies, keep-alive).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
REPO = Path(__file__).resolve().parents[1]
MIN_CPU_WINDOW_S = 0.25  # shorter measurements get other_cpu = None


# ----------------------------------------------------------------------------------------------
# Locations and datasets
# ----------------------------------------------------------------------------------------------
def shared_dir(override: str | Path | None = None) -> Path:
    """The shared folder (``../shared`` beside the repository unless overridden)."""
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "shared"
    if not (path / "bench").is_dir():
        raise SystemExit(f"shared folder not found at {path} (pass --shared)")
    return path


@dataclass
class Dataset:
    """A benchmark dataset in the layout written by ``make_datasets.py``."""

    name: str
    path: Path
    metric: str  # "l2" or "cosine"
    base: np.ndarray  # (n, d) float32; row i has id i
    queries: np.ndarray  # (q, d) float32
    gt: np.ndarray  # (q, >=10) int32 exact neighbour ids, nearest first
    meta: dict[str, Any]

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.base.shape[1])


def find_dataset(name: str, shared: Path, cache_dir: Path) -> Path:
    """Folder of dataset ``name``: shared data first, then the cache; synth-* is generated.

    Synthetic sets are produced by ``shared/bench/make_datasets.py`` (numpy only, seconds).
    """
    for cand in (shared / "data" / name, cache_dir / name):
        if (cand / "meta.json").exists():
            return cand
    if not re.fullmatch(r"synth-\d+[kKmM]?", name):
        raise SystemExit(f"dataset {name!r} not found in {shared / 'data'} or {cache_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    script = shared / "bench" / "make_datasets.py"
    print(f"# generating {name} into {cache_dir}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(script), str(cache_dir), "--datasets", name], check=True)
    return cache_dir / name


def load_dataset(path: Path, n_queries: int | None = None) -> Dataset:
    """Load base/queries (upcast to float32) and the exact top-k ids of the first queries."""
    meta = json.loads((path / "meta.json").read_text())
    sl = slice(0, n_queries)
    base = np.ascontiguousarray(np.load(path / "base.npy"), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(path / "queries.npy")[sl], dtype=np.float32)
    gt = np.load(path / "gt_ids.npy")[sl]
    return Dataset(
        name=meta.get("name", path.name),
        path=path,
        metric=meta["metric"],
        base=base,
        queries=queries,
        gt=gt,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------
# Metrics and output
# ----------------------------------------------------------------------------------------------
def recall_at(results: Iterable[Sequence[int]], gt: np.ndarray, k: int = 10) -> float:
    """Mean recall@k: |returned[:k] ∩ true top-k| / k per query (missing results are misses)."""
    total, n = 0.0, 0
    for r, g in zip(results, gt, strict=True):
        truth = {int(x) for x in g[:k] if x >= 0}
        n += 1
        if truth:
            total += len({int(x) for x in list(r)[:k]} & truth) / len(truth)
        else:
            total += 1.0
    return total / max(n, 1)


def lat_stats(latencies_s: np.ndarray | Sequence[float], wall_s: float | None = None) -> dict:
    """p50/p99/mean latency in ms and QPS (requests / wall time; sum of latencies if no wall)."""
    a = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    wall = wall_s if wall_s is not None else a.sum() / 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "qps": round(len(a) / max(wall, 1e-9), 1),
    }


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Render rows as a Markdown table; ``columns`` are (key, header) pairs; None -> empty."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v >= 100:
            return f"{v:.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


class JsonlWriter:
    """Collects result rows and writes each one as a JSON line as soon as it is added."""

    def __init__(self, out: Path | None, append: bool = False, **common: Any) -> None:
        self.rows: list[dict] = []
        self.out = out
        self.common = common
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            if not append:
                out.write_text("")

    def add(self, **row: Any) -> dict:
        """Record one row (common fields first) and echo it to stderr."""
        full = {**self.common, **row}
        self.rows.append(full)
        line = json.dumps(full, default=_json_default)
        print("  " + line, file=sys.stderr, flush=True)
        if self.out:
            with self.out.open("a") as fh:
                fh.write(line + "\n")
        return full


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


# ----------------------------------------------------------------------------------------------
# CPU accounting
# ----------------------------------------------------------------------------------------------
@dataclass
class _Proc:
    ppid: int
    cpu: float  # utime + stime (s)
    reaped: float  # cutime + cstime (s): CPU of children that already exited


def _proc_table() -> dict[int, _Proc]:
    table: dict[int, _Proc] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            table[int(d)] = _Proc(
                int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK, (int(f[13]) + int(f[14])) / CLK_TCK
            )
        except (OSError, IndexError, ValueError):
            continue
    return table


def _subtree(table: dict[int, _Proc], root: int, stop: set[int]) -> list[int]:
    kids: dict[int, list[int]] = {}
    for pid, p in table.items():
        kids.setdefault(p.ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid not in table or (pid in stop and pid != root):
            continue
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    return _subtree(_proc_table(), root, set())


def _busy_cpu() -> float:
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK  # everything but idle and iowait


@dataclass
class CpuSample:
    """One reading of the clocks used by ``CpuMeter``."""

    t: float
    client: float
    server: float
    busy: float


class CpuMeter:
    """Wall time, CPU of this process tree (load generator), of the server trees, and the rest.

    ``server_pids`` are roots of process trees that count as the system under test (e.g. the
    PostgreSQL postmaster, the service process); their reaped children count too. Everything
    in this process's tree that is not under a server root counts as client CPU (live
    descendants are sampled from /proc, so client processes must still be alive at ``stop``).
    ``other_cpu`` = share of the machine's capacity used by anything else during the window.
    """

    def __init__(self, server_pids: Sequence[int] = ()) -> None:
        self.server_pids = [p for p in server_pids if p]

    def sample(self) -> CpuSample:
        """Read all clocks now."""
        t = time.perf_counter()
        table = _proc_table()
        roots = set(self.server_pids)
        server = 0.0
        for root in roots:
            pids = _subtree(table, root, set())
            server += sum(table[p].cpu for p in pids) + (table[root].reaped if pids else 0.0)
        mine = _subtree(table, os.getpid(), roots)
        client = sum(table[p].cpu for p in mine)
        return CpuSample(t, client, server, _busy_cpu())

    def start(self) -> CpuSample:
        """Start a measurement window."""
        return self.sample()

    def stop(self, s: CpuSample) -> dict:
        """End the window started by ``s``: wall_s, client_cpu_s, server_cpu_s, other_cpu."""
        e = self.sample()
        wall = e.t - s.t
        client, server, busy = e.client - s.client, e.server - s.server, e.busy - s.busy
        other = max(0.0, busy - client - server) / max(wall * NCPU, 1e-9)
        return {
            "wall_s": round(wall, 3),
            "client_cpu_s": round(client, 3),
            "server_cpu_s": round(server, 3),
            # /proc clocks tick every 10 ms: too coarse for very short windows
            "other_cpu": round(min(1.0, other), 3) if wall >= MIN_CPU_WINDOW_S else None,
        }


def parent_pid(pid: int) -> int | None:
    """Parent of ``pid`` (e.g. the postmaster of a backend), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def pids_listening_on(port: int) -> list[int]:
    """Local processes with a listening TCP socket on ``port``, without their descendants.

    Workers with sockets of their own (``SO_REUSEPORT``) are siblings: all are returned. A
    supervisor sharing its socket with its workers is returned alone (``CpuMeter`` counts
    the process trees of the pids it is given).
    """
    targets = _sockets(port, LISTEN)
    pids = {int(d) for d in os.listdir("/proc") if d.isdigit() and _holds(int(d), targets)}
    return sorted(pid for pid in pids if not _ancestors(pid) & pids)


def connection_split(server_pids: Sequence[int], port: int) -> str:
    """How the open connections to ``port`` spread over the server's processes: "3/5" when
    one worker holds 3 and the other 5 (smallest first; processes holding none omitted).

    Each client keeps one connection, so this is how the load spreads: a worker with more
    connections than its share queues more requests while the other idles.
    """
    targets = _sockets(port, ESTABLISHED)
    table = _proc_table()
    processes = {pid for root in server_pids for pid in _subtree(table, root, set())}
    counts = sorted(n for pid in processes if (n := _held(pid, targets)))
    return "/".join(map(str, counts))


def _sockets(port: int, state: str) -> set[str]:
    """The local TCP sockets on ``port`` in ``state`` (a /proc/net/tcp code), as fd links."""
    inodes: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as fh:
            for line in fh.readlines()[1:]:
                f = line.split()
                if f[3] == state and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{f[9]}]")
    return inodes


def _holds(pid: int, targets: set[str]) -> bool:
    """Whether ``pid`` has a file descriptor on one of ``targets``."""
    return any(_fds_on(pid, targets))


def _held(pid: int, targets: set[str]) -> int:
    """How many of ``pid``'s file descriptors are on ``targets``."""
    return sum(1 for _ in _fds_on(pid, targets))


def _fds_on(pid: int, targets: set[str]) -> Iterator[str]:
    """``pid``'s file descriptors that are on one of ``targets`` (fds may close meanwhile)."""
    if not targets:
        return
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                yield fd


def _ancestors(pid: int) -> set[int]:
    found: set[int] = set()
    while (pid := parent_pid(pid) or 0) > 1 and pid not in found:
        found.add(pid)
    return found


# ----------------------------------------------------------------------------------------------
# Closed-loop load generator: one process per client
# ----------------------------------------------------------------------------------------------
class QueryClient(Protocol):
    """An open connection that runs query number ``i`` and returns the result ids."""

    def query(self, i: int) -> list[int]: ...

    def info(self) -> dict: ...

    def close(self) -> None: ...


class ClientSpec(Protocol):
    """Picklable recipe for a ``QueryClient``; ``open`` runs inside the client process."""

    def open(self) -> QueryClient: ...


@dataclass
class LoadResult:
    """Outcome of ``run_clients``."""

    latencies_s: np.ndarray  # all measured requests of all clients
    results: list[list[list[int]]]  # per client, per request: ids (in that client's order)
    orders: list[np.ndarray]  # per client: query indices in the order sent
    wall_s: float  # first client's start to last client's end
    cpu: dict  # CpuMeter.stop() of the measured window
    info: dict = field(default_factory=dict)  # merged client info (e.g. plan header counts)
    split: str = ""  # connection_split() once all clients were connected, if asked for

    @property
    def requests(self) -> int:
        """Number of measured requests."""
        return int(self.latencies_s.size)

    def recall(self, gt: np.ndarray, k: int = 10) -> float:
        """recall@k over every measured request."""
        res = [r for rs in self.results for r in rs]
        truth = np.concatenate([gt[o] for o in self.orders])
        return recall_at(res, truth, k)

    def stats(self) -> dict:
        """Latency percentiles and QPS over the measured window."""
        return lat_stats(self.latencies_s, self.wall_s)


def _client_main(
    idx: int,
    spec: ClientSpec,
    order: np.ndarray,
    warmup: int,
    barrier: Any,
    out: Any,
    release: Any,
    timeout: float,
) -> None:
    """Body of one client process: open, warm up, wait for all, run, report, wait."""
    try:
        client = spec.open()
        for i in order[:warmup]:
            client.query(int(i))
        barrier.wait(timeout)
        lat = np.empty(len(order), np.float64)
        res: list[list[int]] = []
        clock = time.perf_counter
        t_start = clock()
        for j, i in enumerate(order):
            t0 = clock()
            ids = client.query(int(i))
            lat[j] = clock() - t0
            res.append(ids)
        t_end = clock()
        out.put(("ok", lat, res, t_start, t_end, client.info(), idx))
        release.wait(timeout)  # stay alive until the parent has sampled our CPU
        client.close()
    except BaseException:  # report anything, including KeyboardInterrupt, to the parent
        with contextlib.suppress(Exception):
            barrier.abort()
        out.put(("error", traceback.format_exc()))


def run_clients(
    spec: ClientSpec,
    n_queries: int,
    clients: int,
    *,
    warmup: int = 50,
    server_pids: Sequence[int] = (),
    split_port: int | None = None,
    timeout: float = 600.0,
) -> LoadResult:
    """Run ``clients`` spawned processes that each send all ``n_queries`` queries sequentially.

    Client c starts at query ``c * n_queries // clients`` and wraps around, so concurrent
    clients do not send the same query at the same time. Each client first sends ``warmup``
    queries (not measured), then all clients start together. QPS = all measured requests /
    (last end - first start); latency is measured per request in the client. With
    ``split_port``, ``split`` says how the clients' connections spread over the server's
    processes (``connection_split``).
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    release = ctx.Event()
    orders = [np.roll(np.arange(n_queries), -(c * n_queries // clients)) for c in range(clients)]
    procs = [
        ctx.Process(
            target=_client_main,
            daemon=True,
            args=(c, spec, orders[c], warmup, barrier, out, release, timeout),
        )
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    meter = CpuMeter(server_pids)
    try:
        try:
            barrier.wait(timeout)
        except Exception:
            raise RuntimeError("client start-up failed:\n" + _drain_errors(out)) from None
        s = meter.start()
        split = connection_split(server_pids, split_port) if split_port else ""
        msgs = []
        for _ in procs:
            try:
                msg = out.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError("clients timed out") from None
            if msg[0] != "ok":
                raise RuntimeError("client failed:\n" + msg[1])
            msgs.append(msg)
        cpu = meter.stop(s)
        msgs.sort(key=lambda m: m[6])  # back into client order, to match `orders`
    finally:
        release.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    info: Counter = Counter()
    for m in msgs:
        info.update(m[5])
    return LoadResult(
        latencies_s=np.concatenate([m[1] for m in msgs]),
        results=[m[2] for m in msgs],
        orders=orders,
        wall_s=max(m[4] for m in msgs) - min(m[3] for m in msgs),
        cpu=cpu,
        info=dict(info),
        split=split,
    )


def _drain_errors(out: Any) -> str:
    errs = []
    with contextlib.suppress(queue.Empty):
        while True:
            msg = out.get(timeout=2)
            if msg[0] == "error":
                errs.append(msg[1])
    return "\n".join(errs) or "(no error reported)"


# ----------------------------------------------------------------------------------------------
# Client specs
# ----------------------------------------------------------------------------------------------
@dataclass
class PgQuerySpec:
    """pgvector top-k: one psycopg connection, ``sql`` with one vector parameter, prepared."""

    dsn: str
    sql: str
    queries: np.ndarray
    setup_sql: tuple[str, ...] = ()

    def open(self) -> _PgClient:
        """Connect (in the client process) and run the setup statements."""
        return _PgClient(self)


class _PgClient:
    def __init__(self, spec: PgQuerySpec) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        self.spec = spec
        self.conn = psycopg.connect(spec.dsn, autocommit=True)
        register_vector(self.conn)
        for stmt in spec.setup_sql:
            self.conn.execute(stmt)
        self.cur = self.conn.cursor()

    def query(self, i: int) -> list[int]:
        rows = self.cur.execute(self.spec.sql, (self.spec.queries[i],), prepare=True).fetchall()
        return [r[0] for r in rows]

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        self.conn.close()


@dataclass
class QdrantQuerySpec:
    """Qdrant REST ``POST /collections/{c}/points/query`` over one keep-alive connection.

    Bodies are JSON-encoded in the client process before the measured window. ``info`` counts
    the ``waypoint-plan`` response header values as ``plan:<value>``, and where filtered
    searches found their candidates (``waypoint-plan-detail``) as ``filter:<source>``.
    """

    url: str
    collection: str
    queries: np.ndarray
    limit: int = 10
    params: dict[str, Any] = field(default_factory=dict)

    def open(self) -> _HttpClient:
        """Pre-encode the bodies and connect (in the client process)."""
        return _HttpClient(self)

    def body(self, i: int) -> bytes:
        """The JSON request body for query ``i``."""
        doc: dict[str, Any] = {
            "query": self.queries[i].tolist(),
            "limit": self.limit,
            "with_payload": False,
        }
        if self.params:
            doc["params"] = self.params
        return json.dumps(doc, separators=(",", ":")).encode()


class _HttpClient:
    """A minimal HTTP/1.1 keep-alive client: whole requests pre-built, responses split by hand.

    ``http.client`` parses every response's headers with the ``email`` package, which cost
    ~0.3 ms per request on the 2-core benchmark machine: more than a psycopg round trip, and
    taken from the same two cores the server runs on. Load generators (wrk, oha) do the least
    possible per request; so does this one. It needs ``Content-Length`` (no chunked bodies).
    """

    def __init__(self, spec: QdrantQuerySpec) -> None:
        import msgspec

        self.decode = msgspec.json.decode
        u = urlsplit(spec.url)
        host, port = u.hostname or "127.0.0.1", u.port or 80
        path = f"{u.path.rstrip('/')}/collections/{spec.collection}/points/query"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        )
        self.requests = []
        for i in range(len(spec.queries)):
            body = spec.body(i)
            self.requests.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.sock = socket.create_connection((host, port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.plans: Counter = Counter()

    def query(self, i: int) -> list[int]:
        self.sock.sendall(self.requests[i])
        status, headers, data = self._response()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
        self.plans[f"plan:{headers.get('waypoint-plan')}"] += 1
        detail = headers.get("waypoint-plan-detail", "")
        if "filter=" in detail:  # where a filtered search found its candidates
            self.plans[f"filter:{detail.split('filter=')[1].split(';')[0]}"] += 1
        return [p["id"] for p in self.decode(data)["result"]["points"]]

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, lower-cased headers and body of the next response on the connection."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise RuntimeError(f"response without Content-Length: {lines!r}")
        stop = end + 4 + int(headers["content-length"])
        while len(self.buffer) < stop:
            self._receive()
        data, self.buffer = self.buffer[end + 4 : stop], self.buffer[stop:]
        return int(lines[0].split(" ", 2)[1]), headers, data

    def _receive(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def info(self) -> dict:
        return dict(self.plans)

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------------------------
# The service under test, as a user runs it


@contextlib.contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """A new, empty ``waypoint_bench_<hex>`` database on ``server`` (a PostgreSQL URL without
    a database name), dropped afterwards even while still in use; yields its URL."""
    import uuid

    import psycopg

    name = f"waypoint_bench_{uuid.uuid4().hex[:12]}"
    admin = f"{server.rstrip('/')}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class ServedApp:
    url: str
    process: subprocess.Popen


@contextlib.contextmanager
def serving(
    database_url: str,
    log_path: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
    timeout: float = 120.0,
) -> Iterator[ServedApp]:
    """``python -m app serve`` on a free local port, until ``ready_path`` answers 200.

    Its output goes to ``log_path``. On exit it gets SIGINT, as from a terminal (SIGKILL
    after 20 s).
    """
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers)]
    full_env = {**os.environ, "DATABASE_URL": database_url, **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=full_env, stdout=log_fh, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"service not up after {timeout:.0f} s; see {log_path}")
            time.sleep(0.2)
        yield ServedApp(url, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def machine_info() -> dict:
    """CPU model (with family, model number and widest SIMD: the same "AMD EPYC" name has
    covered machines with and without AVX-512, and results differ), core count and memory,
    for the env row of a result file."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    simd = next((s for s in ("avx512f", "avx2", "sse4_2") if s in flags), "")
    family, number = cpu.get("cpu family"), cpu.get("model")
    model = f"{cpu.get('model name', '')} (family {family}, model {number}, {simd})"
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        mem = int(fh.readline().split()[1]) // 1024
    return {"cpu": model, "ncpu": NCPU, "mem_mib": mem, "python": sys.version.split()[0]}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields
