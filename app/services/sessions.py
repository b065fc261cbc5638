"""Resumable queries as PostgreSQL rows: start, next page, end, and the idle reaper.

A session freezes its request (vector, filter, include flags) at start. The row holds what
any worker, or a restarted server, needs to continue: the engine's state, the write seqs of
every point returned (compressed), and `emitted`, the count of results returned, which is
the row's version.

Every page advances the row with one conditional `UPDATE … WHERE id AND emitted = version`
and is returned only if that found its version. Each worker keeps the live engines of the
sessions it served in an LRU and continues them without reading the row; other workers
compute a page from the row as read, and if another page came first, compute it again from
the locked row (`SELECT … FOR UPDATE`), where none can. Where the stored state cannot apply
(another worker's or a rebuilt segment: row numbers and graphs differ between instances),
the session continues as an exact scan that excludes every point already returned, by
write seq: the same on every worker.

A dense engine reads a few pages ahead whenever it runs, and the state it stores holds that
read-ahead; the pages served from it leave `state` and `emitted_seqs` as they are and
append their seqs to `recent_seqs`, which the next resume takes out of the read-ahead.

Invariants: no point twice; only points alive and matching when returned; reading until
empty returns every matching point that existed throughout (points written after the start
may or may not appear, never twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from weakref import WeakValueDictionary

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app import stages
from app.db import repository
from app.db import sessions as rows
from app.db.database import Database
from app.errors import BadRequest, NotFound, TooManyRequests
from app.index import resumable_ranked as ranked_engine
from app.index.registry import IndexRegistry
from app.index.resumable import ResumableQuery, StateError, StateMismatch
from app.index.resumable_ranked import RankedQuery
from app.index.segment import Segment
from app.models import Collection, PointId, SparseVector
from app.services import sparse_search
from app.services.catalog import Catalog
from app.services.counters import Counters
from app.services.cpu import CpuPool
from app.services.filtering import FilterGate, no_gate
from app.services.payloads import PayloadSelector, VectorSelector
from app.services.points import Record, attach_vectors, check_vector, parse_point_id
from app.services.search import Fusion
from app.stages import stage

log = logging.getLogger(__name__)

MAX_IDLE_LIMIT = 7 * 24 * 3600
MAX_PAGE = 10_000
MODES = "resumable_sessions"  # the `Counters` family of sessions started, by engine mode
READ_AHEAD_PAGES = 4  # pages of the size asked that a dense session computes ahead ...
READ_AHEAD_MAX = 100  # ... up to this many results
RECENT_BYTES = 2048  # `recent_seqs` beyond this fold into `emitted_seqs`


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """The request a session is frozen with."""

    collection: str
    namespace: str
    vector: list[float]
    vector_name: str = ""
    filter: Any = None  # as sent, with `filter_language` saying which parser reads it
    filter_language: str = "qdrant"
    payload: PayloadSelector = field(default_factory=PayloadSelector)
    vectors: VectorSelector = field(default_factory=VectorSelector)
    include_data: bool = False
    hnsw_ef: int | None = None
    dialect: str = "qdrant"
    # Sparse and hybrid sessions: the sparse query (`name`, `indices`, `values`, any IDF
    # weighting applied at start, so the order stays that of the start) and, with a dense
    # `vector` too, the fusion of the two rankings (`method`, `k`, `weights`).
    sparse: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None

    @property
    def ranked(self) -> bool:
        """Whether the session runs on a `RankedQuery` (sparse or fused) engine."""
        return self.sparse is not None

    def frozen(self) -> dict[str, Any]:
        return {
            "sparse": self.sparse,
            "fusion": self.fusion,
            "vector": self.vector,
            "filter": self.filter,
            "filter_language": self.filter_language,
            "payload": [self.payload.enabled, self.payload.include, self.payload.exclude],
            "vectors": [self.vectors.enabled, self.vectors.names],
            "include_data": self.include_data,
            "hnsw_ef": self.hnsw_ef,
        }

    @classmethod
    def thaw(cls, collection: str, namespace: str, row: Any) -> SessionSpec:
        request = row.request
        enabled, include, exclude = request["payload"]
        with_vectors, names = request["vectors"]
        return cls(
            collection=collection,
            namespace=namespace,
            vector=request["vector"],
            vector_name=row.vector_name,
            filter=request["filter"],
            filter_language=request["filter_language"],
            payload=PayloadSelector(
                enabled,
                None if include is None else tuple(include),
                None if exclude is None else tuple(exclude),
            ),
            vectors=VectorSelector(with_vectors, None if names is None else tuple(names)),
            include_data=request["include_data"],
            hnsw_ef=request["hnsw_ef"],
            dialect=row.dialect,
            sparse=request.get("sparse"),
            fusion=request.get("fusion"),
        )


@dataclass(slots=True)
class LiveQuery:
    engine: ResumableQuery | RankedQuery
    gate: FilterGate
    emitted: int  # pages' results this engine has produced: valid while equal to the row's


@dataclass(slots=True)
class WarmSession:
    """A session as this worker left it after serving it: the live engine and what the
    row held then, enough to serve the next page without reading the row (`emitted` is the
    row version a page from here must find, or another worker has moved the session on)."""

    live: LiveQuery
    spec: SessionSpec
    owner: str
    collection_id: int
    namespace_id: int
    max_idle: int
    progress: Progress  # as the row holds it


EIGHT_PLANES = b"\x01"  # opens a blob of eight byte planes (a bare zlib stream opens 0x78)
PLANES = b"\x02"  # opens a blob of as many byte planes as the largest delta needs


def encode_seqs(seqs: np.ndarray) -> bytes:
    """Sorted unique seqs as deltas split into byte planes, zlib-compressed.

    The deltas are small (a session's points are a sample of the collection's writes), so
    their high bytes are zeros: as planes they are long runs, where interleaved they cost
    about a byte each, and the planes no delta needs are not stored at all (a count byte
    says how many are). Level 6: the set is folded only when the engine ran.
    """
    seqs = np.asarray(seqs, dtype=np.int64)
    deltas = np.diff(np.concatenate([[0], seqs])).astype("<u8")
    count = max(1, (int(deltas.max(initial=0)).bit_length() + 7) // 8)
    planes = np.ascontiguousarray(deltas.view(np.uint8).reshape(-1, 8)[:, :count].T)
    return PLANES + bytes([count]) + zlib.compress(planes.tobytes(), 6)


def decode_seqs(blob: bytes) -> np.ndarray:
    """The seqs of `encode_seqs`, or of the formats rows were written in before it: eight
    planes, or the plain int64 deltas."""
    if blob[:1] == PLANES:
        count, body = blob[1], blob[2:]
    elif blob[:1] == EIGHT_PLANES:
        count, body = 8, blob[1:]
    else:
        return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype=np.int64))
    planes = np.frombuffer(zlib.decompress(body), dtype=np.uint8).reshape(count, -1)
    wide = np.zeros((planes.shape[1], 8), dtype=np.uint8)
    wide[:, :count] = planes.T
    return np.cumsum(wide.view("<u8").ravel().astype(np.int64))


def add_seqs(blob: bytes, new: np.ndarray) -> bytes:
    """The stored seqs plus a page's: a linear merge into the sorted set (pages are small,
    the set grows with depth, so no sort of the whole set per page)."""
    seen = decode_seqs(blob) if blob else np.zeros(0, np.int64)
    new = np.unique(new)
    at = np.searchsorted(seen, new)
    present = at < len(seen)
    present[present] = seen[at[present]] == new[present]
    return encode_seqs(np.insert(seen, at[~present], new[~present]))


@dataclass(frozen=True, slots=True)
class Progress:
    """What a session row records of the pages served: the engine's `state`, the seqs
    returned before it was stored (`seqs`, see `encode_seqs`) and since (`recent`, from the
    read-ahead the state holds: little-endian int64s)."""

    state: bytes = b""
    seqs: bytes = b""
    recent: bytes = b""

    def recently_returned(self) -> np.ndarray:
        return np.frombuffer(self.recent, dtype="<i8").astype(np.int64)

    def returned(self) -> np.ndarray:
        """Every seq returned so far."""
        stored = decode_seqs(self.seqs) if self.seqs else np.zeros(0, np.int64)
        return np.union1d(stored, self.recently_returned())

    def columns(self, restated: bool) -> dict[str, Any]:
        """The row's columns for this progress (`restated`: the state was stored anew)."""
        if not restated:
            return {"recent_seqs": self.recent}
        return {"state": self.state, "emitted_seqs": self.seqs, "recent_seqs": self.recent}


