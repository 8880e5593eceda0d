"""Pod resources -> the Compute Engine machine type, GPUs and boot disk of its VM.

The VM runs one pod and nothing else, so it is sized for what the pod may use, not for
what the scheduler reserves: per container the **limit where set, else the request**
(a container with a limit may burst to it, and there is no neighbour to take the rest).
Containers add up, init containers run one at a time (each beside the sidecars started
before it, as the kubelet counts them), pod ``overhead`` and pod-level ``resources``
count as in Kubernetes, and the VM's own services (COS, kubelet, containerd, fluent-bit)
get ``kubelet_overhead_cpu``/``kubelet_overhead_memory`` on top.

From the zone's real catalogue (``machineTypes.list``) the cheapest shape that holds that
is chosen. The cost proxy orders by vCPUs first (one vCPU costs about as much as 7.5 GB of
memory in E2 and N2), then memory, then predefined before custom (custom shapes cost ~5%
more per unit), then the configured family order. Shared-core types count with the
fraction of a core they really give (``e2-micro``: a quarter). Custom shapes
(``e2-custom-4-6144``) follow each family's documented rules and are used when allowed
and cheaper than every predefined fit. Pods with ``nvidia.com/gpu`` limits go to a GPU
family whose shapes bundle the GPUs (G2: NVIDIA L4), and such VMs cannot live-migrate,
so they get ``onHostMaintenance=TERMINATE``. The annotation ``vnode.dev/machine-type``
names the type outright; families and the custom switch then do not apply, but the pod's
requests (what the VM kubelet admits) must still fit.

The boot disk holds the pod's ``ephemeral-storage`` (limit, else request) plus headroom
for COS's own partitions and the pulled images, and never less than the image minimum.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vnode.clock import Clock
from vnode.errors import InvalidPod, PodTooLarge
from vnode.gce import quantity
from vnode.settings import GCESettings

log = logging.getLogger(__name__)

MACHINE_TYPE_ANNOTATION = "vnode.dev/machine-type"
GPU_RESOURCE = "nvidia.com/gpu"

MIB = 1 << 20
GIB = 1 << 30

# What a shared-core type really gives, in millicores; guestCpus says 2 for all of them.
# A shared-core type missing here is skipped: vnode cannot tell what it offers.
SHARED_CORE_MILLIS = {
    "e2-micro": 250,
    "e2-small": 500,
    "e2-medium": 1000,
    "f1-micro": 200,
    "g1-small": 500,
}


@dataclass(frozen=True)
class CustomRules:
    """The documented limits of a family's custom shapes.

    Memory is a multiple of 256 MB, between ``min_mb_per_cpu`` and ``max_mb_per_cpu``
    per vCPU and at most ``max_total_mb``; ``-ext`` (extended memory, billed apart) lifts
    the per-vCPU ceiling up to ``extended_max_mb`` where the family offers it.
    """

    cpu_counts: tuple[int, ...]
    max_total_mb: int
    extended_max_mb: int | None = None
    min_mb_per_cpu: int = 512
    max_mb_per_cpu: int = 8192
    memory_step_mb: int = 256


CUSTOM_RULES: dict[str, CustomRules] = {
    # E2: 2 to 32 vCPUs in steps of 2, 0.5-8 GB per vCPU, at most 128 GB, no extended memory.
    "e2": CustomRules(tuple(range(2, 33, 2)), max_total_mb=128 * 1024),
    # N2: 2 to 32 vCPUs in steps of 2, then 36 to 80 in steps of 4; 0.5-8 GB per vCPU,
    # at most 640 GB, or 864 GB with extended memory.
    "n2": CustomRules(
        tuple(range(2, 33, 2)) + tuple(range(36, 81, 4)),
        max_total_mb=640 * 1024,
        extended_max_mb=864 * 1024,
    ),
}

_CUSTOM_NAME = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*)-custom-(?P<cpus>\d+)-(?P<mb>\d+)(?P<ext>-ext)?$"
)


@dataclass(frozen=True)
class MachineChoice:
    """The VM shape for one pod, ready for ``instances.insert``."""

    machine_type: str
    """Machine type name (``e2-standard-4``, ``n2-custom-6-12288``, ``g2-standard-8``)."""
    cpus: int
    """vCPUs of the type (``guestCpus``; 2 for the shared-core types)."""
    memory_mb: int
    """Memory of the type in MiB (the Compute API's ``memoryMb``)."""
    gpus: int
    """GPUs bundled with the type (0 without)."""
    gpu_type: str
    """Accelerator type of those GPUs (``nvidia-l4``), empty without."""
    boot_disk_gb: int
    """Boot disk size in GB (GiB, as Compute Engine counts disks)."""
    on_host_maintenance: str
    """``TERMINATE`` for GPU types (they cannot live-migrate), else ``MIGRATE``. A Spot
    VM must be ``TERMINATE`` whatever this says."""

    @property
    def allocatable(self) -> dict[str, str]:
        """What the VM kubelet will offer, for ``resourceFieldRef`` on unset limits."""
        out = {
            "cpu": str(self.cpus),
            "memory": f"{self.memory_mb}Mi",
            "ephemeral-storage": f"{self.boot_disk_gb}Gi",
        }
        if self.gpus:
            out[GPU_RESOURCE] = str(self.gpus)
        return out


@dataclass(frozen=True)
class PodNeeds:
    """What a pod's containers add up to, per resource (see the module docstring)."""

    cpu_milli: int
    memory_bytes: int
    gpus: int
    ephemeral_bytes: int


@dataclass(frozen=True)
class MachineType:
    """One shape from the catalogue (or a custom one), in the units sizing compares."""

    name: str
    family: str
    cpus: int
    cpu_milli: int
    memory_mb: int
    gpus: int = 0
    gpu_type: str = ""
    max_disk_gb: int = 0
    custom: bool = False

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> MachineType | None:
        """A ``compute#machineType`` resource, or None when vnode cannot use it.

        Takes the REST JSON (``guestCpus``) and the client library's ``to_dict`` form
        (``guest_cpus``) alike.
        """
        name = str(item.get("name", ""))
        deprecated = _get(item, "deprecated") or {}
        if not name or deprecated.get("state") in {"DEPRECATED", "OBSOLETE", "DELETED"}:
            return None
        cpus = int(_get(item, "guestCpus") or 0)
        if _get(item, "isSharedCpu"):
            if name not in SHARED_CORE_MILLIS:
                return None
            cpu_milli = SHARED_CORE_MILLIS[name]
        else:
            cpu_milli = cpus * 1000
        gpus, gpu_type = 0, ""
        for acc in _get(item, "accelerators") or ():
            gpus += int(_get(acc, "guestAcceleratorCount") or 0)
            gpu_type = gpu_type or str(_get(acc, "guestAcceleratorType") or "")
        return cls(
            name=name,
            family=family_of(name),
            cpus=cpus,
            cpu_milli=cpu_milli,
            memory_mb=int(_get(item, "memoryMb") or 0),
            gpus=gpus,
            gpu_type=gpu_type,
            max_disk_gb=int(_get(item, "maximumPersistentDisksSizeGb") or 0),
        )


def _get(item: Mapping[str, Any], camel: str) -> Any:
    """A field by its JSON name or by its proto (snake_case) name."""
    if camel in item:
        return item[camel]
    return item.get(re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), camel))


