"""Where a request's time goes: named stages, reported in its `Server-Timing` header.

A request that wants its stages timed opens a record (`recording()`, done by the API's
timing middleware); code anywhere below times a stage with `with stage("lock"): …`. Outside a
record, `stage` costs one context-variable lookup. Stages of the same name add up, so a loop
that reads points three times reports one `points` stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_record: ContextVar[dict[str, float] | None] = ContextVar("stages", default=None)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect the stages timed within (seconds by name), for this task and its awaits."""
    record: dict[str, float] = {}
    token = _record.set(record)
    try:
        yield record
    finally:
        _record.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    record = _record.get()
    if record is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        record[name] = record.get(name, 0.0) + time.perf_counter() - started


def since(name: str, started: float) -> None:
    """Add the time since `started` (a `time.perf_counter()`) as a stage: for spans that
    no `with` block can enclose, such as the commit at the end of an `async with`."""
    record = _record.get()
    if record is not None:
        record[name] = record.get(name, 0.0) + time.perf_counter() - started


def header_value(record: dict[str, float]) -> str:
    """`name;dur=<ms>` entries, in the order the stages first ran."""
    return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in record.items())