def _restate(live: LiveQuery, grown: Progress, k: int) -> Progress:
    """The progress of a page that ran the engine (CPU work, run in the pool): the engine
    reads the next pages ahead, and its state is stored anew with every seq returned so far
    folded into the compressed set."""
    if isinstance(live.engine, ResumableQuery):
        live.engine.read_ahead(min(READ_AHEAD_PAGES * k, READ_AHEAD_MAX))
    folded = add_seqs(grown.seqs, grown.recently_returned())
    return Progress(_state_of(live.engine), folded, b"")


def _first_progress(live: LiveQuery, page_seqs: np.ndarray) -> Progress:
    """What a start stores (CPU work, run in the pool): the engine's state and the seqs of
    its first page."""
    return Progress(_state_of(live.engine), encode_seqs(np.unique(page_seqs)))


def _advanced(
    live: LiveQuery, progress: Progress, restated: bool, now: datetime, max_idle: int
) -> dict[str, Any]:
    """The columns a page changes in its session row."""
    columns = {
        **progress.columns(restated),
        "emitted": live.emitted,
        "last_touched": now,
        "expires_at": now + timedelta(seconds=max_idle),
    }
    if restated:
        columns["mode"] = live.engine.mode
    return columns


def owner_of(api_key: str | None) -> str:
    """Sessions belong to the key that started them (stored hashed, never in clear)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32] if api_key else ""


class SessionService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        registry: IndexRegistry,
        cpu: CpuPool,
        counters: Counters,
        *,
        max_sessions: int,
        max_sessions_per_key: int,
        cache_size: int = 1024,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.cpu = cpu
        self.max_sessions = max_sessions
        self.max_sessions_per_key = max_sessions_per_key
        self.cache_size = cache_size
        self._live: OrderedDict[uuid.UUID, WarmSession] = OrderedDict()
        # One page at a time per handle in this worker (the row version orders workers).
        self._turns: WeakValueDictionary[uuid.UUID, asyncio.Lock] = WeakValueDictionary()
        self.counters = counters  # sessions started, by engine mode
        # Live sessions (all, and by owner) at this worker's last exact count: see
        # `_far_below_caps`.
        self._counted_total = 0
        self._counted: dict[str, int] = {}
        for mode in ("exact", "graph"):
            counters.add(MODES, mode, 0)

    # ------------------------------------------------------------------- start

    async def start(
        self, spec: SessionSpec, k: int, max_idle: int, owner: str
    ) -> tuple[str, list[Record]]:
        """Open a session and return its handle with the first page."""
        _check_page(k)
        if not 1 <= max_idle <= MAX_IDLE_LIMIT:
            raise BadRequest(f"max idle must be between 1 and {MAX_IDLE_LIMIT} seconds")
        collection = self.catalog.get(spec.collection)
        namespace_id = collection.namespaces.get(spec.namespace)
        if namespace_id is None:
            raise NotFound(f"Namespace {spec.namespace} does not exist")
        now = datetime.now(UTC)
        session_id = uuid.uuid4()
        async with self.db.autocommit() as conn:
            if not self._far_below_caps(owner):
                with stage("caps"):  # spares the page of a start that would be refused
                    self._refuse_if_full(owner, *await rows.count_active(conn, now, owner))
            start_seq = self._start_seq(collection, namespace_id, spec)
            with stage("open"):
                gate = await FilterGate.open(conn, collection, namespace_id, spec, self.cpu)
                live = await self._opened(
                    collection, namespace_id, spec, gate, start_seq, Progress()
                )
            records, emitted_seqs = await self._page(conn, collection, namespace_id, spec, live, k)
            with stage("park"):
                progress = await self.cpu.run(_first_progress, live, emitted_seqs)
            row = {
                "id": session_id,
                "collection_id": collection.id,
                "namespace_id": namespace_id,
                "vector_name": spec.vector_name,
                "dialect": spec.dialect,
                "request": spec.frozen(),
                "mode": live.engine.mode,
                "state": progress.state,
                "emitted": live.emitted,
                "emitted_seqs": progress.seqs,
                "start_seq": start_seq,
                "max_idle_seconds": max_idle,
                "owner_key": owner,
                "created_at": now,
                "last_touched": now,
                "expires_at": now + timedelta(seconds=max_idle),
            }
            with stage("write"):
                total, mine, added = await rows.insert_within_caps(
                    conn, row, now, self.max_sessions, self.max_sessions_per_key
                )
        self._counted_total, self._counted[owner] = total + int(added), mine + int(added)
        if not added:
            self._refuse_if_full(owner, total, mine)
        self.counters.add(MODES, live.engine.mode)
        warm = WarmSession(live, spec, owner, collection.id, namespace_id, max_idle, progress)
        self._remember(session_id, warm)
        return str(session_id), records

    def _start_seq(self, collection: Collection, namespace_id: int, spec: SessionSpec) -> int:
        """The newest write a session started now may return (later ones may not appear)."""
        newest = 0
        if spec.vector:
            newest = self._segment(collection, namespace_id, spec.vector_name).max_seq()
        if spec.sparse is not None:
            index = self.registry.ensure_sparse(namespace_id, spec.sparse["name"])
            newest = max(newest, index.max_seq())
        return newest

    async def _opened(
        self,
        collection: Collection,
        namespace_id: int,
        spec: SessionSpec,
        gate: FilterGate,
        start_seq: int,
        progress: Progress,
    ) -> LiveQuery:
        """The session's engine (in the CPU pool): ranked for sparse and hybrid sessions,
        else the dense engine resumed from the stored state where it applies."""
        if spec.ranked:
            return await self.cpu.run(
                self._open_ranked, collection, namespace_id, spec, gate, start_seq, progress
            )
        segment = self._segment(collection, namespace_id, spec.vector_name)
        query = check_vector(collection, spec.vector_name, spec.vector)
        return await self.cpu.run(self._open, segment, query, gate, start_seq, spec, progress)

    def _open_ranked(
        self,
        collection: Collection,
        namespace_id: int,
        spec: SessionSpec,
        gate: FilterGate,
        start_seq: int,
        progress: Progress,
    ) -> LiveQuery:
        """Rank every candidate written by the start and matching the filter: the dense
        vector's exact ranking and the sparse query's, fused when there are both."""
        parts = []
        if spec.vector:
            segment = self._segment(collection, namespace_id, spec.vector_name)
            query = check_vector(collection, spec.vector_name, spec.vector)
            parts.append(_kept(*segment.ranking(query), start_seq, gate))
        if spec.sparse is not None:
            index = self.registry.ensure_sparse(namespace_id, spec.sparse["name"])
            weights = np.asarray(spec.sparse["values"], dtype=np.float64)
            query = SparseVector.parse(spec.sparse["indices"], weights.tolist())
            found = sparse_search.ranked(index, query, idf=False, limit=None, weights=weights)
            scores, seqs = np.asarray(found.scores), np.asarray(found.seqs, dtype=np.int64)
            parts.append(_kept(found.ids, scores, seqs, start_seq, gate))
        if len(parts) == 1:
            ranking = ranked_engine.single(*parts[0])
        else:
            fusion = Fusion(**spec.fusion) if spec.fusion else Fusion()
            singles = [ranked_engine.single(*part) for part in parts]
            ranking = ranked_engine.fused(singles, fusion.method, fusion.k, fusion.weights)
        return LiveQuery(RankedQuery(ranking, progress.returned()), gate, 0)

    def _refuse_if_full(self, owner: str, total: int, mine: int) -> None:
        """A 429 when live sessions, `total` of them and `mine` of this owner's, reach a cap."""
        if total >= self.max_sessions:
            raise TooManyRequests(
                f"Too many active resumable queries ({total}); stop some or wait for them to expire"
            )
        if mine >= self.max_sessions_per_key:
            raise TooManyRequests(
                f"Too many active resumable queries for this API key ({mine}); "
                "stop some or wait for them to expire"
            )

    def _far_below_caps(self, owner: str) -> bool:
        """Whether the counts of this worker's last start left both caps less than half
        used: then the early check is skipped, a count spared (the exact check still runs;
        a start this wrongly lets through to it costs one page computed in vain)."""
        mine = self._counted.get(owner, self.max_sessions_per_key)
        return 2 * self._counted_total < self.max_sessions and 2 * mine < self.max_sessions_per_key

    # -------------------------------------------------------------------- next

    async def next(self, session_id: str, k: int, owner: str, collection_name: str) -> list[Record]:
        """The next k results, [] once the query is exhausted.

        Every page advances the row with one conditional UPDATE (`emitted` as the version)
        and is returned only if that found the version it started from. A session this
        worker served last is continued from memory: no read of the row. Otherwise the page
        is computed from the row as read, and if the row moves on meanwhile (a page on
        another worker, a stop, the expiry) it is dropped unreturned and computed again
        under the row's lock, where no other page can come first.
        """
        _check_page(k)
        key = _parse_handle(session_id)
        async with self._turn(key):
            warm = self._live.get(key)
            if warm is not None:
                records = await self._warm_page(key, warm, k, owner, collection_name)
                if records is not None:
                    return records
                self._live.pop(key, None)
            async with self.db.autocommit() as conn:
                records = await self._row_page(conn, key, k, owner, collection_name)
            if records is not None:
                return records
            async with self.db.begin() as conn:
                records = await self._row_page(conn, key, k, owner, collection_name, locked=True)
                committing = time.perf_counter()
            stages.since("commit", committing)
            assert records is not None
            return records

    def _turn(self, key: uuid.UUID) -> asyncio.Lock:
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = asyncio.Lock()
        return turn

    async def _warm_page(
        self, key: uuid.UUID, warm: WarmSession, k: int, owner: str, collection_name: str
    ) -> list[Record] | None:
        """The next page from this worker's engine; None when the row is no longer the
        one this worker left (the engine has then moved on and must be dropped)."""
        collection = self._collection_of(
            warm.owner, warm.collection_id, warm.namespace_id, owner, collection_name
        )
        live = warm.live
        version = live.emitted
        now = datetime.now(UTC)
        async with self.db.autocommit() as conn:
            records, emitted_seqs = await self._page(
                conn, collection, warm.namespace_id, warm.spec, live, k
            )
            with stage("park"):
                progress, restated = await self._parked(live, warm.progress, emitted_seqs, k)
            with stage("write"):
                columns = _advanced(live, progress, restated, now, warm.max_idle)
                advanced = await rows.advance_from(conn, key, version, now, columns)
        if not advanced:
            return None
        warm.progress = progress
        self._live.move_to_end(key)
        return records

    async def _row_page(
        self,
        conn: AsyncConnection,
        key: uuid.UUID,
        k: int,
        owner: str,
        collection_name: str,
        *,
        locked: bool = False,
    ) -> list[Record] | None:
        """The next page computed from the row; None if the row moved on meanwhile. With
        `locked`, the row is locked first (`conn` holds a transaction), so it cannot."""
        now = datetime.now(UTC)
        with stage("lock" if locked else "read"):
            row = await (rows.lock if locked else rows.read)(conn, key)
        collection = self._owned(row, owner, collection_name, now)
        namespace = next(n for n, i in collection.namespaces.items() if i == row.namespace_id)
        spec = SessionSpec.thaw(collection.name, namespace, row)
        live = await self._reopened(conn, row, collection, spec)
        records, emitted_seqs = await self._page(conn, collection, row.namespace_id, spec, live, k)
        with stage("park"):
            progress, restated = await self._parked(live, _stored(row), emitted_seqs, k)
        with stage("write"):
            columns = _advanced(live, progress, restated, now, row.max_idle_seconds)
            if locked:
                await rows.advance(conn, key, columns)
            elif not await rows.advance_from(conn, key, row.emitted, now, columns):
                return None
        warm = WarmSession(
            live, spec, owner, row.collection_id, row.namespace_id, row.max_idle_seconds, progress
        )
        self._remember(key, warm)  # a commit that then fails leaves it a version ahead: dropped
        return records

    def _owned(self, row: Any, owner: str, collection_name: str, now: datetime) -> Collection:
        """The session's collection, or the error a stopped, expired or foreign handle gets."""
        if row is None:
            raise _not_found()
        collection = self._collection_of(
            row.owner_key, row.collection_id, row.namespace_id, owner, collection_name
        )
        if row.expires_at <= now:
            raise NotFound(
                "Resumable query expired: it was idle for longer than its max idle time. "
                "Start another resumable query."
            )
        return collection

    def _collection_of(
        self,
        session_owner: str,
        collection_id: int,
        namespace_id: int,
        owner: str,
        collection_name: str,
    ) -> Collection:
        """The session's collection, if `owner` asks for it under its name and its namespace
        still exists; else the not-found error (a foreign handle looks like no handle)."""
        collection = self.catalog.find(collection_name)
        if (
            session_owner != owner
            or collection is None
            or collection.id != collection_id
            or namespace_id not in collection.namespaces.values()
        ):
            raise _not_found()
        return collection

    async def _reopened(
        self, conn: AsyncConnection, row: Any, collection: Collection, spec: SessionSpec
    ) -> LiveQuery:
        """The session's engine rebuilt from its row (a worker holding the session live
        serves its pages without the row: see `next`)."""
        with stage("open"):
            gate = await FilterGate.open(conn, collection, row.namespace_id, spec, self.cpu)
            live = await self._opened(
                collection, row.namespace_id, spec, gate, row.start_seq, _stored(row)
            )
        live.emitted = row.emitted
        return live

    def _open(
        self,
        segment: Segment,
        query: np.ndarray,
        gate: FilterGate,
        start_seq: int,
        spec: SessionSpec,
        progress: Progress,
    ) -> LiveQuery:
        """An engine for the session: resumed from its state where that applies, else an
        exact scan over what is left (seq ≤ start, matching, not yet returned).

        A resumed state already knows what it returned, but for the seqs returned from its
        read-ahead since it was stored; testing every live row against all returned seqs
        would cost milliseconds, so only the exact fallback does.
        """
        state = progress.state
        if state:
            try:
                allow = _allowing(segment, gate, start_seq, np.zeros(0, np.int64))
                since = progress.recently_returned()
                engine = ResumableQuery.resume(
                    segment, state, allow=allow, returned=since, query=query
                )
                return LiveQuery(engine, gate, 0)
            except (StateMismatch, StateError):
                log.info("session continues as an exact scan on this worker")
        allow = _allowing(segment, gate, start_seq, progress.returned())
        engine = ResumableQuery.start(
            segment,
            query,
            allow=allow,
            expected_matches=gate.expected(segment),
            ef=max(spec.hnsw_ef or 128, 16),
            exact_threshold=segment.filtered_threshold,
            mode="exact" if state else None,
        )
        return LiveQuery(engine, gate, 0)

    async def _page(
        self,
        conn: AsyncConnection,
        collection: Collection,
        namespace_id: int,
        spec: SessionSpec,
        live: LiveQuery,
        k: int,
    ) -> tuple[list[Record], np.ndarray]:
        """k results that exist in PostgreSQL and match the filter right now, with the
        payloads and vectors the session asked for; also every seq consumed."""
        seqs_of = self._seqs_of(collection, namespace_id, spec, live)
        records: list[Record] = []
        consumed: list[int] = []
        while len(records) < k:
            with stage("engine"):
                hits = await self._next_hits(live, k - len(records))
            if not hits:
                break
            live.emitted += len(hits)
            consumed.extend(seq for pid, _ in hits for seq in seqs_of(pid))
            records.extend(
                await self._records(conn, collection, namespace_id, spec, live.gate, hits)
            )
        return records, np.asarray(consumed, dtype=np.int64)

    async def _next_hits(self, live: LiveQuery, n: int) -> list[tuple[PointId, float]]:
        """The engine's next n hits: on the event loop when its read-ahead holds them (no
        engine work), else in the CPU pool."""
        engine = live.engine
        if isinstance(engine, ResumableQuery) and engine.ahead >= n:
            hits = engine.next(n, ahead_only=True)
            if hits:
                return hits
        return await self.cpu.run(engine.next, n)

    async def _parked(
        self, live: LiveQuery, done: Progress, page_seqs: np.ndarray, k: int
    ) -> tuple[Progress, bool]:
        """The progress after a page of k, and whether the state was stored anew.

        While the page came from the read-ahead the stored state holds, the row only learns
        the page's seqs (until they grow past `RECENT_BYTES`); otherwise see `_restate`.
        """
        recent = done.recent + np.asarray(page_seqs, dtype="<i8").tobytes()
        grown = Progress(done.state, done.seqs, recent)
        if not live.engine.moved and len(recent) <= RECENT_BYTES:
            return grown, False
        return await self.cpu.run(_restate, live, grown, k), True

    def _seqs_of(
        self, collection: Collection, namespace_id: int, spec: SessionSpec, live: LiveQuery
    ) -> Callable[[PointId], tuple[int, ...]]:
        """The write seqs the row records for a returned point."""
        if isinstance(live.engine, RankedQuery):
            return live.engine.seqs_of
        segment = self._segment(collection, namespace_id, spec.vector_name)

        def seqs_of(point_id: PointId) -> tuple[int, ...]:
            seq = segment.seq_of(point_id)
            return () if seq is None else (seq,)

        return seqs_of

    async def _records(
        self,
        conn: AsyncConnection,
        collection: Collection,
        namespace_id: int,
        spec: SessionSpec,
        gate: FilterGate,
        hits: list[tuple[PointId, float]],
    ) -> list[Record]:
        raw = spec.dialect == "upstash" and spec.vectors.enabled
        if not _reads_rows(spec, gate):
            segment = self._segment(collection, namespace_id, spec.vector_name)
            return _from_memory(segment, spec, hits)
        texts = [parse_point_id(pid, collection)[0] for pid, _ in hits]
        # Stored vectors only when returned as sent, or when the filter may ask which
        # vectors a point has (`has_vector`): otherwise one round trip fewer per page.
        with_vectors = raw or gate.node is not None
        with stage("points"):
            stored = await repository.select_points(
                conn, namespace_id, texts, with_vectors=with_vectors
            )
        segment = None if spec.ranked else self._segment(collection, namespace_id, spec.vector_name)
        out = []
        for (pid, score), text in zip(hits, texts, strict=True):
            point = stored.get(text)
            if point is None or not gate.admits(point, frozenset(point.vectors)):
                continue  # deleted or changed since the engine saw it: never returned
            payload = spec.payload.apply(point.payload)
            if spec.dialect == "upstash" and spec.payload.enabled:
                payload = point.payload  # Upstash leaves absent metadata out, not {}
            record = Record(point.id, point.seq, payload, score=score)
            record.extra["ranked"] = spec.ranked  # sparse or fused: a score not normalised
            if raw:
                record.extra["raw_vector"] = point.vectors.get(spec.vector_name)
                if spec.sparse is not None:
                    record.extra["raw_sparse"] = point.vectors.get(spec.sparse["name"])
            elif spec.vectors.enabled and segment is not None:
                vector = segment.vector(pid)
                record.vectors = {} if vector is None else {spec.vector_name: vector.tolist()}
            if spec.include_data:
                record.extra["data"] = point.data
            out.append(record)
        if spec.ranked and not raw:  # from memory, as a plain query returns them
            attach_vectors(self.registry, collection, namespace_id, out, spec.vectors)
        return out

    # --------------------------------------------------------------------- end

    async def end(self, session_id: str, owner: str, collection_name: str) -> None:
        key = _parse_handle(session_id)
        async with self.db.begin() as conn:
            row = await rows.lock(conn, key)
            self._owned(row, owner, collection_name, datetime.min.replace(tzinfo=UTC))
            await rows.delete(conn, key)
        self._live.pop(key, None)

    async def reap(self, now: datetime | None = None) -> int | None:
        """Delete idle sessions; None when another worker holds the reaper lock."""
        async with self.db.begin() as conn:
            gone = await rows.reap(conn, now or datetime.now(UTC))
        for key in gone or []:
            self._live.pop(key, None)
        return None if gone is None else len(gone)

    # ----------------------------------------------------------------- helpers

    def _segment(self, collection: Collection, namespace_id: int, vector_name: str) -> Segment:
        params = collection.config.vectors.get(vector_name)
        if params is None:
            check_vector(collection, vector_name, [])  # raises the unknown-name error
        return self.registry.ensure(namespace_id, vector_name, params)

    def _remember(self, key: uuid.UUID, warm: WarmSession) -> None:
        self._live[key] = warm
        self._live.move_to_end(key)
        while len(self._live) > self.cache_size:
            self._live.popitem(last=False)


