"""SQL for resumable query sessions (table `resumable_queries`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.tables import resumable_queries as sessions

REAPER_LOCK_KEY = 0x57A7_0002  # one reaper at a time across every worker
STARTS_LOCK_KEY = 0x57A7_0003  # one session start counts and inserts at a time


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(sessions).values(**values))


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
    A concurrent locked page makes this wait for its commit, then find the version gone."""
    stmt = (
        sa.update(sessions)
        .where(
            sessions.c.id == session_id,
            sessions.c.emitted == emitted,
            sessions.c.expires_at > now,
        )
        .values(**values)
    )
    return (await conn.execute(stmt)).rowcount == 1


async def delete(conn: AsyncConnection, session_id: uuid.UUID) -> bool:
    stmt = sa.delete(sessions).where(sessions.c.id == session_id)
    return (await conn.execute(stmt)).rowcount > 0


async def lock_starts(conn: AsyncConnection) -> None:
    """Hold the session-start lock until the transaction ends, on every worker.

    Under READ COMMITTED a count does not see sessions other starts have inserted but not yet
    committed, so a count and an insert are only atomic one start at a time. One lock covers
    both caps: every start is subject to the total cap, so a per-owner lock would serialise
    nothing more. Transaction-scoped: a start that fails or rolls back never leaves it held.
    Take it last in the transaction, so it is held for the count, the insert and the commit.
    """
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(STARTS_LOCK_KEY)))


async def count_active(conn: AsyncConnection, now: datetime, owner_key: str) -> tuple[int, int]:
    """(all live sessions, live sessions of this owner).

    Exact only under `lock_starts`, taken in an earlier statement: a statement's snapshot is
    taken before it runs, so one that locked and counted would miss the previous holder's row.
    """
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
