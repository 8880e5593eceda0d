"""Building the stored ``compute#instance`` and ``compute#operation`` resources.

The emulator keeps what the client sent (it passed schema validation) and fills in what
Compute fills in: output-only fields, full URLs for partial ones, defaults, fingerprints.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
from typing import Any

DEFAULT_BASE = "https://www.googleapis.com/compute/v1"

# What the real API answers for an empty label set; clients compare against it.
EMPTY_LABEL_FINGERPRINT = "42WmSpB8rSM="

CPU_PLATFORM = {
    "e2": "Intel Broadwell",
    "n2": "Intel Cascade Lake",
    "c3": "Intel Sapphire Rapids",
    "g2": "Intel Cascade Lake",
}


def timestamp(t: dt.datetime) -> str:
    """Compute's timestamps: RFC 3339 with milliseconds and an offset."""
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def fingerprint(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(hashlib.sha256(raw).digest()[:8]).decode()


def label_fingerprint(labels: dict[str, str] | None) -> str:
    return fingerprint(labels) if labels else EMPTY_LABEL_FINGERPRINT


def new_id(rng: random.Random) -> str:
    return str(rng.getrandbits(63) | (1 << 62))


def full_link(link: str, base: str, project: str) -> str:
    """A full URL for a full or partial resource URL, as Compute stores references."""
    if link.startswith(("http://", "https://")):
        return link
    link = link.lstrip("/")
    if link.startswith("projects/"):
        return f"{base}/{link}"
    return f"{base}/projects/{project}/{link}"


def operation_name(now: dt.datetime, rng: random.Random) -> str:
    ms = int(now.timestamp() * 1000)
    return (
        f"operation-{ms}-{rng.getrandbits(52):013x}-{rng.getrandbits(32):08x}-"
        f"{rng.getrandbits(32):08x}"
    )


def service_account_email(project: str) -> str:
    number = sum(ord(c) * 31**i for i, c in enumerate(project)) % 10**12
    return f"{number}-compute@developer.gserviceaccount.com"