def _state_of(engine: ResumableQuery | RankedQuery) -> bytes:
    """The engine's state as a row stores it: without the query vector, which the row's
    `request` holds already."""
    if isinstance(engine, ResumableQuery):
        return engine.state(with_query=False)
    return engine.state()


def _stored(row: Any) -> Progress:
    """The progress a session row records."""
    return Progress(row.state, row.emitted_seqs, row.recent_seqs)


def _reads_rows(spec: SessionSpec, gate: FilterGate) -> bool:
    """Whether a session's pages read their points back from PostgreSQL: for payloads,
    data, vectors as sent (Upstash) or a filter's re-check. Sparse and fused sessions always
    do (their versions and vectors are not in one segment)."""
    raw = spec.dialect == "upstash" and spec.vectors.enabled
    needs = spec.payload.enabled or spec.include_data or raw or gate.node is not None
    return needs or spec.ranked


def _from_memory(
    segment: Segment, spec: SessionSpec, hits: list[tuple[PointId, float]]
) -> list[Record]:
    """A page of a dense session that needs nothing from PostgreSQL: ids, versions and
    vectors from the segment, as a plain query takes them. A point deleted since the engine
    saw it is left out."""
    out = []
    for pid, score in hits:
        version = segment.version_of(pid)
        if version is None:
            continue
        record = Record(pid, version, score=score)
        record.extra["ranked"] = False
        if spec.vectors.enabled:
            vector = segment.vector(pid)
            record.vectors = {} if vector is None else {spec.vector_name: vector.tolist()}
        out.append(record)
    return out


