"""The ``vnode`` command: ``run | sandbox | demo | render | version``.

Each subcommand is one function; flags are declared next to it. Every flag of ``run``
can also come from a ``VNODE_*`` environment variable, so a ``sandbox.env`` file can be
sourced before ``vnode run``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import inspect
import itertools
import json
import logging
import os
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from vnode import __version__, logging_setup
from vnode.errors import ConfigError
from vnode.settings import (
    GCESettings,
    KubeletAPISettings,
    KubeSettings,
    LeaseSettings,
    MetricsSettings,
    NodeSettings,
    PodControllerSettings,
    Settings,
    Taint,
    parse_capacity,
    parse_label,
    validate,
)

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = logging_setup.FORMATS


def _setup_logging(level: str, fmt: str | None) -> None:
    """Log lines as ``fmt``, else VNODE_LOG_FORMAT, else auto (JSON unless on a terminal)."""
    chosen = fmt or os.environ.get(env_name("--log-format")) or "auto"
    try:
        logging_setup.configure(level, chosen.strip().lower())
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"vnode {__version__}")
    return 0


def _add_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox",
        help="run the emulators (Kubernetes API, ...) in the foreground",
        description="Run the sandbox emulators on loopback until SIGINT/SIGTERM. When ready, "
        "DIR holds kubeconfig, sandbox.env and, last, ready.",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="where to write credentials, kubeconfig, sandbox.env and ready",
    )
    p.add_argument(
        "--no-kube",
        action="store_true",
        help="leave the Kubernetes API out: only the cloud side (Compute Engine and its VMs), "
        "to run vnode against a real cluster",
    )
    p.add_argument(
        "--kube-port",
        type=int,
        default=0,
        help="port for the Kubernetes API (default: any free port)",
    )
    p.set_defaults(func=_cmd_sandbox)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from vnode.sandbox.runner import serve

    asyncio.run(serve(args.state_dir.resolve(), kube=not args.no_kube, kube_port=args.kube_port))
    return 0


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a Job through vnode on a local sandbox, start to finish",
        description="Start the sandbox (Kubernetes API, Compute Engine, simulated VMs, Cloud "
        "Logging) and vnode with the GCE provider in this process, run a small Job on a VM of "
        "its own, show its progress, pods table and logs, delete it and check that no VM is "
        "left. Exits 0 when every step passed, 1 naming the step that failed.",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the sandbox keeps its files and demo.log (default: a temporary directory, "
        "removed after a successful run)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the sandbox and vnode running afterwards, for kubectl, until Ctrl-C",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also write the log lines of vnode and the emulators to stderr",
    )
    p.add_argument(
        "--cpu",
        default="250m",
        help="CPU request of the Job, which vnode sizes the VM for; more than any machine "
        "type holds ends the pod Failed with PodTooLarge (default: 250m)",
    )
    p.add_argument("--memory", default="256Mi", help="memory request of the Job (default: 256Mi)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from vnode.demo import DemoOptions, run_demo

    options = DemoOptions(
        state_dir=args.state_dir, keep=args.keep, verbose=args.verbose,
        cpu=args.cpu, memory=args.memory,
    )  # fmt: skip
    return run_demo(options, log_level=args.log_level)


# -- vnode run ------------------------------------------------------------------------------

# Flags of `vnode run` whose value may also come from the environment: flag -> env var.
# Every one is VNODE_<FLAG> (dashes as underscores); a few also fall back to a standard one.
ENV_FALLBACKS = {"--kubeconfig": ("KUBECONFIG",), "--internal-ip": ("VNODE_POD_IP",)}
ENV_LIST_SEPARATOR = ","


def env_name(flag: str) -> str:
    return "VNODE_" + flag.lstrip("-").upper().replace("-", "_")


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the virtual Node",
        description="Register a Node, keep its Lease and status, run the pods bound to it "
        "through the provider and serve the kubelet API. Every flag can also be given as "
        "an environment variable VNODE_<FLAG> (e.g. VNODE_NODE_NAME); list flags take a "
        f"'{ENV_LIST_SEPARATOR}'-separated value there. Flags win over the environment.",
    )
    d = Settings()
    add = p.add_argument
    add(
        "--provider",
        metavar="gce|MODULE:ATTR",
        help="the backend: gce, or package.module:attribute naming a Provider or a factory "
        f"called with no arguments (default: {d.provider})",
    )
    add("--node-name", metavar="NAME", help=f"the Node's name (default: {d.node.name})")
    add(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig for the API server (also KUBECONFIG; default: in-cluster config, "
        "then ~/.kube/config)",
    )
    add(
        "--kubelet-address",
        metavar="IP",
        help=f"address the kubelet API listens on (default: {d.kubelet_api.address})",
    )
    add(
        "--kubelet-port",
        metavar="PORT",
        help=f"port of the kubelet API; 0 picks a free one (default: {d.kubelet_api.port})",
    )
    add(
        "--client-ca-file",
        metavar="FILE",
        help="CA for client certificates of kubelet API callers (the API server's)",
    )
    add(
        "--tls-cert-file",
        metavar="FILE",
        help="serving certificate of the kubelet API (default: one generated at start)",
    )
    add("--tls-key-file", metavar="FILE", help="key of --tls-cert-file")
    add(
        "--internal-ip",
        metavar="IP",
        help="the Node's InternalIP, where the API server reaches the kubelet API "
        "(default: VNODE_POD_IP in a cluster, else 127.0.0.1)",
    )
    add(
        "--taint",
        action="append",
        metavar="KEY[=VALUE]:EFFECT",
        help="a Node taint (repeatable); replaces the default "
        f"{d.node.taints[0].key}={d.node.taints[0].value}:{d.node.taints[0].effect}; "
        "--taint '' leaves the Node untainted",
    )
    add(
        "--no-default-taint", action="store_true", default=None, help="do not add the default taint"
    )
    add("--label", action="append", metavar="KEY=VALUE", help="an extra Node label (repeatable)")
    add(
        "--capacity",
        action="append",
        metavar="RESOURCE=QUANTITY",
        help="Node capacity (repeatable, e.g. cpu=64, memory=256Gi, nvidia.com/gpu=8); "
        "a provider that reports capacity wins",
    )
    add(
        "--region",
        help="topology.kubernetes.io/region label (default: from the first --zone "
        "when it is a GCE zone name)",
    )
    add(
        "--zone",
        action="append",
        metavar="ZONE",
        help="zone (repeatable): the first is the Node's topology.kubernetes.io/zone label; "
        "the GCE provider places VMs in these zones, in this order of preference",
    )
    add("--provider-id", metavar="ID", help="spec.providerID (default: the provider's)")
    add("--workers", metavar="N", help=f"pods reconciled at once (default: {d.pods.workers})")
    add(
        "--status-period",
        metavar="SECONDS",
        help=f"seconds between pod status polls (default: {d.pods.status_period:g})",
    )
    add(
        "--node-status-period",
        metavar="SECONDS",
        help=f"seconds between unchanged Node status posts (default: {d.node.status_period:g})",
    )
    add("--log-level", dest="run_log_level", choices=LOG_LEVELS, help="log verbosity")
    add(
        "--log-format",
        dest="run_log_format",
        choices=LOG_FORMATS,
        help="log lines as JSON or text; auto: JSON unless stderr is a terminal (default)",
    )
    add(
        "--metrics-address",
        metavar="IP",
        help=f"address of the /metrics and /healthz server (default: {d.metrics.address})",
    )
    add(
        "--metrics-port",
        metavar="PORT",
        help="port of the plain-HTTP /metrics and /healthz server; 0 picks a free one, "
        f"-1 switches it off (default: {d.metrics.port})",
    )
    adv = p.add_argument_group("advanced (tests and tuning)")
    adv.add_argument(
        "--lease-duration",
        metavar="SECONDS",
        help=f"leaseDurationSeconds (default: {d.lease.duration_seconds})",
    )
    adv.add_argument(
        "--lease-renew-interval",
        metavar="SECONDS",
        help=f"seconds between Lease renewals (default: {d.lease.renew_interval:g})",
    )
    adv.add_argument(
        "--lease-retry-interval",
        metavar="SECONDS",
        help=f"seconds between retries of a failed renewal (default: {d.lease.retry_interval:g})",
    )
    adv.add_argument(
        "--node-check-period",
        metavar="SECONDS",
        help=f"seconds between checks for a changed Node status (default: {d.node.check_period:g})",
    )
    adv.add_argument(
        "--shutdown-timeout",
        metavar="SECONDS",
        help=f"bound on a graceful stop (default: {d.shutdown_timeout:g})",
    )
    _add_gce_flags(p)
    p.set_defaults(func=_cmd_run, run_parser=p)


# GCESettings fields whose flag is not simply --<field-name>: list fields take one value
# per flag (singular), and one name would collide with a flag of the Node.
GCE_FLAGS = {
    "zones": "--zone",
    "machine_families": "--machine-family",
    "gpu_families": "--gpu-family",
    "network_tags": "--network-tag",
    "scopes": "--scope",
    "allowed_host_paths": "--allowed-host-path",
    "status_period": "--vm-status-period",
    "delete_delay_seconds": "--delete-delay",
    "ca_dir": "--gce-ca-dir",
}


def _gce_flag(name: str) -> str:
    return GCE_FLAGS.get(name, "--" + name.replace("_", "-"))


def _field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under each field of a settings dataclass (for --help)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for field_node, doc in itertools.pairwise(body):
        if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):  # fmt: skip
            docs[field_node.target.id] = " ".join(doc.value.value.split())
    return docs


def _add_gce_flags(p: argparse.ArgumentParser) -> None:
    """One flag per GCESettings field, typed and documented from the dataclass itself."""
    group = p.add_argument_group("GCE provider (--provider gce)")
    docs = _field_docs(GCESettings)
    hints = typing.get_type_hints(GCESettings)
    defaults = GCESettings()
    for f in dataclasses.fields(GCESettings):
        flag = _gce_flag(f.name)
        if flag in p._option_string_actions:  # shared with the Node (--zone)
            continue
        default = getattr(defaults, f.name)
        kind = hints[f.name]
        doc = docs.get(f.name, "").replace("``", "").replace("%", "%%")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{doc} (default: {'on' if default else 'off'})")  # fmt: skip
        elif typing.get_origin(kind) is tuple:
            shown = ", ".join(default) or "none"
            group.add_argument(flag, action="append", metavar="VALUE",
                               help=f"{doc} (repeatable; default: {shown})")  # fmt: skip
        else:
            group.add_argument(flag, metavar=f.name.upper().rsplit("_", 1)[-1],
                               help=f"{doc} (default: {default or 'none'})")  # fmt: skip


def _gce_settings(v: Mapping[str, Any]) -> GCESettings:
    """GCESettings from the flag values (unset flags keep the dataclass defaults)."""
    hints = typing.get_type_hints(GCESettings)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(GCESettings):
        flag = _gce_flag(f.name)
        raw = v.get(flag)
        if raw is None:
            continue
        kind = hints[f.name]
        if kind is bool:
            changes[f.name] = bool(raw)
        elif typing.get_origin(kind) is tuple:
            changes[f.name] = tuple(x.strip() for x in raw if x.strip())
        elif kind is int:
            changes[f.name] = _convert(flag, raw, int, "an integer")
        elif kind is float:
            changes[f.name] = _convert(flag, raw, float, "a number")
        else:
            changes[f.name] = str(raw).strip()
    return dataclasses.replace(GCESettings(), **changes)


def _from_env(
    args: argparse.Namespace, parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> dict[str, Any]:
    """Each flag's value: from the command line, else its VNODE_* variable, else None."""
    values: dict[str, Any] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        flag = action.option_strings[0]
        value = getattr(args, action.dest, None)
        if value is None:
            for name in (env_name(flag), *ENV_FALLBACKS.get(flag, ())):
                if name in environ:
                    raw = environ[name]
                    if isinstance(action, argparse._AppendAction):
                        value = [v.strip() for v in raw.split(ENV_LIST_SEPARATOR)]
                    elif isinstance(
                        action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)
                    ):
                        value = _truthy(name, raw)
                    else:
                        value = raw
                    break
        values[flag] = value
    return values


