"""Executing statements whose SQL is rendered in a pool thread instead of the event loop.

SQLAlchemy builds and renders a statement in Python on the thread that executes it, which
for a connection of the async engine is the event loop, and it does so again for every
statement it has not cached. A large filter (hundreds of conditions, each a tree of JSON
tests with its own bound values) takes it long enough to hold up every other request of
the worker. Inside `rendering_in(pool)`, the statements that embed filters (`execute`) are
rendered in `pool` and sent to the driver as they are (`exec_driver_sql`); elsewhere they
run as usual, where SQLAlchemy's cache of compiled statements makes small filters cheap.

The rows come back from the driver without SQLAlchemy's result processing, which these
statements do not need: their columns are text, integers, `jsonb` and `bytea`, all of
which asyncpg decodes itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect, Result
from sqlalchemy.ext.asyncio import AsyncConnection


class Pool(Protocol):
    """What the services' CPU pool offers the database layer."""

    def run(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]: ...

    def run_per_item(self, count: int, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]: ...


async def run_in(pool: Pool | None, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in `pool`, or here when there is none."""
    return fn(*args) if pool is None else await pool.run(fn, *args)


T = TypeVar("T")

_render_pool: ContextVar[Pool | None] = ContextVar("render_pool", default=None)


@contextmanager
def rendering_in(pool: Pool | None) -> Iterator[None]:
    """Statements run by `execute` in this block (of this task) are rendered in `pool`;
    None leaves them to SQLAlchemy."""
    token = _render_pool.set(pool)
    try:
        yield
    finally:
        _render_pool.reset(token)


async def execute(conn: AsyncConnection, stmt: Executable) -> Result[Any]:
    pool = _render_pool.get()
    if pool is None:
        return await conn.execute(stmt)
    sql, parameters = await pool.run(render, stmt, conn.dialect)
    return await conn.exec_driver_sql(sql, parameters)


def render(stmt: Executable, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    """The statement's SQL for `dialect` and its parameters in order, as the driver takes
    them (after each type's bind processing)."""
    compiled = stmt.compile(dialect=dialect)
    values = compiled.construct_params()
    processors = compiled._bind_processors
    ordered = compiled.positiontup or ()
    return compiled.string, tuple(
        processors[name](values[name]) if name in processors else values[name] for name in ordered
    )
