"""Turning an accepted ``instances.insert`` body into the stored ``compute#instance``.

What the client sent is kept (it passed schema validation); what Compute decides is filled
in: ids, timestamps, full URLs for partial references, interface and disk defaults, the
Spot scheduling defaults, the GPUs a G2 shape bundles, fingerprints. Refusals here are the
400s the real API gives for a body that is well-formed but not acceptable.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import re
from typing import Any

from vnode.sandbox.compute import catalogue, errors, rules
from vnode.sandbox.compute.errors import invalid_field
from vnode.sandbox.compute.resources import (
    fingerprint,
    full_link,
    label_fingerprint,
    new_id,
    service_account_email,
    timestamp,
)

# Images are global resources: full or partial URLs, by name or by family.
_IMAGE_RE = re.compile(
    r"^(?:https://(?:www|compute)\.googleapis\.com/compute/(?:v1|beta)/)?"
    r"(?:projects/[a-z][-a-z0-9.:]*[a-z0-9]/)?global/images/(?:family/)?"
    r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$"
)
IMAGE_SIZE_GB = 10  # what COS (and most public images) need at least

_OUTPUT_ONLY = ("statusMessage", "lastStartTimestamp", "lastStopTimestamp", "cpuPlatform")


def machine_shape(zone: str, body: dict[str, Any]) -> catalogue.Shape:
    mt = body.get("machineType")
    if not mt:
        raise errors.required_field("resource.machineType")
    mt_zone, mt_name = rules.resource_name(mt, "machineTypes")
    if mt_zone is not None and mt_zone != zone:
        raise invalid_field(
            "resource.machineType",
            mt,
            f"Machine type zone '{mt_zone}' does not match instance zone '{zone}'.",
        )
    shape = catalogue.lookup(zone, mt_name, field_path="resource.machineType", value=mt)
    if shape is None:
        raise invalid_field(
            "resource.machineType",
            mt,
            f"Machine type with name '{mt_name}' does not exist in zone '{zone}'.",
        )
    return shape


def build(
    project: str,
    zone: str,
    body: dict[str, Any],
    *,
    base: str,
    rng: random.Random,
    now: dt.datetime,
) -> tuple[dict[str, Any], catalogue.Shape]:
    """The stored instance (status PROVISIONING, no IPs yet) and its machine shape."""
    name = rules.check_name(body.get("name"))
    shape = machine_shape(zone, body)
    labels = rules.check_labels(body.get("labels"))
    rules.check_metadata(body.get("metadata"))
    zone_link = f"{base}/projects/{project}/zones/{zone}"
    gpus = accelerators(zone_link, body.get("guestAccelerators") or [], shape)
    scheduling = rules.normalise_scheduling(body.get("scheduling"), has_gpus=bool(gpus))
    tags = (body.get("tags") or {}).get("items") or []
    for i, tag in enumerate(tags):
        rules.check_name(tag, f"resource.tags.items[{i}]")
    inst = copy.deepcopy(body)
    for field in _OUTPUT_ONLY:
        inst.pop(field, None)
    inst.update(
        {
            "kind": "compute#instance",
            "id": new_id(rng),
            "creationTimestamp": timestamp(now),
            "name": name,
            "machineType": f"{zone_link}/machineTypes/{shape.name}",
            "status": "PROVISIONING",
            "zone": zone_link,
            "selfLink": f"{zone_link}/instances/{name}",
            "scheduling": scheduling,
            "labelFingerprint": label_fingerprint(labels),
            "startRestricted": False,
            "deletionProtection": bool(body.get("deletionProtection", False)),
            "canIpForward": bool(body.get("canIpForward", False)),
            "networkInterfaces": interfaces(
                project, zone, body.get("networkInterfaces") or [], base
            ),
            "disks": disks(project, name, zone_link, body.get("disks") or [], base),
            "tags": {**({"items": tags} if tags else {}), "fingerprint": fingerprint(tags)},
            "metadata": metadata(body.get("metadata")),
        }
    )
    inst.pop("labels", None)
    if labels:
        inst["labels"] = labels
    if gpus:
        inst["guestAccelerators"] = gpus
    if body.get("serviceAccounts"):
        inst["serviceAccounts"] = [
            {
                "email": service_account_email(project)
                if sa.get("email") in (None, "", "default")
                else sa["email"],
                "scopes": list(sa.get("scopes") or []),
            }
            for sa in body["serviceAccounts"]
        ]
    inst["fingerprint"] = fingerprint({k: v for k, v in inst.items() if k != "status"})
    return inst, shape


def accelerators(
    zone_link: str, requested: list[dict[str, Any]], shape: catalogue.Shape
) -> list[dict[str, Any]]:
    """The GPUs the instance gets: those its shape bundles (asking for others is refused)."""
    bundled = dict(shape.accelerators)
    for i, acc in enumerate(requested):
        _, acc_type = rules.resource_name(acc.get("acceleratorType") or "", "acceleratorTypes")
        if acc_type not in bundled:
            raise invalid_field(
                f"resource.guestAccelerators[{i}].acceleratorType",
                acc.get("acceleratorType") or "",
                f"Accelerator type '{acc_type}' is not supported with machine type '{shape.name}'.",
            )
        if int(acc.get("acceleratorCount") or 0) != bundled[acc_type]:
            raise invalid_field(
                f"resource.guestAccelerators[{i}].acceleratorCount",
                str(acc.get("acceleratorCount")),
                f"Machine type '{shape.name}' comes with exactly {bundled[acc_type]} "
                f"{acc_type} accelerator(s).",
            )
    return [
        {"acceleratorType": f"{zone_link}/acceleratorTypes/{t}", "acceleratorCount": n}
        for t, n in shape.accelerators
    ]


def interfaces(
    project: str, zone: str, nics: list[dict[str, Any]], base: str
) -> list[dict[str, Any]]:
    if not nics:
        raise invalid_field(
            "resource.networkInterfaces", "", "Network interface must be specified."
        )
    region = catalogue.region_of(zone)
    out = []
    for i, nic in enumerate(nics):
        n = copy.deepcopy(nic)
        n["kind"] = "compute#networkInterface"
        n["name"] = f"nic{i}"
        n["network"] = full_link(n.get("network") or "global/networks/default", base, project)
        n["subnetwork"] = full_link(
            n.get("subnetwork") or f"regions/{region}/subnetworks/default", base, project
        )
        n.setdefault("stackType", "IPV4_ONLY")
        configs = []
        for ac in n.pop("accessConfigs", None) or []:
            c = dict(ac)
            c["kind"] = "compute#accessConfig"
            c.setdefault("type", "ONE_TO_ONE_NAT")
            c.setdefault("name", "External NAT")
            c.setdefault("networkTier", "PREMIUM")
            configs.append(c)
        if configs:  # no external IP unless an access config asks for one
            n["accessConfigs"] = configs
        n["fingerprint"] = fingerprint(n)
        out.append(n)
    return out


def disks(
    project: str, name: str, zone_link: str, requested: list[dict[str, Any]], base: str
) -> list[dict[str, Any]]:
    if not requested:
        raise invalid_field("resource.disks", "", "Boot disk must be specified.")
    has_boot = any(d.get("boot") for d in requested)
    out = []
    for i, disk in enumerate(requested):
        d = copy.deepcopy(disk)
        params = d.pop("initializeParams", None) or {}
        if not (d.get("source") or params.get("sourceImage") or params.get("sourceSnapshot")):
            raise invalid_field(
                f"resource.disks[{i}]", "", "Source image or source disk must be specified."
            )
        image = params.get("sourceImage")
        if image and not _IMAGE_RE.match(image):
            path = f"resource.disks[{i}].initializeParams.sourceImage"
            raise invalid_field(path, image, "The URL is malformed.")
        size = params.get("diskSizeGb")
        if image and size is not None and int(size) < IMAGE_SIZE_GB:
            raise invalid_field(
                f"resource.disks[{i}].initializeParams.diskSizeGb",
                str(size),
                f"Requested disk size cannot be smaller than the image size ({IMAGE_SIZE_GB} GB)",
            )
        boot = bool(d.get("boot")) or (not has_boot and i == 0)
        disk_name = params.get("diskName") or (name if boot else f"{name}-{i}")
        source = d.get("source")
        d.update(
            {
                "kind": "compute#attachedDisk",
                "type": d.get("type") or "PERSISTENT",
                "mode": d.get("mode") or "READ_WRITE",
                "source": full_link(source, base, project)
                if source
                else f"{zone_link}/disks/{disk_name}",
                "deviceName": d.get("deviceName") or f"persistent-disk-{i}",
                "index": i,
                "boot": boot,
                "autoDelete": bool(d.get("autoDelete", False)),
                "interface": d.get("interface") or "SCSI",
                "diskSizeGb": str(params.get("diskSizeGb") or 10),
                "architecture": "X86_64",
            }
        )
        out.append(d)
    return out


def metadata(requested: dict[str, Any] | None) -> dict[str, Any]:
    items = [
        {"key": it.get("key"), "value": it.get("value") or ""}
        for it in (requested or {}).get("items") or []
    ]
    out: dict[str, Any] = {"kind": "compute#metadata", "fingerprint": fingerprint(items)}
    if items:
        out["items"] = items
    return out


def is_spot(inst: dict[str, Any]) -> bool:
    s = inst.get("scheduling") or {}
    return s.get("provisioningModel") == "SPOT" or bool(s.get("preemptible"))


def quota_demand(shape: catalogue.Shape) -> dict[str, float]:
    """What one instance of ``shape`` counts against each regional quota."""
    out: dict[str, float] = {"INSTANCES": 1}
    cpu_metric = catalogue.CPU_QUOTA_METRIC.get(shape.family, "CPUS")
    out[cpu_metric] = out.get(cpu_metric, 0) + shape.cpus
    for acc, count in shape.accelerators:
        gpu = catalogue.GPU_QUOTA_METRIC.get(acc)
        if gpu:
            out[gpu] = out.get(gpu, 0) + count
    return out
