"""Shared fixtures: a real PostgreSQL and live Waypoint servers started as subprocesses.

The database server is `$TEST_DATABASE_URL` when set, otherwise an embedded PostgreSQL
(the `pgserver` wheel) started once for the session. Each test module gets a database of
its own, created fresh, so modules never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.db.engine import start_embedded_postgres, stop_embedded_postgres

ROOT = Path(__file__).resolve().parents[1]


def _asyncpg_dsn(url: str, database: str | None = None) -> dict[str, object]:
    parsed = make_url(url)
    return {
        "user": parsed.username or "postgres",
        "password": parsed.password,
        "host": parsed.query.get("host") or parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "database": database or parsed.database or "postgres",
    }


def _admin(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(**_asyncpg_dsn(url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """`$TEST_DATABASE_URL`, or an embedded PostgreSQL for this test session.

    The embedded server lives in a folder of its own, not under pytest's temporary folder:
    another pytest run on the machine prunes and re-permissions that one, which would pull
    the data directory from under a running server.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="waypoint-test-pg-"))
    try:
        url = make_url(start_embedded_postgres(root)).set(drivername="postgresql")
        yield url.render_as_string(hide_password=False)  # plain libpq form, for any client
    finally:
        stop_embedded_postgres()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def database_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test module."""
    name = f"waypoint_test_{uuid.uuid4().hex[:12]}"
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fetch_row(database_url: str, query: str, *args: object) -> asyncpg.Record | None:
    """One row of `query` on a test database, for tests that inspect what the server stored."""

    async def fetch() -> asyncpg.Record | None:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return await conn.fetchrow(query, *args)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """`python -m app serve` in a subprocess, as a user would run it."""

    def __init__(self, database_url: str, data_dir: Path, env: dict[str, str] | None = None):
        self.database_url = database_url
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> LiveServer:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "WAYPOINT_DATA_DIR": str(self.data_dir),
            **self.extra_env,
        }
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1"]
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def server_factory(database_url: str, tmp_path_factory: pytest.TempPathFactory):
    """Start servers on this module's database; all are stopped when the module ends."""
    started: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, database: str | None = None) -> LiveServer:
        server = LiveServer(database or database_url, tmp_path_factory.mktemp("srv"), env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(server_factory) -> LiveServer:
    return server_factory()
