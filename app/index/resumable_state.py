"""The serialised state of a resumable query ("compact v3"), small enough for a bytea column.

Layout: ``b"WPQ" + version byte + zlib(body)``, zlib's checksum rejecting a damaged blob.
The body is a fixed header (`_HEADER`, the EXACT cursor included), the query as float32,
then the row sets: expanded, pending, seeds, emitted-but-unexpanded, excluded, and last the
rows read ahead (results computed but not yet returned), in the order they came. Version 2
states (no read-ahead) are still read.

Why these fields (shared/reference/resumable-search.md §4): a GRAPH query stores only what
cannot be re-derived. The frontier is *not* stored: every discovered node was found by
expanding a stored node, by seeding or by the final teleport, so resume rebuilds it from the
expanded set, the seeds and the teleport flag (about 8x smaller than storing it, for an
O(|frontier|·d) load). Pending results are stored without their distances, which resume
recomputes bit-identically. An EXACT query needs only its cursor (key, row) and, if it
started as GRAPH, the rows GRAPH had already emitted.

Row sets are sorted, delta-coded and split into four byte planes (the high planes of small
gaps are runs of zeros that zlib all but deletes), or stored as a bitmap once they are dense.
Pending rows are almost all expanded (a row is emitted only after everything nearer was
expanded), so they are stored as one bit per expanded row plus a short list of the others:
about half the bytes of a list once the window has grown to thousands.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from app.models import Distance

MAGIC = b"WPQ"
VERSION = 3
READABLE = (2, 3)
# mode, distance, flags, dim, epoch, graph, row limit, ef, batch, emitted, walked, cursor
_HEADER = struct.Struct("<BBBHQQIHBIIdI")
_SET = struct.Struct("<BII")  # encoding, count, universe
_PLANES, _BITMAP = 0, 1
_DISTANCES = list(Distance)
_FRESH, _TELEPORTED, _HAS_CURSOR = 1, 2, 4


class StateError(ValueError):
    """The blob is not a state this version can read."""


class Mode(IntEnum):
    EXACT = 0
    GRAPH = 1


def _no_rows() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class QueryState:
    """Everything a worker needs to continue a query, decoded."""

    mode: Mode
    distance: Distance
    epoch: int  # the segment instance whose row numbers the sets refer to
    graph: int  # the graph generation (0 = none)
    row_limit: int  # rows that existed at start; later rows never take part
    ef: int
    batch: int
    emitted: int  # results returned so far
    query: np.ndarray
    walked: int = 0  # GRAPH: rows the walk emitted (its window grows with this)
    fresh: bool = False  # GRAPH: nothing emitted yet, the seeds may be served as is
    teleported: bool = False  # GRAPH: every matching row has been discovered
    cursor: tuple[float, int] | None = None  # EXACT: (key, row) of the last emitted row
    expanded: np.ndarray = field(default_factory=_no_rows)
    pending: np.ndarray = field(default_factory=_no_rows)
    seeds: np.ndarray = field(default_factory=_no_rows)
    emitted_unexpanded: np.ndarray = field(default_factory=_no_rows)
    excluded: np.ndarray = field(default_factory=_no_rows)  # EXACT after GRAPH
    ahead: np.ndarray = field(default_factory=_no_rows)  # read ahead, in order (not a set)


def dumps(state: QueryState) -> bytes:
    """Serialise; row sets may arrive unsorted and with repeats."""
    flags = (
        _FRESH * state.fresh
        + _TELEPORTED * state.teleported
        + _HAS_CURSOR * (state.cursor is not None)
    )
    key, row = state.cursor or (0.0, 0)
    header = _HEADER.pack(
        state.mode,
        _DISTANCES.index(state.distance),
        flags,
        len(state.query),
        state.epoch,
        state.graph,
        state.row_limit,
        state.ef,
        state.batch,
        state.emitted,
        state.walked,
        key,
        row,
    )
    expanded = _sorted_rows(state.expanded)
    pending = _sorted_rows(state.pending)
    inside = np.isin(expanded, pending, assume_unique=True)
    sets = [
        _pack_rows(expanded),
        np.packbits(inside).tobytes(),  # pending rows are nearly all expanded: a bit each
        _pack_rows(np.setdiff1d(pending, expanded, assume_unique=True)),
        *map(_pack_rows, (state.seeds, state.emitted_unexpanded, state.excluded)),
    ]
    query = np.ascontiguousarray(state.query, dtype="<f4").tobytes()
    ahead = np.asarray(state.ahead, dtype="<u4")
    sets.append(_SET.pack(_PLANES, len(ahead), 0) + ahead.tobytes())
    body = b"".join([header, query, *sets])
    # Level 1: a state is rewritten on every page; level 6 saves ~1 % of size for 2x the time.
    return MAGIC + bytes([VERSION]) + zlib.compress(body, 1)


def loads(blob: bytes, *, row_sets: bool = True) -> QueryState:
    """Deserialise, or raise StateError for anything but an intact v2 or v3 state.

    With `row_sets` False the five row sets are skipped, not decoded (they stay empty):
    the header, the query and the read-ahead are what serving from the read-ahead needs,
    and decoding the sets is most of the cost.
    """
    version = blob[3] if len(blob) > 3 else 0
    if blob[:3] != MAGIC or version not in READABLE:
        raise StateError("not a resumable query state of version 2 or 3")
    try:
        body = memoryview(zlib.decompress(blob[4:]))
        mode, distance, flags, dim, epoch, graph, rows, ef, batch, emitted, walked, key, row = (
            _HEADER.unpack_from(body)
        )
        mode, distance = Mode(mode), _DISTANCES[distance]
        offset = _HEADER.size
        query = np.frombuffer(body, dtype="<f4", count=dim, offset=offset).astype(np.float32)
        offset += 4 * dim
        sets, offset = (_unpack_sets if row_sets else _skip_sets)(body, offset)
        ahead = _unpack_ahead(body, offset) if version >= 3 else _no_rows()
    except (zlib.error, struct.error, ValueError, IndexError) as exc:
        raise StateError(f"damaged resumable query state: {exc}") from exc
    return QueryState(
        mode,
        distance,
        epoch,
        graph,
        rows,
        ef,
        batch,
        emitted,
        query,
        walked=walked,
        fresh=bool(flags & _FRESH),
        teleported=bool(flags & _TELEPORTED),
        cursor=(key, row) if flags & _HAS_CURSOR else None,
        expanded=sets[0],
        pending=sets[1],
        seeds=sets[2],
        emitted_unexpanded=sets[3],
        excluded=sets[4],
        ahead=ahead,
    )


def _unpack_sets(body: memoryview, offset: int) -> tuple[list[np.ndarray], int]:
    """Expanded, pending, seeds, emitted-but-unexpanded, excluded (see `dumps`)."""
    expanded, offset = _unpack_rows(body, offset)
    inside = np.unpackbits(
        np.frombuffer(body, np.uint8, (len(expanded) + 7) // 8, offset), count=len(expanded)
    )
    offset += (len(expanded) + 7) // 8
    sets = [expanded]
    for _ in range(4):
        rows, offset = _unpack_rows(body, offset)
        sets.append(rows)
    sets[1] = np.union1d(expanded[inside.astype(bool)], sets[1])
    return sets, offset


def _skip_sets(body: memoryview, offset: int) -> tuple[list[np.ndarray], int]:
    """Five empty sets, and the offset past the encoded ones."""
    expanded = _SET.unpack_from(body, offset)[1]
    offset = _skip_rows(body, offset) + (expanded + 7) // 8
    for _ in range(4):
        offset = _skip_rows(body, offset)
    return [_no_rows() for _ in range(5)], offset


def _skip_rows(body: memoryview, offset: int) -> int:
    encoding, count, universe = _SET.unpack_from(body, offset)
    if encoding not in (_BITMAP, _PLANES):
        raise ValueError(f"unknown row set encoding {encoding}")
    return offset + _SET.size + ((universe + 7) // 8 if encoding == _BITMAP else 4 * count)


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    return rows if np.all(rows[1:] > rows[:-1]) else np.unique(rows)


def _pack_rows(rows: np.ndarray) -> bytes:
    rows = _sorted_rows(rows)
    universe = int(rows[-1]) + 1 if len(rows) else 0
    if len(rows) * 16 >= universe:  # dense: a bit per row beats a byte per row
        mask = np.zeros(universe, dtype=bool)
        mask[rows] = True
        return _SET.pack(_BITMAP, len(rows), universe) + np.packbits(mask).tobytes()
    gaps = np.diff(rows, prepend=0).astype("<u4")
    planes = gaps.view(np.uint8).reshape(-1, 4).T.tobytes()
    return _SET.pack(_PLANES, len(rows), universe) + planes


def _unpack_ahead(body: memoryview, offset: int) -> np.ndarray:
    """The read-ahead rows: a plain list (their order is the order they are returned in)."""
    _, count, _ = _SET.unpack_from(body, offset)
    offset += _SET.size
    if offset + 4 * count != len(body):
        raise ValueError("read-ahead rows do not match their header")
    return np.frombuffer(body, dtype="<u4", count=count, offset=offset).astype(np.int64)


def _unpack_rows(body: memoryview, offset: int) -> tuple[np.ndarray, int]:
    encoding, count, universe = _SET.unpack_from(body, offset)
    offset += _SET.size
    if encoding == _BITMAP:
        size = (universe + 7) // 8
        bits = np.frombuffer(body, dtype=np.uint8, count=size, offset=offset)
        rows = np.flatnonzero(np.unpackbits(bits, count=universe))
        offset += size
    elif encoding == _PLANES:
        planes = np.frombuffer(body, dtype=np.uint8, count=4 * count, offset=offset)
        gaps = planes.reshape(4, count).T.copy().view("<u4").ravel()
        rows = np.cumsum(gaps, dtype=np.int64)
        offset += 4 * count
    else:
        raise ValueError(f"unknown row set encoding {encoding}")
    if len(rows) != count or (count and rows[-1] >= universe):
        raise ValueError("row set does not match its header")
    return rows.astype(np.int64), offset
