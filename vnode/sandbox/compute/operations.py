"""Zonal operations: the record of every mutation, what ``wait`` blocks on, and requestIds.

Operations are replaced, never edited in place, so readers on other threads always see a
whole object. Finished operations are kept up to a bound (the real API also forgets them
after a while); a ``requestId`` maps to its operation for a window, which is how a
retried insert or delete returns the first call's operation instead of acting twice.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections import OrderedDict
from typing import Any

from vnode.clock import Clock
from vnode.sandbox.compute.resources import new_id, operation_name, timestamp

Key = tuple[str, str, str]  # (project, zone, name)


class Operations:
    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        base: str,
        *,
        max_kept: int,
        request_id_window: float,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._base = base
        self._max_kept = max_kept
        self._window = request_id_window
        self._ops: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._done: dict[Key, asyncio.Event] = {}
        self._request_ids: dict[tuple[str, str], tuple[Key, float]] = {}

    def create(
        self,
        target: Key,
        op_type: str,
        *,
        target_id: str,
        user: str | None = None,
        done: bool = False,
    ) -> Key:
        project, zone, instance = target
        now = self._clock.now()
        name = operation_name(now, self._rng)
        zone_link = f"{self._base}/projects/{project}/zones/{zone}"
        key = (project, zone, name)
        self._ops[key] = {
            "kind": "compute#operation",
            "id": new_id(self._rng),
            "name": name,
            "zone": zone_link,
            "operationType": op_type,
            "targetLink": f"{zone_link}/instances/{instance}",
            "targetId": target_id,
            "status": "RUNNING",
            "user": user or f"vnode@{project}.iam.gserviceaccount.com",
            "progress": 0,
            "insertTime": timestamp(now),
            "startTime": timestamp(now),
            "selfLink": f"{zone_link}/operations/{name}",
        }
        self._done[key] = asyncio.Event()
        self._trim()
        if done:
            self.finish(key)
        return key

    def _trim(self) -> None:
        while len(self._ops) > self._max_kept:
            victim = next((k for k, o in self._ops.items() if o["status"] == "DONE"), None)
            if victim is None:
                return
            del self._ops[victim]
            self._done.pop(victim, None)

    def get(self, key: Key) -> dict[str, Any] | None:
        op = self._ops.get(key)
        return copy.deepcopy(op) if op is not None else None

    def items(self) -> list[tuple[Key, dict[str, Any]]]:
        return list(self._ops.items())

    def update(self, key: Key, **fields: Any) -> None:
        current = self._ops.get(key)
        if current is not None:
            new = copy.deepcopy(current)
            new.update(fields)
            self._ops[key] = new

    def is_done(self, key: Key) -> bool:
        op = self._ops.get(key)
        return op is not None and op["status"] == "DONE"

    def finish(
        self, key: Key, error: dict[str, Any] | None = None, http: tuple[int, str] | None = None
    ) -> None:
        """Mark DONE (with an error and the HTTP status it maps to, if it failed)."""
        fields: dict[str, Any] = {
            "status": "DONE",
            "progress": 100,
            "endTime": timestamp(self._clock.now()),
        }
        if error is not None:
            fields["error"] = {"errors": [error]}
        if http is not None:
            fields["httpErrorStatusCode"], fields["httpErrorMessage"] = http
        self.update(key, **fields)
        event = self._done.get(key)
        if event is not None:
            event.set()

    def release_waiters(self) -> None:
        """Let every pending wait answer now (the server is shutting down)."""
        for event in self._done.values():
            event.set()

    def delete(self, key: Key) -> None:
        self._ops.pop(key, None)
        self._done.pop(key, None)

    async def wait(self, key: Key, within: float) -> dict[str, Any] | None:
        """The operation once DONE, or as it stands after ``within`` seconds (the API's wait)."""
        event = self._done.get(key)
        if event is not None and not event.is_set():
            waiter = asyncio.create_task(event.wait(), name="compute-op-wait")
            timer = asyncio.create_task(self._clock.sleep(within), name="compute-op-wait-timer")
            try:
                await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                timer.cancel()
                await asyncio.gather(waiter, timer, return_exceptions=True)
        return self.get(key)

    # -- requestId ---------------------------------------------------------------------

    def remembered(self, project: str, request_id: str | None) -> dict[str, Any] | None:
        """The operation an earlier call with this ``requestId`` started, if still known."""
        if request_id is None:
            return None
        now = self._clock.monotonic()
        for rid, (_, at) in list(self._request_ids.items()):
            if now - at > self._window:
                del self._request_ids[rid]
        hit = self._request_ids.get((project, request_id))
        return None if hit is None else self.get(hit[0])

    def remember(self, project: str, request_id: str | None, key: Key) -> None:
        if request_id is not None:
            self._request_ids[(project, request_id)] = (key, self._clock.monotonic())
