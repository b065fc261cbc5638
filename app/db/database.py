"""The database handle services use: an engine plus `begin()` / `connect()` helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.engine import create_engine
from app.errors import NulCharacter

# What PostgreSQL answers to text holding U+0000: in `jsonb` (untranslatable_character) and
# in `text` (character_not_in_repertoire, "invalid byte sequence for encoding UTF8: 0x00").
NUL_SQLSTATES = frozenset({"22P05", "22021"})


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url, pool_size=pool_size)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction: committed when the block exits normally, rolled back otherwise."""
        with _nul_is_bad_input():
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (one connection, no explicit transaction)."""
        with _nul_is_bad_input():
            async with self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which each statement commits by itself: no BEGIN or COMMIT
        round trips, for work whose every write is one atomic statement."""
        with _nul_is_bad_input():
            async with self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only REPEATABLE READ transaction: every query sees the same snapshot."""
        with _nul_is_bad_input():
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


@contextmanager
def _nul_is_bad_input() -> Iterator[None]:
    """Text with U+0000 from a request (a payload, a name, a setting) is the request's fault:
    a 400 once the transaction has rolled back, not a 500. Filters are rejected earlier, when
    parsed, so that their answer does not depend on where they run; this catches the rest."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in NUL_SQLSTATES:
            raise NulCharacter("text in the request") from exc
        raise
