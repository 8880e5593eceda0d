"""The node lifecycle controller against a real Store with a FakeClock.

Expected shapes come from ``shared/reference/kube-apiserver/08-leases-node-lifecycle``.
The controller runs on the test's loop; fake time moves in monitor-period steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.waiting import advance, eventually
from vnode.clock import FakeClock, micro_time, rfc3339
from vnode.sandbox.kubeapi import binding, resources
from vnode.sandbox.kubeapi.nodelifecycle import NodeLifecycle
from vnode.sandbox.kubeapi.store import Store

NODES = resources.by_kind("", "Node")
PODS = resources.by_kind("", "Pod")
LEASES = resources.by_kind("coordination.k8s.io", "Lease")
EVENTS = resources.by_kind("", "Event")
GRACE = 10.0  # shortened node-monitor grace period
STARTUP_GRACE = 20.0


@pytest.fixture
async def env() -> AsyncIterator[SimpleNamespace]:
    clock = FakeClock()
    store = Store(clock)
    ctl = NodeLifecycle(
        store, clock, grace_period=GRACE, startup_grace_period=STARTUP_GRACE, orphan_quarantine=10.0
    )
    task = asyncio.create_task(ctl.run())
    for _ in range(5):
        await asyncio.sleep(0)
    yield SimpleNamespace(store=store, clock=clock)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def ready_node(
    store: Store,
    clock: FakeClock,
    name: str,
    *,
    ready: str = "True",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    now = rfc3339(clock.now())
    return store.create(
        NODES,
        "",
        {
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, **(labels or {})},
            },
            "status": {
                "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": ready,
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    },
                    {
                        "type": "MemoryPressure",
                        "status": "False",
                        "reason": "KubeletHasSufficientMemory",
                        "message": "kubelet has sufficient memory available",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    },
                ],
            },
        },
    )


def renew(store: Store, clock: FakeClock, name: str) -> None:
    spec = {
        "holderIdentity": name,
        "leaseDurationSeconds": 40,
        "renewTime": micro_time(clock.now()),
    }
    if store.exists(LEASES, "kube-node-lease", name):
        store.mutate(LEASES, "kube-node-lease", name, lambda lease: lease.__setitem__("spec", spec))
    else:
        store.create(LEASES, "kube-node-lease", {"metadata": {"name": name}, "spec": spec})


def node(store: Store, name: str) -> dict[str, Any]:
    return store.get(NODES, "", name)


def taints(store: Store, name: str) -> list[tuple[str, str]]:
    return [(t["key"], t["effect"]) for t in node(store, name)["spec"].get("taints") or []]


def conditions(store: Store, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in node(store, name)["status"].get("conditions") or []}


def events(store: Store, name: str) -> list[dict[str, Any]]:
    items, _ = store.list(EVENTS, "default")
    return [e for e in items if e["involvedObject"]["name"] == name]


async def test_new_ready_node_is_untainted_annotated_and_registered(env: SimpleNamespace) -> None:
    created = ready_node(
        env.store,
        env.clock,
        "n1",
        labels={"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
    )
    assert created["spec"]["taints"] == [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    ]
    await eventually(lambda: not taints(env.store, "n1"))
    meta = await eventually(
        lambda: (
            node(env.store, "n1")["metadata"]
            if node(env.store, "n1")["metadata"].get("annotations")
            else None
        )
    )
    assert meta["annotations"] == {"node.alpha.kubernetes.io/ttl": "0"}
    assert meta["labels"]["beta.kubernetes.io/os"] == "linux"
    assert meta["labels"]["beta.kubernetes.io/arch"] == "amd64"
    (event,) = await eventually(lambda: events(env.store, "n1"))
    assert event["reason"] == "RegisteredNode"
    assert event["message"] == "Node n1 event: Registered Node n1 in Controller"
    assert event["source"] == {"component": "node-controller"}
    assert event["count"] == 1
    assert event["type"] == "Normal"
    assert event["reportingComponent"] == "node-controller"
    assert event["involvedObject"] == {
        "kind": "Node",
        "name": "n1",
        "uid": created["metadata"]["uid"],
        "apiVersion": "v1",
    }


async def test_not_ready_node_keeps_no_schedule_and_gets_no_execute(env: SimpleNamespace) -> None:
    ready_node(env.store, env.clock, "sick", ready="False")
    await advance(env.clock, 6)
    got = await eventually(
        lambda: taints(env.store, "sick") if len(taints(env.store, "sick")) == 2 else None
    )
    assert set(got) == {
        ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
    }


async def test_unschedulable_spec_gets_its_taint(env: SimpleNamespace) -> None:
    ready_node(env.store, env.clock, "cordoned")
    await eventually(lambda: not taints(env.store, "cordoned"))
    env.store.mutate(NODES, "", "cordoned", lambda n: n["spec"].__setitem__("unschedulable", True))
    await eventually(
        lambda: (
            taints(env.store, "cordoned") == [("node.kubernetes.io/unschedulable", "NoSchedule")]
        )
    )


async def test_lease_expiry_marks_node_unknown_and_pods_not_ready(env: SimpleNamespace) -> None:
    created = ready_node(env.store, env.clock, "stale")
    renew(env.store, env.clock, "stale")
    pod = env.store.create(
        PODS,
        "default",
        {
            "metadata": {"name": "on-stale"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    )
    binding.bind(env.store, env.clock, pod, "stale")
    now = rfc3339(env.clock.now())
    env.store.mutate(
        PODS,
        "default",
        "on-stale",
        lambda p: p["status"].update(
            {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ],
            }
        ),
        subresource="status",
    )
    # Renewals keep it alive well past the grace period.
    for _ in range(4):
        await advance(env.clock, 5)
        renew(env.store, env.clock, "stale")
    assert conditions(env.store, "stale")["Ready"]["status"] == "True"
    # Then the kubelet goes quiet.
    await advance(env.clock, GRACE + 6)
    conds = await eventually(
        lambda: (
            conditions(env.store, "stale")
            if conditions(env.store, "stale")["Ready"]["status"] == "Unknown"
            else None
        )
    )
    assert conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
    assert (
        conds["Ready"]["lastHeartbeatTime"]
        == created["status"]["conditions"][0]["lastHeartbeatTime"]
    )
    assert conds["MemoryPressure"]["reason"] == "NodeStatusUnknown"
    for type_ in ("DiskPressure", "PIDPressure"):
        assert conds[type_]["status"] == "Unknown"
        assert conds[type_]["reason"] == "NodeStatusNeverUpdated"
        assert conds[type_]["message"] == "Kubelet never posted node status."
        assert conds[type_]["lastHeartbeatTime"] == created["metadata"]["creationTimestamp"]
    assert list(conds) == ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
    await eventually(
        lambda: ("node.kubernetes.io/unreachable", "NoSchedule") in taints(env.store, "stale")
    )
    (no_schedule,) = node(env.store, "stale")["spec"]["taints"]
    assert no_schedule["timeAdded"]
    pod_ready = next(
        c
        for c in env.store.get(PODS, "default", "on-stale")["status"]["conditions"]
        if c["type"] == "Ready"
    )
    assert pod_ready["status"] == "False"
    assert "reason" not in pod_ready
    node_events = [e for e in events(env.store, "stale") if e["reason"] == "NodeNotReady"]
    assert node_events[0]["message"] == "Node stale status is now: NodeNotReady"
    (pod_event,) = [e for e in events(env.store, "on-stale") if e["reason"] == "NodeNotReady"]
    assert (pod_event["type"], pod_event["message"]) == ("Warning", "Node is not ready")
    assert pod_event["source"] == {"component": "node-controller"}
    # A monitor period later the NoExecute taint follows.
    await advance(env.clock, 6)
    await eventually(
        lambda: ("node.kubernetes.io/unreachable", "NoExecute") in taints(env.store, "stale")
    )

    # Renewing the lease alone does not bring it back...
    for _ in range(3):
        renew(env.store, env.clock, "stale")
        await advance(env.clock, 5)
    assert conditions(env.store, "stale")["Ready"]["status"] == "Unknown"
    # ...the kubelet posting Ready=True does: NoSchedule at once, NoExecute a tick later.
    stamp = rfc3339(env.clock.now())

    def healthy(n: dict[str, Any]) -> None:
        n["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        ]

    env.store.mutate(NODES, "", "stale", healthy, subresource="status")
    await eventually(
        lambda: taints(env.store, "stale") == [("node.kubernetes.io/unreachable", "NoExecute")]
    )
    await advance(env.clock, 6)
    await eventually(lambda: not taints(env.store, "stale"))


async def test_node_that_never_posted_status(env: SimpleNamespace) -> None:
    created = env.store.create(NODES, "", {"metadata": {"name": "nostatus"}})
    await eventually(lambda: not taints(env.store, "nostatus"))  # no conditions: no taint
    await advance(env.clock, STARTUP_GRACE + 6)
    conds = await eventually(lambda: conditions(env.store, "nostatus"))
    assert list(conds) == ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
    for c in conds.values():
        assert (c["status"], c["reason"]) == ("Unknown", "NodeStatusNeverUpdated")
        assert c["lastHeartbeatTime"] == created["metadata"]["creationTimestamp"]
    assert not [e for e in events(env.store, "nostatus") if e["reason"] == "NodeNotReady"]


async def test_untolerated_no_execute_taint_evicts_after_toleration(env: SimpleNamespace) -> None:
    ready_node(env.store, env.clock, "n1")
    await eventually(lambda: not taints(env.store, "n1"))
    tolerant = env.store.create(
        PODS,
        "default",
        {
            "metadata": {"name": "patient"},
            "spec": {
                "containers": [{"name": "main", "image": "busybox:1.36"}],
                "tolerations": [
                    {
                        "key": "example.com/drain",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 30,
                    }
                ],
            },
        },
    )
    binding.bind(env.store, env.clock, tolerant, "n1")
    plain = env.store.create(
        PODS,
        "default",
        {
            "metadata": {"name": "plain"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    )
    binding.bind(env.store, env.clock, plain, "n1")
    env.store.mutate(
        NODES,
        "",
        "n1",
        lambda n: n["spec"].__setitem__(
            "taints", [{"key": "example.com/drain", "effect": "NoExecute"}]
        ),
    )
    await advance(env.clock, 6)
    gone = await eventually(
        lambda: env.store.get(PODS, "default", "plain")["metadata"].get("deletionTimestamp")
    )
    assert gone
    target = next(
        c
        for c in env.store.get(PODS, "default", "plain")["status"]["conditions"]
        if c["type"] == "DisruptionTarget"
    )
    assert target["reason"] == "DeletionByTaintManager"
    assert not env.store.get(PODS, "default", "patient")["metadata"].get("deletionTimestamp")
    await advance(env.clock, 31)
    await eventually(
        lambda: env.store.get(PODS, "default", "patient")["metadata"].get("deletionTimestamp")
    )


async def test_pods_on_a_deleted_node_are_collected(env: SimpleNamespace) -> None:
    pod = env.store.create(
        PODS,
        "default",
        {
            "metadata": {"name": "orphan"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    )
    binding.bind(env.store, env.clock, pod, "ghost")
    await advance(env.clock, 6)
    assert env.store.exists(PODS, "default", "orphan")  # quarantine first
    await advance(env.clock, 12)
    await eventually(lambda: not env.store.exists(PODS, "default", "orphan"))


async def test_deleting_a_node_removes_its_lease(env: SimpleNamespace) -> None:
    created = ready_node(env.store, env.clock, "leaving")
    env.store.create(
        LEASES,
        "kube-node-lease",
        {
            "metadata": {
                "name": "leaving",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": "leaving",
                        "uid": created["metadata"]["uid"],
                    }
                ],
            },
            "spec": {"holderIdentity": "leaving", "leaseDurationSeconds": 40},
        },
    )
    await eventually(lambda: events(env.store, "leaving"))
    env.store.delete(NODES, "", "leaving")
    await eventually(lambda: not env.store.exists(LEASES, "kube-node-lease", "leaving"))
    reasons = [e["reason"] for e in events(env.store, "leaving")]
    assert reasons == ["RegisteredNode", "RemovingNode"]


# -- end to end: the official client against the sandbox API server -----------------------


def test_e2e_registered_node_loses_not_ready_taint(k8s: Any) -> None:
    from kubernetes import client

    from tests.waiting import wait_for

    v1 = client.CoreV1Api(k8s)
    created = v1.create_node(
        {
            "metadata": {
                "name": "vk",
                "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            },
        }
    )
    assert [(t.key, t.effect) for t in created.spec.taints] == [
        ("node.kubernetes.io/not-ready", "NoSchedule")
    ]
    node = wait_for(
        lambda: (n := v1.read_node("vk")).metadata.annotations and not n.spec.taints and n,
        what="node reconciled",
    )
    assert node.metadata.annotations == {"node.alpha.kubernetes.io/ttl": "0"}
    assert node.metadata.labels["beta.kubernetes.io/arch"] == "amd64"
    events = wait_for(
        lambda: v1.list_namespaced_event("default", field_selector="involvedObject.name=vk").items,
        what="RegisteredNode",
    )
    assert events[0].reason == "RegisteredNode"
    assert events[0].source.component == "node-controller"


@pytest.mark.kubeapi(node_monitor_grace_period=2, node_monitor_period=0.5)
def test_e2e_node_goes_unknown_when_its_lease_stops(k8s: Any) -> None:
    import datetime as dt

    from kubernetes import client

    from tests.waiting import wait_for

    v1 = client.CoreV1Api(k8s)
    coord = client.CoordinationV1Api(k8s)
    node = v1.create_node(
        {
            "metadata": {"name": "quiet"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            },
        }
    )
    coord.create_namespaced_lease(
        "kube-node-lease",
        {
            "metadata": {
                "name": "quiet",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "quiet", "uid": node.metadata.uid}
                ],
            },
            "spec": {
                "holderIdentity": "quiet",
                "leaseDurationSeconds": 40,
                "renewTime": micro_time(dt.datetime.now(dt.UTC)),
            },
        },
    )

    def unknown() -> Any:
        n = v1.read_node("quiet")
        ready = next(c for c in n.status.conditions if c.type == "Ready")
        return n if ready.status == "Unknown" else None

    stale = wait_for(unknown, timeout=20, what="Ready=Unknown")
    ready = next(c for c in stale.status.conditions if c.type == "Ready")
    assert (ready.reason, ready.message) == (
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    taints = wait_for(
        lambda: [
            (t.key, t.effect)
            for t in v1.read_node("quiet").spec.taints or []
            if t.effect == "NoExecute"
        ],
        timeout=20,
        what="NoExecute taint",
    )
    assert taints == [("node.kubernetes.io/unreachable", "NoExecute")]
    v1.delete_node("quiet")
    wait_for(
        lambda: (
            not coord.list_namespaced_lease(
                "kube-node-lease", field_selector="metadata.name=quiet"
            ).items
        ),
        what="lease collected",
    )
