"""A keyed work queue with per-key rate-limited retries.

The pod controller queues *keys* (``namespace/name``), never objects: a worker re-reads
the latest pod from the watch cache, so ten changes to one pod while it waits cost one
reconcile. The rules are the ones Kubernetes controllers rely on:

- a key waits in the queue at most once, however often it is added;
- a key is never handed to two workers at once; one added again while it is being
  processed is handed out again after :meth:`KeyedQueue.done`;
- a failing key comes back after an exponential, capped delay of its own
  (:meth:`KeyedQueue.add_rate_limited`), and :meth:`KeyedQueue.forget` resets it once
  it succeeds, so one broken pod never slows the others.

Delays are measured on the injected clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Hashable

from vnode import metrics
from vnode.clock import Clock


class ShutDown(Exception):
    """Raised by :meth:`KeyedQueue.get` once the queue is shut down and drained."""


class KeyedQueue:
    def __init__(self, clock: Clock, *, base: float = 0.5, cap: float = 120.0) -> None:
        self._clock = clock
        self._base = base
        self._cap = cap
        self._ready: collections.deque[Hashable] = collections.deque()
        self._dirty: set[Hashable] = set()  # waiting to be processed (maybe not yet in _ready)
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        # One pending timer per key: (due time on the clock, task). Bounded by the keys.
        self._timers: dict[Hashable, tuple[float, asyncio.Task[None]]] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutdown = False
        metrics.current().queue_depth.set_function(self.__len__)

    def __len__(self) -> int:
        """Keys waiting to be handed out (not those being processed or delayed)."""
        return len(self._ready)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def add(self, key: Hashable) -> None:
        """Queue ``key`` now (a no-op if it already waits)."""
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # handed out again by done()
        self._ready.append(key)
        self._wake_one()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending timer for it wins."""
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self._clock.monotonic() + delay
        current = self._timers.get(key)
        if current is not None:
            if current[0] <= due:
                return
            current[1].cancel()
        task = asyncio.create_task(self._fire(key, due), name=f"queue-delay:{key}")
        self._timers[key] = (due, task)

    def add_rate_limited(self, key: Hashable, *, at_least: float = 0.0) -> float:
        """Queue ``key`` after its next backoff delay; returns that delay.

        ``at_least`` honours a server's Retry-After when it asks for longer.
        """
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        metrics.current().queue_retries.inc()
        delay = max(self.backoff(failures), at_least)
        self.add_after(key, delay)
        return delay

    def backoff(self, failures: int) -> float:
        """The delay after ``failures`` earlier failures: base * 2^failures, capped."""
        if failures >= 64:
            return self._cap
        return float(min(self._base * (2**failures), self._cap))

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        """Reset ``key``'s backoff (call after it succeeded, or when its object is gone)."""
        self._failures.pop(key, None)

    def discard(self, key: Hashable) -> None:
        """Drop everything the queue holds about ``key`` (its object was deleted)."""
        self.forget(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()

    async def get(self) -> Hashable:
        """The next key to process; raises :class:`ShutDown` once shut down and empty."""
        while not self._ready:
            if self._shutdown:
                raise ShutDown()
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Pass a wake-up we may have consumed on to another getter.
                if fut.done() and not fut.cancelled() and self._ready:
                    self._wake_one()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._getters.remove(fut)
        key = self._ready.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        """Mark ``key`` processed; if it was added meanwhile, hand it out again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutdown:
            self._ready.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        """Stop accepting keys, cancel timers and wake every waiting getter."""
        self._shutdown = True
        self._ready.clear()
        self._dirty.clear()
        for _, task in self._timers.values():
            task.cancel()
        self._timers.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def _fire(self, key: Hashable, due: float) -> None:
        # Measured from when the key was added, not from when this task first runs.
        remaining = due - self._clock.monotonic()
        if remaining > 0:
            await self._clock.sleep(remaining)
        timer = self._timers.get(key)
        if timer is not None and timer[1] is asyncio.current_task():
            del self._timers[key]
        self.add(key)

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
