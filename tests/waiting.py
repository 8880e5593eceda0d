"""Waiting on conditions with a deadline: how tests synchronise instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from vnode.clock import FakeClock

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    Exceptions raised by the predicate count as "not yet" and the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            last = predicate()
            error = None
            if last:
                return last  # type: ignore[return-value]
        except AssertionError as e:
            error = e
        except Exception as e:
            error = e
        if time.monotonic() >= deadline:
            name = what or getattr(predicate, "__name__", repr(predicate))
            detail = f"last error: {error!r}" if error else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {name}; {detail}")
        time.sleep(interval)


async def async_wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.05,
    what: str = "",
) -> T:
    """The asyncio twin of :func:`wait_for` for an async predicate."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            last = await predicate()
            error = None
            if last:
                return last  # type: ignore[return-value]
        except Exception as e:
            error = e
        if loop.time() >= deadline:
            name = what or getattr(predicate, "__name__", repr(predicate))
            detail = f"last error: {error!r}" if error else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {name}; {detail}")
        await asyncio.sleep(interval)


async def eventually(check: Callable[[], Any], within: float = 5.0) -> Any:
    """Wait until the synchronous ``check()`` is truthy (returning it), polling every 5 ms
    on the running loop, so in-process controllers get to run in between."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.005)


async def advance(clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Move fake time on in ``step``-sized strides, letting woken tasks run after each."""
    while seconds > 0:
        await clock.advance(min(step, seconds))
        seconds -= step
        for _ in range(20):
            await asyncio.sleep(0)