def family_of(machine_type: str) -> str:
    """``e2-standard-4`` -> ``e2``; ``custom-4-8192`` (N1) -> ``n1``."""
    head = machine_type.split("-", 1)[0]
    return "n1" if head == "custom" else head


# -- what the pod needs -----------------------------------------------------------------


def pod_needs(pod: Mapping[str, Any], *, limits_first: bool = True) -> PodNeeds:
    """Sum the pod's containers per resource: limits where set (``limits_first``), else
    requests; with ``limits_first=False``, requests as the kubelet admits them."""
    spec = pod.get("spec") or {}
    try:
        cpu = _pod_total(spec, "cpu", limits_first)
        memory = _pod_total(spec, "memory", limits_first)
        gpus = _pod_total(spec, GPU_RESOURCE, limits_first)
        ephemeral = _pod_total(spec, "ephemeral-storage", limits_first)
    except quantity.QuantityError as err:
        raise InvalidPod(f"invalid resource quantity in the pod: {err}") from None
    return PodNeeds(
        cpu_milli=math.ceil(cpu * 1000),
        memory_bytes=math.ceil(memory),
        gpus=math.ceil(gpus),
        ephemeral_bytes=math.ceil(ephemeral),
    )


def _amount(resources: Mapping[str, Any] | None, name: str, limits_first: bool) -> Fraction:
    resources = resources or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    # Requests default to limits in the API; a raw pod may still carry only limits.
    order = (limits, requests) if limits_first else (requests, limits)
    for source in order:
        if name in source:
            return quantity.parse(source[name])
    return Fraction(0)


