"""What kube-controller-manager does to Nodes and to the pods on them.

Reference: ``08-leases-node-lifecycle`` and fact D6/E5. For every Node this controller

- keeps the ``NoSchedule`` taints in step with the conditions (``not-ready`` while
  Ready=False, ``unreachable`` while Unknown, the pressure taints, ``unschedulable``),
  so a new Node loses the admission's ``not-ready`` taint once it is Ready;
- sets the TTL annotation and copies ``kubernetes.io/{os,arch}`` to the beta labels;
- records ``RegisteredNode`` / ``RemovingNode``;
- watches the kubelet's Lease in ``kube-node-lease`` and the Ready heartbeat: when
  neither moved for the grace period (40 s, 60 s for a Node that never posted status),
  the conditions become ``Unknown`` with the real reasons, the pods on it get
  ``Ready=False`` and events, and a monitor period later the ``NoExecute`` taint
  follows. Only the kubelet posting ``Ready=True`` brings the Node back.

It also evicts pods from ``NoExecute`` taints they do not tolerate (after their
``tolerationSeconds``), force-deletes pods bound to Nodes that no longer exist (the
pod garbage collector) and deletes a deleted Node's Lease (the garbage collector), so
nothing lingers in the sandbox that would not in a real cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from vnode.clock import Clock, rfc3339
from vnode.sandbox.kubeapi import fit, resources
from vnode.sandbox.kubeapi.binding import set_condition
from vnode.sandbox.kubeapi.objcache import ObjectCache
from vnode.sandbox.kubeapi.recorder import LegacyRecorder
from vnode.sandbox.kubeapi.status import StatusError
from vnode.sandbox.kubeapi.wakeup import Change, Wakeup

log = logging.getLogger(__name__)

NODES = resources.by_kind("", "Node")
PODS = resources.by_kind("", "Pod")
LEASES = resources.by_kind("coordination.k8s.io", "Lease")
LEASE_NAMESPACE = "kube-node-lease"

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
# Condition (type, status) -> the NoSchedule taint it brings (TaintNodesByCondition).
_CONDITION_TAINTS = {
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
}
_MANAGED_NO_SCHEDULE = {*_CONDITION_TAINTS.values(), fit.UNSCHEDULABLE_TAINT}
# The conditions the controller turns Unknown when the kubelet goes quiet, in order.
_WATCHED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
_BETA_LABELS = {
    "kubernetes.io/os": "beta.kubernetes.io/os",
    "kubernetes.io/arch": "beta.kubernetes.io/arch",
}
TTL_ANNOTATION = "node.alpha.kubernetes.io/ttl"
_WATCHED = frozenset({("", "nodes"), ("", "pods"), ("coordination.k8s.io", "leases")})


@dataclasses.dataclass
class _Health:
    probe: float  # monotonic time of the last sign of life
    heartbeat: str | None  # Ready.lastHeartbeatTime last seen
    renew: str | None = None  # Lease renewTime last seen


def _condition(node: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def _heartbeat(node: dict[str, Any]) -> str | None:
    ready = _condition(node, "Ready")
    return None if ready is None else (ready.get("lastHeartbeatTime") or ready.get("status"))


def desired_no_schedule(node: dict[str, Any]) -> set[str]:
    """The controller-owned NoSchedule taint keys the Node should carry now."""
    keys = {
        taint
        for (type_, status), taint in _CONDITION_TAINTS.items()
        if (c := _condition(node, type_)) is not None and c.get("status") == status
    }
    if (node.get("spec") or {}).get("unschedulable"):
        keys.add(fit.UNSCHEDULABLE_TAINT)
    return keys


def desired_no_execute(node: dict[str, Any]) -> str | None:
    ready = _condition(node, "Ready")
    status = None if ready is None else ready.get("status")
    return {"False": NOT_READY, "Unknown": UNREACHABLE}.get(status or "")


class NodeLifecycle:
    """The node lifecycle controller; ``grace_period`` is kube-controller-manager's
    ``--node-monitor-grace-period`` (40 s on the reference cluster)."""

    def __init__(
        self,
        store: Any,
        clock: Clock,
        *,
        grace_period: float = 40.0,
        startup_grace_period: float = 60.0,
        monitor_period: float = 5.0,
        orphan_quarantine: float = 40.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self.grace_period = grace_period
        self.startup_grace_period = startup_grace_period
        self.monitor_period = monitor_period
        self.orphan_quarantine = orphan_quarantine
        self._events = LegacyRecorder(store, clock, "node-controller")
        self._taint_events = LegacyRecorder(store, clock, "taint-eviction-controller")
        self._health: dict[str, _Health] = {}
        self._eviction_start: dict[str, float] = {}  # pod uid -> when its taints appeared
        self._orphan_since: dict[str, float] = {}  # pod uid -> when its node was missing
        self._pods = ObjectCache()  # read by the monitor without copying every pod
        self._wakeup = Wakeup(store, clock, lambda r: r.storage_key in _WATCHED)

    # -- observation -------------------------------------------------------------------

    def _register(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        self._health[name] = _Health(self._clock.monotonic(), _heartbeat(node))
        self._events.emit(
            node,
            "Normal",
            "RegisteredNode",
            f"Node {name} event: Registered Node {name} in Controller",
            with_version=False,
        )

    def _observe(self, changes: list[Change]) -> set[str]:
        """Update liveness from the changes; return the Nodes to re-sync."""
        touched: set[str] = set()
        now = self._clock.monotonic()
        for ch in changes:
            if ch.res.storage_key == ("", "pods"):
                self._pods.apply(ch)
                continue
            if ch.res.storage_key == ("coordination.k8s.io", "leases"):
                meta = ch.new.get("metadata") or {}
                health = self._health.get(meta.get("name", ""))
                renew = (ch.new.get("spec") or {}).get("renewTime")
                if (
                    ch.type != "DELETED"
                    and meta.get("namespace") == LEASE_NAMESPACE
                    and health is not None
                    and renew != health.renew
                ):
                    health.renew = renew
                    health.probe = now
                continue
            name = ch.new["metadata"]["name"]
            if ch.type == "DELETED":
                if self._health.pop(name, None) is not None:
                    self._events.emit(
                        ch.new,
                        "Normal",
                        "RemovingNode",
                        f"Node {name} event: Removing Node {name} from Controller",
                        with_version=False,
                    )
                self._collect_lease(ch.new)
                continue
            health = self._health.get(name)
            if health is None:
                self._register(ch.new)
            elif _heartbeat(ch.new) != health.heartbeat:
                health.heartbeat = _heartbeat(ch.new)
                health.probe = now
            touched.add(name)
        return touched

    def _collect_lease(self, node: dict[str, Any]) -> None:
        """The garbage collector's part: a deleted Node's Lease (owned by it) goes too."""
        name, uid = node["metadata"]["name"], node["metadata"].get("uid")
        try:
            lease = self._store.get(LEASES, LEASE_NAMESPACE, name)
        except StatusError:
            return
        owners = (lease.get("metadata") or {}).get("ownerReferences") or []
        if any(o.get("kind") == "Node" and o.get("uid") == uid for o in owners):
            with contextlib.suppress(StatusError):
                self._store.delete(LEASES, LEASE_NAMESPACE, name)

    # -- per-node reconciliation -------------------------------------------------------

    def _sync_node(self, name: str) -> None:
        """NoSchedule taints from conditions, then the TTL annotation and beta labels."""
        try:
            node = self._store.get(NODES, "", name)
        except StatusError:
            return
        want = desired_no_schedule(node)
        taints = list((node.get("spec") or {}).get("taints") or [])
        kept = [
            t
            for t in taints
            if not (
                t.get("effect") == "NoSchedule"
                and t.get("key") in _MANAGED_NO_SCHEDULE
                and t.get("key") not in want
            )
        ]
        have = {t.get("key") for t in kept if t.get("effect") == "NoSchedule"}
        now = rfc3339(self._clock.now())
        added = [{"key": k, "effect": "NoSchedule", "timeAdded": now} for k in sorted(want - have)]
        if added or len(kept) != len(taints):
            self._set_taints(name, kept + added)
        labels = dict((node.get("metadata") or {}).get("labels") or {})
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        for stable, beta in _BETA_LABELS.items():
            if stable in labels and labels.get(beta) != labels[stable]:
                labels[beta] = labels[stable]
        if annotations.get(TTL_ANNOTATION) != "0" or labels != (
            node["metadata"].get("labels") or {}
        ):

            def meta(obj: dict[str, Any]) -> None:
                obj["metadata"].setdefault("annotations", {})[TTL_ANNOTATION] = "0"
                if labels:
                    obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **labels}

            self._mutate_node(name, meta)

    def _set_taints(self, name: str, taints: list[dict[str, Any]]) -> None:
        def apply(obj: dict[str, Any]) -> None:
            spec = obj.setdefault("spec", {})
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)

        self._mutate_node(name, apply)

    def _mutate_node(
        self, name: str, fn: Callable[[dict[str, Any]], None], subresource: str | None = None
    ) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._store.mutate(
                NODES, "", name, fn, subresource=subresource
            )
            return result
        except StatusError as e:
            log.debug("node %s changed under us: %s", name, e.message)
            return None

    # -- the monitor -------------------------------------------------------------------

    def _monitor(self) -> None:
        # The NoExecute taints follow the conditions as they were at the previous tick,
        # so they trail the NoSchedule ones by a monitor period, as on a real cluster.
        nodes, _ = self._store.list(NODES)
        for node in nodes:
            self._sync_no_execute(node)
        nodes, _ = self._store.list(NODES)
        pods = list(self._pods)
        by_node: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                by_node.setdefault(node_name, []).append(pod)
        for node in nodes:
            name = node["metadata"]["name"]
            if name not in self._health:
                self._register(node)
            self._check_health(node, by_node.get(name, []))
        nodes, _ = self._store.list(NODES)
        self._evict_untolerated({n["metadata"]["name"]: n for n in nodes}, by_node)
        self._collect_orphans({n["metadata"]["name"] for n in nodes}, pods)

    def _check_health(self, node: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        name = node["metadata"]["name"]
        health = self._health[name]
        ready = _condition(node, "Ready")
        grace = self.startup_grace_period if ready is None else self.grace_period
        if self._clock.monotonic() - health.probe <= grace:
            return
        created = node["metadata"].get("creationTimestamp")
        now = rfc3339(self._clock.now())
        was_ready = ready is not None and ready.get("status") == "True"

        def unknown(obj: dict[str, Any]) -> None:
            conditions = obj.setdefault("status", {}).setdefault("conditions", [])
            present = {c.get("type") for c in conditions}
            for c in conditions:
                if c.get("type") in _WATCHED_CONDITIONS and c.get("status") != "Unknown":
                    c["status"] = "Unknown"
                    c["reason"] = "NodeStatusUnknown"
                    c["message"] = "Kubelet stopped posting node status."
                    c["lastTransitionTime"] = now
            for type_ in _WATCHED_CONDITIONS:
                if type_ not in present:
                    conditions.append(
                        {
                            "type": type_,
                            "status": "Unknown",
                            "lastHeartbeatTime": created,
                            "lastTransitionTime": now,
                            "reason": "NodeStatusNeverUpdated",
                            "message": "Kubelet never posted node status.",
                        }
                    )

        stale = [
            c
            for c in (node.get("status") or {}).get("conditions") or []
            if c.get("type") in _WATCHED_CONDITIONS and c.get("status") != "Unknown"
        ]
        present = {c.get("type") for c in (node.get("status") or {}).get("conditions") or []}
        if not stale and present.issuperset(_WATCHED_CONDITIONS):
            return
        updated = self._mutate_node(name, unknown, subresource="status")
        if updated is None:
            return
        health.heartbeat = _heartbeat(updated)  # our own write is no sign of life
        if was_ready:
            self._events.emit(
                node,
                "Normal",
                "NodeNotReady",
                f"Node {name} status is now: NodeNotReady",
                with_version=False,
            )
            self._mark_pods_not_ready(pods)

    def _mark_pods_not_ready(self, pods: list[dict[str, Any]]) -> None:
        now = rfc3339(self._clock.now())
        for pod in pods:
            ready = next(
                (
                    c
                    for c in (pod.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready"
                ),
                None,
            )
            if ready is None or ready.get("status") == "False":
                continue
            condition = {k: v for k, v in ready.items() if k in ("reason", "message")}
            condition.update({"type": "Ready", "status": "False"})
            try:
                self._store.mutate(
                    PODS,
                    pod["metadata"]["namespace"],
                    pod["metadata"]["name"],
                    lambda obj, c=condition: set_condition(obj, c, now),
                    subresource="status",
                )
            except StatusError:
                continue
            self._events.emit(pod, "Warning", "NodeNotReady", "Node is not ready")

    def _sync_no_execute(self, node: dict[str, Any]) -> None:
        want = desired_no_execute(node)
        taints = list((node.get("spec") or {}).get("taints") or [])
        ours = [
            t
            for t in taints
            if t.get("effect") == "NoExecute" and t.get("key") in (NOT_READY, UNREACHABLE)
        ]
        if [t.get("key") for t in ours] == ([want] if want else []):
            return
        kept = [t for t in taints if t not in ours]
        if want:
            kept.append(
                {"key": want, "effect": "NoExecute", "timeAdded": rfc3339(self._clock.now())}
            )
        self._set_taints(node["metadata"]["name"], kept)

    def _evict_untolerated(
        self, nodes: dict[str, dict[str, Any]], by_node: dict[str, list[dict[str, Any]]]
    ) -> None:
        """Delete pods whose NoExecute taints outlived their tolerations."""
        now = self._clock.monotonic()
        seen: set[str] = set()
        for name, pods in by_node.items():
            node = nodes.get(name)
            if node is None:
                continue
            taints = [
                t
                for t in (node.get("spec") or {}).get("taints") or []
                if t.get("effect") == "NoExecute"
            ]
            if not taints:
                continue
            for pod in pods:
                if pod["metadata"].get("deletionTimestamp") or fit.is_terminal(pod):
                    continue
                uid = pod["metadata"].get("uid", "")
                delay = self._toleration_window(pod, taints)
                if delay is None:
                    continue
                seen.add(uid)
                start = self._eviction_start.setdefault(uid, now)
                if now - start >= delay:
                    self._evict(pod)
        for uid in [u for u in self._eviction_start if u not in seen]:
            del self._eviction_start[uid]

    @staticmethod
    def _toleration_window(pod: dict[str, Any], taints: list[dict[str, Any]]) -> float | None:
        """Seconds the pod may stay with these taints; None for ever."""
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        used = []
        for taint in taints:
            matching = [t for t in tolerations if fit.tolerates(t, taint)]
            if not matching:
                return 0.0
            used.extend(matching)
        limits = [
            t["tolerationSeconds"] for t in used if isinstance(t.get("tolerationSeconds"), int)
        ]
        if not limits:
            return None
        return float(max(0, min(limits)))

    def _evict(self, pod: dict[str, Any]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = rfc3339(self._clock.now())
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
        }
        try:
            self._store.mutate(
                PODS, ns, name, lambda obj: set_condition(obj, condition, now), subresource="status"
            )
            self._store.delete(PODS, ns, name)
        except StatusError:
            return
        self._taint_events.emit(
            pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}"
        )

    def _collect_orphans(self, node_names: set[str], pods: list[dict[str, Any]]) -> None:
        """Force-delete pods bound to Nodes that are gone, after a quarantine."""
        now = self._clock.monotonic()
        orphans = set()
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name or node_name in node_names:
                continue
            uid = pod["metadata"].get("uid", "")
            orphans.add(uid)
            since = self._orphan_since.setdefault(uid, now)
            if now - since < self.orphan_quarantine:
                continue
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            stamp = rfc3339(self._clock.now())

            def fail(obj: dict[str, Any], stamp: str = stamp) -> None:
                if not fit.is_terminal(obj):
                    obj.setdefault("status", {})["phase"] = "Failed"
                set_condition(
                    obj,
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByPodGC",
                        "message": "PodGC: node no longer exists",
                    },
                    stamp,
                )

            try:
                self._store.mutate(PODS, ns, name, fail, subresource="status")
                self._store.delete(PODS, ns, name, grace_period_seconds=0)
            except StatusError:
                pass
        for uid in [u for u in self._orphan_since if u not in orphans]:
            del self._orphan_since[uid]

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        self._wakeup.start()
        try:
            await self._serve()
        finally:
            self._wakeup.stop()

    async def _serve(self) -> None:
        self._pods.reset(self._store.list(PODS)[0])
        nodes, _ = self._store.list(NODES)
        for node in nodes:
            self._register(node)
            self._sync_node(node["metadata"]["name"])
        next_monitor = self._clock.monotonic() + self.monitor_period
        while True:
            try:
                for name in self._observe(self._wakeup.drain()):
                    try:
                        self._sync_node(name)
                    except Exception:
                        log.exception("syncing node %s failed", name)
                if self._clock.monotonic() >= next_monitor:
                    next_monitor = self._clock.monotonic() + self.monitor_period
                    self._monitor()
            except Exception:
                log.exception("node lifecycle pass failed")
            await self._wakeup.wait(next_monitor - self._clock.monotonic())


def _seconds(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


async def run(api: Any) -> None:
    """Run the node lifecycle controller of ``api`` (a KubeAPI) until cancelled.

    ``api.node_monitor_grace_period`` (seconds, default 40 as on the reference cluster)
    and ``api.node_startup_grace_period`` (default 60) may shorten the waits for tests.
    """
    await NodeLifecycle(
        api.store,
        api.clock,
        grace_period=_seconds(getattr(api, "node_monitor_grace_period", None), 40.0),
        startup_grace_period=_seconds(getattr(api, "node_startup_grace_period", None), 60.0),
        monitor_period=_seconds(getattr(api, "node_monitor_period", None), 5.0),
    ).run()
