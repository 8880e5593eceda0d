"""Faults tests inject into the Compute emulator: the failures vnode must survive.

Tests call these from any thread (the emulator runs on its own loop), so every method
only records intent under a lock; the emulator consults the record as requests arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from vnode.sandbox.compute import validation


def method_key(method: str) -> str:
    """``compute.instances.insert`` and ``instances.insert`` name the same method; a name
    the discovery document does not know is refused, so a typo cannot silently disarm a
    fault."""
    key = method.removeprefix("compute.")
    if key == "*":
        return key
    resource, _, name = key.partition(".")
    methods = validation.discovery()["resources"].get(resource, {}).get("methods", {})
    if name not in methods:
        raise ValueError(f"unknown Compute API method {method!r}")
    return key


@dataclass
class ScriptedError:
    code: int
    reason: str | None
    message: str | None
    retry_after: float | None
    remaining: int


class Faults:
    """Scripted failures, latency, stockouts, quotas and Spot preemptions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[str, list[ScriptedError]] = {}
        self._latency: dict[str, float] = {}
        self._stockouts: dict[str, int | None] = {}  # zone -> remaining inserts (None: all)
        self._quotas: dict[tuple[str, str | None], float] = {}  # (metric, region) -> limit
        self._preempt: Callable[[str, str | None], None] | None = None
        # Calls seen per method (``instances.list``...), failed or not: tests assert on these
        # to hold vnode to a bounded number of Compute calls.
        self.calls: dict[str, int] = {}

    # -- HTTP errors and latency -------------------------------------------------------

    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        code: int = 503,
        reason: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next ``count`` calls of ``method`` (e.g. ``instances.insert``) with ``code``.

        429 answers as the real rate limiter (``rateLimitExceeded``, RESOURCE_EXHAUSTED),
        503 as a backend failure (``backendError``); ``retry_after`` adds the header.
        """
        with self._lock:
            self._errors.setdefault(method_key(method), []).append(
                ScriptedError(code, reason, message, retry_after, count)
            )

    def latency(self, seconds: float, method: str = "*") -> None:
        """Delay every call of ``method`` (``*``: all methods) by ``seconds``; 0 removes it."""
        with self._lock:
            if seconds > 0:
                self._latency[method_key(method)] = seconds
            else:
                self._latency.pop(method_key(method), None)

    def call_count(self, method: str) -> int:
        """How many calls of ``method`` arrived so far (``*``: all methods)."""
        with self._lock:
            if method == "*":
                return sum(self.calls.values())
            return self.calls.get(method_key(method), 0)

    def take_error(self, method: str) -> ScriptedError | None:
        key = method.removeprefix("compute.")
        with self._lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            queue = self._errors.get(key, [])
            while queue:
                head = queue[0]
                if head.remaining <= 0:
                    queue.pop(0)
                    continue
                head.remaining -= 1
                return head
            return None

    def delay_for(self, method: str) -> float:
        key = method.removeprefix("compute.")
        with self._lock:
            return self._latency.get(key, self._latency.get("*", 0.0))

    # -- capacity ----------------------------------------------------------------------

    def stockout(self, zone: str, count: int | None = None) -> None:
        """Inserts in ``zone`` end with ZONE_RESOURCE_POOL_EXHAUSTED (the next ``count``,
        or all until :meth:`clear_stockout`)."""
        with self._lock:
            self._stockouts[zone] = count

    def clear_stockout(self, zone: str) -> None:
        with self._lock:
            self._stockouts.pop(zone, None)

    def take_stockout(self, zone: str) -> bool:
        with self._lock:
            if zone not in self._stockouts:
                return False
            left = self._stockouts[zone]
            if left is not None:
                if left <= 1:
                    del self._stockouts[zone]
                else:
                    self._stockouts[zone] = left - 1
            return True

    def quota(self, metric: str, limit: float, region: str | None = None) -> None:
        """Set a regional quota (``CPUS``, ``N2_CPUS``, ``C3_CPUS``, ``G2_CPUS``,
        ``NVIDIA_L4_GPUS``, ``INSTANCES``); ``region`` None applies it to every region.
        Inserts that would exceed it end with QUOTA_EXCEEDED."""
        with self._lock:
            self._quotas[(metric, region)] = limit

    def clear_quota(self, metric: str, region: str | None = None) -> None:
        with self._lock:
            self._quotas.pop((metric, region), None)

    def quota_limit(self, metric: str, region: str) -> float | None:
        with self._lock:
            limit = self._quotas.get((metric, region))
            return self._quotas.get((metric, None)) if limit is None else limit

    # -- Spot preemption ---------------------------------------------------------------

    def preempt(self, instance: str, zone: str | None = None) -> None:
        """Preempt the Spot instance now (as the platform would, when it needs capacity)."""
        if self._preempt is None:
            raise RuntimeError("the emulator is not running")
        self._preempt(instance, zone)

    def bind(self, preempt: Callable[[str, str | None], None] | None) -> None:
        self._preempt = preempt
