"""The machine types the emulated zones offer, with the real shapes and custom-shape rules.

vnode picks the smallest machine type that fits a pod from ``machineTypes.list``, so the
catalogue must carry the real numbers (vCPUs, MiB, bundled GPUs) and the real rules for
custom shapes (``e2-custom-4-8192``): a catalogue kinder than the real one would let a
sizing bug pass here and fail in production.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from vnode.sandbox.compute.errors import invalid_field

GIB = 1024

# Zones the emulator serves, and the families each offers (G2 is not in every zone,
# as on the real platform, so zone choice matters for GPU pods).
ZONES: dict[str, tuple[str, ...]] = {
    "us-central1-a": ("e2", "n2", "c3", "g2"),
    "us-central1-b": ("e2", "n2", "c3", "g2"),
    "us-central1-c": ("e2", "n2", "c3", "g2"),
    "us-central1-f": ("e2", "n2", "c3"),
    "europe-west4-a": ("e2", "n2", "c3", "g2"),
    "europe-west4-b": ("e2", "n2", "c3", "g2"),
}

# The CPU quota metric each family counts against (E2 shares the generic CPUS quota).
CPU_QUOTA_METRIC = {"e2": "CPUS", "n2": "N2_CPUS", "c3": "C3_CPUS", "g2": "G2_CPUS"}
GPU_QUOTA_METRIC = {"nvidia-l4": "NVIDIA_L4_GPUS"}


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


@dataclass(frozen=True)
class Shape:
    name: str
    cpus: int
    memory_mb: int
    description: str
    shared_cpu: bool = False
    accelerators: tuple[tuple[str, int], ...] = ()
    max_disks: int = 128
    max_disks_size_gb: int = 263168
    custom: bool = False
    family: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name.split("-", 1)[0])


def _gb(mb: int) -> str:
    gb = mb / GIB
    return f"{gb:g}"


def _predefined(family: str, kind: str, cpus: int, gb_per_cpu: float) -> Shape:
    memory = int(cpus * gb_per_cpu * GIB)
    prefix = "Efficient Instance, " if family == "e2" else ""
    sep = ", " if family == "e2" else " "
    return Shape(
        f"{family}-{kind}-{cpus}",
        cpus,
        memory,
        f"{prefix}{cpus} vCPUs{sep}{_gb(memory)} GB RAM",
    )


def _build() -> dict[str, Shape]:
    shapes: list[Shape] = [
        # Shared-core E2: two vCPUs time-sliced to a fraction of a core.
        Shape(
            "e2-micro",
            2,
            1024,
            "Efficient Instance, 0.25 vCPU (1/4 shared physical core) and 1 GB RAM",
            shared_cpu=True,
            max_disks=16,
            max_disks_size_gb=3072,
        ),
        Shape(
            "e2-small",
            2,
            2048,
            "Efficient Instance, 0.5 vCPU (1/2 shared physical core) and 2 GB RAM",
            shared_cpu=True,
            max_disks=16,
            max_disks_size_gb=3072,
        ),
        Shape(
            "e2-medium",
            2,
            4096,
            "Efficient Instance, 1 vCPU (1/2 shared physical core) and 4 GB RAM",
            shared_cpu=True,
            max_disks=16,
            max_disks_size_gb=3072,
        ),
    ]
    shapes += [_predefined("e2", "standard", n, 4) for n in (2, 4, 8, 16, 32)]
    shapes += [_predefined("e2", "highmem", n, 8) for n in (2, 4, 8, 16)]
    shapes += [_predefined("e2", "highcpu", n, 1) for n in (2, 4, 8, 16, 32)]
    n2_sizes = (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)
    shapes += [_predefined("n2", "standard", n, 4) for n in n2_sizes]
    # n2-highmem-128 stops at 864 GB rather than 8 GB per vCPU.
    shapes += [
        _predefined("n2", "highmem", n, 8) if n != 128 else _predefined("n2", "highmem", n, 6.75)
        for n in n2_sizes
    ]
    shapes += [_predefined("n2", "highcpu", n, 1) for n in n2_sizes if n != 128]
    c3_sizes = (4, 8, 22, 44, 88, 176)
    shapes += [_predefined("c3", "standard", n, 4) for n in c3_sizes]
    shapes += [_predefined("c3", "highmem", n, 8) for n in c3_sizes]
    shapes += [_predefined("c3", "highcpu", n, 2) for n in c3_sizes]
    # G2 shapes come with their NVIDIA L4 GPUs bundled; the count is fixed per shape.
    for cpus, gb, gpus in (
        (4, 16, 1),
        (8, 32, 1),
        (12, 48, 1),
        (16, 64, 1),
        (24, 96, 2),
        (32, 128, 1),
        (48, 192, 4),
        (96, 384, 8),
    ):
        shapes.append(
            Shape(
                f"g2-standard-{cpus}",
                cpus,
                gb * GIB,
                f"{cpus} vCPUs {gb} GB RAM, {gpus} NVIDIA L4 GPU" + ("s" if gpus > 1 else ""),
                accelerators=(("nvidia-l4", gpus),),
            )
        )
    return {s.name: s for s in shapes}


PREDEFINED: dict[str, Shape] = _build()


@dataclass(frozen=True)
class CustomRules:
    """Custom-shape limits of a family (the documented ones)."""

    min_cpus: int
    max_cpus: int
    min_mb_per_cpu: int
    max_mb_per_cpu: int
    max_total_mb: int
    max_ext_total_mb: int | None  # extended memory ("-ext") ceiling, None if not offered

    def cpu_ok(self, family: str, cpus: int) -> bool:
        if not self.min_cpus <= cpus <= self.max_cpus or cpus % 2:
            return False
        # N2 counts in steps of 4 above 32 vCPUs.
        return not (family == "n2" and cpus > 32 and cpus % 4)


CUSTOM: dict[str, CustomRules] = {
    "e2": CustomRules(2, 32, 512, 8 * GIB, 128 * GIB, None),
    "n2": CustomRules(2, 80, 512, 8 * GIB, 640 * GIB, 864 * GIB),
}

_CUSTOM_RE = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*)-custom-(?P<cpus>\d+)-(?P<mb>\d+)(?P<ext>-ext)?$"
)


def custom_shape(name: str, field_path: str, value: str) -> Shape | None:
    """The shape a custom machine-type name describes, or None if it is not a custom name.

    Raises a 400 with the rule that failed when the name is custom but the shape is not
    allowed (``field_path``/``value`` name what the caller sent).
    """
    m = _CUSTOM_RE.match(name)
    if m is None:
        return None
    family, cpus, mb, ext = m["family"], int(m["cpus"]), int(m["mb"]), bool(m["ext"])
    rules = CUSTOM.get(family)
    if rules is None:
        raise invalid_field(
            field_path, value, f"Custom machine types are not supported for the {family} series."
        )
    if not rules.cpu_ok(family, cpus):
        step = "2 (or a multiple of 4 above 32)" if family == "n2" else "2"
        raise invalid_field(
            field_path,
            value,
            f"Number of vCPUs should be between {rules.min_cpus} and {rules.max_cpus} and a "
            f"multiple of {step}, while {cpus} vCPUs are requested.",
        )
    if mb % 256:
        raise invalid_field(
            field_path, value, f"Memory should be a multiple of 256MiB, while {mb}MiB is requested."
        )
    if ext and rules.max_ext_total_mb is None:
        raise invalid_field(
            field_path, value, f"Extended memory is not supported for the {family} series."
        )
    if (
        not ext
        and rules.max_ext_total_mb is not None
        and cpus * rules.max_mb_per_cpu < mb <= rules.max_ext_total_mb
    ):
        raise invalid_field(
            field_path,
            value,
            f"Memory above {rules.max_mb_per_cpu}MiB per vCPU needs extended memory: "
            "Extended memory must be requested with -ext.",
        )
    low = cpus * rules.min_mb_per_cpu
    high = min(cpus * rules.max_mb_per_cpu, rules.max_total_mb)
    if ext and rules.max_ext_total_mb is not None:
        high = rules.max_ext_total_mb
    if not low <= mb <= high:
        raise invalid_field(
            field_path,
            value,
            f"Memory should be between {low}MiB and {high}MiB for {cpus} vCPUs, while {mb}MiB "
            "is requested.",
        )
    return Shape(
        name,
        cpus,
        mb,
        f"Custom created machine type: {cpus} vCPUs, {_gb(mb)} GB RAM",
        custom=True,
        family=family,
    )


def lookup(zone: str, name: str, *, field_path: str, value: str) -> Shape | None:
    """A machine type offered in ``zone`` (predefined or a valid custom shape), else None.

    A malformed custom shape raises a 400 naming the broken rule.
    """
    families = ZONES.get(zone, ())
    shape = PREDEFINED.get(name)
    if shape is None:
        shape = custom_shape(name, field_path, value)
    if shape is None or shape.family not in families:
        return None
    return shape


def zone_shapes(zone: str) -> list[Shape]:
    families = ZONES.get(zone, ())
    return [s for s in PREDEFINED.values() if s.family in families]


def stable_id(text: str) -> str:
    """A uint64-looking id that stays the same for the same name (as machine type ids do)."""
    digest = hashlib.sha256(text.encode()).digest()
    return str(int.from_bytes(digest[:6], "big") % 10**6 + 800000)


def to_resource(shape: Shape, zone: str, base: str, project: str) -> dict[str, object]:
    """The ``compute#machineType`` resource for ``shape`` in ``zone``."""
    out: dict[str, object] = {
        "kind": "compute#machineType",
        "id": stable_id(shape.name),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": shape.name,
        "description": shape.description,
        "guestCpus": shape.cpus,
        "memoryMb": shape.memory_mb,
        "imageSpaceGb": 0,
        "maximumPersistentDisks": shape.max_disks,
        "maximumPersistentDisksSizeGb": str(shape.max_disks_size_gb),
        "zone": zone,
        "selfLink": f"{base}/projects/{project}/zones/{zone}/machineTypes/{shape.name}",
        "isSharedCpu": shape.shared_cpu,
        "architecture": "X86_64",
    }
    if shape.accelerators:
        out["accelerators"] = [
            {"guestAcceleratorType": t, "guestAcceleratorCount": n} for t, n in shape.accelerators
        ]
    return out