def _pod_total(spec: Mapping[str, Any], name: str, limits_first: bool) -> Fraction:
    app = sum(
        (_amount(c.get("resources"), name, limits_first) for c in spec.get("containers") or ()),
        Fraction(0),
    )
    # Init containers run one after another; a sidecar (restartPolicy Always) keeps running
    # beside every later init container and beside the app containers.
    sidecars = Fraction(0)
    init_peak = Fraction(0)
    for c in spec.get("initContainers") or ():
        amount = _amount(c.get("resources"), name, limits_first)
        if c.get("restartPolicy") == "Always":
            sidecars += amount
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, sidecars + amount)
    total = max(app + sidecars, init_peak)
    if name in ("cpu", "memory"):
        # Pod-level resources bound the containers together: a pod-level limit is what
        # they may use at most; a pod-level request is at least what is reserved.
        pod_level = spec.get("resources") or {}
        limit = (pod_level.get("limits") or {}).get(name)
        request = (pod_level.get("requests") or {}).get(name)
        if limits_first and limit is not None:
            total = quantity.parse(limit)
        elif request is not None:
            total = (
                quantity.parse(request) if not limits_first else max(total, quantity.parse(request))
            )
        overhead = (spec.get("overhead") or {}).get(name)
        if overhead is not None:
            total += quantity.parse(overhead)
    return total


# -- choosing -------------------------------------------------------------------------


def choose_machine(
    pod: Mapping[str, Any],
    machine_types: Iterable[Mapping[str, Any]],
    settings: GCESettings,
    *,
    zone: str = "",
) -> MachineChoice:
    """The machine for ``pod`` from a zone's ``machineTypes.list`` items.

    Raises ``InvalidPod`` for a bad ``vnode.dev/machine-type`` annotation and
    ``PodTooLarge`` when nothing in the zone holds the pod.
    """
    catalogue = [t for t in (MachineType.from_api(m) for m in machine_types) if t is not None]
    needs = pod_needs(pod)
    disk_gb = boot_disk_gb(needs, settings)
    where = f" in zone {zone}" if zone else ""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if MACHINE_TYPE_ANNOTATION in annotations:
        chosen = _override(pod, str(annotations[MACHINE_TYPE_ANNOTATION]), catalogue, where)
        _check_disk(chosen, disk_gb, needs, where)
        return _choice(chosen, disk_gb)

    overhead_cpu = quantity.milli_value(settings.kubelet_overhead_cpu)
    overhead_memory = quantity.value(settings.kubelet_overhead_memory)
    cpu = needs.cpu_milli + overhead_cpu
    memory = needs.memory_bytes + overhead_memory
    if needs.gpus:
        if not settings.gpu_families:
            raise InvalidPod(
                f"the pod asks for {needs.gpus} {GPU_RESOURCE} but no GPU machine family is "
                "configured for this node"
            )
        families = settings.gpu_families
        candidates = [t for t in catalogue if t.family in families and t.gpus >= needs.gpus]
    else:
        families = settings.machine_families
        candidates = [t for t in catalogue if t.family in families and not t.gpus]
        if settings.allow_custom_machine_types:
            candidates += _customs(catalogue, families, cpu, memory)
    fits = [
        t
        for t in candidates
        if t.cpu_milli >= cpu and t.memory_mb * MIB >= memory and _disk_fits(t, disk_gb)
    ]
    if not fits:
        raise PodTooLarge(
            _too_large(
                needs,
                overhead_cpu=overhead_cpu,
                overhead_memory=overhead_memory,
                disk_gb=disk_gb,
                catalogue=catalogue,
                settings=settings,
                where=where,
            )
        )
    order = {family: i for i, family in enumerate(families)}
    best = min(
        fits,
        key=lambda t: (t.gpus, t.cpu_milli, t.memory_mb, t.custom, order.get(t.family, 99), t.name),
    )
    return _choice(best, disk_gb)


