"""A small kube-scheduler: binds pending pods to nodes that can take them.

It schedules pods of ``schedulerName: default-scheduler`` that have no node, no
scheduling gates and are not being deleted, oldest first (higher ``priority`` first),
one at a time against a cache of nodes and bound pods fed by the store's changes. The
rules are in :mod:`fit`; this module is the queue around them, shaped like the real
scheduler's:

- a pod that fits nowhere gets ``PodScheduled=False, reason=Unschedulable`` with the
  real message and a ``FailedScheduling`` event, then waits in an "unschedulable" pool;
- it leaves the pool only when a change could help it (the real scheduler's queueing
  hints: a node added or made schedulable, a taint it could not tolerate removed,
  labels now matching, more allocatable, a bound pod freeing resources or moving its
  (anti-)affinity peers), when the pod itself is edited, or after five minutes, and is
  retried after a per-pod backoff (1 s doubling to 10 s), never in a hot loop;
- success binds through the same code as ``pods/binding`` and records ``Scheduled``.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any

from vnode.clock import Clock, rfc3339
from vnode.sandbox.kubeapi import fit, resources
from vnode.sandbox.kubeapi.binding import bind, set_condition
from vnode.sandbox.kubeapi.recorder import EventsRecorder
from vnode.sandbox.kubeapi.status import StatusError
from vnode.sandbox.kubeapi.wakeup import Wakeup

log = logging.getLogger(__name__)

PODS = resources.by_kind("", "Pod")
NODES = resources.by_kind("", "Node")

SCHEDULER_NAME = "default-scheduler"
MANAGER = "kube-scheduler"
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
# An unschedulable pod no event has woken is retried after this long anyway.
UNSCHEDULABLE_FLUSH = 300.0
# A full re-read of the store, in case a change notification was ever lost.
RESYNC = 60.0

Key = tuple[str, str]
_WATCHED = frozenset({("", "pods"), ("", "nodes")})


@dataclass
class _Queued:
    """Scheduling state of one pending pod."""

    seq: int
    key: Key
    attempts: int = 0
    ready_at: float = 0.0  # end of the current backoff
    parked: bool = False  # in the unschedulable pool, waiting for a helpful change
    parked_at: float = 0.0
    plugins: frozenset[str] = frozenset()
    signature: str = ""


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def _signature(pod: dict[str, Any]) -> str:
    """What a user edit can change that might affect scheduling."""
    meta = pod.get("metadata") or {}
    return json.dumps(
        [pod.get("spec"), meta.get("labels"), meta.get("annotations")], sort_keys=True, default=str
    )


def _pending(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and not spec.get("schedulingGates")  # held back until its gates are removed
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and not fit.is_terminal(pod)
    )


def _placement(pod: dict[str, Any] | None) -> tuple[str, str] | None:
    """Where a live bound pod sits and with which labels (None: not a resident)."""
    if pod is None or fit.is_terminal(pod) or not (pod.get("spec") or {}).get("nodeName"):
        return None
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return pod["spec"]["nodeName"], json.dumps(labels, sort_keys=True)


def _backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF, INITIAL_BACKOFF * 2.0 ** max(0, attempts - 1)))


def _hint(
    plugin: str,
    pod: dict[str, Any],
    old: dict[str, Any] | None,
    new: dict[str, Any],
    usage: fit.NodeUsage,
) -> bool:
    """Whether a node add (``old`` None) or update might let ``pod`` past ``plugin``."""
    if plugin == fit.NODE_UNSCHEDULABLE:
        return fit.check_unschedulable(pod, new) is None and (
            old is None or fit.check_unschedulable(pod, old) is not None
        )
    if plugin == fit.TAINT_TOLERATION:
        return fit.check_taints(pod, new) is None and (
            old is None or fit.check_taints(pod, old) is not None
        )
    if plugin == fit.NODE_AFFINITY:
        return fit.check_affinity(pod, new) is None and (
            old is None or fit.check_affinity(pod, old) is not None
        )
    if plugin == fit.NODE_PORTS:
        return old is None
    if plugin in (fit.INTER_POD_AFFINITY, fit.POD_TOPOLOGY_SPREAD):
        return old is None or (old.get("metadata") or {}).get("labels") != (
            new.get("metadata") or {}
        ).get("labels")
    if plugin == fit.NODE_RESOURCES_FIT:
        request = fit.pod_requests(pod)
        if fit.check_resources(request, new, usage) is not None:
            return False
        if old is None:
            return True
        before, after = fit.allocatable(old), fit.allocatable(new)
        return any(after.get(r, 0) > before.get(r, 0) for r in [*request, "pods"])
    return True


class Scheduler:
    """Schedules pending pods from the store onto its Nodes until cancelled."""

    def __init__(self, store: Any, clock: Clock, *, hostname: str | None = None) -> None:
        self._store = store
        self._clock = clock
        self._events = EventsRecorder(
            store, clock, SCHEDULER_NAME, f"{SCHEDULER_NAME}-{hostname or socket.gethostname()}"
        )
        self._wakeup = Wakeup(store, clock, lambda r: r.storage_key in _WATCHED)
        self._pods: dict[Key, dict[str, Any]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        self._queue: dict[str, _Queued] = {}  # by pod uid
        self._seq = itertools.count()
        self._usage: dict[str, fit.NodeUsage] = {}
        # What each bound, unfinished pod takes, so usage follows changes one pod at a
        # time (summing every pod on every pass would be quadratic).
        self._bound: dict[str, tuple[str, fit.PodParts]] = {}  # uid -> (node, parts)
        self._last_resync = 0.0

    # -- the cache --------------------------------------------------------------------------

    def _resync(self) -> None:
        self._wakeup.drain()  # the listing below supersedes them
        pods, _ = self._store.list(PODS)
        nodes, _ = self._store.list(NODES)
        self._pods = {_key(p): p for p in pods}
        self._nodes = {n["metadata"]["name"]: n for n in nodes}
        self._bound = {}
        self._usage = {}
        for pod in pods:
            self._track(pod["metadata"].get("uid", ""), pod)
        ordered = sorted(
            (p for p in pods if _pending(p)),
            key=lambda p: (
                p["metadata"].get("creationTimestamp", ""),
                int(p["metadata"].get("resourceVersion") or 0),
            ),
        )
        for pod in ordered:
            self._enqueue(pod)
        self._last_resync = self._clock.monotonic()

    def _enqueue(self, pod: dict[str, Any]) -> _Queued:
        uid = pod["metadata"].get("uid", "")
        state = self._queue.get(uid)
        if state is None:
            state = self._queue[uid] = _Queued(
                seq=next(self._seq), key=_key(pod), signature=_signature(pod)
            )
        return state

    def _apply_changes(self) -> None:
        freed = False
        peers_moved = False
        node_changes: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
        for ch in self._wakeup.drain():
            obj = ch.new
            if ch.res.storage_key == ("", "nodes"):
                name = obj["metadata"]["name"]
                if ch.type == "DELETED":
                    self._nodes.pop(name, None)
                else:
                    node_changes.append(
                        (self._nodes.get(name) if ch.type != "ADDED" else None, obj)
                    )
                    self._nodes[name] = obj
                continue
            key = _key(obj)
            before = self._pods.get(key) or ch.old
            self._track(obj["metadata"].get("uid", ""), None if ch.type == "DELETED" else obj)
            if ch.type == "DELETED" or not _pending(obj):
                self._queue.pop(obj["metadata"].get("uid", ""), None)
            if ch.type == "DELETED":
                self._pods.pop(key, None)
            else:
                self._pods[key] = obj
                if _pending(obj):
                    state = self._enqueue(obj)
                    signature = _signature(obj)
                    if signature != state.signature:
                        # Edited by its owner: worth another try whatever rejected it.
                        state.signature = signature
                        state.parked = False
            # A bound pod that goes away or finishes gives its node's resources back.
            if (
                before is not None
                and (before.get("spec") or {}).get("nodeName")
                and not fit.is_terminal(before)
                and (ch.type == "DELETED" or fit.is_terminal(obj))
            ):
                freed = True
            # Bound pods arriving, leaving or relabelled change what affinity sees.
            if _placement(before) != _placement(None if ch.type == "DELETED" else obj):
                peers_moved = True
        if not node_changes and not freed and not peers_moved:
            return
        for state, pod in self._parked():
            if not state.plugins:
                # Rejected by no plugin in particular (no nodes at all): any change may help.
                state.parked = False
                continue
            for old, new in node_changes:
                usage = self._usage.get(new["metadata"]["name"]) or fit.NodeUsage()
                if any(_hint(p, pod, old, new, usage) for p in state.plugins):
                    state.parked = False
                    break
            if freed and state.plugins & {fit.NODE_RESOURCES_FIT, fit.NODE_PORTS}:
                state.parked = False
            if peers_moved and state.plugins & {fit.INTER_POD_AFFINITY, fit.POD_TOPOLOGY_SPREAD}:
                state.parked = False

    def _track(self, uid: str, pod: dict[str, Any] | None) -> None:
        """Account ``pod`` (None: gone) in its node's usage instead of its last state."""
        old = self._bound.pop(uid, None)
        if old is not None:
            self._usage[old[0]].remove_parts(old[1])
        node = (pod.get("spec") or {}).get("nodeName") if pod is not None else None
        if pod is None or not node or fit.is_terminal(pod):
            return
        parts = fit.pod_parts(pod)
        self._bound[uid] = (node, parts)
        self._usage.setdefault(node, fit.NodeUsage()).add_parts(parts)

    def _parked(self) -> list[tuple[_Queued, dict[str, Any]]]:
        return [
            (s, self._pods[s.key]) for s in self._queue.values() if s.parked and s.key in self._pods
        ]

    # -- one pass ----------------------------------------------------------------------------

    def _cycle(self) -> float | None:
        """Try every pod that is due; return when the next one will be (monotonic)."""
        now = self._clock.monotonic()
        # The queue holds exactly the pending pods (kept so by _apply_changes).
        pending: list[tuple[dict[str, Any], _Queued]] = []
        for uid, state in list(self._queue.items()):
            pod = self._pods.get(state.key)
            if pod is None or not _pending(pod) or pod["metadata"].get("uid") != uid:
                del self._queue[uid]
            else:
                pending.append((pod, state))
        pending.sort(key=lambda e: (-int((e[0].get("spec") or {}).get("priority") or 0), e[1].seq))
        nodes = list(self._nodes.values())
        next_at: float | None = None
        for pod, state in pending:
            if state.parked and now - state.parked_at >= UNSCHEDULABLE_FLUSH:
                state.parked = False
            if state.parked:
                due = state.parked_at + UNSCHEDULABLE_FLUSH
            elif state.ready_at > now:
                due = state.ready_at
            else:
                try:
                    if self._attempt(pod, state, nodes, now):
                        continue  # bound
                except Exception:
                    # One malformed pod must not stop everyone else's scheduling.
                    log.exception("scheduling %s/%s failed", *state.key)
                    state.attempts += 1
                    state.ready_at = now + _backoff(state.attempts)
                    state.parked, state.parked_at, state.plugins = True, now, frozenset()
                due = state.parked_at + UNSCHEDULABLE_FLUSH if state.parked else state.ready_at
            if due is not None:
                next_at = due if next_at is None else min(next_at, due)
        return next_at

    def _attempt(
        self, pod: dict[str, Any], state: _Queued, nodes: list[dict[str, Any]], now: float
    ) -> bool:
        """One scheduling attempt; True when the pod was bound."""
        decision = fit.decide(pod, nodes, self._usage)
        name = pod["metadata"]["name"]
        namespace = pod["metadata"]["namespace"]
        if decision.node is not None:
            try:
                bound = bind(self._store, self._clock, pod, decision.node)
            except StatusError as e:
                log.info(
                    "binding %s/%s to %s failed: %s", namespace, name, decision.node, e.message
                )
                state.attempts += 1
                state.ready_at = now + _backoff(state.attempts)
                return False
            self._pods[_key(bound)] = bound
            self._track(bound["metadata"].get("uid", ""), bound)
            self._queue.pop(pod["metadata"].get("uid", ""), None)
            self._events.emit(
                pod,
                "Normal",
                "Scheduled",
                "Binding",
                f"Successfully assigned {namespace}/{name} to {decision.node}",
                manager=MANAGER,
            )
            return True
        state.attempts += 1
        state.ready_at = now + _backoff(state.attempts)
        state.parked = True
        state.parked_at = now
        state.plugins = decision.plugins
        self._mark_unschedulable(pod, decision.message)
        self._events.emit(
            pod, "Warning", "FailedScheduling", "Scheduling", decision.message, manager=MANAGER
        )
        return False

    def _mark_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if (
                c.get("type") == "PodScheduled"
                and c.get("status") == "False"
                and c.get("reason") == "Unschedulable"
                and c.get("message") == message
            ):
                return  # unchanged: no write, so a repeat event can join its series
        now = rfc3339(self._clock.now())
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
        }
        try:
            updated = self._store.mutate(
                PODS,
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                lambda obj: set_condition(obj, condition, now),
                subresource="status",
                manager=MANAGER,
            )
        except StatusError:
            return  # deleted meanwhile
        self._pods[_key(updated)] = updated

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        self._wakeup.start()
        try:
            await self._serve()
        finally:
            self._wakeup.stop()

    async def _serve(self) -> None:
        self._resync()
        while True:
            next_at: float | None = None
            try:
                if self._clock.monotonic() - self._last_resync >= RESYNC:
                    self._resync()
                self._apply_changes()
                next_at = self._cycle()
            except Exception:
                log.exception("scheduling pass failed")
            now = self._clock.monotonic()
            timeout = self._last_resync + RESYNC - now
            if next_at is not None:
                timeout = min(timeout, next_at - now)
            await self._wakeup.wait(max(timeout, 0.01))


async def run(api: Any) -> None:
    """Run the scheduler of ``api`` (a KubeAPI) until cancelled."""
    await Scheduler(api.store, api.clock).run()
