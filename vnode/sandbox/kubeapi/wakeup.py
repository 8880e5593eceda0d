"""Store changes as an awaitable wake-up for the in-process controllers.

The store calls its listeners synchronously inside every write, possibly from another
thread, so a listener may only note the change and poke the controller's loop. This
class is that listener: it queues the changes a controller cares about and lets the
controller sleep until one arrives or its own timer (on the injected clock) runs out,
so controllers never poll in a hot loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vnode.clock import Clock
from vnode.sandbox.kubeapi.resources import Resource


@dataclass(frozen=True)
class Change:
    type: str  # ADDED | MODIFIED | DELETED
    res: Resource
    new: dict[str, Any]
    old: dict[str, Any] | None


class Wakeup:
    def __init__(self, store: Any, clock: Clock, wants: Callable[[Resource], bool]) -> None:
        self._store = store
        self._clock = clock
        self._wants = wants
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changes: deque[Change] = deque()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._store.add_listener(self._on_change)

    def stop(self) -> None:
        self._loop = None
        remove = getattr(self._store, "remove_listener", None)
        if remove is not None:
            remove(self._on_change)
        self._changes.clear()

    def _on_change(
        self, event_type: str, res: Resource, new: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        loop = self._loop
        if loop is None or not self._wants(res):
            return
        self._changes.append(Change(event_type, res, new, old))
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._event.set)

    def drain(self) -> list[Change]:
        """The changes since the last call, oldest first."""
        self._event.clear()
        out = list(self._changes)
        self._changes.clear()
        return out

    async def wait(self, seconds: float) -> None:
        """Until a change arrives or ``seconds`` of clock time pass."""
        if self._changes:
            return
        waiter = asyncio.ensure_future(self._event.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(max(0.0, seconds)))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