def _truthy(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"invalid {name}={raw!r}: expected true or false")


def _convert(flag: str, raw: str, kind: Callable[[str], Any], what: str) -> Any:
    try:
        return kind(raw.strip())
    except ValueError:
        raise ConfigError(f"invalid {flag} {raw!r}: expected {what}") from None


def settings_from(
    args: argparse.Namespace, parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> Settings:
    """Build the Settings of `vnode run` from its flags and VNODE_* variables; ConfigError
    (one sentence) when a value cannot be read. :func:`vnode.settings.validate` follows."""
    v = _from_env(args, parser, environ)
    d = Settings()

    def given(flag: str) -> Any:
        return v.get(flag)

    def number(flag: str, default: float) -> float:
        raw = given(flag)
        return default if raw is None else float(_convert(flag, raw, float, "a number"))

    def integer(flag: str, default: int) -> int:
        raw = given(flag)
        return default if raw is None else int(_convert(flag, raw, int, "an integer"))

    def path(flag: str, default: Path | None) -> Path | None:
        raw = given(flag)
        return Path(raw).expanduser() if raw else default

    taints: tuple[Taint, ...] = d.node.taints
    if given("--taint") is not None:
        taints = tuple(Taint.parse(t.strip()) for t in given("--taint") if t.strip())
    if given("--no-default-taint"):
        taints = tuple(t for t in taints if t not in d.node.taints)
    labels = dict(parse_label(t.strip()) for t in given("--label") or [] if t.strip())
    zones = [z.strip() for z in given("--zone") or [] if z.strip()]
    capacity = dict(d.node.capacity)
    capacity.update(parse_capacity(c.strip()) for c in given("--capacity") or [] if c.strip())

    node = dataclasses.replace(
        NodeSettings(),
        name=given("--node-name") or d.node.name,
        labels=labels,
        taints=taints,
        capacity=capacity,
        internal_ip=(given("--internal-ip") or "").strip(),
        region=given("--region") or _region_of(zones[0] if zones else ""),
        zone=zones[0] if zones else "",
        provider_id=given("--provider-id") or "",
        status_period=number("--node-status-period", d.node.status_period),
        check_period=number("--node-check-period", d.node.check_period),
    )
    return Settings(
        provider=given("--provider") or d.provider,
        node=node,
        lease=LeaseSettings(
            duration_seconds=integer("--lease-duration", d.lease.duration_seconds),
            renew_interval=number("--lease-renew-interval", d.lease.renew_interval),
            retry_interval=number("--lease-retry-interval", d.lease.retry_interval),
        ),
        kubelet_api=KubeletAPISettings(
            address=given("--kubelet-address") or d.kubelet_api.address,
            port=integer("--kubelet-port", d.kubelet_api.port),
            cert_file=path("--tls-cert-file", None),
            key_file=path("--tls-key-file", None),
            client_ca_file=path("--client-ca-file", None),
        ),
        pods=dataclasses.replace(
            PodControllerSettings(),
            workers=integer("--workers", d.pods.workers),
            status_period=number("--status-period", d.pods.status_period),
        ),
        kube=KubeSettings(kubeconfig=path("--kubeconfig", None)),
        metrics=MetricsSettings(
            address=given("--metrics-address") or d.metrics.address,
            port=integer("--metrics-port", d.metrics.port),
        ),
        gce=_gce_settings(v),
        shutdown_timeout=number("--shutdown-timeout", d.shutdown_timeout),
    )


def _region_of(zone: str) -> str:
    """``us-central1`` for the GCE zone ``us-central1-a``; "" for anything else."""
    match = re.fullmatch(r"([a-z]+-[a-z]+[0-9]+)-[a-z]", zone)
    return match.group(1) if match else ""


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        level = args.run_log_level or os.environ.get(env_name("--log-level"))
        if level:
            if level.lower() not in LOG_LEVELS:
                raise ConfigError(f"invalid log level {level!r}: one of {', '.join(LOG_LEVELS)}")
            logging.getLogger().setLevel(level.upper())
        if args.run_log_format:
            _setup_logging(logging.getLevelName(logging.getLogger().level), args.run_log_format)
        settings = settings_from(args, args.run_parser, os.environ)
        validate(settings)
        logging_setup.set_process_fields(node=settings.node.name)
        from vnode.node.runner import run

        return int(asyncio.run(run(settings)))
    except ConfigError as e:
        print(f"vnode run: error: {e}", file=sys.stderr)
        return 2


# -- vnode render ---------------------------------------------------------------------------

RENDER_ONLY = ("instance", "user-data")
# Kinds whose pods come from a template: where the template is.
POD_TEMPLATES = {
    "Job": ("spec", "template"),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
OFFLINE_ZONE = "us-central1-a"
"""Whose machine types the built-in catalogue offers for a zone it does not know."""


def _add_render(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "render",
        help="print the VM (instances.insert body and cloud-init) vnode would create for a pod",
        description="Print what vnode run --provider gce would send to Compute Engine for a "
        "pod: the instances.insert body (machine type, disk, labels, scheduling, metadata) and "
        "the cloud-init user-data, without calling any API. Certificates, tokens and a missing "
        "pod uid are clearly marked placeholders. A pod vnode cannot run exits 1 with the "
        "reason and message the pod would get. Settings come from the same flags and VNODE_* "
        "variables as vnode run.",
    )
    p.add_argument(
        "pod",
        metavar="POD.yaml",
        help="the pod (or a Job, Deployment, CronJob, ... whose pod template is used); - reads "
        "stdin; further documents in the file are read like -f",
    )
    p.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        metavar="FILE",
        dest="render_files",
        help="ConfigMaps and Secrets the pod refers to (repeatable; YAML or JSON, several "
        "documents or a List); anything else it refers to is treated as not found",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="output format (default: yaml, multi-line values as blocks)",
    )
    p.add_argument(
        "--only",
        choices=RENDER_ONLY,
        help="print only the instance body, or only the cloud-init document (as text)",
    )
    p.add_argument("--node-name", metavar="NAME", help="the Node's name (default: vnode)")
    p.add_argument(
        "--machine-types",
        metavar="FILE",
        help="machineTypes.list items to choose from (e.g. gcloud compute machine-types list "
        "--zones ZONE --format json); default: vnode's built-in offline catalogue",
    )
    _add_gce_flags(p)
    p.set_defaults(func=_cmd_render, render_parser=p)


def _yaml_documents(text: str, source: str) -> list[dict[str, Any]]:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"{source} is not valid YAML or JSON: {why}{where}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected Kubernetes objects, found {type(doc).__name__}")
        if doc.get("kind") == "List" or (
            str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)
        ):
            out.extend(i for i in doc["items"] if isinstance(i, dict))
        else:
            out.append(doc)
    return out


