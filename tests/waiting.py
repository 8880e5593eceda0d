"""Waiting on conditions with a deadline: how tests synchronise instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

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
