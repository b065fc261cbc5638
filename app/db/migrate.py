"""Apply the Alembic migrations programmatically (CLI `migrate`, `serve` start-up, tests)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import SERVER_SETTINGS, async_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config() -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return config


# PostgreSQL 16 added pg_input_is_valid(); the filter SQL uses it to test datetime strings.
# On older servers an equivalent (slower: one sub-transaction per call) is installed.
_PG_INPUT_IS_VALID = """
CREATE OR REPLACE FUNCTION pg_input_is_valid(value text, type_name text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    EXECUTE format('SELECT %L::%s', value, type_name);
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END
$$
"""


def install_compat(connection: Connection) -> None:
    """Shims that let the generated SQL run on PostgreSQL older than 16."""
    version = connection.execute(text("SHOW server_version_num")).scalar_one()
    if int(version) < 160000:
        connection.execute(text(_PG_INPUT_IS_VALID))


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` on a connection of our own."""
    engine = create_async_engine(
        async_url(url),
        poolclass=pool.NullPool,
        connect_args={"server_settings": dict(SERVER_SETTINGS)},
    )
    config = alembic_config()

    def run(connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        install_compat(connection)

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
