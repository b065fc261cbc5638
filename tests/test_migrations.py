"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import async_url
from app.db.migrate import upgrade
from app.db.tables import metadata


def test_upgrade_head_matches_models(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # idempotent: a second start-up migrates nothing

    async def diff() -> list:
        engine = create_async_engine(async_url(database_url))
        async with engine.connect() as conn:
            changes = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        await engine.dispose()
        return changes

    assert asyncio.run(diff()) == []
