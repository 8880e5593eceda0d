"""Events written by the in-process controllers, shaped like the real components' events.

Two recorders, because the real control plane uses two:

- :class:`EventsRecorder` writes ``events.k8s.io/v1`` Events the way client-go
  ``tools/events`` does (kube-scheduler): ``eventTime`` in microseconds, ``action``,
  ``reportingController``/``reportingInstance``, and an identical repeat (same regarding
  object, resourceVersion included, same note) turns into ``series {count: 2,
  lastObservedTime}`` on the first event instead of a new one.
- :class:`LegacyRecorder` writes ``core/v1`` Events the way ``tools/record`` does
  (kube-controller-manager's controllers): ``source.component``, first/last timestamps
  and ``count``, a repeat bumping ``count``.

Event names are ``<object>.<unix nanoseconds in hex>`` like client-go's.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from vnode.clock import Clock, micro_time, rfc3339
from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.status import StatusError

log = logging.getLogger(__name__)

# How many distinct events each recorder remembers for aggregation (client-go keeps an
# LRU of similar size); older ones simply start a new Event.
_CACHE_SIZE = 4096


def object_reference(obj: Mapping[str, Any], *, with_version: bool = True) -> dict[str, Any]:
    """An ObjectReference in the field order the API server prints."""
    meta = obj.get("metadata") or {}
    ref: dict[str, Any] = {"kind": obj.get("kind", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    ref["name"] = meta.get("name", "")
    if meta.get("uid"):
        ref["uid"] = meta["uid"]
    ref["apiVersion"] = obj.get("apiVersion", "")
    if with_version and meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    return ref


_last_nanos = 0


def _event_name(clock: Clock, obj_name: str) -> str:
    # Real clocks make nanosecond names unique; a fake or coarse clock may not move
    # between two events, so never hand out the same stamp twice.
    global _last_nanos
    now = clock.now()
    nanos = int(now.timestamp()) * 1_000_000_000 + now.microsecond * 1000
    nanos = max(nanos, _last_nanos + 1)
    _last_nanos = nanos
    return f"{obj_name}.{nanos:x}"


class EventsRecorder:
    """``events.k8s.io/v1`` events from one controller instance (tools/events style)."""

    def __init__(self, store: Any, clock: Clock, controller: str, instance: str) -> None:
        self._store = store
        self._clock = clock
        self._controller = controller
        self._instance = instance
        self._res = resources.by_kind("events.k8s.io", "Event")
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()

    def emit(
        self,
        regarding: Mapping[str, Any],
        type_: str,
        reason: str,
        action: str,
        note: str,
        *,
        manager: str,
    ) -> None:
        ref = object_reference(regarding)
        key = (
            repr(sorted(ref.items())),
            type_,
            reason,
            action,
            note,
            self._controller,
        )
        namespace = ref.get("namespace") or "default"
        cached = self._seen.get(key)
        if cached is not None:
            ns, name, count = cached
            count += 1
            self._seen[key] = (ns, name, count)
            self._seen.move_to_end(key)
            if count == 2:
                # client-go writes the series once, when it starts; later repeats only
                # bump its in-memory count.
                series = {"count": 2, "lastObservedTime": micro_time(self._clock.now())}
                try:
                    self._store.mutate(
                        self._res, ns, name, lambda ev: ev.__setitem__("series", series)
                    )
                    return
                except StatusError:
                    pass  # deleted meanwhile: record a fresh one
            else:
                return
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": _event_name(self._clock, ref["name"]), "namespace": namespace},
            "eventTime": micro_time(self._clock.now()),
            "reportingController": self._controller,
            "reportingInstance": self._instance,
            "action": action,
            "reason": reason,
            "regarding": ref,
            "note": note,
            "type": type_,
        }
        try:
            created = self._store.create(self._res, namespace, event, manager=manager)
        except StatusError as e:
            log.warning("could not record event %s for %s: %s", reason, ref["name"], e.message)
            return
        self._seen[key] = (namespace, created["metadata"]["name"], 1)
        while len(self._seen) > _CACHE_SIZE:
            self._seen.popitem(last=False)


class LegacyRecorder:
    """``core/v1`` events from one component (tools/record style)."""

    def __init__(self, store: Any, clock: Clock, component: str) -> None:
        self._store = store
        self._clock = clock
        self._component = component
        self._res = resources.by_kind("", "Event")
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()

    def emit(
        self,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        with_version: bool = True,
    ) -> None:
        ref = object_reference(involved, with_version=with_version)
        namespace = ref.get("namespace") or "default"
        now = rfc3339(self._clock.now())
        key = (repr(sorted(ref.items())), type_, reason, message)
        cached = self._seen.get(key)
        if cached is not None:
            ns, name, count = cached
            count += 1

            def bump(ev: dict[str, Any]) -> None:
                ev["count"] = count
                ev["lastTimestamp"] = now

            try:
                self._store.mutate(self._res, ns, name, bump)
                self._seen[key] = (ns, name, count)
                self._seen.move_to_end(key)
                return
            except StatusError:
                pass  # deleted meanwhile: record a fresh one
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": _event_name(self._clock, ref["name"]), "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": self._component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": self._component,
            "reportingInstance": "",
        }
        try:
            created = self._store.create(
                self._res, namespace, event, manager="kube-controller-manager"
            )
        except StatusError as e:
            log.warning("could not record event %s for %s: %s", reason, ref["name"], e.message)
            return
        self._seen[key] = (namespace, created["metadata"]["name"], 1)
        while len(self._seen) > _CACHE_SIZE:
            self._seen.popitem(last=False)
