"""Events about pods and the Node, written the way a kubelet's recorder writes them.

Users read what vnode does with ``kubectl describe pod`` and ``kubectl get events``, and
tools filter on the fields client-go's legacy recorder fills in; so vnode writes core/v1
Events in exactly that shape: name ``<object>.<hex unix nanoseconds>``, an
``involvedObject`` reference, ``source``, ``firstTimestamp``/``lastTimestamp``/``count``
and ``reportingComponent``/``reportingInstance``. An identical repeat (same object,
type, reason and message) within :data:`REPEAT_WINDOW` is not a new Event: the first
one's ``count`` and ``lastTimestamp`` are patched, as client-go does. Like client-go's
aggregator, once one object has had :data:`SIMILAR_LIMIT` different messages for one
reason within the window, the rest share one Event whose message starts with
``(combined from similar events):``, so a retry loop cannot flood the namespace.

Recording never blocks and never fails the caller: events go into a bounded buffer that
one background task (:meth:`EventRecorder.run`) sends. When the buffer is full the new
event is dropped and the drop logged (rate-limited): losing an Event is better than
stalling pod work or growing without bound while the API server is away.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
from typing import Any

from vnode.clock import Clock, rfc3339
from vnode.node.cluster import ApiError, path, request_json

log = logging.getLogger(__name__)

COMPONENT = "vnode"
REPEAT_WINDOW = 600.0
"""Seconds within which an identical event is counted, not created again."""
CACHE_SIZE = 4096
"""Distinct recent events remembered for counting (client-go's LRU holds as many)."""
SIMILAR_LIMIT = 10
"""Different messages for one object and reason within the window before they are
combined into one counted Event (client-go's aggregator does the same, with 10)."""
COMBINED = "(combined from similar events): "
SEND_ATTEMPTS = 3
"""Tries per event when the API server has transient trouble, then it is dropped."""


@dataclasses.dataclass
class _Pending:
    namespace: str
    event: dict[str, Any]
    key: tuple[str, ...]
    at: float  # monotonic time it was recorded


@dataclasses.dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first_timestamp: str
    at: float  # monotonic time of the last occurrence


class EventRecorder:
    """Records Events for objects (pods, the Node) with reporting component ``vnode``.

    Callable as ``recorder(obj, type_, reason, message)``: this matches
    :class:`vnode.provider.EventRecorder`, so it is handed to providers as is.
    """

    def __init__(
        self,
        api_client: Any,
        node_name: str,
        clock: Clock,
        *,
        buffer_size: int = 1000,
        component: str = COMPONENT,
    ) -> None:
        self._api = api_client
        self._node = node_name
        self._clock = clock
        self._component = component
        self._buffer: collections.deque[_Pending] = collections.deque()
        self._buffer_size = buffer_size
        self._wakeup = asyncio.Event()
        self._seen: collections.OrderedDict[tuple[str, ...], _Seen] = collections.OrderedDict()
        # (object, type, reason) -> (distinct messages seen, last time): for combining.
        self._similar: collections.OrderedDict[tuple[str, ...], tuple[set[str], float]] = (
            collections.OrderedDict()
        )
        self._last_nano = 0
        self._busy = False
        self._last_drop_log = -1e18
        self.dropped = 0
        self.sent = 0
        self.failed = 0

    # -- recording (synchronous, never blocks) ----------------------------------------

    def __call__(
        self, obj: Any, type_: str, reason: str, message: str, *, field_path: str = ""
    ) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        obj_namespace = str(meta.get("namespace") or "")
        kind = str(obj.get("kind") or "Pod")
        api_version = str(obj.get("apiVersion") or "v1")
        involved: dict[str, Any] = {"kind": kind}
        if obj_namespace:
            involved["namespace"] = obj_namespace
        involved["name"] = name
        if meta.get("uid"):
            involved["uid"] = meta["uid"]
        involved["apiVersion"] = api_version
        if meta.get("resourceVersion"):
            involved["resourceVersion"] = meta["resourceVersion"]
        if field_path:
            involved["fieldPath"] = field_path
        # Cluster-scoped objects (the Node) get their Events in "default", as client-go does.
        namespace = obj_namespace or "default"
        now = self._clock.now()
        stamp = rfc3339(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{self._nano(now):x}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": self._component, "host": self._node},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": type_,
            "reportingComponent": self._component,
            "reportingInstance": self._node,
        }
        similar = (kind, api_version, namespace, name, str(meta.get("uid") or ""), type_, reason)
        key: tuple[str, ...] = (*similar, field_path, message)
        if self._too_many_similar(similar, message):
            event["message"] = f"{COMBINED}{message}"
            key = (*similar, COMBINED)
        if len(self._buffer) >= self._buffer_size:
            self.dropped += 1
            mono = self._clock.monotonic()
            if mono - self._last_drop_log >= 10.0:
                self._last_drop_log = mono
                log.warning(
                    "event buffer full (%d): dropping %s %s for %s/%s (%d dropped so far)",
                    self._buffer_size,
                    type_,
                    reason,
                    namespace,
                    name,
                    self.dropped,
                )
            return
        self._buffer.append(_Pending(namespace, event, key, self._clock.monotonic()))
        self._wakeup.set()

    def _too_many_similar(self, similar: tuple[str, ...], message: str) -> bool:
        """Whether this is the SIMILAR_LIMIT-th different message for one object and reason
        within the window; from then on they share one combined, counted Event."""
        now = self._clock.monotonic()
        record = self._similar.get(similar)
        if record is None or now - record[1] > REPEAT_WINDOW:
            record = (set(), now)
        messages = record[0]
        if len(messages) < SIMILAR_LIMIT:
            messages.add(message)
        self._similar[similar] = (messages, now)
        self._similar.move_to_end(similar)
        while len(self._similar) > CACHE_SIZE:
            self._similar.popitem(last=False)
        return len(messages) >= SIMILAR_LIMIT

    def _nano(self, now: dt.datetime) -> int:
        """Unix nanoseconds of ``now``, made unique so two events never share a name."""
        nano = int(now.timestamp()) * 1_000_000_000 + now.microsecond * 1000
        nano = max(nano, self._last_nano + 1)
        self._last_nano = nano
        return nano

    @property
    def pending(self) -> int:
        """Events recorded but not sent yet (including the one being sent)."""
        return len(self._buffer) + (1 if self._busy else 0)

    # -- sending (one background task) ------------------------------------------------

    async def run(self) -> None:
        """Send buffered events until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._send_buffered()

    async def flush(self, within: float) -> None:
        """Send what is buffered, giving up after ``within`` seconds (for shutdown)."""
        try:
            await asyncio.wait_for(self._send_buffered(), within)
        except TimeoutError:
            log.warning("shutting down with %d events unsent", self.pending)

    async def _send_buffered(self) -> None:
        while self._buffer:
            item = self._buffer.popleft()
            self._busy = True
            try:
                await self._send(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed += 1
                log.exception("failed to send event %s", item.event["metadata"]["name"])
            finally:
                self._busy = False

    async def _send(self, item: _Pending) -> None:
        seen = self._seen.get(item.key)
        if seen is not None and item.at - seen.at > REPEAT_WINDOW:
            seen = None
        for attempt in range(SEND_ATTEMPTS):
            try:
                if seen is not None:
                    await self._patch_repeat(item, seen)
                else:
                    await self._create(item)
                self.sent += 1
                return
            except ApiError as e:
                if e.retryable and attempt + 1 < SEND_ATTEMPTS:
                    await self._clock.sleep(e.retry_after or 0.5 * 2**attempt)
                    continue
                self.failed += 1
                log.warning(
                    "dropping event %s %s for %s/%s: %s",
                    item.event["type"],
                    item.event["reason"],
                    item.namespace,
                    item.event["involvedObject"]["name"],
                    e,
                )
                return

    async def _create(self, item: _Pending) -> None:
        event = item.event
        try:
            await request_json(
                self._api,
                "POST",
                path("api", "v1", "namespaces", item.namespace, "events"),
                body=event,
            )
        except ApiError as e:
            if not e.conflict:
                raise
            # Already there: a retry of a create whose answer we lost. Count on it.
        self._remember(
            item.key,
            _Seen(
                event["metadata"]["name"],
                item.namespace,
                event["count"],
                event["firstTimestamp"],
                item.at,
            ),
        )

    async def _patch_repeat(self, item: _Pending, seen: _Seen) -> None:
        count = seen.count + 1
        last = item.event["lastTimestamp"]
        patch = {"count": count, "lastTimestamp": last, "message": item.event["message"]}
        try:
            await request_json(
                self._api,
                "PATCH",
                path("api", "v1", "namespaces", seen.namespace, "events", seen.name),
                body=patch,
                content_type="application/strategic-merge-patch+json",
            )
        except ApiError as e:
            if not e.not_found:
                raise
            # The earlier Event expired or was deleted: write it again, count kept.
            event = dict(item.event)
            event["metadata"] = {"name": seen.name, "namespace": seen.namespace}
            event["count"] = count
            event["firstTimestamp"] = seen.first_timestamp
            await request_json(
                self._api,
                "POST",
                path("api", "v1", "namespaces", seen.namespace, "events"),
                body=event,
            )
        self._remember(
            item.key, _Seen(seen.name, seen.namespace, count, seen.first_timestamp, item.at)
        )

    def _remember(self, key: tuple[str, ...], seen: _Seen) -> None:
        self._seen[key] = seen
        self._seen.move_to_end(key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