def boot_disk_gb(needs: PodNeeds, settings: GCESettings) -> int:
    """Boot disk in GB: ephemeral storage plus headroom, at least the image minimum."""
    wanted = math.ceil(needs.ephemeral_bytes / GIB) + settings.boot_disk_headroom_gb
    return max(settings.boot_disk_min_gb, wanted)


def _choice(t: MachineType, disk_gb: int) -> MachineChoice:
    return MachineChoice(
        machine_type=t.name,
        cpus=t.cpus,
        memory_mb=t.memory_mb,
        gpus=t.gpus,
        gpu_type=t.gpu_type,
        boot_disk_gb=disk_gb,
        on_host_maintenance="TERMINATE" if t.gpus else "MIGRATE",
    )


def _disk_fits(t: MachineType, disk_gb: int) -> bool:
    return not t.max_disk_gb or disk_gb <= t.max_disk_gb


def _check_disk(t: MachineType, disk_gb: int, needs: PodNeeds, where: str) -> None:
    if not _disk_fits(t, disk_gb):
        raise PodTooLarge(
            f"the pod needs a {disk_gb} GB boot disk ({_gib(needs.ephemeral_bytes)} of "
            f"ephemeral-storage plus headroom) but {t.name}{where} takes at most "
            f"{t.max_disk_gb} GB of disks"
        )


# -- custom shapes ----------------------------------------------------------------------


def custom_name(family: str, cpus: int, memory_mb: int, *, extended: bool = False) -> str:
    """The machine type name of a custom shape (``n2-custom-8-16384``)."""
    return f"{family}-custom-{cpus}-{memory_mb}" + ("-ext" if extended else "")


def parse_custom(name: str, catalogue: Sequence[MachineType] = ()) -> MachineType | None:
    """The shape a custom machine type name describes; None if ``name`` is not custom.

    Raises ``InvalidPod`` naming the broken rule when it is custom but not allowed.
    """
    m = _CUSTOM_NAME.match(name)
    if m is None:
        return None
    family, cpus, mb, extended = m["family"], int(m["cpus"]), int(m["mb"]), bool(m["ext"])
    rules = CUSTOM_RULES.get(family)
    if rules is None:
        raise InvalidPod(
            f"custom machine type {name!r}: vnode supports custom shapes only for "
            + ", ".join(sorted(CUSTOM_RULES))
        )
    if cpus not in rules.cpu_counts:
        raise InvalidPod(
            f"custom machine type {name!r}: {family} custom shapes have "
            f"{_ranges(rules.cpu_counts)} vCPUs, not {cpus}"
        )
    if mb % rules.memory_step_mb:
        raise InvalidPod(
            f"custom machine type {name!r}: memory must be a multiple of "
            f"{rules.memory_step_mb} MB, not {mb} MB"
        )
    low = cpus * rules.min_mb_per_cpu
    high = min(cpus * rules.max_mb_per_cpu, rules.max_total_mb)
    if extended:
        if rules.extended_max_mb is None:
            raise InvalidPod(f"custom machine type {name!r}: {family} has no extended memory")
        high = rules.extended_max_mb
    if not low <= mb <= high:
        raise InvalidPod(
            f"custom machine type {name!r}: {cpus} vCPUs take {low} to {high} MB of memory"
            + ("" if extended or rules.extended_max_mb is None else " (more with -ext)")
            + f", not {mb} MB"
        )
    return MachineType(
        name=name,
        family=family,
        cpus=cpus,
        cpu_milli=cpus * 1000,
        memory_mb=mb,
        max_disk_gb=_family_max_disk(catalogue, family),
        custom=True,
    )


