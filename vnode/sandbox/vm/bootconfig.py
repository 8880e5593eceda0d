"""From the files cloud-init wrote to the kubelet the VM would run.

A COS VM runs whatever systemd unit the boot started; vnode's bootstrap writes a unit
whose ``ExecStart`` runs ``/usr/bin/kubelet --config=...`` (or a pinned kubelet binary).
This module finds that unit the way the VM would (units started by ``bootcmd``/``runcmd``
``systemctl start|restart|enable --now``), reads the kubelet's flags and its
``KubeletConfiguration`` file, and says why the kubelet would not come up when it would
not. Flags win over the file, as in the real kubelet.

Standalone facts that decide whether the kubelet starts at all (cmd/kubelet auth setup):
with no API server client, ``authentication.webhook.enabled: true`` fails with "no client
provided, cannot use webhook authentication" and ``authorization.mode: Webhook`` with
"no client provided, cannot use webhook authorization". Both are the v1beta1 defaults,
so a bootstrap must turn them off explicitly.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vnode.sandbox.kubeapi import quantity
from vnode.sandbox.vm.cloudinit import CloudConfig, host_path


class KubeletBootError(RuntimeError):
    """The kubelet would not start on a real VM; the message says why."""


@dataclass(frozen=True)
class KubeletSetup:
    """What the simulated kubelet needs, with VM paths already mapped to host paths."""

    node_name: str
    unit: str
    address: str = "0.0.0.0"
    port: int = 10250
    read_only_port: int = 0
    static_pod_path: Path | None = None
    static_pod_vm_path: str = ""
    file_check_frequency: float = 20.0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    anonymous: bool = False
    webhook_authn: bool = True
    authorization_mode: str = "Webhook"
    pod_logs_dir: str = "/var/log/pods"
    container_log_max_size: int = 10 * 1024 * 1024
    container_log_max_files: int = 5
    container_log_monitor_interval: float = 10.0
    root_dir: str = "/var/lib/kubelet"
    config_path: str = ""
    flags: dict[str, str] = field(default_factory=dict)


_START = re.compile(
    r"^systemctl\s+(?:--\S+\s+)*(start|restart|enable\s+--now|reload-or-restart)\s+(.+)$"
)


def started_units(config: CloudConfig) -> list[str]:
    """Unit names that ``bootcmd``/``runcmd`` start (``foo`` means ``foo.service``)."""
    units: list[str] = []
    for cmd in [*config.bootcmd, *config.runcmd]:
        text = cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)
        for part in re.split(r"\s*(?:&&|;|\n)\s*", text.strip()):
            m = _START.match(part.strip())
            if not m:
                continue
            for name in shlex.split(m.group(2)):
                if name.startswith("-"):
                    continue
                units.append(name if "." in name else f"{name}.service")
    return units


def parse_unit(text: str) -> dict[str, list[str]]:
    """systemd unit file -> {"Section.Key": [values]} with line continuations joined."""
    out: dict[str, list[str]] = {}
    section = ""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if buf:
            buf += " " + line.strip()
        else:
            buf = line.strip()
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        logical.append(buf)
        buf = ""
    if buf:
        logical.append(buf)
    for line in logical:
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def _expand(text: str, hostname: str, env: dict[str, str]) -> str:
    text = text.replace("%%", "\x00").replace("%H", hostname).replace("%l", hostname)
    text = text.replace("\x00", "%")

    def var(m: re.Match[str]) -> str:
        return env.get(m.group(1) or m.group(2), "")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", var, text)


def kubelet_argv(unit: dict[str, list[str]], hostname: str) -> list[str] | None:
    """The kubelet command line from a unit's ExecStart, or None when it runs no kubelet."""
    env: dict[str, str] = {}
    for assignment in unit.get("Service.Environment", []):
        for item in shlex.split(assignment):
            if "=" in item:
                k, v = item.split("=", 1)
                env[k] = v
    for exec_start in unit.get("Service.ExecStart", []):
        cmd = exec_start.lstrip("-@+!:")
        if not cmd:
            continue
        argv = shlex.split(_expand(cmd, hostname, env))
        if argv and Path(argv[0]).name == "kubelet":
            return argv
        # A shell wrapper (`/bin/bash -c "... exec /usr/bin/kubelet ..."`) still runs one.
        if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
            inner = shlex.split(argv[2])
            for i, word in enumerate(inner):
                if Path(word).name == "kubelet":
                    return inner[i:]
    return None