def _read_documents(name: str) -> list[dict[str, Any]]:
    if name == "-":
        return _yaml_documents(sys.stdin.read(), "stdin")
    try:
        text = Path(name).expanduser().read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {name}: {e.strerror or e}") from None
    return _yaml_documents(text, name)


def _pod_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod ``obj`` is, or the pod its template makes (named ``<name>-rendered``)."""
    kind = obj.get("kind")
    if kind == "Pod":
        return dict(obj)
    where = POD_TEMPLATES.get(str(kind))
    if where is None:
        return None
    template: Any = obj
    for key in where:
        template = template.get(key) if isinstance(template, Mapping) else None
    if not isinstance(template, Mapping):
        raise ConfigError(f"{kind} {obj.get('metadata', {}).get('name')!r} has no pod template")
    meta = dict(template.get("metadata") or {})
    owner = obj.get("metadata") or {}
    meta["name"] = f"{owner.get('name') or str(kind).lower()}-rendered"
    if owner.get("namespace"):
        meta.setdefault("namespace", owner["namespace"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec")}


def _machine_types(args: argparse.Namespace, project: str) -> tuple[Any, str]:
    """The catalogue for render: a file, else the sandbox's offline one; and a note."""
    if args.machine_types:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.machine_types).expanduser().read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read machine types from {args.machine_types}: {e}") from None
        items = loaded.get("items") if isinstance(loaded, dict) else loaded
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ConfigError(
                f"{args.machine_types}: expected a list of machine types (or an object with items)"
            )
        return (lambda zone: items), ""
    from vnode.sandbox.compute.catalogue import ZONES, to_resource, zone_shapes

    base = "https://compute.googleapis.com/compute/v1"

    def offline(zone: str) -> list[dict[str, Any]]:
        known = zone if zone in ZONES else OFFLINE_ZONE
        return [to_resource(s, zone, base, project or "project") for s in zone_shapes(known)]

    return offline, (
        "machine types come from vnode's built-in offline catalogue (E2, N2, C3, G2 shapes; "
        "your zone may offer other ones: --machine-types FILE gives the real list)"
    )


