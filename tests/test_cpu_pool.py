"""The micro-batching CPU pool: every call gets its own result or exception, in any order
of completion, and one slow call does not hold back the calls queued beside it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.services.cpu import MANY_ITEMS, CpuPool


def test_results_and_exceptions_reach_their_callers() -> None:
    def square(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x * x

    async def main() -> list[object]:
        pool = CpuPool(2)
        try:
            return await asyncio.gather(
                *(pool.run(square, i) for i in range(20)), return_exceptions=True
            )
        finally:
            pool.shutdown()

    results = asyncio.run(main())
    assert [r for i, r in enumerate(results) if i != 7] == [i * i for i in range(20) if i != 7]
    assert isinstance(results[7], ValueError)


def test_calls_run_off_the_event_loop_thread() -> None:
    async def main() -> set[int]:
        pool = CpuPool(2)
        try:
            return set(await asyncio.gather(*(pool.run(threading.get_ident) for _ in range(10))))
        finally:
            pool.shutdown()

    assert threading.get_ident() not in asyncio.run(main())


def test_a_slow_call_does_not_hold_back_the_others() -> None:
    release = threading.Event()

    async def main() -> float:
        pool = CpuPool(2)
        try:
            slow = asyncio.ensure_future(pool.run(release.wait, 10))
            started = time.perf_counter()
            await asyncio.gather(*(pool.run(time.sleep, 0.002) for _ in range(5)))
            quick = time.perf_counter() - started
            assert not slow.done()
            release.set()
            assert await slow is True
            return quick
        finally:
            release.set()
            pool.shutdown()

    assert asyncio.run(main()) < 5


@pytest.mark.parametrize("threads", [1, 3])
def test_any_thread_count(threads: int) -> None:
    async def main() -> list[int]:
        pool = CpuPool(threads)
        try:
            return list(await asyncio.gather(*(pool.run(abs, -i) for i in range(50))))
        finally:
            pool.shutdown()

    assert asyncio.run(main()) == list(range(50))


def test_work_per_item_stays_here_for_few_items_and_goes_to_the_pool_for_many() -> None:
    async def main() -> tuple[str, str]:
        pool = CpuPool(2)
        try:
            name = lambda: threading.current_thread().name  # noqa: E731
            return (
                await pool.run_per_item(MANY_ITEMS - 1, name),
                await pool.run_per_item(MANY_ITEMS, name),
            )
        finally:
            pool.shutdown()

    few, many = asyncio.run(main())
    assert few == threading.current_thread().name
    assert many.startswith("waypoint-cpu")
