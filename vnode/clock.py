"""Injectable time, so lease, retry and grace-period logic is tested without sleeping.

Real code takes a :class:`Clock`; tests pass a :class:`FakeClock` and move it forward.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Wall-clock time, timezone-aware UTC (what goes into API objects)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (what intervals are measured with)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when told to; sleepers wake as ``advance`` passes them."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._wall = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> dt.datetime:
        return self._wall + dt.timedelta(seconds=self._mono)

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(0.0, seconds), next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting in :meth:`sleep` (tests wait for this to settle)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper in order and letting it run."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, when)
            if not fut.done():
                fut.set_result(None)
            # Let the woken task run up to its next await before waking the next one.
            for _ in range(5):
                await asyncio.sleep(0)
        self._mono = target
        for _ in range(5):
            await asyncio.sleep(0)


def rfc3339(t: dt.datetime) -> str:
    """Kubernetes ``Time``: RFC 3339 to the second, ``Z``."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: dt.datetime) -> str:
    """Kubernetes ``MicroTime``: exactly six fractional digits (the API server rejects others)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    """Parse a Kubernetes Time or MicroTime (or any RFC 3339 value) into aware UTC."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