def parse_flags(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name = arg[2:]
            if "=" in name:
                k, v = name.split("=", 1)
                flags[k] = v
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                flags[name] = argv[i + 1]
                i += 1
            else:
                flags[name] = "true"
        i += 1
    return flags


def _duration(value: Any, default: float) -> float:
    """Go duration text (``5s``, ``1m30s``, ``500ms``) in seconds."""
    if value is None:
        return default
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise KubeletBootError(f"invalid duration {value!r}")
    for num, unit in parts:
        total += float(num) * units[unit]
    return total


def _quantity(value: Any) -> int:
    try:
        return quantity.value(value)
    except ValueError as e:
        raise KubeletBootError(f"invalid containerLogMaxSize {value!r}: {e}") from e


def _bool(value: str) -> bool:
    return value.lower() in ("1", "t", "true")


def load(
    root: Path, config: CloudConfig, hostname: str, *, allow_webhook: bool = False
) -> KubeletSetup:
    """Find the started kubelet unit and read its configuration; raise why not.

    ``allow_webhook`` relaxes the one check a standalone kubelet really makes on webhook
    authentication/authorization (see the module docstring) for callers that want a VM
    to come up anyway; such a VM treats Webhook authorization as allowing every
    authenticated caller.
    """
    units = started_units(config)
    if not units:
        raise KubeletBootError(
            "no systemd unit is started by bootcmd/runcmd (e.g. 'systemctl start kubelet'); "
            "COS does not start units that cloud-init merely writes"
        )
    argv: list[str] | None = None
    unit_name = ""
    for name in units:
        path = host_path(root, f"/etc/systemd/system/{name}")
        if not path.is_file():
            continue
        argv = kubelet_argv(parse_unit(path.read_text()), hostname)
        if argv:
            unit_name = name
            break
    if not argv:
        raise KubeletBootError(f"none of the started units {units} runs a kubelet")
    flags = parse_flags(argv)
    cfg: dict[str, Any] = {}
    config_path = flags.get("config", "")
    if config_path:
        file = host_path(root, config_path)
        if not file.is_file():
            raise KubeletBootError(
                f"failed to load kubelet config file {config_path}: no such file"
            )
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as e:
            raise KubeletBootError(f"failed to load kubelet config file {config_path}: {e}") from e
        if not isinstance(loaded, dict):
            raise KubeletBootError(f"kubelet config file {config_path} is not a mapping")
        if loaded.get("kind") != "KubeletConfiguration" or loaded.get("apiVersion") not in (
            "kubelet.config.k8s.io/v1beta1",
            "kubelet.config.k8s.io/v1",
        ):
            raise KubeletBootError(
                f"kubelet config file {config_path}: want kind KubeletConfiguration, "
                f"apiVersion kubelet.config.k8s.io/v1beta1; got {loaded.get('kind')!r} "
                f"{loaded.get('apiVersion')!r}"
            )
        cfg = loaded
    authn = cfg.get("authentication") or {}
    anonymous = bool((authn.get("anonymous") or {}).get("enabled", False))
    webhook = bool((authn.get("webhook") or {}).get("enabled", True))
    client_ca = (authn.get("x509") or {}).get("clientCAFile", "")
    mode = str((cfg.get("authorization") or {}).get("mode", "Webhook"))
    if "anonymous-auth" in flags:
        anonymous = _bool(flags["anonymous-auth"])
    if "authentication-token-webhook" in flags:
        webhook = _bool(flags["authentication-token-webhook"])
    client_ca = flags.get("client-ca-file", client_ca)
    mode = flags.get("authorization-mode", mode)
    static = flags.get("pod-manifest-path", cfg.get("staticPodPath", ""))
    cert = flags.get("tls-cert-file", cfg.get("tlsCertFile", ""))
    key = flags.get("tls-private-key-file", cfg.get("tlsPrivateKeyFile", ""))
    node = flags.get("hostname-override", "").strip().lower() or hostname.lower()

    def mapped(p: str) -> Path | None:
        return host_path(root, p) if p else None

    setup = KubeletSetup(
        node_name=node,
        unit=unit_name,
        address=str(flags.get("address", cfg.get("address", "0.0.0.0"))),
        port=int(flags.get("port", cfg.get("port", 10250))),
        read_only_port=int(flags.get("read-only-port", cfg.get("readOnlyPort", 0))),
        static_pod_path=mapped(static),
        static_pod_vm_path=static,
        file_check_frequency=_duration(cfg.get("fileCheckFrequency"), 20.0),
        tls_cert_file=mapped(cert),
        tls_key_file=mapped(key),
        client_ca_file=mapped(client_ca),
        anonymous=anonymous,
        webhook_authn=webhook,
        authorization_mode=mode,
        pod_logs_dir=str(cfg.get("podLogsDir", "/var/log/pods")),
        container_log_max_size=_quantity(cfg.get("containerLogMaxSize", "10Mi")),
        container_log_max_files=int(cfg.get("containerLogMaxFiles", 5)),
        container_log_monitor_interval=_duration(cfg.get("containerLogMonitorInterval"), 10.0),
        root_dir=flags.get("root-dir", "/var/lib/kubelet"),
        config_path=config_path,
        flags=flags,
    )
    check(setup, allow_webhook=allow_webhook)
    return setup


def check(setup: KubeletSetup, *, allow_webhook: bool = False) -> None:
    """The start-up checks of a standalone kubelet that would stop it."""
    if setup.webhook_authn and not allow_webhook:
        raise KubeletBootError("no client provided, cannot use webhook authentication")
    if setup.authorization_mode == "Webhook" and not allow_webhook:
        raise KubeletBootError("no client provided, cannot use webhook authorization")
    if setup.authorization_mode not in ("AlwaysAllow", "Webhook"):
        raise KubeletBootError(f"unknown authorization mode {setup.authorization_mode!r}")
    if setup.client_ca_file is not None and not setup.client_ca_file.is_file():
        raise KubeletBootError(
            f"unable to load client CA file {setup.client_ca_file.name}: missing"
        )
    if (setup.tls_cert_file is None) != (setup.tls_key_file is None):
        raise KubeletBootError("tlsCertFile and tlsPrivateKeyFile must be set together")
    for p in (setup.tls_cert_file, setup.tls_key_file):
        if p is not None and not p.is_file():
            raise KubeletBootError(f"failed to load TLS file {p.name}: no such file")
    if not 0 < setup.port < 65536:
        raise KubeletBootError(f"invalid port {setup.port}")
