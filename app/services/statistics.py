"""Keeps PostgreSQL's planner statistics on `points` fresh after bulk writes.

A filtered search asks PostgreSQL for the ids its filter matches; the payload GIN index only
serves that query once the planner knows how many rows a namespace holds. Right after a fast
import the statistics still describe the empty table (autovacuum's analyze lags by a minute
or more), and the planner scans every row instead. So after enough rows were written — a
fifth of the table, at least `minimum` — one `ANALYZE points` runs in the background.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from app.db.database import Database

log = logging.getLogger(__name__)


class TableStatistics:
    def __init__(self, db: Database, share: float = 0.2, minimum: int = 5_000) -> None:
        self.db = db
        self.share = share
        self.minimum = minimum
        self._written = 0
        self._rows_at_analyze = 0
        self._task: asyncio.Task | None = None

    def wrote(self, rows: int) -> None:
        """Count written rows; start an analyze when enough have changed."""
        self._written += rows
        due = self._written >= max(self.minimum, self.share * self._rows_at_analyze)
        if due and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._analyze(), name="analyze-points")

    async def _analyze(self) -> None:
        self._written = 0
        try:
            async with self.db.begin() as conn:
                await conn.execute(sa.text("ANALYZE points"))
                self._rows_at_analyze = int(
                    await conn.scalar(
                        sa.text("SELECT reltuples FROM pg_class WHERE oid = 'points'::regclass")
                    )
                    or 0
                )
        except Exception:
            log.exception("ANALYZE points failed")
