"""The Node on fake time: what it says, update-not-replace, heartbeats and changes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.node.fake_kube import FakeKube, install
from tests.providers import CapacityFakeProvider, FakeProvider
from vnode.clock import FakeClock, parse_time, rfc3339
from vnode.node import kube
from vnode.node.nodestatus import (
    MANAGED_ANNOTATION,
    NodeKeeper,
    merge_conditions,
    node_addresses,
)
from vnode.settings import GCESettings, NodeSettings, Settings, Taint

PATH = "/api/v1/nodes/n1"
DEFAULT = {"key": "virtual-kubelet.io/provider", "value": "gce", "effect": "NoSchedule"}
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def settings(**node: Any) -> Settings:
    return Settings(provider="tests.providers:FakeProvider", node=NodeSettings(name="n1", **node))


class Harness:
    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self.clock = FakeClock()
        self.events: list[tuple[str, str, str]] = []
        self.task: asyncio.Task[None] | None = None

    def keeper(self, s: Settings | None = None, provider: Any = None) -> NodeKeeper:
        s = s or settings()
        return NodeKeeper(
            object(), s, provider or FakeProvider(), self.clock, 10250,
            node_addresses(s), recorder=self.record,
        )  # fmt: skip

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        assert obj["metadata"]["name"] == "n1"
        self.events.append((type_, reason, message))

    def node(self) -> dict[str, Any]:
        return self.fake.objects[PATH]

    def start(self, keeper: NodeKeeper) -> None:
        self.task = asyncio.create_task(keeper.run(), name="node-status-under-test")

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(round(seconds / step)):
            await self.clock.advance(step)


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    harness = Harness(install(monkeypatch))
    yield harness
    if harness.task is not None:
        harness.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await harness.task


def condition(node: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == type_)


async def test_registers_a_complete_node(h: Harness) -> None:
    keeper = h.keeper(settings(region="europe-west4", zone="europe-west4-a"))
    node = await keeper.register()
    assert h.fake.count("POST") == 1
    assert keeper.node_uid == node["metadata"]["uid"] != ""
    labels = node["metadata"]["labels"]
    assert labels == {
        "type": "virtual-kubelet",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": "n1",
        "kubernetes.io/role": "agent",
        "node.kubernetes.io/exclude-from-external-load-balancers": "true",
        "vnode.dev/provider": "fake",
        "topology.kubernetes.io/region": "europe-west4",
        "topology.kubernetes.io/zone": "europe-west4-a",
    }
    assert node["spec"]["taints"] == [DEFAULT]
    assert node["spec"]["providerID"] == "vnode://fake/n1"
    status = node["status"]
    assert [c["type"] for c in status["conditions"]] == [
        "MemoryPressure", "DiskPressure", "PIDPressure", "Ready",
    ]  # fmt: skip
    ready = condition(node, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True", "KubeletReady", "kubelet is posting ready status",
    )  # fmt: skip
    assert ready["lastHeartbeatTime"] == rfc3339(h.clock.now())
    for type_, reason in [("MemoryPressure", "KubeletHasSufficientMemory"),
                          ("DiskPressure", "KubeletHasNoDiskPressure"),
                          ("PIDPressure", "KubeletHasSufficientPID")]:  # fmt: skip
        c = condition(node, type_)
        assert (c["status"], c["reason"]) == ("False", reason)
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "127.0.0.1"},
        {"type": "Hostname", "address": "n1"},
    ]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert status["capacity"] == status["allocatable"] == NodeSettings().capacity
    info = status["nodeInfo"]
    assert re.match(r"^v1\.33\.0-vnode-.+$", info["kubeletVersion"])
    assert info["containerRuntimeVersion"].startswith("vnode://")
    assert (info["operatingSystem"], info["architecture"]) == ("linux", "amd64")
    assert info["machineID"] and info["systemUUID"] and info["bootID"]
    assert h.events[0][:2] == ("Normal", "Starting")
    assert ("Normal", "NodeReady", "Node n1 status is now: NodeReady") in h.events


async def test_identity_is_stable_across_restarts(h: Harness) -> None:
    first = (await h.keeper().register())["status"]["nodeInfo"]
    del h.fake.objects[PATH]
    second = (await h.keeper().register())["status"]["nodeInfo"]
    assert first == second


async def test_internal_ip_from_settings() -> None:
    assert node_addresses(settings(internal_ip="10.1.2.3"))[0] == {
        "type": "InternalIP", "address": "10.1.2.3",
    }  # fmt: skip


async def test_capacity_from_the_provider_over_the_settings(h: Harness) -> None:
    node = await h.keeper(provider=CapacityFakeProvider()).register()
    capacity = node["status"]["capacity"]
    assert capacity["cpu"] == "64"
    assert capacity["nvidia.com/gpu"] == "4"
    assert capacity["ephemeral-storage"] == NodeSettings().capacity["ephemeral-storage"]
    assert node["status"]["allocatable"] == capacity


async def test_taints_configurable_and_removable(h: Harness) -> None:
    custom = (Taint("example.com/burst", "", "NoSchedule"), Taint("a", "b", "NoExecute"))
    node = await h.keeper(settings(taints=custom)).register()
    assert node["spec"]["taints"] == [
        {"key": "example.com/burst", "effect": "NoSchedule"},
        {"key": "a", "value": "b", "effect": "NoExecute"},
    ]
    node = await h.keeper(settings(taints=())).register()
    assert "taints" not in node["spec"]


async def test_existing_node_is_updated_not_replaced(h: Harness) -> None:
    h.fake.put_object(PATH, {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": "n1", "uid": "original-uid",
            "labels": {"team": "burst", "old": "1", "kubernetes.io/hostname": "n1"},
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                MANAGED_ANNOTATION: json.dumps(
                    {"labels": ["old", "kubernetes.io/hostname"],
                     "taints": ["old-taint:NoExecute"]}),
            },
        },
        "spec": {
            "unschedulable": True,
            "providerID": "vnode://fake/n1",
            "taints": [
                NOT_READY,
                {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                {"key": "old-taint", "effect": "NoExecute"},
            ],
        },
        "status": {"conditions": [
            {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"},
        ]},
    })  # fmt: skip
    keeper = h.keeper(settings(labels={"extra": "yes"}))
    node = await keeper.register()
    assert h.fake.count("POST") == 0
    assert node["metadata"]["uid"] == keeper.node_uid == "original-uid"
    labels = node["metadata"]["labels"]
    assert labels["team"] == "burst"  # someone else's: kept
    assert "old" not in labels  # vnode's from an earlier run, no longer wanted: removed
    assert labels["extra"] == "yes"
    assert labels["type"] == "virtual-kubelet"
    assert node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0"
    assert node["spec"]["unschedulable"] is True  # a cordon stays
    assert node["spec"]["taints"] == [
        NOT_READY,  # the lifecycle controller's: kept until it removes it
        {"key": "dedicated", "value": "x", "effect": "NoSchedule"},  # an admin's: kept
        DEFAULT,
    ]
    types = [c["type"] for c in node["status"]["conditions"]]
    assert types[0] == "NetworkUnavailable"  # another controller's condition: kept
    assert condition(node, "Ready")["status"] == "True"
    managed = json.loads(node["metadata"]["annotations"][MANAGED_ANNOTATION])
    assert "extra" in managed["labels"]
    assert managed["taints"] == ["virtual-kubelet.io/provider:NoSchedule"]


async def test_heartbeat_every_status_period_transition_only_on_change(h: Harness) -> None:
    keeper = h.keeper()
    await keeper.register()
    born = condition(h.node(), "Ready")["lastTransitionTime"]
    h.start(keeper)
    await h.advance(50)
    # Checked every 10 s (GETs) but nothing changed: no status written yet.
    assert h.fake.count("PUT", "/status") == 0
    assert h.fake.count("GET") >= 5
    await h.advance(20)
    assert h.fake.count("PUT", "/status") == 1
    ready = condition(h.node(), "Ready")
    assert parse_time(ready["lastHeartbeatTime"]) > parse_time(born)
    assert ready["lastTransitionTime"] == born
    await h.advance(60)
    assert h.fake.count("PUT", "/status") == 2


async def test_a_change_is_posted_at_the_next_check(h: Harness) -> None:
    provider = CapacityFakeProvider()
    provider.capacity = dict(provider.capacity)
    keeper = h.keeper(provider=provider)
    await keeper.register()
    h.start(keeper)
    await h.advance(1)
    provider.capacity["cpu"] = "128"
    await h.advance(10)
    assert h.fake.count("PUT", "/status") == 1
    assert h.node()["status"]["capacity"]["cpu"] == "128"


async def test_poke_checks_at_once(h: Harness) -> None:
    provider = CapacityFakeProvider()
    provider.capacity = dict(provider.capacity)
    keeper = h.keeper(provider=provider)
    await keeper.register()
    h.start(keeper)
    await h.advance(1)
    provider.capacity["memory"] = "1Ti"
    keeper.poke()
    for _ in range(10):
        await asyncio.sleep(0)
    assert h.node()["status"]["capacity"]["memory"] == "1Ti"


async def test_not_ready_set_by_the_controller_is_corrected(h: Harness) -> None:
    keeper = h.keeper()
    await keeper.register()
    h.start(keeper)
    await h.advance(1)
    # The lifecycle controller gave up on the Node while vnode could not reach the API.
    node = h.node()
    for c in node["status"]["conditions"]:
        c.update(status="Unknown", reason="NodeStatusUnknown",
                 message="Kubelet stopped posting node status.")  # fmt: skip
    h.fake.put_object(PATH, node)
    await h.advance(10)
    ready = condition(h.node(), "Ready")
    assert ready["status"] == "True"
    assert ready["reason"] == "KubeletReady"
    assert ready["lastTransitionTime"] == ready["lastHeartbeatTime"]
    assert parse_time(ready["lastTransitionTime"]) > h.clock.now() - dt.timedelta(seconds=11)


async def test_a_deleted_node_is_registered_again(h: Harness) -> None:
    keeper = h.keeper()
    await keeper.register()
    old = keeper.node_uid
    h.start(keeper)
    del h.fake.objects[PATH]
    await h.advance(11)
    assert h.fake.count("POST") == 2
    assert keeper.node_uid not in ("", old)
    assert condition(h.node(), "Ready")["status"] == "True"
    # "Starting" is about the process, not the object: said once.
    assert [e[1] for e in h.events].count("Starting") == 1


async def test_status_conflict_rereads_and_retries(h: Harness) -> None:
    keeper = h.keeper()
    await keeper.register()
    other = h.node()
    other["metadata"]["labels"]["beta.kubernetes.io/os"] = "linux"
    h.fake.put_object(PATH, other)  # vnode's cached copy is now stale
    await keeper.post_status()
    statuses = [c.method for c in h.fake.calls if "/status" in c.path or c.method == "GET"]
    assert statuses[-3:] == ["PUT", "GET", "PUT"]
    assert h.node()["metadata"]["labels"]["beta.kubernetes.io/os"] == "linux"


async def test_failures_are_retried_next_check(h: Harness) -> None:
    keeper = h.keeper()
    await keeper.register()
    h.start(keeper)
    h.fake.fail("GET", PATH, kube.api_error(503, "ServiceUnavailable", "down"), times=2)
    await h.advance(60.5)
    assert h.fake.count("PUT", "/status") == 1
    assert h.task is not None and not h.task.done()


def test_merge_conditions_keeps_transition_times() -> None:
    before = [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z",
               "lastHeartbeatTime": "2020-01-01T00:00:00Z"}]  # fmt: skip
    merged = merge_conditions(before, "2026-01-01T00:00:00Z")
    ready = next(c for c in merged if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert ready["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"
    pressure = next(c for c in merged if c["type"] == "DiskPressure")
    assert pressure["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_provider_id_override() -> None:
    from vnode.node.nodestatus import provider_id

    s = dataclasses.replace(settings(), node=NodeSettings(name="n1", provider_id="vnode://x/y"))
    assert provider_id(s, FakeProvider()) == "vnode://x/y"

    class Gce(FakeProvider):
        name = "gce"

        def provider_id(self, node_name: str) -> str:
            return f"vnode://gce/proj/zone-a/{node_name}"

    assert provider_id(settings(), Gce()) == "vnode://gce/proj/zone-a/n1"

    class PlainGce(FakeProvider):
        name = "gce"

    gce = dataclasses.replace(
        settings(), gce=GCESettings(project="my-project", zones=("us-central1-b", "us-east1-c"))
    )
    assert provider_id(gce, PlainGce()) == "vnode://gce/my-project/us-central1-b/n1"


async def test_a_taint_keeps_the_time_it_was_added(h: Harness) -> None:
    stamped = {**DEFAULT, "value": "old", "timeAdded": "2026-01-01T00:00:00Z"}
    h.fake.put_object(PATH, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                             "spec": {"taints": [stamped]}})  # fmt: skip
    node = await h.keeper().register()
    # Same key and effect: vnode's taint, updated in place (value) with its timeAdded.
    assert node["spec"]["taints"] == [{**DEFAULT, "timeAdded": "2026-01-01T00:00:00Z"}]
