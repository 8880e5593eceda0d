"""The scheduler controller and pods/binding against a real Store with a FakeClock.

The scheduler runs as a task on the test's loop; tests wait for the outcome with a
deadline and move the fake clock to get past backoffs, never sleeping to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.waiting import eventually
from vnode.clock import FakeClock
from vnode.sandbox.kubeapi import binding, resources, scheduler
from vnode.sandbox.kubeapi.status import StatusError
from vnode.sandbox.kubeapi.store import Store

PODS = resources.by_kind("", "Pod")
NODES = resources.by_kind("", "Node")
EVENTS = resources.by_kind("events.k8s.io", "Event")
CORE_EVENTS = resources.by_kind("", "Event")
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
DEDICATED = {"key": "example.com/dedicated", "value": "special", "effect": "NoSchedule"}


async def settle(clock: FakeClock) -> None:
    """Let the controller finish reacting to what just happened."""
    for _ in range(20):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float, step: float = 5.0) -> None:
    """Move fake time in steps, letting the controller re-arm its timers in between."""
    while seconds > 0:
        await clock.advance(min(step, seconds))
        seconds -= step
        await settle(clock)


@pytest.fixture
async def env() -> AsyncIterator[SimpleNamespace]:
    clock = FakeClock()
    store = Store(clock)
    sched = scheduler.Scheduler(store, clock, hostname="vm")
    task = asyncio.create_task(sched.run())
    yield SimpleNamespace(store=store, clock=clock, scheduler=sched)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def add_node(
    store: Store,
    name: str,
    *,
    cpu: str = "4",
    pods: str = "110",
    taints: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    store.create(
        NODES,
        "",
        {
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, **(labels or {})},
            },
            "status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": pods},
                "capacity": {"cpu": cpu, "memory": "8Gi", "pods": pods},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        },
    )
    # The lifecycle controller would drop the admission's not-ready taint once Ready; here
    # the test sets exactly the taints it wants.
    return store.mutate(NODES, "", name, lambda n: n["spec"].__setitem__("taints", taints or []))


def add_pod(store: Store, name: str, *, cpu: str | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    return store.create(
        PODS, "default", {"metadata": {"name": name}, "spec": {"containers": [container], **spec}}
    )


def get_pod(store: Store, name: str) -> dict[str, Any]:
    return store.get(PODS, "default", name)


def scheduled(store: Store, name: str) -> dict[str, Any] | None:
    for c in get_pod(store, name).get("status", {}).get("conditions") or []:
        if c["type"] == "PodScheduled":
            return c
    return None


def events_for(store: Store, name: str, res: resources.Resource = EVENTS) -> list[dict[str, Any]]:
    items, _ = store.list(res, "default")
    key = "regarding" if res is EVENTS else "involvedObject"
    return [e for e in items if e[key]["name"] == name]


async def test_binds_pod_and_records_scheduled(env: SimpleNamespace) -> None:
    add_node(env.store, "ref-kubelet-node")
    created = add_pod(env.store, "ref-s-ok")
    await eventually(lambda: get_pod(env.store, "ref-s-ok")["spec"].get("nodeName"))
    pod = get_pod(env.store, "ref-s-ok")
    assert pod["spec"]["nodeName"] == "ref-kubelet-node"
    assert pod["status"]["conditions"] == [
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": pod["status"]["conditions"][0]["lastTransitionTime"],
        }
    ]
    assert pod["metadata"]["generation"] == 1
    (event,) = await eventually(lambda: events_for(env.store, "ref-s-ok"))
    assert event["reason"] == "Scheduled"
    assert event["action"] == "Binding"
    assert event["type"] == "Normal"
    assert event["note"] == "Successfully assigned default/ref-s-ok to ref-kubelet-node"
    assert event["reportingController"] == "default-scheduler"
    assert event["reportingInstance"] == "default-scheduler-vm"
    assert MICRO.match(event["eventTime"])
    assert event["regarding"] == {
        "kind": "Pod",
        "namespace": "default",
        "name": "ref-s-ok",
        "uid": created["metadata"]["uid"],
        "apiVersion": "v1",
        "resourceVersion": created["metadata"]["resourceVersion"],
    }
    assert event["metadata"]["name"].startswith("ref-s-ok.")


async def test_untolerated_taint_marks_unschedulable_with_event(env: SimpleNamespace) -> None:
    add_node(env.store, "ref-kubelet-node", taints=[DEDICATED])
    add_pod(env.store, "ref-s-taint")
    cond = await eventually(lambda: scheduled(env.store, "ref-s-taint"))
    message = (
        "0/1 nodes are available: 1 node(s) had untolerated taint {example.com/dedicated: "
        "special}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for "
        "scheduling."
    )
    assert cond == {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": cond["lastTransitionTime"],
        "reason": "Unschedulable",
        "message": message,
    }
    (event,) = await eventually(lambda: events_for(env.store, "ref-s-taint"))
    assert (event["reason"], event["action"], event["type"], event["note"]) == (
        "FailedScheduling",
        "Scheduling",
        "Warning",
        message,
    )
    (core,) = events_for(env.store, "ref-s-taint", CORE_EVENTS)
    assert core["message"] == message
    assert core["source"] == {}
    assert core.get("count") is None
    assert core.get("firstTimestamp") is None


async def test_tolerated_taint_and_node_selector(env: SimpleNamespace) -> None:
    add_node(env.store, "tainted", taints=[DEDICATED])
    add_node(env.store, "plain", labels={"disktype": "hdd"})
    tol = [
        {
            "key": "example.com/dedicated",
            "operator": "Equal",
            "value": "special",
            "effect": "NoSchedule",
        }
    ]
    add_pod(
        env.store, "tolerant", tolerations=tol, nodeSelector={"kubernetes.io/hostname": "tainted"}
    )
    add_pod(env.store, "picky", nodeSelector={"disktype": "ssd"})
    await eventually(lambda: get_pod(env.store, "tolerant")["spec"].get("nodeName") == "tainted")
    cond = await eventually(lambda: scheduled(env.store, "picky"))
    assert cond["message"] == (
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) "
        "had untolerated taint {example.com/dedicated: special}. preemption: 0/2 nodes are "
        "available: 2 Preemption is not helpful for scheduling."
    )


async def test_retries_when_node_becomes_ready(env: SimpleNamespace) -> None:
    add_node(
        env.store, "n1", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]
    )
    add_pod(env.store, "waiting")
    cond = await eventually(lambda: scheduled(env.store, "waiting"))
    assert "{node.kubernetes.io/not-ready: }" in cond["message"]
    env.store.mutate(NODES, "", "n1", lambda n: n["spec"].__setitem__("taints", []))
    await settle(env.clock)
    await env.clock.advance(1.0)  # past the first backoff
    await eventually(lambda: get_pod(env.store, "waiting")["spec"].get("nodeName") == "n1")
    assert scheduled(env.store, "waiting")["status"] == "True"


async def test_label_change_does_not_retry_taint_failure(env: SimpleNamespace) -> None:
    # 02-ref-s-taint.after-retries: label updates cannot fix a taint, so no new attempt.
    add_node(env.store, "n1", taints=[DEDICATED])
    add_pod(env.store, "stuck")
    await eventually(lambda: events_for(env.store, "stuck"))
    for i in range(3):
        env.store.mutate(
            NODES, "", "n1", lambda n, i=i: n["metadata"]["labels"].__setitem__("x", str(i))
        )
        await settle(env.clock)
        await env.clock.advance(11.0)
    await settle(env.clock)
    (event,) = events_for(env.store, "stuck")
    assert "series" not in event or event["series"] is None


async def test_identical_repeat_becomes_a_series(env: SimpleNamespace) -> None:
    # 05-ref-s-series: a repeat joins the cached event only if the regarding object is
    # identical, resourceVersion included. The first attempt rewrites the condition (new
    # rv), so the second attempt starts a new event and the third joins it as a series.
    add_node(env.store, "n1", cpu="1")
    add_pod(env.store, "big", cpu="100")
    await eventually(lambda: events_for(env.store, "big"))
    # Nothing helps the pod; the unschedulable pool is flushed every five minutes.
    await advance(env.clock, scheduler.UNSCHEDULABLE_FLUSH + 1)
    await eventually(lambda: len(events_for(env.store, "big")) == 2)
    rv = get_pod(env.store, "big")["metadata"]["resourceVersion"]
    await advance(env.clock, scheduler.UNSCHEDULABLE_FLUSH + 1)
    (event,) = await eventually(
        lambda: [e for e in events_for(env.store, "big") if e.get("series")]
    )
    assert event["series"]["count"] == 2
    assert MICRO.match(event["series"]["lastObservedTime"])
    assert event["regarding"]["resourceVersion"] == rv
    assert get_pod(env.store, "big")["metadata"]["resourceVersion"] == rv  # no rewrite
    assert len(events_for(env.store, "big")) == 2


async def test_freed_resources_let_a_waiting_pod_in(env: SimpleNamespace) -> None:
    add_node(env.store, "n1", cpu="2")
    add_pod(env.store, "first", cpu="1500m")
    await eventually(lambda: get_pod(env.store, "first")["spec"].get("nodeName"))
    add_pod(env.store, "second", cpu="1")
    cond = await eventually(lambda: scheduled(env.store, "second"))
    assert cond["message"].startswith("0/1 nodes are available: 1 Insufficient cpu.")
    env.store.mutate(
        PODS,
        "default",
        "first",
        lambda p: p["status"].__setitem__("phase", "Succeeded"),
        subresource="status",
    )
    await settle(env.clock)
    await env.clock.advance(1.0)
    await eventually(lambda: get_pod(env.store, "second")["spec"].get("nodeName") == "n1")


async def test_binds_in_creation_order_until_full(env: SimpleNamespace) -> None:
    add_node(env.store, "n1", pods="2")
    for name in ("p1", "p2", "p3"):
        add_pod(env.store, name)
    cond = await eventually(
        lambda: scheduled(env.store, "p3") if scheduled(env.store, "p2") else None
    )
    assert cond["status"] == "False"
    assert cond["message"].startswith("0/1 nodes are available: 1 Too many pods.")
    assert get_pod(env.store, "p1")["spec"]["nodeName"] == "n1"
    assert get_pod(env.store, "p2")["spec"]["nodeName"] == "n1"


async def test_spreads_over_least_allocated_nodes(env: SimpleNamespace) -> None:
    add_node(env.store, "a")
    add_node(env.store, "b")
    add_pod(env.store, "x", cpu="2")
    add_pod(env.store, "y", cpu="2")
    await eventually(lambda: get_pod(env.store, "y")["spec"].get("nodeName"))
    assert {
        get_pod(env.store, "x")["spec"]["nodeName"],
        get_pod(env.store, "y")["spec"]["nodeName"],
    } == {"a", "b"}


async def test_ignores_other_schedulers_and_deleting_pods(env: SimpleNamespace) -> None:
    add_node(env.store, "n1")
    add_pod(env.store, "custom", schedulerName="ref-custom-scheduler")
    add_pod(env.store, "normal")
    await eventually(lambda: get_pod(env.store, "normal")["spec"].get("nodeName"))
    await settle(env.clock)
    assert not get_pod(env.store, "custom")["spec"].get("nodeName")
    assert not events_for(env.store, "custom")


async def test_scheduling_gates_hold_a_pod_back(env: SimpleNamespace) -> None:
    add_node(env.store, "n1")
    add_pod(env.store, "gated", schedulingGates=[{"name": "example.com/quota"}])
    add_pod(env.store, "free")
    await eventually(lambda: get_pod(env.store, "free")["spec"].get("nodeName"))
    assert not get_pod(env.store, "gated")["spec"].get("nodeName")
    assert not events_for(env.store, "gated")
    assert scheduler._pending(get_pod(env.store, "free")) is False  # bound now
    ungated = dict(get_pod(env.store, "gated"))
    ungated["spec"] = {k: v for k, v in ungated["spec"].items() if k != "schedulingGates"}
    assert scheduler._pending(ungated)


async def test_a_malformed_pod_does_not_block_the_others(env: SimpleNamespace) -> None:
    add_node(env.store, "n1")
    add_pod(env.store, "broken", nodeSelector="not-a-map")
    add_pod(env.store, "fine")
    await eventually(lambda: get_pod(env.store, "fine")["spec"].get("nodeName") == "n1")
    assert not get_pod(env.store, "broken")["spec"].get("nodeName")


async def test_no_nodes_message(env: SimpleNamespace) -> None:
    add_pod(env.store, "alone")
    cond = await eventually(lambda: scheduled(env.store, "alone"))
    assert cond["message"] == "no nodes available to schedule pods"
    add_node(env.store, "late")
    await settle(env.clock)
    await env.clock.advance(1.0)
    await eventually(lambda: get_pod(env.store, "alone")["spec"].get("nodeName") == "late")


# -- pods/binding and pods/eviction --------------------------------------------------------


def test_bind_again_is_a_conflict_naming_the_node() -> None:
    clock = FakeClock()
    store = Store(clock)
    pod = add_pod(store, "ref-s-bind", schedulerName="ref-custom-scheduler")
    binding.bind(store, clock, pod, "ref-sched-node")
    with pytest.raises(StatusError) as err:
        binding.bind(store, clock, pod, "ref-kubelet-node")
    assert err.value.code == 409
    assert err.value.body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on pods/binding "ref-s-bind": pod ref-s-bind '
        'is already assigned to node "ref-sched-node"',
        "reason": "Conflict",
        "details": {"name": "ref-s-bind", "kind": "pods/binding"},
        "code": 409,
    }


@pytest.fixture
async def http() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Store]]:
    clock = FakeClock()
    store = Store(clock)
    api = SimpleNamespace(store=store, clock=clock)

    def route(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(
                    api, request, PODS, request.match_info["ns"], request.match_info["name"], None
                )
            except StatusError as e:
                return web.Response(
                    status=e.code,
                    body=json.dumps(e.body()).encode(),
                    content_type="application/json",
                )

        return wrapped

    app = web.Application()
    app.router.add_post(
        "/api/v1/namespaces/{ns}/pods/{name}/binding", route(binding.handle_binding)
    )
    app.router.add_post(
        "/api/v1/namespaces/{ns}/pods/{name}/eviction", route(binding.handle_eviction)
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, store
    await client.close()


def _binding(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


async def test_binding_endpoint(http: tuple[Any, Store]) -> None:
    client, store = http
    add_pod(store, "ref-s-bind", schedulerName="ref-custom-scheduler")
    resp = await client.post(
        "/api/v1/namespaces/default/pods/ref-s-bind/binding",
        json=_binding("ref-s-bind", "ref-sched-node"),
    )
    assert resp.status == 201
    assert await resp.text() == (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}\n'
    )
    pod = get_pod(store, "ref-s-bind")
    assert pod["spec"]["nodeName"] == "ref-sched-node"
    assert pod["status"]["conditions"][0]["type"] == "PodScheduled"
    again = await client.post(
        "/api/v1/namespaces/default/pods/ref-s-bind/binding",
        json=_binding("ref-s-bind", "ref-kubelet-node"),
    )
    assert again.status == 409
    missing = await client.post(
        "/api/v1/namespaces/default/pods/nosuch/binding",
        json=_binding("nosuch", "ref-kubelet-node"),
    )
    assert missing.status == 404
    assert (await missing.json())["message"] == 'pods "nosuch" not found'
    mismatch = await client.post(
        "/api/v1/namespaces/default/pods/ref-s-bind/binding", json=_binding("other", "n")
    )
    assert mismatch.status == 400
    no_target = await client.post(
        "/api/v1/namespaces/default/pods/ref-s-bind/binding",
        json={"metadata": {"name": "ref-s-bind"}, "target": {}},
    )
    assert no_target.status == 422
    assert (await no_target.json())[
        "message"
    ] == 'Binding "ref-s-bind" is invalid: target.name: Required value'


async def test_eviction_endpoint(http: tuple[Any, Store]) -> None:
    client, store = http
    pod = add_pod(store, "victim")
    binding.bind(store, FakeClock(), pod, "n1")
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "victim", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 10},
    }
    resp = await client.post("/api/v1/namespaces/default/pods/victim/eviction", json=body)
    assert resp.status == 201
    assert await resp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    pod = get_pod(store, "victim")
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 10
    target = [c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert target[0]["reason"] == "EvictionByEvictionAPI"
    assert target[0]["message"] == "Eviction API: evicting"
    missing = await client.post(
        "/api/v1/namespaces/default/pods/gone/eviction", json={**body, "metadata": {"name": "gone"}}
    )
    assert missing.status == 404


# -- end to end: the official client against the sandbox API server -----------------------


def _node_body(name: str, cpu: str = "4") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
        },
    }


def test_e2e_pods_are_scheduled_and_explained(k8s: Any) -> None:
    from kubernetes import client

    from tests.waiting import wait_for

    v1 = client.CoreV1Api(k8s)
    v1.create_node(_node_body("worker"))
    v1.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "fits"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    )
    v1.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "too-big"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox:1.36",
                        "resources": {"requests": {"cpu": "100"}},
                    }
                ]
            },
        },
    )
    pod = wait_for(
        lambda: (p := v1.read_namespaced_pod("fits", "default")).spec.node_name and p,
        what="fits bound",
    )
    assert pod.spec.node_name == "worker"

    why = (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )

    def unschedulable() -> Any:
        # A first attempt may have met the brand-new node's not-ready taint.
        conds = v1.read_namespaced_pod("too-big", "default").status.conditions or []
        return next((c for c in conds if c.type == "PodScheduled" and c.message == why), None)

    cond = wait_for(unschedulable, what="too-big unschedulable")
    assert (cond.status, cond.reason) == ("False", "Unschedulable")
    # Raw JSON: the client's events.k8s.io model rejects the null eventTime of the
    # node controller's core/v1 events, exactly as it would against a real cluster.
    events = client.EventsV1Api(k8s)

    def scheduled_events() -> list[dict[str, Any]]:
        raw = events.list_namespaced_event("default", _preload_content=False)
        return [
            e
            for e in json.loads(raw.data)["items"]
            if e["regarding"]["name"] == "fits" and e["reason"] == "Scheduled"
        ]

    found = wait_for(scheduled_events, what="Scheduled event")
    assert found[0]["note"] == "Successfully assigned default/fits to worker"
    assert found[0]["reportingController"] == "default-scheduler"


def test_e2e_binding_and_eviction_through_the_client(k8s: Any) -> None:
    from kubernetes import client

    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "manual"},
            "spec": {
                "schedulerName": "my-scheduler",
                "containers": [{"name": "main", "image": "busybox:1.36"}],
            },
        },
    )
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "manual"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "somewhere"},
    }
    resp = v1.create_namespaced_pod_binding("manual", "default", body, _preload_content=False)
    assert resp.status == 201
    assert json.loads(resp.data) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    assert v1.read_namespaced_pod("manual", "default").spec.node_name == "somewhere"
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod_binding("manual", "default", body, _preload_content=False)
    assert err.value.status == 409
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "manual", "namespace": "default"},
    }
    resp = v1.create_namespaced_pod_eviction("manual", "default", eviction, _preload_content=False)
    assert resp.status == 201
    pod = v1.read_namespaced_pod("manual", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert any(c.type == "DisruptionTarget" for c in pod.status.conditions)


async def test_anti_affinity_pod_waits_for_its_peer_to_leave(env: SimpleNamespace) -> None:
    add_node(env.store, "only")
    env.store.create(
        PODS,
        "default",
        {
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    )
    await eventually(lambda: get_pod(env.store, "web-1")["spec"].get("nodeName"))
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    env.store.create(
        PODS,
        "default",
        {
            "metadata": {"name": "web-2", "labels": {"app": "web"}},
            "spec": {"affinity": anti, "containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    )
    cond = await eventually(lambda: scheduled(env.store, "web-2"))
    assert "didn't match pod anti-affinity rules" in cond["message"]
    env.store.delete(PODS, "default", "web-1", grace_period_seconds=0)
    await settle(env.clock)
    await env.clock.advance(1.0)
    await eventually(lambda: get_pod(env.store, "web-2")["spec"].get("nodeName") == "only")


def test_e2e_kubectl_describe_shows_why_a_pod_is_pending(k8s: Any, kubeapi: Any) -> None:
    import subprocess

    from kubernetes import client

    from tests.waiting import wait_for

    v1 = client.CoreV1Api(k8s)
    v1.create_node(_node_body("small", cpu="1"))
    v1.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "hungry"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox:1.36",
                        "resources": {"requests": {"cpu": "2"}},
                    }
                ]
            },
        },
    )

    why = (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )

    def described() -> str:
        out = subprocess.run(
            ["kubectl", "describe", "pod", "hungry"],
            env=kubeapi.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        # A first attempt may still have met the new node's not-ready taint.
        return out if why in out else ""

    out = wait_for(described, timeout=20, what="FailedScheduling in describe")
    line = next(ln for ln in out.splitlines() if why in ln)
    assert line.split()[:2] == ["Warning", "FailedScheduling"]
    assert "default-scheduler" in line
    assert line.rstrip().endswith(why)
    get = subprocess.run(
        ["kubectl", "get", "pod", "hungry"],
        env=kubeapi.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert get.splitlines()[1].split()[2] == "Pending"


def test_unschedulable_condition_is_managed_by_the_scheduler() -> None:
    clock = FakeClock()
    store = Store(clock)
    sched = scheduler.Scheduler(store, clock, hostname="vm")
    pod = add_pod(store, "lonely")
    sched._mark_unschedulable(pod, "no nodes available to schedule pods")
    entries = get_pod(store, "lonely")["metadata"]["managedFields"]
    status_entry = next(e for e in entries if e.get("subresource") == "status")
    assert status_entry["manager"] == "kube-scheduler"
