"""The GCE provider in one process against the Compute emulator.

Each pod becomes a real (emulated) insert, listing, delete and preemption; the VM
kubelets' ``/pods`` answers are scripted from the real kubelet's captures, so the
provider's own decisions are tested on their own: status from the kubelet and pushes
on change, cleanup after the delay, lost and preempted VMs, adoption after a restart,
zones and refusals, and the Compute call budget per sync. The last tests run simulated
VMs booted from the provider's metadata, reached over mTLS for status and live logs.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.refdata import REFERENCE
from tests.sandbox.compute_harness import PROJECT, RunningCompute, running_compute
from tests.waiting import async_wait_for
from vnode.errors import InvalidPod, NotFound, PodTooLarge, QuotaExceeded
from vnode.gce import naming
from vnode.gce.instances import RetryPolicy
from vnode.gce.kubelets import KubeletClient
from vnode.gce.provider import GCEProvider
from vnode.provider import LogOptions, Pod, ProviderContext
from vnode.sandbox.vm import Timings, vm_factory
from vnode.settings import GCESettings

ZONES = ("us-central1-a", "us-central1-b")
REF = REFERENCE / "kubelet/pods"
FAST = RetryPolicy(attempts=6, deadline=30.0, base=0.01, cap=0.05)


class Cluster:
    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def request_token(self, *args: Any, **kwargs: Any) -> str:
        return "token"


@dataclasses.dataclass
class Harness:
    compute: RunningCompute
    provider: GCEProvider
    events: list[tuple[str, str, str]]
    notified: list[str]

    async def until(self, pod: Pod, pred: Any, within: float = 30.0) -> dict[str, Any]:
        """Sync until ``pred(status)`` holds; returns that status."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        last = None
        while loop.time() < end:
            await self.provider.sync()
            last = await self.provider.pod_status(pod)
            if last is not None and pred(last):
                return last
            await asyncio.sleep(0.05)
        raise AssertionError(f"status never matched; last: {last}")


async def make_harness(
    compute: RunningCompute,
    tmp_path: Path,
    kubelets: KubeletClient | None = None,
    accept_wait: float = 5.0,
) -> tuple[Harness, GCEProvider]:
    settings = GCESettings(
        project=PROJECT,
        zones=ZONES,
        compute_endpoint=compute.endpoint,
        ca_dir=str(tmp_path / "ca"),
        delete_delay_seconds=0.0,
        status_period=3600.0,  # the tests call sync() themselves
        kubelet_timeout_seconds=2.0,
    )
    provider = GCEProvider(settings, retry=FAST, kubelets=kubelets, accept_wait=accept_wait)
    events: list[tuple[str, str, str]] = []
    notified: list[str] = []

    def notify(pod: Any) -> None:
        notified.append(str(pod["metadata"]["uid"]))

    context = ProviderContext(
        "vnode-test-node",
        Cluster(),
        lambda pod, type_, reason, message: events.append((type_, reason, message)),
        notify=notify,
    )
    await provider.start(context)
    return Harness(compute, provider, events, notified), provider


def job_pod(command: str = "echo hello; echo bye", **spec: Any) -> Pod:
    uid = str(uuid.uuid4())
    body: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", command],
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            }
        ],
    }
    body.update(spec)
    return {
        "metadata": {"name": "job-x", "namespace": "default", "uid": uid, "annotations": {}},
        "spec": body,
        "status": {"phase": "Pending"},
    }


class FakeKubelets(KubeletClient):
    """Answers ``/pods`` per VM name from :attr:`answers` (absent: not answering)."""

    def __init__(self) -> None:
        super().__init__(ssl.create_default_context())
        self.answers: dict[str, list[dict[str, Any]]] = {}

    async def poll(self, targets: Any) -> dict[str, list[dict[str, Any]] | None]:
        return {name: self.answers.get(name) for name in targets}


def mirror(capture: str, pod: Pod) -> dict[str, Any]:
    item = copy.deepcopy(json.loads((REF / capture).read_text())["items"][0])
    item["metadata"]["uid"] = pod["metadata"]["uid"]
    return dict(item)


@pytest.fixture
def bare_compute(tmp_path: Path) -> Iterator[RunningCompute]:
    with running_compute(tmp_path / "compute") as rc:  # instances without machines
        yield rc


