"""Alembic environment (async template plus connection sharing and an advisory lock).

`app.db.migrate.upgrade()` passes an open connection in `config.attributes["connection"]`;
the `alembic` CLI instead builds an engine from `DATABASE_URL`. Either way the migration runs
under a PostgreSQL advisory lock so that several workers starting at once never race.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.tables import metadata

MIGRATION_LOCK_KEY = 0x57A7_0001  # arbitrary, fixed: "Waypoint migrations"

config = context.config
target_metadata = metadata


def do_run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


async def run_async_migrations(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    from app.db.engine import async_url

    asyncio.run(run_async_migrations(async_url(os.environ["DATABASE_URL"])))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `python -m app migrate`")
run_migrations_online()
