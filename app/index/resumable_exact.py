"""EXACT mode: candidates in the exact (key, point id) order, resumable from a cursor.

The cursor is the last emitted entry, so a cold resume needs no list of what was returned:
everything at or before the cursor was. Keys come from `Scorer.keys`, which is reproducible
per row, so the comparison with the cursor gives the same answer on every call.

Keying every candidate that way costs about 5x a float32 pass, so a scan keys all
candidates with `Scorer.fast_keys` (a float32 dot with a proven error bound `tol`) and
pulls them in growing chunks: a chunk takes every row whose approximate key is at most `t`;
any row not pulled yet then has an exact key above `t - tol`, so pulled rows with a key up
to `t - tol` can be emitted in exact order. Only pulled rows get exact keys.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from app.index.resumable_scoring import Entry, Hit, Scorer, id_order
from app.index.segment import Segment

FIRST_CHUNK = 64
MAX_CHUNK = 8192


class ExactScan:
    """A cursor over candidate rows that yields them best first, exactly."""

    def __init__(
        self,
        segment: Segment,
        scorer: Scorer,
        sq_norms: np.ndarray,
        rows: np.ndarray,
        cursor: tuple[float, int] | None = None,
    ) -> None:
        """Scan `rows` (matching, not excluded), skipping everything up to `cursor`."""
        self._segment = segment
        self._scorer = scorer
        self._sq_norms = sq_norms
        self._ready: list[Entry] = []  # pulled rows, a heap
        self._safe = -math.inf  # ready entries with a key <= this can be emitted
        self._chunk = FIRST_CHUNK
        self._rows = rows  # not pulled yet, with their fast keys:
        self._approx = scorer.fast_keys_of(segment._vectors, sq_norms, rows)
        self._tol = scorer.fast_key_error(sq_norms[rows])
        self.cursor: Entry | None = None
        if cursor is not None:
            key, row = cursor
            self.cursor = (key, id_order(segment._ids[row]), row)
            self._skip_to_cursor(self.cursor)

    def take(self, n: int) -> list[Hit]:
        """The next `n` hits (fewer only at the end). Caller holds the read lock."""
        out: list[Entry] = []
        while len(out) < n:
            if self._ready and self._ready[0][0] <= self._safe:
                out.append(heapq.heappop(self._ready))
            elif len(self._rows):
                self._pull()
            else:
                break
        if out:
            self.cursor = out[-1]
        return [(key, row) for key, _, row in out]

    @property
    def position(self) -> tuple[float, int] | None:
        """The cursor as (key, row) for the state; None before the first result."""
        return None if self.cursor is None else (self.cursor[0], self.cursor[2])

    def _skip_to_cursor(self, cursor: Entry) -> None:
        """Drop rows at or before the cursor; only rows within `tol` of it need exact keys."""
        key, tol = cursor[0], self._tol
        keep = self._approx >= key - tol
        near = np.flatnonzero(keep & (self._approx <= key + tol))
        if len(near):
            exact = self._exact_entries(self._rows[near])
            keep[near] = [entry > cursor for entry in exact]
        self._rows, self._approx = self._rows[keep], self._approx[keep]

    def _pull(self) -> None:
        """Move the next chunk of rows (by approximate key) into the ready heap."""
        if len(self._rows) <= self._chunk:
            take = np.ones(len(self._rows), dtype=bool)
            self._safe = math.inf
        else:
            limit = np.partition(self._approx, self._chunk - 1)[self._chunk - 1]
            take = self._approx <= limit
            self._safe = float(limit) - self._tol
        for entry in self._exact_entries(self._rows[take]):
            heapq.heappush(self._ready, entry)
        self._rows, self._approx = self._rows[~take], self._approx[~take]
        self._chunk = min(2 * self._chunk, MAX_CHUNK)

    def _exact_entries(self, rows: np.ndarray) -> list[Entry]:
        keys = self._scorer.keys(self._segment._vectors[rows], self._sq_norms[rows]).tolist()
        ids = self._segment._ids
        return [
            (key, id_order(ids[row]), row) for key, row in zip(keys, rows.tolist(), strict=True)
        ]