def _allowing(
    segment: Segment, gate: FilterGate, start_seq: int, returned: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """Rows a session may still return: written by its start, matching, not yet returned."""

    def allow(candidates: np.ndarray) -> np.ndarray:
        seqs = segment.rows_written_by(candidates)
        ok = seqs <= start_seq
        if len(returned):
            ok &= ~np.isin(seqs, returned, assume_unique=False)
        if gate is not no_gate and ok.any():
            ok[ok] = gate.allows(segment, candidates[ok])
        return ok

    return allow


def _kept(
    ids: list[PointId], scores: np.ndarray, seqs: np.ndarray, start_seq: int, gate: FilterGate
) -> tuple[list[PointId], np.ndarray, np.ndarray]:
    """The part of a ranking a session may return: written by its start, matching."""
    keep = seqs <= start_seq
    if gate.matching is not None:
        keep &= np.fromiter((pid in gate.matching for pid in ids), bool, len(ids))
    positions = np.flatnonzero(keep)
    return [ids[i] for i in positions.tolist()], scores[positions], seqs[positions]


def _not_found() -> NotFound:
    return NotFound(
        "Resumable query not found: it was stopped, expired or never existed. "
        "Start another resumable query."
    )


def _check_page(k: int) -> None:
    if not 0 <= k <= MAX_PAGE:
        raise BadRequest(f"the page size must be between 0 and {MAX_PAGE}")


def _parse_handle(session_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(session_id)
    except ValueError:
        raise NotFound(
            "Resumable query not found: it was stopped, expired or never existed."
        ) from None