@pytest.fixture
async def scripted(
    bare_compute: RunningCompute, tmp_path: Path
) -> AsyncIterator[tuple[Harness, FakeKubelets]]:
    kubelets = FakeKubelets()
    h, provider = await make_harness(bare_compute, tmp_path, kubelets)
    try:
        yield h, kubelets
    finally:
        await provider.stop()


async def test_status_follows_the_kubelet_and_changes_are_pushed(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    h, kubelets = scripted
    pod = job_pod()
    await h.provider.create_pod(pod)
    name = naming.vm_name(pod["metadata"]["uid"])
    booting = await h.until(pod, lambda s: s["phase"] == "Pending")
    assert booting["containerStatuses"][0]["state"]["waiting"]["message"] == "VM booting"
    kubelets.answers[name] = [mirror("a-echo-never.3-running.10250.json", pod)]
    await h.until(pod, lambda s: s["phase"] == "Running")
    pushes = h.notified.count(pod["metadata"]["uid"])
    await h.provider.sync()
    assert h.notified.count(pod["metadata"]["uid"]) == pushes  # no change, no push
    # A kubelet that stops answering for a moment does not send the pod back to Pending.
    del kubelets.answers[name]
    again = await h.until(pod, lambda s: True)
    assert again["phase"] == "Running"
    kubelets.answers[name] = [mirror("a-echo-never.5-succeeded.10250.json", pod)]
    await h.until(pod, lambda s: s["phase"] == "Succeeded")
    assert h.notified.count(pod["metadata"]["uid"]) > pushes
    # Delay 0: the next syncs delete the VM; the status stays Succeeded for good.
    for _ in range(100):
        await h.provider.sync()
        if not h.compute.emulator.instances:
            break
        await asyncio.sleep(0.05)
    assert h.compute.emulator.instances == []
    final = await h.provider.pod_status(pod)
    assert final is not None and final["phase"] == "Succeeded"


async def test_lost_and_preempted_vms_fail_their_pods(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    h, kubelets = scripted
    lost, spot = job_pod("sleep 60"), job_pod("sleep 60")
    spot["metadata"]["annotations"] = {"vnode.dev/provisioning-model": "spot"}
    for pod in (lost, spot):
        await h.provider.create_pod(pod)
        kubelets.answers[naming.vm_name(pod["metadata"]["uid"])] = [
            mirror("a-echo-never.3-running.10250.json", pod)
        ]
        await h.until(pod, lambda s: s["phase"] == "Running")
    client = h.compute.instances()
    lost_vm = naming.vm_name(lost["metadata"]["uid"])
    await asyncio.to_thread(client.delete, project=PROJECT, zone=ZONES[0], instance=lost_vm)
    h.compute.emulator.faults.preempt(naming.vm_name(spot["metadata"]["uid"]))
    failed = await h.until(lost, lambda s: s["phase"] == "Failed")
    assert failed["reason"] == "VMLost"
    failed = await h.until(spot, lambda s: s["phase"] == "Failed")
    assert failed["reason"] == "Preempted"
    stopped = failed["containerStatuses"][0]["state"]["terminated"]
    assert stopped["reason"] == "ContainerStatusUnknown"


async def test_a_restarted_provider_adopts_and_deletes_finished_vms(
    scripted: tuple[Harness, FakeKubelets], tmp_path: Path
) -> None:
    h, kubelets = scripted
    pod = job_pod()
    await h.provider.create_pod(pod)
    name = naming.vm_name(pod["metadata"]["uid"])
    kubelets.answers[name] = [mirror("a-echo-never.5-succeeded.10250.json", pod)]
    # A new provider (vnode restarted) that is never asked about the finished pod.
    _, provider = await make_harness(h.compute, tmp_path, kubelets)
    try:
        assert [r.uid for r in await provider.list_pods()] == [pod["metadata"]["uid"]]
        await provider.create_pod(pod)  # adopting: no second VM
        assert len(h.compute.emulator.instances) == 1
        for _ in range(100):
            await provider.sync()
            if not h.compute.emulator.instances:
                break
            await asyncio.sleep(0.05)
        assert h.compute.emulator.instances == []
    finally:
        await provider.stop()


async def test_a_pod_that_ran_on_a_vanished_vm_is_not_run_again(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = scripted
    pod = job_pod()
    pod["status"] = {"phase": "Running"}
    await h.provider.sync()
    with pytest.raises(InvalidPod) as caught:
        await h.provider.create_pod(pod)
    assert caught.value.pod_reason == "VMLost"
    assert h.compute.emulator.instances == []


async def test_compute_calls_per_sync_do_not_grow_with_pods_scripted(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = scripted
    for _ in range(6):
        await h.provider.create_pod(job_pod("sleep 60"))
    faults = h.compute.emulator.faults
    before = faults.call_count("*")
    for _ in range(3):
        await h.provider.sync()
    assert faults.call_count("*") - before == 3


async def test_repeated_create_makes_one_vm(scripted: tuple[Harness, FakeKubelets]) -> None:
    harness, _ = scripted
    pod = job_pod("sleep 30")
    await harness.provider.create_pod(pod)
    await harness.provider.create_pod(pod)
    assert len(harness.compute.emulator.instances) == 1
    # A second provider (a restarted vnode) adopts it and creates nothing.
    refs = await harness.provider.list_pods()
    assert [r.uid for r in refs] == [pod["metadata"]["uid"]]


async def test_too_large_and_invalid_pods(scripted: tuple[Harness, FakeKubelets]) -> None:
    harness, _ = scripted
    big = job_pod()
    big["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "300", "memory": "1Gi"}}
    with pytest.raises(PodTooLarge, match="300"):
        await harness.provider.create_pod(big)
    pvc = job_pod(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}])
    with pytest.raises(InvalidPod, match="data"):
        await harness.provider.create_pod(pvc)
    assert harness.compute.emulator.instances == []


async def test_stockout_moves_to_the_next_zone_then_fails(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    harness, _ = scripted
    faults = harness.compute.emulator.faults
    faults.stockout(ZONES[0])
    pod = job_pod("sleep 30")
    await harness.provider.create_pod(pod)
    [inst] = harness.compute.emulator.instances
    assert inst["zone"].endswith(ZONES[1])
    assert any(reason == "ZoneUnavailable" for _, reason, _ in harness.events)
    faults.stockout(ZONES[1])
    with pytest.raises(QuotaExceeded, match="does not have enough resources"):
        await harness.provider.create_pod(job_pod())


# -- with simulated COS VMs: their kubelets boot from the metadata the provider rendered ---


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    factory = vm_factory(tmp_path / "vms", timings=Timings().scaled(0.1))
    with running_compute(tmp_path / "compute", vm_factory=factory) as rc:
        yield rc


@pytest.fixture
async def harness(compute: RunningCompute, tmp_path: Path) -> AsyncIterator[Harness]:
    h, provider = await make_harness(compute, tmp_path)
    try:
        yield h
    finally:
        await provider.stop()


async def read_logs(provider: GCEProvider, pod: Pod, container: str = "main") -> bytes:
    out = b""
    async for chunk in provider.container_logs(pod, LogOptions(container)):
        out += chunk
    return out


async def test_pod_runs_to_success_logs_and_its_vm_is_deleted(harness: Harness) -> None:
    provider, compute = harness.provider, harness.compute
    pod = job_pod()
    await provider.create_pod(pod)
    requested = await provider.pod_status(pod)
    assert requested is not None and requested["phase"] == "Pending"
    [inst] = compute.emulator.instances
    assert inst["name"] == naming.vm_name(pod["metadata"]["uid"])
    assert inst["machineType"].endswith("/e2-standard-2") or "custom" in inst["machineType"]
    assert inst["labels"]["vnode-node"] == "vnode-test-node"
    done = await harness.until(pod, lambda s: s["phase"] == "Succeeded")
    assert done["podIP"] == done["hostIP"] == inst["networkInterfaces"][0]["networkIP"]
    assert done["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert pod["metadata"]["uid"] in harness.notified
    # The delay is 0: a later sync deletes the VM; the status stays Succeeded.
    for _ in range(200):
        await provider.sync()
        if not compute.emulator.instances:
            break
        await asyncio.sleep(0.05)
    assert compute.emulator.instances == []
    after = await provider.pod_status(pod)
    assert after is not None and after["phase"] == "Succeeded"
    # Its logs now come from Cloud Logging: tests/gce/test_logs_path_e2e.py.
    assert any(reason == "VMCreated" for _, reason, _ in harness.events)


async def test_live_logs_from_the_vm_kubelet(harness: Harness) -> None:
    provider = harness.provider
    pod = job_pod("echo first-line; sleep 30")
    await provider.create_pod(pod)
    await harness.until(pod, lambda s: s["phase"] == "Running")
    for _ in range(100):
        if b"first-line" in await read_logs(provider, pod):
            break
        await asyncio.sleep(0.05)
    assert await read_logs(provider, pod) == b"first-line\n"
    with pytest.raises(NotFound):
        await read_logs(provider, pod, "nosuch")
    await provider.delete_pod(pod)
    await provider.delete_pod(pod)  # again: still success


async def test_compute_retries_are_reported_as_events(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = scripted
    h.compute.emulator.faults.fail_next("instances.insert", 2, code=503)
    await h.provider.create_pod(job_pod("sleep 60"))
    retries = [m for _, reason, m in h.events if reason == "ComputeRetry"]
    assert len(retries) == 2 and "503" in retries[0]
    assert len(h.compute.emulator.instances) == 1


@pytest.fixture
async def background(
    bare_compute: RunningCompute, tmp_path: Path
) -> AsyncIterator[tuple[Harness, FakeKubelets]]:
    """A provider that never waits for an insert: every VM is placed in the background."""
    kubelets = FakeKubelets()
    h, provider = await make_harness(bare_compute, tmp_path, kubelets, accept_wait=0.0)
    try:
        yield h, kubelets
    finally:
        await provider.stop()


async def test_inserts_finish_in_the_background(
    background: tuple[Harness, FakeKubelets],
) -> None:
    h, kubelets = background
    h.compute.emulator.faults.latency(0.3, "zoneOperations.wait")
    pod = job_pod()
    await h.provider.create_pod(pod)  # returns before the VM runs
    first = await h.provider.pod_status(pod)
    assert first is not None and first["phase"] == "Pending"
    await h.provider.create_pod(pod)  # again while it is being placed: nothing new
    kubelets.answers[naming.vm_name(pod["metadata"]["uid"])] = [
        mirror("a-echo-never.3-running.10250.json", pod)
    ]
    await h.until(pod, lambda s: s["phase"] == "Running")
    assert h.compute.emulator.faults.call_count("instances.insert") == 1

    async def created() -> bool:
        return any(reason == "VMCreated" for _, reason, _ in h.events)

    await async_wait_for(created, timeout=10, what="the VMCreated event")


async def test_no_zone_in_the_background_fails_the_pod_with_the_reason(
    background: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = background
    for zone in ZONES:
        h.compute.emulator.faults.stockout(zone)
    pod = job_pod()
    await h.provider.create_pod(pod)
    failed = await h.until(pod, lambda s: s["phase"] == "Failed")
    assert failed["reason"] == "QuotaExceeded"
    assert "does not have enough resources" in failed["message"]
    assert pod["metadata"]["uid"] in h.notified
    assert h.compute.emulator.instances == []


async def test_transient_trouble_in_the_background_is_retried_and_reported(
    background: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = background
    h.compute.emulator.faults.fail_next("instances.insert", FAST.attempts, code=503)
    pod = job_pod("sleep 60")
    await h.provider.create_pod(pod)
    await h.until(pod, lambda s: s["containerStatuses"][0]["state"]["waiting"]["message"]
                  == "VM booting")  # fmt: skip
    assert any(reason == "FailedCreate" for _, reason, _ in h.events)
    assert len(h.compute.emulator.instances) == 1


async def test_deleting_a_pod_while_its_vm_is_placed(
    background: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = background
    h.compute.emulator.faults.latency(0.5, "zoneOperations.wait")
    pod = job_pod("sleep 60")
    await h.provider.create_pod(pod)

    async def inserted() -> bool:  # accepted; the provider waits for its operation
        return bool(h.compute.emulator.instances)

    await async_wait_for(inserted, timeout=10, what="the insert to arrive")
    await h.provider.delete_pod(pod)
    await h.provider.sync()

    async def gone() -> bool:
        return not h.compute.emulator.instances

    await async_wait_for(gone, timeout=10, what="the VM to be deleted")
    assert await h.provider.pod_status(pod) is None


async def test_provisioning_model_annotation_is_checked(
    scripted: tuple[Harness, FakeKubelets],
) -> None:
    h, _ = scripted
    pod = job_pod()
    pod["metadata"]["annotations"] = {"vnode.dev/provisioning-model": "cheap"}
    with pytest.raises(InvalidPod, match="expected spot or standard"):
        await h.provider.create_pod(pod)
    deadline = job_pod(activeDeadlineSeconds=600)
    await h.provider.create_pod(deadline)
    [inst] = h.compute.emulator.instances
    assert inst["scheduling"]["maxRunDuration"]["seconds"] == "660"  # its deadline plus a minute
    assert inst["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert inst["scheduling"]["provisioningModel"] == "STANDARD"
