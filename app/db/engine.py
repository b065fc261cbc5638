"""Where the database is: a configured `DATABASE_URL`, or an embedded PostgreSQL.

The embedded server (the `pgserver` wheel, PostgreSQL 16) keeps its data under
`WAYPOINT_DATA_DIR/postgres`, so a zero-configuration install survives restarts.
pgserver counts the processes holding it (their pids, in a file beside the data) and the
last one to let go stops it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from pgserver import PostgresServer

log = logging.getLogger(__name__)

# Keeps the embedded server object alive (and so running) for the life of the process.
_embedded_servers: dict[Path, PostgresServer] = {}


def async_url(url: str) -> str:
    """Turn any PostgreSQL URL (`postgres://`, `postgresql://`, `+psycopg`) into an asyncpg one."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir` and return its URL."""
    import pgserver

    pg_dir = (data_dir / "postgres").resolve()
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    with pgserver.PostgresServer._lock:
        _forget_dead_holders(pg_dir / HOLDERS_FILE)
    _embedded_servers[pg_dir] = pgserver.get_server(pg_dir, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", pg_dir)
    return f"postgresql+asyncpg://postgres@/postgres?host={pg_dir}"


def stop_embedded_postgres() -> None:
    """Let go of the embedded servers this process holds; the last holder stops one."""
    while _embedded_servers:
        _, server = _embedded_servers.popitem()
        server.cleanup()


HOLDERS_FILE = ".handle_pids.json"  # pgserver's list of the pids holding a server


def _forget_dead_holders(holders: Path) -> None:
    """Drop the pids of holders that died without letting go (SIGKILL, a crash).

    Each such pid stays in pgserver's list for good, so no later holder would ever be the
    last one and the server would outlive every process that uses it.
    """
    if not holders.exists():
        return
    pids = json.loads(holders.read_text())
    alive = [pid for pid in pids if _is_running(pid)]
    if alive != pids:
        holders.write_text(json.dumps(alive))


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


SERVER_SETTINGS = {"application_name": "waypoint", "standard_conforming_strings": "on"}
"""Set on every connection. `standard_conforming_strings` is pinned because the SQL we write
spells string constants the standard way ('' doubles a quote, a backslash is itself): with
it off, as a database or role may be configured, a backslash in user text would escape."""


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        connect_args={"server_settings": dict(SERVER_SETTINGS)},
    )
