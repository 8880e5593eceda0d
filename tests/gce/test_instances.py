"""Compute calls of the GCE provider: the insert body, names, and calls to the emulator.

The emulator speaks the real wire format, so inserts, operation waits, listings and the
injected 429/503/quota/stockout failures are met exactly as the official client meets
the real API.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.compute_harness import PROJECT, ZONE, RunningCompute, running_compute
from vnode.errors import InvalidPod, QuotaExceeded
from vnode.gce import naming
from vnode.gce.instances import VM, InsertSpec, Instances, RetryPolicy, instance_body
from vnode.settings import GCESettings

FAST = RetryPolicy(attempts=6, deadline=30.0, base=0.01, cap=0.05)
UID = "0b5c6b52-4f1e-4a55-9d0e-6a1b2c3d4e5f"


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    with running_compute(tmp_path) as rc:
        yield rc


def settings_for(rc: RunningCompute, **changes: object) -> GCESettings:
    base = GCESettings(project=PROJECT, zones=(ZONE,), compute_endpoint=rc.endpoint)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def spec(uid: str = UID, zone: str = ZONE, **changes: object) -> InsertSpec:
    base = InsertSpec(
        name=naming.vm_name(uid),
        zone=zone,
        machine_type="e2-small",
        boot_disk_gb=20,
        labels=naming.pod_labels("vnode", "default", "job-abc", uid),
        metadata=[{"key": "user-data", "value": "#cloud-config\n{}\n"}],
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- pure ----------------------------------------------------------------------------


def test_insert_body_defaults_internal_ip_only_standard_vm() -> None:
    body = instance_body(GCESettings(project=PROJECT), spec())
    assert body["name"] == f"vnode-{UID}"
    assert body["machine_type"] == f"zones/{ZONE}/machineTypes/e2-small"
    disk = body["disks"][0]
    assert disk["boot"] and disk["auto_delete"]
    assert disk["initialize_params"]["source_image"].endswith("family/cos-stable")
    assert disk["initialize_params"]["disk_type"] == f"zones/{ZONE}/diskTypes/pd-balanced"
    assert "access_configs" not in body["network_interfaces"][0]
    assert body["scheduling"]["provisioning_model"] == "STANDARD"
    assert "max_run_duration" not in body["scheduling"]
    assert body["tags"] == {"items": ["vnode"]}
    assert body["service_accounts"][0]["email"] == "default"
    assert body["labels"]["vnode-pod-uid"] == UID


def test_insert_body_spot_deadline_gpu_and_external_ip() -> None:
    settings = GCESettings(project=PROJECT, external_ip=True, subnetwork="regions/r/subnetworks/s")
    body = instance_body(settings, spec(spot=True, max_run_duration=600, gpu_terminate=True))
    sched = body["scheduling"]
    assert sched["provisioning_model"] == "SPOT"
    assert sched["instance_termination_action"] == "DELETE"
    assert sched["on_host_maintenance"] == "TERMINATE"
    assert sched["max_run_duration"] == {"seconds": 600}
    nic = body["network_interfaces"][0]
    assert nic["access_configs"][0]["type_"] == "ONE_TO_ONE_NAT"
    assert nic["subnetwork"] == "regions/r/subnetworks/s"
    gpu = instance_body(GCESettings(project=PROJECT), spec(gpu_terminate=True))
    assert gpu["scheduling"]["on_host_maintenance"] == "TERMINATE"


def test_names_labels_and_request_ids() -> None:
    assert naming.vm_name(UID.upper()) == f"vnode-{UID}"
    assert naming.uid_from_vm_name(naming.vm_name(UID)) == UID
    assert naming.request_id(UID, ZONE) == naming.request_id(UID, ZONE)
    assert naming.request_id(UID, ZONE) != naming.request_id(UID, "us-central1-b")
    uuid.UUID(naming.request_id(UID, ZONE))  # a valid UUID, as Compute requires
    labels = naming.pod_labels("My.Node", "Team-A", "web.frontend-" + "x" * 80, UID)
    assert labels["vnode-node"] == "my-node"
    assert labels["vnode-namespace"] == "team-a"
    assert len(labels["vnode-pod"]) == 63 and labels["vnode-pod"].startswith("web-frontend-")
    assert naming.node_filter("My.Node") == 'labels.vnode-node = "my-node"'
    assert naming.mirror_name("echo", "vnode-1") == "echo-vnode-1"


# -- against the emulator ------------------------------------------------------------


async def test_insert_list_delete(compute: RunningCompute) -> None:
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        await inst.insert(spec(), request_id=naming.request_id(UID, ZONE))
        vms = await inst.list_vms("vnode")
        assert [v.name for v in vms] == [f"vnode-{UID}"]
        vm: VM = vms[0]
        assert vm.status == "RUNNING" and vm.zone == ZONE and vm.pod_uid == UID
        assert vm.internal_ip.startswith("127.")
        assert await inst.list_vms("other-node") == []
        # A retry of the same insert (same name) is success, and makes nothing new.
        await inst.insert(spec(), request_id=naming.request_id(UID, ZONE))
        await inst.insert(spec(), request_id=str(uuid.uuid4()))
        assert len(compute.emulator.instances) == 1
        assert await inst.delete(vm.name, ZONE, wait=True) is True
        assert await inst.delete(vm.name, ZONE) is False  # missing is success
        assert compute.emulator.instances == []
    finally:
        await inst.close()


async def test_transient_errors_are_retried(compute: RunningCompute) -> None:
    faults = compute.emulator.faults
    faults.fail_next("instances.insert", 2, code=503)
    faults.fail_next("instances.insert", 1, code=429, retry_after=0.05)
    faults.fail_next("zoneOperations.wait", 1, code=500)
    faults.fail_next("instances.aggregatedList", 1, code=403, reason="rateLimitExceeded")
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        await inst.insert(spec(), request_id=naming.request_id(UID, ZONE))
        assert len(await inst.list_vms("vnode")) == 1
        assert faults.call_count("instances.insert") == 4
    finally:
        await inst.close()


async def test_retries_are_capped(compute: RunningCompute) -> None:
    compute.emulator.faults.fail_next("instances.aggregatedList", 10, code=503)
    inst = Instances(settings_for(compute), retry=dataclasses.replace(FAST, attempts=3))
    try:
        with pytest.raises(Exception) as caught:
            await inst.list_vms("vnode")
        assert type(caught.value).__name__ == "Retryable"
        assert "503" in str(caught.value)
        assert compute.emulator.faults.call_count("instances.aggregatedList") == 3
    finally:
        await inst.close()


async def test_invalid_request_is_invalid_pod(compute: RunningCompute) -> None:
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        with pytest.raises(InvalidPod) as caught:
            await inst.insert(spec(machine_type="e2-nosuch-7"), request_id=str(uuid.uuid4()))
        assert "e2-nosuch-7" in caught.value.message
    finally:
        await inst.close()


async def test_stockout_and_quota_are_quota_exceeded(compute: RunningCompute) -> None:
    compute.emulator.faults.stockout(ZONE)
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        with pytest.raises(QuotaExceeded) as stock:
            await inst.insert(spec(), request_id=str(uuid.uuid4()))
        assert "does not have enough resources" in stock.value.message
        compute.emulator.faults.clear_stockout(ZONE)
        compute.emulator.faults.quota("CPUS", 0)
        with pytest.raises(QuotaExceeded) as quota:
            await inst.insert(spec(), request_id=str(uuid.uuid4()))
        assert "Quota 'CPUS' exceeded" in quota.value.message
    finally:
        await inst.close()


async def test_listing_is_one_call_whatever_the_number_of_vms(compute: RunningCompute) -> None:
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        for i in range(5):
            uid = str(uuid.UUID(int=i + 1))
            await inst.insert(spec(uid), request_id=naming.request_id(uid, ZONE))
        before = compute.emulator.faults.call_count("*")
        assert len(await inst.list_vms("vnode")) == 5
        assert compute.emulator.faults.call_count("*") - before == 1
    finally:
        await inst.close()


async def test_spot_preemption_is_found_from_its_operation(compute: RunningCompute) -> None:
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        await inst.insert(spec(spot=True), request_id=naming.request_id(UID, ZONE))
        name = naming.vm_name(UID)
        assert await inst.preempted(ZONE, {name}) == set()
        compute.emulator.faults.preempt(name)
        assert await inst.preempted(ZONE, {name}) == {name}
    finally:
        await inst.close()


async def test_machine_types(compute: RunningCompute) -> None:
    inst = Instances(settings_for(compute), retry=FAST)
    try:
        names = {m["name"] for m in await inst.machine_types(ZONE)}
        assert {"e2-small", "n2-standard-4"} <= names
    finally:
        await inst.close()