def _dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100)


def _cmd_render(args: argparse.Namespace) -> int:
    from vnode.errors import VnodeError
    from vnode.gce.render import OfflineCluster, render_pod
    from vnode.settings import validate_gce

    root = logging.getLogger()
    if root.level == logging.INFO:  # the provider's progress lines are noise here
        root.setLevel(logging.WARNING)
    try:
        values = _from_env(args, args.render_parser, os.environ)
        gce = _gce_settings(values)
        validate_gce(gce, in_use=False)
        if not gce.zones:
            raise ConfigError("give the zone(s) vnode places VMs in: --zone (or VNODE_ZONE)")
        node = values.get("--node-name") or NodeSettings().name
        docs = _read_documents(args.pod)
        pods = [p for p in (_pod_of(d) for d in docs) if p is not None]
        if not pods:
            raise ConfigError(f"{args.pod} holds no Pod (nor a Job, Deployment, ... template)")
        if len(pods) > 1:
            raise ConfigError(f"{args.pod} holds {len(pods)} pods; render one at a time")
        objects = [d for d in docs if d.get("kind") in ("ConfigMap", "Secret")]
        for name in args.render_files:
            objects.extend(_read_documents(name))
        machine_types, note = _machine_types(args, gce.project)
    except ConfigError as e:
        print(f"vnode render: error: {e}", file=sys.stderr)
        return 2
    try:
        rendered = asyncio.run(
            render_pod(
                pods[0], gce, node_name=node, machine_types=machine_types,
                cluster=OfflineCluster(objects),
            )
        )  # fmt: skip
    except VnodeError as e:
        print(
            f"vnode render: the pod cannot run on a vnode VM: {e.pod_reason}: {e}", file=sys.stderr
        )
        return 1
    for type_, reason, message in rendered.events:
        if type_ == "Warning":
            print(f"vnode render: warning: {reason}: {message}", file=sys.stderr)
    if note:
        print(f"vnode render: note: {note}", file=sys.stderr)
    print(
        "vnode render: note: placeholders for what exists only at create time: "
        + "; ".join(rendered.placeholders),
        file=sys.stderr,
    )
    if args.only == "user-data":
        sys.stdout.write(rendered.user_data)
    elif args.only == "instance":
        sys.stdout.write(_dump(rendered.instance, args.output))
    else:
        document = {
            "zone": rendered.zone,
            "requestId": rendered.request_id,
            "instance": rendered.instance,
        }
        sys.stdout.write(_dump(document, args.output))
    return 0


# -- the command --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (and exit 2), like every other invalid setting."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vnode", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="log lines as JSON or text (also VNODE_LOG_FORMAT); auto, the default, "
        "writes JSON unless stderr is a terminal",
    )
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    sub.add_parser("version", help="print the version").set_defaults(func=_cmd_version)
    _add_run(sub)
    _add_sandbox(sub)
    _add_render(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _setup_logging(args.log_level, args.log_format)
    except ConfigError as e:
        print(f"vnode: error: {e}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
