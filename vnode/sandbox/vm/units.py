"""The systemd part of a COS boot: which units start, in which order, and what they run.

``bootcmd``/``runcmd`` start units (``systemctl start [--no-block] a b``); each unit's
``Requires=``/``Wants=`` units written under ``/etc/systemd/system`` start before it. The
simulator runs a oneshot unit's commands when it can do so without leaving the VM:

- a boot script cloud-init wrote into the VM (its program is a file under the VM root)
  runs as a local process, with every absolute-path argument mapped into the VM root,
  the VM root as working directory, and the instance's internal IP in
  ``VNODE_HOST_IP`` (standing in for the metadata server, which is not emulated; boot
  scripts must take their paths as arguments and honour that variable);
- ``mkdir -p`` is applied under the VM root;
- anything else (``iptables``, ``mount``, ``tar``, ``docker``) and any command with a URL
  argument (a download: the sandbox never leaves loopback) is skipped and logged.

A failed command of a unit the kubelet ``Requires`` stops the kubelet from starting,
as systemd's "Dependency failed" would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from vnode.sandbox.vm.bootconfig import KubeletBootError, parse_unit
from vnode.sandbox.vm.cloudinit import host_path

log = logging.getLogger(__name__)

UNIT_DIR = "/etc/systemd/system"
SCRIPT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Unit:
    name: str
    keys: dict[str, list[str]]

    def words(self, key: str) -> list[str]:
        return [w for v in self.keys.get(key, []) for w in v.split()]


def load_unit(root: Path, name: str) -> Unit | None:
    path = host_path(root, f"{UNIT_DIR}/{name}")
    if not path.is_file():
        return None  # an image unit (containerd, docker, network-online.target)
    return Unit(name, parse_unit(path.read_text()))


def start_order(root: Path, started: list[str]) -> list[Unit]:
    """Units to start, dependencies first, each once."""
    order: list[Unit] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        unit = load_unit(root, name)
        if unit is None:
            return
        for dep in [*unit.words("Unit.Requires"), *unit.words("Unit.Wants")]:
            visit(dep)
        order.append(unit)

    for name in started:
        visit(name)
    return order


def _vm_script(root: Path, argv0: str) -> Path | None:
    """The boot script ``argv0`` names, if cloud-init wrote it into this VM."""
    if not argv0.startswith("/"):
        return None
    program = host_path(root, argv0)
    if program.is_file() and program.resolve().is_relative_to(root.resolve()):
        return program
    return None


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


async def run_command(root: Path, line: str, host_ip: str, hostname: str) -> bool:
    """One ExecStart/ExecStartPre line; False when it ran and failed."""
    text = line.lstrip("-@+!:")
    text = text.replace("%%", "\x00").replace("%H", hostname).replace("\x00", "%")
    argv = shlex.split(text)
    if not argv:
        return True
    if any(_URL.match(a) for a in argv):
        log.info("boot: %s not run (downloads are not simulated)", argv[0])
        return True
    program = _vm_script(root, argv[0])
    if program is not None:
        mapped = [str(host_path(root, a)) if a.startswith("/") else a for a in argv[1:]]
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(root),
            "VNODE_HOST_IP": host_ip,
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                str(program),
                *mapped,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(root),
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            log.warning("boot: %s cannot run: %s", argv[0], e.strerror or e)
            return False
        try:
            async with asyncio.timeout(SCRIPT_TIMEOUT):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("boot: %s timed out", argv[0])
            return False
        if proc.returncode != 0:
            log.warning("boot: %s exited %s: %s", argv[0], proc.returncode, out.decode()[-500:])
            return False
        return True
    if Path(argv[0]).name == "mkdir" and "-p" in argv:
        for a in argv[1:]:
            if a.startswith("/"):
                host_path(root, a).mkdir(parents=True, exist_ok=True)
        return True
    log.info("boot: %r not run in the simulator", shlex.join(argv)[:200])
    return True


async def start_dependencies(
    root: Path, started: list[str], kubelet_unit: str, host_ip: str, hostname: str
) -> list[Unit]:
    """Run what the boot starts before the kubelet; return every unit started."""
    order = start_order(root, started)
    required: set[str] = set()
    kubelet = next((u for u in order if u.name == kubelet_unit), None)
    if kubelet is not None:
        required = set(kubelet.words("Unit.Requires"))
    for unit in order:
        if unit.name == kubelet_unit:
            continue
        oneshot = unit.keys.get("Service.Type", ["simple"])[-1] == "oneshot"
        lines = [*unit.keys.get("Service.ExecStartPre", [])]
        if oneshot:
            lines += unit.keys.get("Service.ExecStart", [])
        for line in lines:
            ok = await run_command(root, line, host_ip, hostname)
            if not ok and not line.startswith("-"):
                if unit.name in required:
                    raise KubeletBootError(
                        f"dependency failed for {kubelet_unit}: {unit.name} failed"
                    )
                log.warning("boot: unit %s failed", unit.name)
                break
    return order


def fluent_bit_log_name(root: Path, started: list[Unit]) -> str | None:
    """The log a started fluent-bit unit ships container lines to (its tail input's Tag).

    On COS, ``google-logging-enabled`` ships the journal; container lines reach Cloud
    Logging through a fluent-bit the boot starts with ``-c <config>``.
    """
    for unit in started:
        for line in unit.keys.get("Service.ExecStart", []):
            if "fluent-bit" not in line:
                continue
            m = re.search(r"(?:^|\s)-c\s+(\S+)", line)
            if not m:
                continue
            conf = host_path(root, m.group(1))
            if not conf.is_file():
                continue
            for section in re.split(r"^\[", conf.read_text(), flags=re.MULTILINE):
                if not section.upper().startswith("INPUT]"):
                    continue
                keys = {
                    parts[0].lower(): parts[1].strip()
                    for parts in (ln.split(None, 1) for ln in section.splitlines()[1:])
                    if len(parts) == 2
                }
                if keys.get("name") == "tail" and "tag" in keys:
                    return keys["tag"]
    return None
