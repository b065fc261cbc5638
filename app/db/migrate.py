"""Apply the Alembic migrations programmatically (CLI `migrate`, `serve` start-up, tests)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import async_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config() -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return config


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` on a connection of our own."""
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    config = alembic_config()

    def run(connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with engine.connect() as connection:
            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Synchronous wrapper that also works when the caller already runs an event loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(upgrade_async(url, revision))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="alembic-upgrade")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