def _customs(
    catalogue: Sequence[MachineType], families: Sequence[str], cpu_milli: int, memory: int
) -> list[MachineType]:
    """The smallest allowed custom shape per family offered in this zone."""
    offered = {t.family for t in catalogue}
    out = []
    for family in families:
        rules = CUSTOM_RULES.get(family)
        if rules is None or family not in offered:
            continue
        step = rules.memory_step_mb
        memory_mb = -(-memory // (step * MIB)) * step
        for cpus in rules.cpu_counts:
            mb = max(memory_mb, cpus * rules.min_mb_per_cpu)
            if cpus * 1000 < cpu_milli or mb > min(cpus * rules.max_mb_per_cpu, rules.max_total_mb):
                continue
            out.append(
                MachineType(
                    name=custom_name(family, cpus, mb),
                    family=family,
                    cpus=cpus,
                    cpu_milli=cpus * 1000,
                    memory_mb=mb,
                    max_disk_gb=_family_max_disk(catalogue, family),
                    custom=True,
                )
            )
            break
    return out


def _family_max_disk(catalogue: Sequence[MachineType], family: str) -> int:
    """Custom shapes take the disk limit of the family's full-core predefined types."""
    sizes = [
        t.max_disk_gb for t in catalogue if t.family == family and t.name not in SHARED_CORE_MILLIS
    ]
    return max(sizes, default=0)


def _ranges(counts: Sequence[int]) -> str:
    """``(2, 4, ..., 32, 36, 40, ..., 80)`` -> ``2-32 in steps of 2, 36-80 in steps of 4``."""
    parts: list[str] = []
    start = 0
    while start < len(counts):
        end = start
        step = counts[start + 1] - counts[start] if start + 1 < len(counts) else 0
        while end + 1 < len(counts) and counts[end + 1] - counts[end] == step:
            end += 1
        if end == start:
            parts.append(str(counts[start]))
        else:
            parts.append(f"{counts[start]}-{counts[end]} in steps of {step}")
        start = end + 1
    return ", ".join(parts)


# -- the annotation --------------------------------------------------------------------


def _override(
    pod: Mapping[str, Any], name: str, catalogue: Sequence[MachineType], where: str
) -> MachineType:
    by_name = {t.name: t for t in catalogue}
    chosen = by_name.get(name)
    if chosen is None:
        custom = parse_custom(name, catalogue)
        if custom is not None and custom.family in {t.family for t in catalogue}:
            chosen = custom
    if chosen is None:
        raise InvalidPod(
            f"annotation {MACHINE_TYPE_ANNOTATION}: {name!r} is not a machine type offered"
            f"{where} (expected a type such as e2-standard-4, or a custom shape such as "
            "n2-custom-4-8192)"
        )
    # The pod's requests are what the VM kubelet admits: they must fit the named type.
    requests = pod_needs(pod, limits_first=False)
    if requests.gpus > chosen.gpus:
        raise PodTooLarge(
            f"the pod asks for {requests.gpus} GPUs but {name} (annotation "
            f"{MACHINE_TYPE_ANNOTATION}) has {chosen.gpus}"
        )
    if requests.cpu_milli > chosen.cpu_milli or requests.memory_bytes > chosen.memory_mb * MIB:
        raise PodTooLarge(
            f"the pod requests {_cpus(requests.cpu_milli)} vCPUs and "
            f"{_gib(requests.memory_bytes)} of memory but {name} (annotation "
            f"{MACHINE_TYPE_ANNOTATION}) offers {_cpus(chosen.cpu_milli)} vCPUs and "
            f"{_gib(chosen.memory_mb * MIB)}"
        )
    return chosen


# -- the message for a pod nothing holds ----------------------------------------------


def _too_large(
    needs: PodNeeds,
    *,
    overhead_cpu: int,
    overhead_memory: int,
    disk_gb: int,
    catalogue: Sequence[MachineType],
    settings: GCESettings,
    where: str,
) -> str:
    asked = f"{_cpus(needs.cpu_milli)} vCPUs, {_gib(needs.memory_bytes)} of memory"
    if needs.gpus:
        asked += f" and {needs.gpus} GPUs ({GPU_RESOURCE})"
    if needs.ephemeral_bytes:
        asked += f" ({_gib(needs.ephemeral_bytes)} of ephemeral-storage: a {disk_gb} GB disk)"
    head = (
        f"no machine type can hold this pod: it needs {asked} (limits where set, else "
        f"requests), plus {_cpus(overhead_cpu)} vCPUs and {_gib(overhead_memory)} for the "
        "VM's own services"
    )
    families = settings.gpu_families if needs.gpus else settings.machine_families
    pool = [t for t in catalogue if t.family in families and bool(t.gpus) == bool(needs.gpus)]
    names = ", ".join(families) or "(none configured)"
    if not pool:
        return f"{head}; no machine type of the families {names} is offered{where}"
    offers: list[str] = []
    if needs.gpus:
        most = max(pool, key=lambda t: (t.gpus, t.cpu_milli, t.memory_mb))
        offers.append(f"{most.gpus} {most.gpu_type or 'GPU'} GPUs ({_describe(most)})")
    most_cpu = max(pool, key=lambda t: (t.cpu_milli, t.memory_mb))
    most_memory = max(pool, key=lambda t: (t.memory_mb, t.cpu_milli))
    if most_cpu == most_memory:
        offers.append(_describe(most_cpu))
    else:
        offers.append(f"{_cpus(most_cpu.cpu_milli)} vCPUs ({_describe(most_cpu)})")
        offers.append(f"{_gib(most_memory.memory_mb * MIB)} of memory ({_describe(most_memory)})")
    if settings.allow_custom_machine_types and not needs.gpus:
        for family in families:
            rules = CUSTOM_RULES.get(family)
            if rules and family in {t.family for t in pool}:
                offers.append(
                    f"{family} custom shapes up to {max(rules.cpu_counts)} vCPUs and "
                    f"{_gib(rules.max_total_mb * MIB)}"
                )
    if needs.ephemeral_bytes:
        offers.append(f"disks up to {max(t.max_disk_gb for t in pool)} GB")
    return f"{head}; the largest machine types of the families {names}{where} offer " + (
        ", ".join(offers)
    )


def _describe(t: MachineType) -> str:
    return f"{t.name}: {_cpus(t.cpu_milli)} vCPUs, {_gib(t.memory_mb * MIB)}"


def _cpus(milli: int) -> str:
    return f"{milli / 1000:g}"


def _gib(nbytes: int) -> str:
    return f"{round(nbytes / GIB, 2):g} GiB"


# -- the cached catalogue ----------------------------------------------------------------

Loader = Callable[[str], Awaitable[list[dict[str, Any]]]]


class MachineCatalogue:
    """Each zone's ``machineTypes.list``, loaded once per ``ttl`` seconds.

    Concurrent callers for one zone share one load. When a reload fails and an older
    list is at hand, the older list is served (machine types change a few times a year)
    and the failure is logged; with nothing at hand the error propagates.
    """

    def __init__(self, load: Loader, clock: Clock, *, ttl: float = 3600.0) -> None:
        self._load = load
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, zone: str) -> list[dict[str, Any]]:
        cached = self._fresh(zone)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(zone, asyncio.Lock())
        async with lock:
            cached = self._fresh(zone)
            if cached is not None:
                return cached
            try:
                items = await self._load(zone)
            except Exception as err:
                stale = self._cache.get(zone)
                if stale is None:
                    raise
                log.warning(
                    "listing machine types in %s failed, using the older list: %s", zone, err
                )
                return stale[1]
            self._cache[zone] = (self._clock.monotonic(), list(items))
            return self._cache[zone][1]

    def invalidate(self, zone: str | None = None) -> None:
        """Forget one zone's list (or all), so the next ``get`` lists again."""
        if zone is None:
            self._cache.clear()
        else:
            self._cache.pop(zone, None)

    def _fresh(self, zone: str) -> list[dict[str, Any]] | None:
        entry = self._cache.get(zone)
        if entry is None or self._clock.monotonic() - entry[0] >= self._ttl:
            return None
        return entry[1]
