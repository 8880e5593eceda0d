"""Compute's own rules for an instance body, past what the schema says.

Names (RFC 1035), labels, metadata sizes, the request ID format and the scheduling
combinations that the real API refuses (Spot with live migration, GPUs with live
migration, a maximum run duration without a termination action) are all places where
vnode could build a body that only production would reject.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from vnode.sandbox.compute.errors import ComputeError, invalid_field, required_field

NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
NAME_PATTERN = "(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"
METADATA_KEY_RE = re.compile(r"[a-zA-Z0-9\-_]{1,128}")  # as the refusal message states
METADATA_VALUE_MAX = 262144  # bytes per value (256 KiB)
METADATA_TOTAL_MAX = 524288  # bytes for all keys and values (512 KiB)
MAX_LABELS = 64
LABEL_MAX = 63
MIN_RUN_SECONDS = 30
MAX_RUN_SECONDS = 120 * 24 * 3600

_KEY_MSG = (
    "Label key '{}' violates format constraints. The key must start with a lowercase "
    "character, can only contain lowercase letters, numeric characters, underscores and "
    "dashes. The key can be at most 63 characters long. International characters are allowed."
)
_VALUE_MSG = (
    "Label value '{}' violates format constraints. The value can only contain lowercase "
    "letters, numeric characters, underscores and dashes. The value can be at most 63 "
    "characters long. International characters are allowed."
)


def check_name(name: Any, path: str = "resource.name") -> str:
    if name is None or name == "":
        raise required_field(path)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise invalid_field(path, str(name), f"Must be a match of regex '{NAME_PATTERN}'")
    return name


def _label_char_ok(c: str) -> bool:
    return c.islower() or c.isdigit() or c in "-_" or (c.isalpha() and not c.isupper())


def check_labels(labels: Any, path: str = "resource.labels") -> dict[str, str]:
    if not labels:
        return {}
    if len(labels) > MAX_LABELS:
        raise invalid_field(
            path, "", f"Too many labels: {len(labels)}. At most {MAX_LABELS} labels are allowed."
        )
    for key, value in labels.items():
        first = key[:1]
        if (
            not key
            or len(key) > LABEL_MAX
            or not (first.isalpha() and not first.isupper())
            or not all(_label_char_ok(c) for c in key)
        ):
            raise invalid_field(path, "", _KEY_MSG.format(key))
        text = value or ""
        if len(text) > LABEL_MAX or not all(_label_char_ok(c) for c in text):
            raise invalid_field(path, "", _VALUE_MSG.format(text))
    return dict(labels)


def check_metadata(metadata: Any, path: str = "resource.metadata") -> None:
    items = (metadata or {}).get("items") or []
    seen: set[str] = set()
    total = 0
    for i, item in enumerate(items):
        key = item.get("key") or ""
        value = item.get("value") or ""
        if not METADATA_KEY_RE.fullmatch(key):
            raise invalid_field(
                f"{path}.items[{i}].key", key, "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'"
            )
        if key in seen:
            raise invalid_field(path, "", f"Duplicate metadata key '{key}'.")
        seen.add(key)
        size = len(value.encode())
        if size > METADATA_VALUE_MAX:
            raise ComputeError(
                400,
                f"Value for field '{path}.items[{i}].value' is too large: maximum size "
                f"{METADATA_VALUE_MAX} character(s); actual size {size}.",
                "invalid",
            )
        total += size + len(key.encode())
    if total > METADATA_TOTAL_MAX:
        raise invalid_field(
            path,
            "",
            f"The total size of all metadata keys and values must be at most "
            f"{METADATA_TOTAL_MAX} bytes; actual size {total}.",
        )


def check_request_id(request_id: str | None) -> str | None:
    """A request ID must be a UUID, and not the zero UUID."""
    if not request_id:
        return None
    try:
        parsed = uuid.UUID(request_id)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise invalid_field(
            "requestId",
            request_id,
            "The request ID must be a valid UUID with the exception that zero UUID is not "
            "supported (00000000-0000-0000-0000-000000000000).",
        )
    return str(parsed)


def duration_seconds(duration: dict[str, Any] | None) -> float | None:
    if not duration:
        return None
    return int(duration.get("seconds") or 0) + int(duration.get("nanos") or 0) / 1e9


def normalise_scheduling(
    scheduling: dict[str, Any] | None, *, has_gpus: bool, path: str = "resource.scheduling"
) -> dict[str, Any]:
    """The scheduling block as the API stores it (defaults filled), or its refusal."""
    s = dict(scheduling or {})
    model = s.get("provisioningModel") or "STANDARD"
    spot = model == "SPOT" or bool(s.get("preemptible"))
    if model == "SPOT" and s.get("preemptible"):
        raise invalid_field(
            f"{path}.preemptible", "true", "Preemptible must be false for Spot VMs."
        )
    default_ohm = "TERMINATE" if spot else "MIGRATE"
    ohm = s.get("onHostMaintenance") or default_ohm
    if spot and ohm == "MIGRATE":
        raise invalid_field(
            f"{path}.onHostMaintenance",
            "MIGRATE",
            "Scheduling must have onHostMaintenance set to TERMINATE for Spot and preemptible "
            "instances.",
        )
    if has_gpus and ohm == "MIGRATE":
        raise invalid_field(
            f"{path}.onHostMaintenance",
            "MIGRATE",
            "Instances with guest accelerators do not support live migration.",
        )
    restart = s.get("automaticRestart")
    if spot and restart:
        # The real wording names the field that makes the instance preemptible.
        if s.get("preemptible"):
            raise invalid_field(
                f"{path}.preemptible",
                "true",
                "Scheduling must have preemptible be false when AutomaticRestart is true.",
            )
        raise invalid_field(
            f"{path}.provisioningModel",
            "SPOT",
            "Scheduling must have provisioningModel be STANDARD when AutomaticRestart is true.",
        )
    run = duration_seconds(s.get("maxRunDuration"))
    action = s.get("instanceTerminationAction")
    if action == "INSTANCE_TERMINATION_ACTION_UNSPECIFIED":
        action = None
    if run is not None:
        if not MIN_RUN_SECONDS <= run <= MAX_RUN_SECONDS:
            raise invalid_field(
                f"{path}.maxRunDuration.seconds",
                str(s["maxRunDuration"].get("seconds")),
                f"The maximum run duration must be between {MIN_RUN_SECONDS} seconds and "
                f"{MAX_RUN_SECONDS // 86400} days.",
            )
        if action is None:
            raise invalid_field(
                f"{path}.instanceTerminationAction",
                "",
                "An instance termination action must be specified when maxRunDuration or "
                "terminationTime is set.",
            )
    if spot and action is None:
        action = "STOP"
    s["onHostMaintenance"] = ohm
    s["automaticRestart"] = bool(restart) if restart is not None else not spot
    s["preemptible"] = bool(s.get("preemptible"))
    s["provisioningModel"] = "SPOT" if model == "SPOT" else model
    if action is not None:
        s["instanceTerminationAction"] = action
    if run is not None:
        md = s["maxRunDuration"]
        s["maxRunDuration"] = {"seconds": str(int(md.get("seconds") or 0))}
        if md.get("nanos"):
            s["maxRunDuration"]["nanos"] = int(md["nanos"])
    return s


def resource_name(link: str, collection: str) -> tuple[str | None, str]:
    """The zone (if any) and name from a full or partial URL of a zonal resource."""
    parts = link.rstrip("/").split("/")
    zone = None
    if "zones" in parts:
        i = parts.index("zones")
        if i + 1 < len(parts):
            zone = parts[i + 1]
    if collection in parts:
        i = parts.index(collection)
        if i + 1 < len(parts):
            return zone, parts[i + 1]
    return zone, parts[-1]
