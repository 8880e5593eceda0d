"""The machine-type catalogue: real shapes per zone and the custom-shape rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from tests.sandbox.compute_harness import (
    PROJECT,
    ZONE,
    RunningCompute,
    instance_body,
    running_compute,
)
from vnode.sandbox.compute import catalogue
from vnode.sandbox.compute.errors import ComputeError


@pytest.fixture(scope="module")
def compute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCompute]:
    # Machine types are read-only, so one emulator serves the whole module.
    with running_compute(tmp_path_factory.mktemp("compute")) as rc:
        yield rc


def listed(rc: RunningCompute, zone: str) -> dict[str, compute_v1.MachineType]:
    request = compute_v1.ListMachineTypesRequest(project=PROJECT, zone=zone)
    return {m.name: m for m in rc.machine_types().list(request=request)}


@pytest.mark.parametrize(
    ("name", "cpus", "memory_mb", "gpus_shared"),
    [
        ("e2-micro", 2, 1024, (0, True)),
        ("e2-small", 2, 2048, (0, True)),
        ("e2-medium", 2, 4096, (0, True)),
        ("e2-standard-2", 2, 8192, (0, False)),
        ("e2-standard-32", 32, 131072, (0, False)),
        ("e2-highmem-16", 16, 131072, (0, False)),
        ("e2-highcpu-32", 32, 32768, (0, False)),
        ("n2-standard-128", 128, 524288, (0, False)),
        ("n2-highmem-128", 128, 884736, (0, False)),
        ("n2-highcpu-96", 96, 98304, (0, False)),
        ("c3-standard-4", 4, 16384, (0, False)),
        ("c3-standard-176", 176, 720896, (0, False)),
        ("c3-highmem-176", 176, 1441792, (0, False)),
        ("c3-highcpu-22", 22, 45056, (0, False)),
        ("g2-standard-4", 4, 16384, (1, False)),
        ("g2-standard-24", 24, 98304, (2, False)),
        ("g2-standard-32", 32, 131072, (1, False)),
        ("g2-standard-48", 48, 196608, (4, False)),
        ("g2-standard-96", 96, 393216, (8, False)),
    ],
)
def test_real_shapes(
    compute: RunningCompute, name: str, cpus: int, memory_mb: int, gpus_shared: tuple[int, bool]
) -> None:
    gpus, shared = gpus_shared
    mt = compute.machine_types().get(project=PROJECT, zone=ZONE, machine_type=name)
    assert (mt.guest_cpus, mt.memory_mb, mt.is_shared_cpu) == (cpus, memory_mb, shared)
    assert mt.kind == "compute#machineType"
    assert mt.zone == ZONE
    assert mt.self_link.endswith(f"/zones/{ZONE}/machineTypes/{name}")
    if gpus:
        (acc,) = mt.accelerators
        assert (acc.guest_accelerator_type, acc.guest_accelerator_count) == ("nvidia-l4", gpus)
    else:
        assert not mt.accelerators


def test_zones_differ_in_what_they_offer(compute: RunningCompute) -> None:
    central_a = listed(compute, "us-central1-a")
    central_f = listed(compute, "us-central1-f")
    assert {n.split("-")[0] for n in central_a} == {"e2", "n2", "c3", "g2"}
    assert not [n for n in central_f if n.startswith("g2-")]
    with pytest.raises(gexc.NotFound):
        compute.machine_types().get(
            project=PROJECT, zone="us-central1-f", machine_type="g2-standard-4"
        )
    assert "n2-highcpu-128" not in central_a  # the N2 high-CPU series stops at 96
    with pytest.raises(gexc.NotFound):
        compute.machine_types().get(project=PROJECT, zone=ZONE, machine_type="n2-standard-3")


def test_machine_type_list_filter_and_aggregated_list(compute: RunningCompute) -> None:
    request = compute_v1.ListMachineTypesRequest(
        project=PROJECT, zone=ZONE, filter="(guestCpus >= 96) (name eq g2-.*)"
    )
    assert [m.name for m in compute.machine_types().list(request=request)] == ["g2-standard-96"]
    aggregated = compute_v1.AggregatedListMachineTypesRequest(
        project=PROJECT, filter="name = g2-standard-4", max_results=2
    )
    zones = sorted(
        scope
        for scope, scoped in compute.machine_types().aggregated_list(request=aggregated)
        if scoped.machine_types
    )
    assert zones == sorted(
        f"zones/{z}" for z, families in catalogue.ZONES.items() if "g2" in families
    )


@pytest.mark.parametrize(
    ("name", "cpus", "memory_mb"),
    [
        ("e2-custom-4-8192", 4, 8192),
        ("e2-custom-2-1024", 2, 1024),
        ("e2-custom-32-131072", 32, 131072),
        ("n2-custom-36-36864", 36, 36864),
        ("n2-custom-2-24576-ext", 2, 24576),
    ],
)
def test_custom_shapes_within_the_rules(
    compute: RunningCompute, name: str, cpus: int, memory_mb: int
) -> None:
    mt = compute.machine_types().get(project=PROJECT, zone=ZONE, machine_type=name)
    assert (mt.guest_cpus, mt.memory_mb) == (cpus, memory_mb)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("e2-custom-4-8200", "Memory should be a multiple of 256MiB, while 8200MiB"),
        ("e2-custom-4-40960", "Memory should be between 2048MiB and 32768MiB for 4 vCPUs"),
        ("e2-custom-4-1792", "Memory should be between 2048MiB and 32768MiB"),
        ("e2-custom-3-6144", "Number of vCPUs should be between 2 and 32"),
        ("e2-custom-34-65536", "Number of vCPUs should be between 2 and 32"),
        ("n2-custom-34-34816", "multiple of 2 (or a multiple of 4 above 32)"),
        ("n2-custom-2-24576", "Extended memory must be requested with -ext."),
        ("e2-custom-2-24576-ext", "Extended memory is not supported for the e2 series."),
        ("c3-custom-4-8192", "Custom machine types are not supported for the c3 series."),
    ],
)
def test_custom_shapes_outside_the_rules(compute: RunningCompute, name: str, fragment: str) -> None:
    with pytest.raises(gexc.BadRequest) as e:
        compute.machine_types().get(project=PROJECT, zone=ZONE, machine_type=name)
    assert fragment in e.value.errors[0]["message"]
    assert e.value.errors[0]["reason"] == "invalid"


def test_custom_shape_in_an_instance(tmp_path: Path) -> None:
    with running_compute(tmp_path) as rc:
        good = instance_body("custom", machine_type=f"zones/{ZONE}/machineTypes/e2-custom-6-12288")
        op = rc.instances().insert(project=PROJECT, zone=ZONE, instance_resource=good)
        assert not rc.operations().wait(project=PROJECT, zone=ZONE, operation=op.name).error.errors
        vm = rc.instances().get(project=PROJECT, zone=ZONE, instance="custom")
        assert vm.machine_type.endswith("/machineTypes/e2-custom-6-12288")
        bad = instance_body("custom2", machine_type=f"zones/{ZONE}/machineTypes/e2-custom-6-100")
        with pytest.raises(gexc.BadRequest) as e:
            rc.instances().insert(project=PROJECT, zone=ZONE, instance_resource=bad)
        assert e.value.errors[0]["message"].startswith(
            f"Invalid value for field 'resource.machineType': "
            f"'zones/{ZONE}/machineTypes/e2-custom-6-100'. Memory should be a multiple of 256MiB"
        )


def test_gpu_shapes_need_terminate_on_host_maintenance(tmp_path: Path) -> None:
    with running_compute(tmp_path) as rc:
        mt = f"zones/{ZONE}/machineTypes/g2-standard-8"
        with pytest.raises(gexc.BadRequest) as e:
            rc.instances().insert(
                project=PROJECT, zone=ZONE, instance_resource=instance_body("gpu", machine_type=mt)
            )
        assert (
            "Instances with guest accelerators do not support live migration."
            in (e.value.errors[0]["message"])
        )
        wrong_count = instance_body(
            "gpu",
            machine_type=mt,
            scheduling={"on_host_maintenance": "TERMINATE"},
            guest_accelerators=[{"accelerator_type": "nvidia-l4", "accelerator_count": 2}],
        )
        with pytest.raises(gexc.BadRequest):
            rc.instances().insert(project=PROJECT, zone=ZONE, instance_resource=wrong_count)
        body = instance_body(
            "gpu", machine_type=mt, scheduling={"on_host_maintenance": "TERMINATE"}
        )
        op = rc.instances().insert(project=PROJECT, zone=ZONE, instance_resource=body)
        rc.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
        vm = rc.instances().get(project=PROJECT, zone=ZONE, instance="gpu")
        (acc,) = vm.guest_accelerators
        assert acc.accelerator_type.endswith(f"/zones/{ZONE}/acceleratorTypes/nvidia-l4")
        assert acc.accelerator_count == 1


def test_custom_shape_rules_as_pure_functions() -> None:
    shape = catalogue.custom_shape("n2-custom-80-655360-ext", "f", "v")
    assert shape is not None
    assert (shape.cpus, shape.memory_mb, shape.custom) == (80, 655360, True)
    assert catalogue.custom_shape("e2-standard-4", "f", "v") is None
    with pytest.raises(ComputeError):
        catalogue.custom_shape("n2-custom-84-86016", "f", "v")
    assert catalogue.region_of("europe-west4-a") == "europe-west4"
