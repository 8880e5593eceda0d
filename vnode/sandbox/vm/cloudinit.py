"""The part of cloud-init a COS VM runs on first boot: ``#cloud-config`` user-data.

COS runs cloud-init's ``write_files`` (and ``bootcmd``/``runcmd``) from the ``user-data``
metadata key; that is how vnode's bootstrap lands the kubelet configuration, the
certificates, the systemd unit and the static pod manifest on the VM. The simulator
applies the same document into the VM's own root directory, so a bootstrap that would
leave a real VM without a working kubelet leaves the simulated one without it too.

Supported as cloud-init does: ``encoding`` (``b64``/``base64``, ``gz``/``gzip``,
``gz+b64`` and its spellings, ``text/plain``), ``permissions`` (octal string or int),
``append``, ``defer`` (written after the others, as cloud-init's final stage does) and
``content`` defaulting to empty. ``owner`` is accepted and ignored (the simulator runs
as one user). ``source`` (fetch from a URL) is not supported: it would leave loopback.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

log = logging.getLogger(__name__)

_B64 = {"b64", "base64"}
_GZ = {"gz", "gzip"}
_GZ_B64 = {"gz+b64", "gz+base64", "gzip+b64", "gzip+base64"}
_TEXT = {"", "text/plain"}


class CloudConfigError(ValueError):
    """The user-data is not a cloud-config this VM can apply."""


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: bytes
    permissions: int = 0o644
    append: bool = False
    defer: bool = False


@dataclass(frozen=True)
class CloudConfig:
    write_files: list[WriteFile] = field(default_factory=list)
    bootcmd: list[list[str] | str] = field(default_factory=list)
    runcmd: list[list[str] | str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def _decode(content: Any, encoding: str, path: str) -> bytes:
    if isinstance(content, bytes):
        data = content
    else:
        data = ("" if content is None else str(content)).encode()
    enc = (encoding or "").strip().lower()
    try:
        if enc in _TEXT:
            return data
        if enc in _B64:
            return base64.b64decode(data, validate=False)
        if enc in _GZ_B64:
            return gzip.decompress(base64.b64decode(data, validate=False))
        if enc in _GZ:
            return gzip.decompress(data)
    except (binascii.Error, OSError, EOFError) as e:
        raise CloudConfigError(f"write_files {path}: cannot decode {enc} content: {e}") from e
    raise CloudConfigError(f"write_files {path}: unknown encoding {encoding!r}")


def _permissions(value: Any, path: str) -> int:
    if value is None:
        return 0o644
    if isinstance(value, int):
        # YAML reads an unquoted 0644 as the octal int 420 (YAML 1.1), like cloud-init does.
        return value
    try:
        return int(str(value).strip(), 8)
    except ValueError as e:
        raise CloudConfigError(f"write_files {path}: bad permissions {value!r}") from e


def parse(user_data: str) -> CloudConfig:
    """Parse ``#cloud-config`` user-data; anything else is refused with the reason."""
    first = user_data.lstrip().split("\n", 1)[0].strip()
    if first != "#cloud-config":
        raise CloudConfigError(
            f"user-data does not start with '#cloud-config' (first line {first[:40]!r}); "
            "only cloud-config documents are simulated"
        )
    try:
        doc = yaml.safe_load(user_data)
    except yaml.YAMLError as e:
        raise CloudConfigError(f"user-data is not valid YAML: {e}") from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise CloudConfigError("cloud-config must be a mapping")
    files: list[WriteFile] = []
    for i, item in enumerate(doc.get("write_files") or []):
        if not isinstance(item, dict) or not item.get("path"):
            raise CloudConfigError(f"write_files[{i}] has no path")
        path = str(item["path"])
        if not path.startswith("/"):
            raise CloudConfigError(f"write_files[{i}].path {path!r} is not absolute")
        if "source" in item:
            raise CloudConfigError(f"write_files {path}: 'source' is not supported in the sandbox")
        files.append(
            WriteFile(
                path=path,
                content=_decode(item.get("content", ""), str(item.get("encoding") or ""), path),
                permissions=_permissions(item.get("permissions"), path),
                append=bool(item.get("append", False)),
                defer=bool(item.get("defer", False)),
            )
        )
    return CloudConfig(
        write_files=files,
        bootcmd=list(doc.get("bootcmd") or []),
        runcmd=list(doc.get("runcmd") or []),
        raw=doc,
    )


def host_path(root: Path, vm_path: str) -> Path:
    """Where the VM path lives under the VM's root (``..`` cannot climb out)."""
    parts = [p for p in PurePosixPath("/" + vm_path).parts[1:] if p not in ("", ".")]
    clean: list[str] = []
    for p in parts:
        if p == "..":
            if clean:
                clean.pop()
        else:
            clean.append(p)
    return root.joinpath(*clean)


def apply_write_files(root: Path, config: CloudConfig) -> list[Path]:
    """Write the files in cloud-init's order: non-deferred first, then deferred."""
    written: list[Path] = []
    for stage in (False, True):
        for wf in config.write_files:
            if wf.defer is not stage:
                continue
            target = host_path(root, wf.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = "ab" if wf.append else "wb"
            with open(target, mode) as f:
                f.write(wf.content)
            os.chmod(target, wf.permissions)
            written.append(target)
    return written
