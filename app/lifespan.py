"""The application's lifespan: database, migrations, services, background loading."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from app.db.database import Database
from app.db.engine import start_embedded_postgres
from app.db.migrate import upgrade_async
from app.services.container import Services
from app.settings import Settings

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """The configured database, or an embedded PostgreSQL under the data directory."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.data_dir)


@asynccontextmanager
async def services_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not (settings.api_key or settings.read_only_api_key):
        log.warning("no WAYPOINT_API_KEY set: the API is open to anyone who can reach it")
    url = await asyncio.to_thread(database_url, settings)
    await upgrade_async(url)
    services = Services(settings, Database(url))
    await services.start()
    app.state.services = services
    loader = asyncio.create_task(services.load_segments(), name="segment-loader")
    try:
        yield
    finally:
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
        await services.stop()
