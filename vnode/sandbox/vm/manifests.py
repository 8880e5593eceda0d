"""The kubelet's file source: the static pod manifests in ``staticPodPath``.

The kubelet re-reads the folder on change (inotify) and every ``fileCheckFrequency``;
hidden files (a manifest written to ``.name`` and renamed in) and sub-folders are
skipped, each file holds one Pod in YAML or JSON, and a file whose content changes is a
different pod (its UID is a hash of the content). A file that does not decode is logged
and skipped, as the kubelet does.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Manifest:
    file: str  # the VM path of the file (part of the pod's UID)
    digest: str
    pod: dict[str, Any]


def _decode(path: Path, data: bytes) -> dict[str, Any] | None:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        log.warning("static pod manifest %s is not valid YAML/JSON: %s", path.name, e)
        return None
    if not isinstance(doc, dict) or doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
        log.warning("static pod manifest %s is not a v1 Pod; skipped", path.name)
        return None
    meta = doc.get("metadata") or {}
    containers = (doc.get("spec") or {}).get("containers") or []
    if not meta.get("name") or not containers:
        log.warning("static pod manifest %s has no name or no containers; skipped", path.name)
        return None
    for c in [*containers, *((doc.get("spec") or {}).get("initContainers") or [])]:
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            log.warning(
                "static pod manifest %s: every container needs a name and an image", path.name
            )
            return None
    return doc


class ManifestFolder:
    """Diff the folder against what was seen: (added, removed) manifests per scan."""

    def __init__(self, directory: Path, vm_directory: str) -> None:
        self.directory = directory
        self.vm_directory = vm_directory.rstrip("/")
        self.current: dict[str, Manifest] = {}
        self._bad: dict[str, str] = {}
        self._missing_logged = False

    def scan(self) -> tuple[list[Manifest], list[Manifest]]:
        found: dict[str, Manifest] = {}
        if not self.directory.is_dir():
            if not self._missing_logged:
                log.warning("static pod path %s does not exist yet", self.vm_directory)
                self._missing_logged = True
        else:
            for path in sorted(self.directory.iterdir()):
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                digest = hashlib.sha256(data).hexdigest()
                key = path.name
                old = self.current.get(key)
                if old is not None and old.digest == digest:
                    found[key] = old
                    continue
                if self._bad.get(key) == digest:
                    continue
                doc = _decode(path, data)
                if doc is None:
                    self._bad[key] = digest
                    continue
                found[key] = Manifest(f"{self.vm_directory}/{path.name}", digest, doc)
        removed = [m for k, m in self.current.items() if found.get(k) is not m]
        added = [m for k, m in found.items() if self.current.get(k) is not m]
        self.current = found
        return added, removed
