"""Where the database is: a configured `DATABASE_URL`, or an embedded PostgreSQL.

The embedded server (the `pgserver` wheel, PostgreSQL 16) keeps its data under
`WAYPOINT_DATA_DIR/postgres`, so a zero-configuration install survives restarts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

# Keeps the embedded server object alive (and so running) for the life of the process.
_embedded_servers: dict[Path, object] = {}


def async_url(url: str) -> str:
    """Turn any PostgreSQL URL (`postgres://`, `postgresql://`, `+psycopg`) into an asyncpg one."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir` and return its URL."""
    import pgserver

    pg_dir = (data_dir / "postgres").resolve()
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    _embedded_servers[pg_dir] = pgserver.get_server(pg_dir, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", pg_dir)
    return f"postgresql+asyncpg://postgres@/postgres?host={pg_dir}"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        connect_args={"server_settings": {"application_name": "waypoint"}},
    )
