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
from app.server.affinity import pin_worker
from app.server.dealer import set_readiness
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
    if settings.pin_workers:
        pin_worker()
    if not (settings.api_key or settings.read_only_api_key):
        log.warning("no WAYPOINT_API_KEY set: the API is open to anyone who can reach it")
    url = await asyncio.to_thread(database_url, settings)
    await upgrade_async(url)
    services = Services(settings, Database(url))
    await services.start()
    app.state.services = services
    set_readiness(lambda: services.ready)
    background = asyncio.create_task(services.run_background(), name="segments")
    background.add_done_callback(_log_failure)
    try:
        yield
    finally:
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        await services.stop()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
