"""Machine choice: every sizing rule against the emulator's real-numbers catalogue."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from vnode.clock import FakeClock
from vnode.errors import InvalidPod, PodTooLarge
from vnode.gce.machines import (
    MachineCatalogue,
    MachineType,
    choose_machine,
    custom_name,
    parse_custom,
    pod_needs,
)
from vnode.sandbox.compute.catalogue import lookup, to_resource, zone_shapes
from vnode.settings import GCESettings

ZONE = "us-central1-a"
# Disk expectations below use a 10 GB headroom; the default is checked on its own.
SETTINGS = GCESettings(project="p", zones=(ZONE,), boot_disk_headroom_gb=10)
NO_CUSTOM = dataclasses.replace(SETTINGS, allow_custom_machine_types=False)
GI = 1 << 30


@pytest.fixture(scope="module")
def catalogue() -> list[dict[str, Any]]:
    """``machineTypes.list`` items of a zone with e2, n2, c3 and g2 (real shapes)."""
    base = "https://compute.googleapis.com/compute/v1"
    return [to_resource(s, ZONE, base, "p") for s in zone_shapes(ZONE)]


def container(name: str = "c", **resources: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "resources": resources}


def pod(
    *containers: dict[str, Any],
    init: tuple[dict[str, Any], ...] = (),
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "default", "uid": "u"},
        "spec": {"containers": list(containers) or [container()], **spec},
    }
    if init:
        body["spec"]["initContainers"] = list(init)
    if annotations:
        body["metadata"]["annotations"] = annotations
    return body


def limits(**amounts: str) -> dict[str, Any]:
    return container(limits={k.replace("_", "-"): v for k, v in amounts.items()})


# -- what the pod needs ----------------------------------------------------------------


def test_needs_sum_containers_taking_limits_over_requests() -> None:
    p = pod(
        container("a", requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2"}),
        container("b", requests={"cpu": "250m", "memory": "512Mi"}),
    )
    needs = pod_needs(p)
    assert needs.cpu_milli == 2250
    assert needs.memory_bytes == GI + GI // 2
    requests = pod_needs(p, limits_first=False)
    assert requests.cpu_milli == 750


def test_needs_take_the_largest_init_container_when_it_beats_the_app_containers() -> None:
    p = pod(limits(cpu="1", memory="1Gi"), init=(limits(cpu="3", memory="512Mi"),))
    needs = pod_needs(p)
    assert (needs.cpu_milli, needs.memory_bytes) == (3000, GI)


def test_sidecars_run_beside_later_init_containers_and_the_app() -> None:
    sidecar = {**limits(cpu="1"), "name": "side", "restartPolicy": "Always"}
    p = pod(limits(cpu="1"), init=(sidecar, limits(cpu="2")))
    # the init container after the sidecar runs beside it: 1 + 2; the app: 1 + 1
    assert pod_needs(p).cpu_milli == 3000
    p = pod(limits(cpu="4"), init=(sidecar, limits(cpu="2")))
    assert pod_needs(p).cpu_milli == 5000


def test_pod_overhead_and_pod_level_resources_count() -> None:
    p = pod(limits(cpu="1", memory="1Gi"), overhead={"cpu": "100m", "memory": "64Mi"})
    assert pod_needs(p).cpu_milli == 1100
    p = pod(limits(cpu="1"), resources={"limits": {"cpu": "3"}})
    assert pod_needs(p).cpu_milli == 3000
    # a pod-level request alone: at least that, and at least what the containers may use
    p = pod(limits(cpu="1"), resources={"requests": {"cpu": "2"}})
    assert pod_needs(p).cpu_milli == 2000
    assert pod_needs(p, limits_first=False).cpu_milli == 2000
    p = pod(limits(cpu="3"), resources={"requests": {"cpu": "2"}})
    assert pod_needs(p).cpu_milli == 3000


def test_a_bad_quantity_is_an_invalid_pod() -> None:
    with pytest.raises(InvalidPod, match="invalid resource quantity"):
        pod_needs(pod(limits(cpu="lots")))


# -- choosing ---------------------------------------------------------------------------


def test_a_best_effort_pod_gets_the_smallest_shared_core_type(catalogue: list[dict]) -> None:
    choice = choose_machine(pod(), catalogue, SETTINGS, zone=ZONE)
    # only the VM's own 250m / 512Mi: a quarter core and 1 GB
    assert choice.machine_type == "e2-micro"
    assert (choice.cpus, choice.memory_mb, choice.gpus) == (2, 1024, 0)
    assert choice.on_host_maintenance == "MIGRATE"
    assert choice.boot_disk_gb == 10


def test_the_vm_overhead_is_added_before_fitting(catalogue: list[dict]) -> None:
    # 1 vCPU fits e2-medium alone, but not with the kubelet's 250m beside it
    choice = choose_machine(pod(limits(cpu="750m", memory="1Gi")), catalogue, NO_CUSTOM)
    assert choice.machine_type == "e2-medium"
    choice = choose_machine(pod(limits(cpu="1", memory="1Gi")), catalogue, NO_CUSTOM)
    assert choice.machine_type == "e2-highcpu-2"
    tuned = dataclasses.replace(NO_CUSTOM, kubelet_overhead_cpu="0", kubelet_overhead_memory="0")
    assert choose_machine(pod(limits(cpu="1", memory="1Gi")), catalogue, tuned).machine_type == (
        "e2-medium"
    )


def test_fewer_vcpus_win_over_less_memory(catalogue: list[dict]) -> None:
    # 1.5 vCPUs and 14 GiB: e2-highmem-2 (2 vCPUs, 16 GB) beats e2-standard-4 (4, 16)
    choice = choose_machine(pod(limits(cpu="1500m", memory="14Gi")), catalogue, NO_CUSTOM)
    assert (choice.machine_type, choice.cpus, choice.memory_mb) == ("e2-highmem-2", 2, 16384)


def test_family_order_breaks_ties(catalogue: list[dict]) -> None:
    p = pod(limits(cpu="1500m", memory="6Gi"))
    assert choose_machine(p, catalogue, NO_CUSTOM).machine_type == "e2-standard-2"
    n2_first = dataclasses.replace(NO_CUSTOM, machine_families=("n2", "e2"))
    assert choose_machine(p, catalogue, n2_first).machine_type == "n2-standard-2"


def test_only_configured_families_are_chosen_automatically(catalogue: list[dict]) -> None:
    only_c3 = dataclasses.replace(NO_CUSTOM, machine_families=("c3",))
    assert choose_machine(pod(limits(cpu="1")), catalogue, only_c3).machine_type == "c3-highcpu-4"


def test_large_pods_go_to_n2(catalogue: list[dict]) -> None:
    choice = choose_machine(pod(limits(cpu="40", memory="100Gi")), catalogue, NO_CUSTOM)
    assert choice.machine_type == "n2-standard-48"


def test_a_custom_shape_wins_when_smaller(catalogue: list[dict]) -> None:
    # 1.25 vCPUs and 1.5 GiB with overhead: e2-highcpu-2 has 2 GB, the custom shape 1.5
    choice = choose_machine(pod(limits(cpu="1", memory="1Gi")), catalogue, SETTINGS)
    assert (choice.machine_type, choice.cpus, choice.memory_mb) == ("e2-custom-2-1536", 2, 1536)


def test_custom_memory_rounds_up_to_256_mb_and_at_least_half_a_gb_per_vcpu(
    catalogue: list[dict],
) -> None:
    choice = choose_machine(pod(limits(cpu="6", memory="1000Mi")), catalogue, SETTINGS)
    # 6.25 vCPUs -> 8; 1512 MiB -> at least 8 x 512
    assert choice.machine_type == "e2-custom-8-4096"
    choice = choose_machine(pod(limits(cpu="3", memory="3001Mi")), catalogue, SETTINGS)
    # 3513 MiB rounds up to 3584
    assert choice.machine_type == "e2-custom-4-3584"


def test_custom_memory_above_8_gb_per_vcpu_takes_more_vcpus(catalogue: list[dict]) -> None:
    # 1.25 vCPUs but 20.5 GiB: 2 vCPUs hold at most 16 GB, so 4 vCPUs
    choice = choose_machine(pod(limits(cpu="1", memory="20Gi")), catalogue, SETTINGS)
    assert choice.machine_type == "e2-custom-4-20992"


def test_n2_custom_counts_in_fours_above_32(catalogue: list[dict]) -> None:
    choice = choose_machine(pod(limits(cpu="40", memory="100Gi")), catalogue, SETTINGS)
    # 40.25 vCPUs: E2 stops at 32; N2 offers 36, 40, 44: 44 beats n2-standard-48
    assert choice.machine_type == "n2-custom-44-102912"


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        ("100m", "64Mi"),
        ("1", "1Gi"),
        ("3", "3001Mi"),
        ("7", "50Gi"),
        ("20", "10Gi"),
        ("31", "120Gi"),
        ("33", "1Gi"),
        ("45", "300Gi"),
        ("70", "500Gi"),
        ("79", "600Gi"),
    ],
)
def test_every_chosen_shape_is_one_the_compute_api_accepts(
    catalogue: list[dict], cpu: str, memory: str
) -> None:
    choice = choose_machine(pod(limits(cpu=cpu, memory=memory)), catalogue, SETTINGS)
    # the emulator's catalogue applies the documented custom-shape rules independently
    shape = lookup(ZONE, choice.machine_type, field_path="machineType", value=choice.machine_type)
    assert shape is not None
    assert (shape.cpus, shape.memory_mb) == (choice.cpus, choice.memory_mb)


def test_a_predefined_type_wins_a_tie_with_a_custom_shape(catalogue: list[dict]) -> None:
    # exactly e2-standard-2 after overhead: 1.75 vCPUs, 7.5 GiB
    choice = choose_machine(pod(limits(cpu="1750m", memory="7680Mi")), catalogue, SETTINGS)
    assert choice.machine_type == "e2-standard-2"


def test_gpus_choose_a_g2_shape_with_enough_l4s(catalogue: list[dict]) -> None:
    choice = choose_machine(
        pod(container(limits={"cpu": "1", "nvidia.com/gpu": "1"})), catalogue, SETTINGS
    )
    assert choice.machine_type == "g2-standard-4"
    assert (choice.gpus, choice.gpu_type) == (1, "nvidia-l4")
    assert choice.on_host_maintenance == "TERMINATE"


def test_gpu_counts_round_up_to_the_next_bundle(catalogue: list[dict]) -> None:
    p = pod(container(limits={"nvidia.com/gpu": "3", "cpu": "8"}))
    choice = choose_machine(p, catalogue, SETTINGS)
    assert (choice.machine_type, choice.gpus) == ("g2-standard-48", 4)
    p = pod(container(limits={"nvidia.com/gpu": "2"}))
    assert choose_machine(p, catalogue, SETTINGS).machine_type == "g2-standard-24"


def test_a_big_cpu_gpu_pod_keeps_to_one_gpu(catalogue: list[dict]) -> None:
    p = pod(container(limits={"nvidia.com/gpu": "1", "cpu": "30", "memory": "100Gi"}))
    assert choose_machine(p, catalogue, SETTINGS).machine_type == "g2-standard-32"


def test_gpu_pods_never_get_custom_or_general_purpose_types(catalogue: list[dict]) -> None:
    p = pod(container(limits={"nvidia.com/gpu": "1", "cpu": "100m"}))
    assert choose_machine(p, catalogue, SETTINGS).machine_type.startswith("g2-")


def test_cpu_pods_never_get_gpu_types(catalogue: list[dict]) -> None:
    with_g2 = dataclasses.replace(NO_CUSTOM, machine_families=("g2", "e2"))
    assert not choose_machine(pod(limits(cpu="3")), catalogue, with_g2).gpus


def test_gpus_without_a_gpu_family_are_refused(catalogue: list[dict]) -> None:
    no_gpus = dataclasses.replace(SETTINGS, gpu_families=())
    with pytest.raises(InvalidPod, match="no GPU machine family"):
        choose_machine(pod(container(limits={"nvidia.com/gpu": "1"})), catalogue, no_gpus)


def test_too_many_gpus_say_what_the_largest_type_has(catalogue: list[dict]) -> None:
    with pytest.raises(PodTooLarge) as caught:
        choose_machine(pod(container(limits={"nvidia.com/gpu": "16"})), catalogue, SETTINGS)
    assert "16 GPUs" in caught.value.message
    assert "8 nvidia-l4 GPUs (g2-standard-96" in caught.value.message
    assert caught.value.pod_reason == "PodTooLarge"


def test_boot_disk_from_ephemeral_storage(catalogue: list[dict]) -> None:
    p = pod(container(requests={"ephemeral-storage": "50Gi"}))
    assert choose_machine(p, catalogue, SETTINGS).boot_disk_gb == 60
    p = pod(container(requests={"ephemeral-storage": "1Gi"}, limits={"ephemeral-storage": "20G"}))
    # the limit wins; 20 GB is 18.6 GiB, rounded up
    assert choose_machine(p, catalogue, SETTINGS).boot_disk_gb == 29
    bigger = dataclasses.replace(SETTINGS, boot_disk_min_gb=30)
    assert choose_machine(pod(), catalogue, bigger).boot_disk_gb == 30
    # by default 20 GB beside the pod's own need: COS partitions and the images
    assert choose_machine(pod(), catalogue, GCESettings()).boot_disk_gb == 20


def test_a_disk_too_big_for_shared_core_moves_up(catalogue: list[dict]) -> None:
    # e2-micro takes at most 3072 GB of disks
    p = pod(container(requests={"ephemeral-storage": "4000Gi"}))
    choice = choose_machine(p, catalogue, NO_CUSTOM)
    assert choice.machine_type == "e2-highcpu-2"
    assert choice.boot_disk_gb == 4010


def test_a_pod_too_big_says_what_it_asked_and_what_is_offered(catalogue: list[dict]) -> None:
    with pytest.raises(PodTooLarge) as caught:
        choose_machine(pod(limits(cpu="200", memory="16Gi")), catalogue, SETTINGS, zone=ZONE)
    message = caught.value.message
    assert "it needs 200 vCPUs, 16 GiB of memory" in message
    assert "plus 0.25 vCPUs and 0.5 GiB" in message
    assert f"e2, n2 in zone {ZONE}" in message
    assert "offer n2-highmem-128: 128 vCPUs, 864 GiB," in message
    assert "n2 custom shapes up to 80 vCPUs" in message


def test_too_much_memory_is_too_large(catalogue: list[dict]) -> None:
    with pytest.raises(PodTooLarge, match="1000 GiB of memory") as caught:
        choose_machine(pod(limits(memory="1000Gi")), catalogue, NO_CUSTOM)
    assert "custom" not in caught.value.message
    small = [
        {"name": "e2-highcpu-8", "guestCpus": 8, "memoryMb": 8192},
        {"name": "e2-highmem-2", "guestCpus": 2, "memoryMb": 16384},
    ]
    with pytest.raises(PodTooLarge) as caught:
        choose_machine(pod(limits(cpu="9")), small, NO_CUSTOM)
    # different types are the largest in vCPUs and in memory: both are named
    assert "offer 8 vCPUs (e2-highcpu-8: 8 vCPUs, 8 GiB), 16 GiB of memory (e2-highmem-2" in (
        caught.value.message
    )


def test_no_family_in_the_zone(catalogue: list[dict]) -> None:
    elsewhere = dataclasses.replace(SETTINGS, machine_families=("m3",))
    with pytest.raises(PodTooLarge, match="no machine type of the families m3 is offered"):
        choose_machine(pod(), catalogue, elsewhere, zone=ZONE)


# -- the annotation ---------------------------------------------------------------------


def annotated(name: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return pod(*containers, annotations={"vnode.dev/machine-type": name})


def test_the_annotation_names_any_type_of_the_zone(catalogue: list[dict]) -> None:
    choice = choose_machine(annotated("c3-standard-8"), catalogue, SETTINGS)
    assert (choice.machine_type, choice.cpus, choice.memory_mb) == ("c3-standard-8", 8, 32768)
    assert choice.on_host_maintenance == "MIGRATE"


def test_the_annotation_may_name_a_valid_custom_shape(catalogue: list[dict]) -> None:
    choice = choose_machine(annotated("n2-custom-6-12288"), catalogue, NO_CUSTOM)
    assert (choice.machine_type, choice.cpus, choice.memory_mb) == ("n2-custom-6-12288", 6, 12288)
    choice = choose_machine(annotated("n2-custom-2-32768-ext"), catalogue, NO_CUSTOM)
    assert choice.memory_mb == 32768


def test_the_annotation_on_a_gpu_type_gets_terminate(catalogue: list[dict]) -> None:
    p = annotated("g2-standard-24", container(limits={"nvidia.com/gpu": "2"}))
    choice = choose_machine(p, catalogue, SETTINGS)
    assert (choice.gpus, choice.on_host_maintenance) == (2, "TERMINATE")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("e2-standard-3", "not a machine type offered in zone us-central1-a"),
        ("m1-ultramem-40", "not a machine type offered"),
        ("e2-custom-3-4096", "e2 custom shapes have 2-32 in steps of 2 vCPUs, not 3"),
        ("n2-custom-34-65536", "2-32 in steps of 2, 36-80 in steps of 4 vCPUs, not 34"),
        ("e2-custom-4-4000", "multiple of 256 MB, not 4000"),
        ("e2-custom-4-65536", "4 vCPUs take 2048 to 32768 MB of memory, not 65536"),
        ("n2-custom-4-65536", "2048 to 32768 MB of memory (more with -ext)"),
        ("e2-custom-4-65536-ext", "e2 has no extended memory"),
        ("c3-custom-4-8192", "custom shapes only for e2, n2"),
    ],
)
def test_a_bad_annotation_is_an_invalid_pod(catalogue: list[dict], name: str, why: str) -> None:
    with pytest.raises(InvalidPod, match=r"vnode.dev/machine-type|custom machine type") as caught:
        choose_machine(annotated(name), catalogue, SETTINGS, zone=ZONE)
    assert why in caught.value.message
    assert not isinstance(caught.value, PodTooLarge)


def test_the_annotated_type_must_hold_the_requests(catalogue: list[dict]) -> None:
    # limits beyond the type are the user's call; requests are what the VM kubelet admits
    p = annotated("e2-standard-2", container(requests={"cpu": "1"}, limits={"cpu": "8"}))
    assert choose_machine(p, catalogue, SETTINGS).machine_type == "e2-standard-2"
    p = annotated("e2-standard-2", container(requests={"cpu": "3"}))
    with pytest.raises(PodTooLarge, match=r"requests 3 vCPUs .* but e2-standard-2 .* offers 2"):
        choose_machine(p, catalogue, SETTINGS)
    p = annotated("e2-standard-4", container(limits={"nvidia.com/gpu": "1"}))
    with pytest.raises(PodTooLarge, match=r"1 GPUs but e2-standard-4 .* has 0"):
        choose_machine(p, catalogue, SETTINGS)


def test_the_annotated_type_must_take_the_disk(catalogue: list[dict]) -> None:
    p = annotated("e2-micro", container(requests={"ephemeral-storage": "4000Gi"}))
    with pytest.raises(PodTooLarge, match=r"4010 GB boot disk .* e2-micro takes at most 3072 GB"):
        choose_machine(p, catalogue, SETTINGS)


# -- the catalogue items ----------------------------------------------------------------


def test_deprecated_and_unknown_shared_core_types_are_skipped() -> None:
    assert MachineType.from_api({"name": "x-1", "deprecated": {"state": "OBSOLETE"}}) is None
    assert MachineType.from_api({"name": "z9-tiny", "guestCpus": 2, "isSharedCpu": True}) is None
    small = MachineType.from_api({"name": "e2-small", "guestCpus": 2, "isSharedCpu": True})
    assert small is not None and small.cpu_milli == 500
    catalogue = [
        {
            "name": "e2-standard-2",
            "guestCpus": 2,
            "memoryMb": 8192,
            "deprecated": {"state": "DELETED"},
        },
        {"name": "e2-standard-4", "guestCpus": 4, "memoryMb": 16384},
    ]
    assert choose_machine(pod(), catalogue, NO_CUSTOM).machine_type == "e2-standard-4"


def test_the_client_librarys_snake_case_dicts_work_too() -> None:
    item = {
        "name": "g2-standard-8",
        "guest_cpus": 8,
        "memory_mb": 32768,
        "is_shared_cpu": False,
        "maximum_persistent_disks_size_gb": 263168,
        "accelerators": [{"guest_accelerator_type": "nvidia-l4", "guest_accelerator_count": 1}],
    }
    shape = MachineType.from_api(item)
    assert shape == MachineType(
        name="g2-standard-8",
        family="g2",
        cpus=8,
        cpu_milli=8000,
        memory_mb=32768,
        gpus=1,
        gpu_type="nvidia-l4",
        max_disk_gb=263168,
    )


def test_allocatable_of_a_choice(catalogue: list[dict]) -> None:
    choice = choose_machine(pod(container(limits={"nvidia.com/gpu": "1"})), catalogue, SETTINGS)
    assert choice.allocatable == {
        "cpu": "4",
        "memory": "16384Mi",
        "ephemeral-storage": "10Gi",
        "nvidia.com/gpu": "1",
    }


def test_custom_names() -> None:
    assert custom_name("n2", 8, 16384) == "n2-custom-8-16384"
    assert custom_name("n2", 8, 98304, extended=True) == "n2-custom-8-98304-ext"
    assert parse_custom("e2-standard-4") is None
    shape = parse_custom("e2-custom-32-131072")
    assert shape is not None and (shape.cpus, shape.memory_mb, shape.custom) == (32, 131072, True)


# -- the cache --------------------------------------------------------------------------


class Loader:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, zone: str) -> list[dict[str, Any]]:
        self.calls.append(zone)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("503 backendError")
        return [{"name": f"e2-standard-{len(self.calls) * 2}", "guestCpus": 2, "memoryMb": 8192}]


async def test_the_catalogue_is_cached_per_zone_until_the_ttl() -> None:
    clock = FakeClock()
    loader = Loader()
    cache = MachineCatalogue(loader, clock, ttl=60)
    first = await cache.get("a")
    assert await cache.get("a") == first
    await cache.get("b")
    assert loader.calls == ["a", "b"]
    await clock.advance(59)
    await cache.get("a")
    assert loader.calls == ["a", "b"]
    await clock.advance(1)
    assert await cache.get("a") != first
    assert loader.calls == ["a", "b", "a"]
    cache.invalidate("a")
    await cache.get("a")
    cache.invalidate()
    await cache.get("b")
    assert loader.calls == ["a", "b", "a", "a", "b"]


async def test_concurrent_callers_share_one_load() -> None:
    loader = Loader()
    loader.gate = asyncio.Event()
    cache = MachineCatalogue(loader, FakeClock(), ttl=60)
    waiters = [asyncio.create_task(cache.get("a")) for _ in range(5)]
    await asyncio.sleep(0)
    loader.gate.set()
    results = await asyncio.gather(*waiters)
    assert loader.calls == ["a"]
    assert all(r == results[0] for r in results)


async def test_a_failed_reload_serves_the_older_list_and_a_first_failure_raises() -> None:
    clock = FakeClock()
    loader = Loader()
    cache = MachineCatalogue(loader, clock, ttl=60)
    first = await cache.get("a")
    loader.fail = True
    await clock.advance(120)
    assert await cache.get("a") == first
    with pytest.raises(RuntimeError, match="503"):
        await cache.get("b")
    loader.fail = False
    assert await cache.get("a") != first
