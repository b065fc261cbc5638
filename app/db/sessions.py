"""SQL for resumable query sessions (table `resumable_queries`)."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.tables import resumable_queries as sessions


class SessionRow(NamedTuple):
    """A `resumable_queries` row, as `read` returns it (SQLAlchemy rows have the same
    attributes)."""

    id: uuid.UUID
    collection_id: int
    namespace_id: int
    vector_name: str
    dialect: str
    request: dict[str, Any]
    mode: str
    state: bytes
    emitted: int
    emitted_seqs: bytes
    start_seq: int
    max_idle_seconds: int
    owner_key: str
    created_at: datetime
    last_touched: datetime
    expires_at: datetime
    recent_seqs: bytes


_READ_SQL = f"SELECT {', '.join(SessionRow._fields)} FROM {sessions.name} WHERE id = $1"
REAPER_LOCK_KEY = 0x57A7_0002  # one reaper at a time across every worker
STARTS_LOCK_KEY = 0x57A7_0003  # one session start counts and inserts at a time


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(sessions).values(**values))


async def read(conn: AsyncConnection, session_id: uuid.UUID) -> SessionRow | None:
    """The session row as it is now (a page computed from it advances it conditionally).
    Sent to asyncpg directly: on a page from the row it is one of two round trips."""
    driver = await _driver(conn)
    found = await driver.fetchrow(_READ_SQL, session_id)
    if found is None:
        return None
    row = SessionRow(*found)
    if isinstance(row.request, str):  # jsonb arrives as text unless a codec is set
        row = row._replace(request=json.loads(row.request))
    return row


async def lock(conn: AsyncConnection, session_id: uuid.UUID) -> sa.Row | None:
    """The session row, locked until the transaction ends: `next` calls on one handle queue
    here, on every worker, so two pages are never computed from the same state."""
    stmt = sa.select(sessions).where(sessions.c.id == session_id).with_for_update()
    return (await conn.execute(stmt)).one_or_none()


async def advance(conn: AsyncConnection, session_id: uuid.UUID, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(sessions).where(sessions.c.id == session_id).values(**values))


async def advance_from(
    conn: AsyncConnection,
    session_id: uuid.UUID,
    emitted: int,
    now: datetime,
    values: dict[str, Any],
) -> bool:
    """Advance the row if it is still at version `emitted` and not expired, in one
    statement; False if another page (on any worker), a stop or the expiry came first.
    A concurrent locked page makes this wait for its commit, then find the version gone.

    The statement goes to asyncpg directly, prepared once per connection and shape: it is
    a page's only round trip, and SQLAlchemy's execution path costs more than the trip.
    `conn` must not be in a transaction it expects to roll back (it runs autocommit).
    """
    driver = await _driver(conn)
    status = await driver.execute(
        _advance_sql(tuple(values)), session_id, emitted, now, *values.values()
    )
    return status == "UPDATE 1"


@functools.cache
def _advance_sql(columns: tuple[str, ...]) -> str:
    """The conditional UPDATE setting `columns` (names from this module's callers only)."""
    sets = ", ".join(f"{name} = ${at}" for at, name in enumerate(_checked(columns), start=4))
    return f"UPDATE {sessions.name} SET {sets} WHERE id = $1 AND emitted = $2 AND expires_at > $3"


def _checked(columns: tuple[str, ...]) -> tuple[str, ...]:
    """`columns`, all of them the table's: names are spliced into SQL, never from a request."""
    assert set(sessions.c.keys()).issuperset(columns), columns
    return columns


async def delete(conn: AsyncConnection, session_id: uuid.UUID) -> bool:
    stmt = sa.delete(sessions).where(sessions.c.id == session_id)
    return (await conn.execute(stmt)).rowcount > 0


async def insert_within_caps(
    conn: AsyncConnection,
    values: dict[str, Any],
    now: datetime,
    max_total: int,
    max_per_owner: int,
) -> tuple[int, int, bool]:
    """Insert a session unless a cap is reached, in a transaction of its own on `conn`
    (which must have none open: an autocommit connection). Returns the live sessions
    before it, all and the owner's, and whether it was inserted.

    Under READ COMMITTED a count does not see sessions other starts have inserted but not
    yet committed, so a count and an insert are only atomic one start at a time: every
    start, on every worker, takes one advisory lock (one covers both caps, since every
    start is subject to the total cap), transaction-scoped so a failed start never leaves
    it held. The count must run in a statement after the one that took the lock, whose
    snapshot is taken before it runs. One statement counts and inserts, sent to asyncpg
    directly: four round trips (BEGIN, lock, insert, COMMIT), not six through SQLAlchemy.
    """
    columns = tuple(values)
    driver = await _driver(conn)
    params = [json.dumps(v) if name == "request" else v for name, v in values.items()]
    async with driver.transaction():
        await driver.execute("SELECT pg_advisory_xact_lock($1)", STARTS_LOCK_KEY)
        found = await driver.fetchrow(
            _insert_within_caps_sql(columns),
            now,
            values["owner_key"],
            max_total,
            max_per_owner,
            *params,
        )
    assert found is not None
    return found["total"], found["mine"], found["added"]


@functools.cache
def _insert_within_caps_sql(columns: tuple[str, ...]) -> str:
    placeholders = ", ".join(
        f"${at}::text::jsonb" if name == "request" else f"${at}"
        for at, name in enumerate(_checked(columns), start=5)
    )
    return f"""
        WITH live AS (
            SELECT count(*) AS total, count(*) FILTER (WHERE owner_key = $2) AS mine
            FROM {sessions.name} WHERE expires_at > $1
        ), added AS (
            INSERT INTO {sessions.name} ({", ".join(columns)})
            SELECT {placeholders} FROM live WHERE live.total < $3 AND live.mine < $4
            RETURNING 1
        )
        SELECT total, mine, EXISTS (SELECT FROM added) AS added FROM live
    """


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def count_active(conn: AsyncConnection, now: datetime, owner_key: str) -> tuple[int, int]:
    """(all live sessions, live sessions of this owner): an early estimate, exact only
    under the start lock (see `insert_within_caps`)."""
    live = sessions.c.expires_at > now
    stmt = sa.select(
        sa.func.count().filter(live),
        sa.func.count().filter(live, sessions.c.owner_key == owner_key),
    ).select_from(sessions)
    total, mine = (await conn.execute(stmt)).one()
    return total, mine


async def reap(conn: AsyncConnection, now: datetime) -> list[uuid.UUID] | None:
    """Delete sessions idle past their expiry; None if another worker is reaping now.

    Idempotent: a second run finds nothing to delete. The advisory lock is transaction-scoped,
    so a crashed reaper never leaves it held.
    """
    got = await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(REAPER_LOCK_KEY)))
    if not got:
        return None
    stmt = sa.delete(sessions).where(sessions.c.expires_at <= now).returning(sessions.c.id)
    return list((await conn.execute(stmt)).scalars())
