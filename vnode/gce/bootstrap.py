"""Cloud-init user-data that turns a fresh Container-Optimized OS VM into a one-pod kubelet.

A pod's VM boots COS from a stock image; everything that makes it vnode's comes from the
instance metadata rendered here, and nothing is installed by hand. COS runs cloud-init
on every boot (``/etc`` and ``/var/lib/cloud`` are tmpfs), so the ``user-data``
document is the VM's whole desired state:

- **the kubelet** (``/etc/kubernetes/kubelet-config.yaml``): standalone, static pods from
  ``/etc/kubernetes/manifests``, no API server. Port 10250 serves TLS with a certificate
  vnode issued for this VM; anonymous requests, bearer tokens (webhook) and the
  read-only port are off. ``authorization.mode`` is ``AlwaysAllow`` because ``Webhook``
  needs an API server the VM does not have: the gate is the x509 client CA, which is
  vnode's own (it signs only vnode's client certificate), so only vnode gets past TLS
  client authentication, and then it may do anything, as the kubelet's owner should.
  The one-pod settings follow the kubelet-in-Docker design: no QoS cgroups, no node
  allocatable enforcement, no eviction (every threshold ``0%``, which the kubelet reads
  as "off"), no image garbage collection, swap tolerated, no cluster DNS. The node name
  is the instance name, written into the unit, never systemd's ``%H``: COS may report a
  longer host name, and vnode must know the mirror pod's name ``<pod>-<node>`` in advance.
- **the kubelet binary**: COS's own ``/usr/bin/kubelet`` by default. A pinned release
  can be given instead (URL + SHA-256): a oneshot unit downloads it into
  ``/var/lib/google/vnode/bin`` (``/var`` is mounted ``noexec`` on COS; ``/var/lib/google``
  is one of the documented executable paths) and checks it with ``sha256sum --check``;
  a mismatch fails that unit, and the kubelet unit, which requires it, never starts.
- **the pod**: the static pod manifest is written outside the manifest folder and moved
  in by a oneshot unit, after the VM's internal IP replaced
  :data:`~vnode.gce.manifest.HOST_IP_PLACEHOLDER`: written to a dotfile, then renamed,
  since the kubelet skips dotfiles and so never reads half a manifest. Materialised
  volumes, image-pull credentials and the TLS files are plain ``write_files`` entries
  with their modes (keys ``0600``), binary content base64-encoded and large content
  gzip+base64 when that is smaller, which stretches the metadata budget.
- **the firewall**: COS's host firewall drops incoming connections except SSH; one
  oneshot unit opens tcp/10250 and nothing else. With the CNI bridge, the ``firewall``
  CNI plugin admits the pods' own forwarded traffic, so the host rules stay as they are.
- **the CNI bridge** (optional): ``kubelet0`` on 10.88.0.0/16 with host-local IPAM,
  gateway 10.88.0.1, hairpin and IP masquerade, plus ``portmap`` for host ports. The
  plugins themselves are not assumed on the image: a pinned plugin archive can be
  fetched like the kubelet into ``cni_bin_dir`` (default ``/home/kubernetes/bin``,
  bind-mounted executable as GKE's COS nodes do); containerd's CNI ``bin_dir`` must name
  that directory, which is an assumption about the image to check on each COS milestone.
- **container logs**: COS's own logging agent (``google-logging-enabled``) ships the
  journal (kubelet, containerd) to Cloud Logging. Its configuration is part of the image
  and not an interface vnode can rely on, so vnode runs a second, pinned fluent-bit in
  a container under a systemd unit, with its own position database. It tails the
  kubelet's own files ``/var/log/pods/<ns>_<pod>-<node>_<uid>/<container>/<n>.log``
  rather than the ``/var/log/containers`` symlinks: that path carries the pod uid and the
  restart count (``n``, needed for ``previous``) where the symlink name carries only a
  container ID. The CRI multiline parser joins ``P`` chunks into one line and takes the
  container's own timestamp as the entry time; every entry goes to one log
  (``vnode_containers`` by default) of the ``gce_instance`` resource, the line in
  ``jsonPayload.message`` and the labels of :data:`LOG_LABELS`.

**Secrets in metadata.** Instance metadata is readable by anyone with
``compute.instances.get`` on the VM. Three things cannot be kept out of it yet: the
kubelet's serving key (per VM, useless for anything but impersonating that VM's
kubelet to vnode), the files of Secret volumes and minted tokens, and Secret values
the manifest holds as env. :attr:`BootstrapResult.secrets` names which of them a VM
carries. The way out, later: let the VM fetch them at boot from Secret Manager with
its own service account (or generate its key and have vnode sign a CSR) so metadata
holds references only.

Everything here is pure: the same inputs give byte-identical metadata, so an insert
retried after a crash carries the same request.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from vnode.errors import ConfigError, InvalidPod

HOST_IP_PLACEHOLDER = "__VNODE_HOST_IP__"
"""The same text as :data:`vnode.gce.manifest.HOST_IP_PLACEHOLDER` (kept literal here so
this module stands alone); replaced by the VM's internal IP before the kubelet reads the
manifest."""

# -- where things go on the VM ---------------------------------------------------------

KUBELET_CONFIG_PATH = "/etc/kubernetes/kubelet-config.yaml"
MANIFEST_DIR = "/etc/kubernetes/manifests"
MANIFEST_NAME = "vnode-pod.yaml"
PKI_DIR = "/etc/kubernetes/pki"
CLIENT_CA_PATH = f"{PKI_DIR}/vnode-client-ca.crt"
SERVING_CERT_PATH = f"{PKI_DIR}/kubelet-serving.crt"
SERVING_KEY_PATH = f"{PKI_DIR}/kubelet-serving.key"
CNI_CONFIG_PATH = "/etc/cni/net.d/10-vnode-bridge.conflist"
UNIT_DIR = "/etc/systemd/system"
# /etc is a writable, executable tmpfs on COS: the right home for boot scripts.
VNODE_ETC = "/etc/vnode"
STAGED_MANIFEST_PATH = f"{VNODE_ETC}/pod.yaml"
FETCH_SCRIPT = f"{VNODE_ETC}/fetch-verified.sh"
INSTALL_MANIFEST_SCRIPT = f"{VNODE_ETC}/install-manifest.sh"
FLUENT_BIT_DIR = f"{VNODE_ETC}/fluent-bit"
FLUENT_BIT_STATE_DIR = "/var/lib/vnode/fluent-bit"
COS_KUBELET = "/usr/bin/kubelet"
PINNED_KUBELET = "/var/lib/google/vnode/bin/kubelet"
CNI_ARCHIVE = "/var/lib/vnode/cni-plugins.tgz"
POD_LOGS_DIR = "/var/log/pods"

KUBELET_UNIT = "vnode-kubelet.service"
KUBELET_FETCH_UNIT = "vnode-kubelet-fetch.service"
MANIFEST_UNIT = "vnode-manifest.service"
FIREWALL_UNIT = "vnode-firewall.service"
FLUENT_BIT_UNIT = "vnode-fluent-bit.service"
CNI_PLUGINS_UNIT = "vnode-cni-plugins.service"

KUBELET_PORT = 10250
CNI_BRIDGE = "kubelet0"
CNI_SUBNET = "10.88.0.0/16"
CNI_GATEWAY = "10.88.0.1"

DEFAULT_FLUENT_BIT_IMAGE = "cr.fluentbit.io/fluent/fluent-bit:3.2"
"""Pinned to a minor release: the config below uses the classic format and the built-in
``cri`` multiline parser, both stable across 3.x. Settings may pin a digest."""

# -- the log entries vnode reads back --------------------------------------------------

DEFAULT_LOG_NAME = "vnode_containers"
PAYLOAD_KEY = "message"
"""The line (P/F chunks joined, no trailing newline) is ``jsonPayload.message``."""
LABEL_POD_UID = "vnode.dev/pod-uid"
LABEL_NAMESPACE = "vnode.dev/namespace"
LABEL_POD = "vnode.dev/pod"
LABEL_CONTAINER = "vnode.dev/container"
LABEL_RESTART_COUNT = "vnode.dev/restart-count"
LABEL_STREAM = "vnode.dev/stream"
LOG_LABELS = (
    LABEL_POD_UID,
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_CONTAINER,
    LABEL_RESTART_COUNT,
    LABEL_STREAM,
)
# Capture group -> label; the groups are what the path regex names.
_PATH_GROUPS = {
    "namespace": LABEL_NAMESPACE,
    "pod": LABEL_POD,
    "pod_uid": LABEL_POD_UID,
    "container": LABEL_CONTAINER,
    "restart_count": LABEL_RESTART_COUNT,
}
_LABELS_KEY = "logging.googleapis.com/labels"
_PATH_KEY = "vnode_path"

# -- GCE metadata limits ---------------------------------------------------------------

MAX_VALUE_BYTES = 256 * 1024
"""GCE: one metadata value may hold at most 256 KB."""
MAX_TOTAL_BYTES = 512 * 1024
"""GCE: all keys and values of an instance's metadata together, at most 512 KB."""
WARN_FRACTION = 0.75
"""Above this share of a limit the result carries a warning."""

_INSTANCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LOG_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
# Characters a URL may not carry into a unit's ExecStart line unquoted.
_UNSAFE_URL = re.compile(r"[\s\"'\\`$;]")
_GZIP_MIN = 8 * 1024


class VolumeFileLike(Protocol):
    """What :func:`render` needs of a file (``vnode.gce.manifest.VolumeFile`` fits)."""

    @property
    def path(self) -> str: ...
    @property
    def content(self) -> bytes: ...
    @property
    def mode(self) -> int: ...


@dataclass(frozen=True)
class PinnedDownload:
    """A file fetched at boot and accepted only with this SHA-256."""

    url: str
    sha256: str
    """64 lowercase hex digits."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://", "file://")):
            raise ConfigError(f"download URL {self.url!r} must be http(s) (or file, for tests)")
        if _UNSAFE_URL.search(self.url):
            raise ConfigError(f"download URL {self.url!r} holds blanks, quotes or shell marks")
        if not _SHA256.match(self.sha256):
            raise ConfigError(
                f"SHA-256 {self.sha256!r} for {self.url} must be 64 lowercase hex digits"
            )


@dataclass(frozen=True)
class BootstrapOptions:
    """Everything the boot of one VM depends on besides its pod."""

    node_name: str
    """The instance name; the VM kubelet's node name, so the pod shows as ``<pod>-<node>``."""
    client_ca_pem: str
    """vnode's client CA (PEM): the only issuer whose client certificates the VM kubelet
    accepts; it signs vnode's client certificate for talking to VM kubelets."""
    serving_cert_pem: str
    """The kubelet's serving certificate for this VM (PEM), issued by vnode."""
    serving_key_pem: str
    """Its private key (PEM). Lands in metadata: see the module docstring."""
    kubelet: PinnedDownload | None = None
    """A pinned kubelet release to run instead of COS's ``/usr/bin/kubelet``."""
    cni_bridge: bool = False
    """Give the pod its own network namespace on the ``kubelet0`` bridge."""
    cni_plugins: PinnedDownload | None = None
    """A pinned CNI plugins archive (``cni-plugins-linux-amd64-*.tgz``) to unpack into
    ``cni_bin_dir``; needed with ``cni_bridge`` unless the image has the plugins."""
    cni_bin_dir: str = "/home/kubernetes/bin"
    """Where the CNI plugins go (remounted executable at boot)."""
    logging: bool = True
    """Ship the containers' output to Cloud Logging (fluent-bit unit)."""
    log_name: str = DEFAULT_LOG_NAME
    """Cloud Logging log ID of the container lines."""
    fluent_bit_image: str = DEFAULT_FLUENT_BIT_IMAGE
    kubelet_verbosity: int = 2
    """The kubelet's ``--v`` (2: what its reference captures used)."""
    disable_os_updates: bool = True
    """Set ``cos-update-strategy=update_disabled``: a one-shot VM never reboots into an
    update, so downloading one only costs bandwidth beside the pod's image pull."""

    def __post_init__(self) -> None:
        if not _INSTANCE_NAME.match(self.node_name):
            raise ConfigError(f"node name {self.node_name!r} is not a valid instance name")
        for name in ("client_ca_pem", "serving_cert_pem", "serving_key_pem"):
            if "-----BEGIN " not in getattr(self, name):
                raise ConfigError(f"{name} must be PEM text")
        if not _LOG_NAME.match(self.log_name):
            raise ConfigError(f"log name {self.log_name!r}: letters, digits, '_', '-', '.'")
        if not posixpath.isabs(self.cni_bin_dir) or _UNSAFE_URL.search(self.cni_bin_dir):
            raise ConfigError(f"cni_bin_dir {self.cni_bin_dir!r} must be a plain absolute path")
        if self.kubelet_verbosity < 0:
            raise ConfigError(f"kubelet verbosity {self.kubelet_verbosity} must be 0 or more")
        if _UNSAFE_URL.search(self.fluent_bit_image) or not self.fluent_bit_image:
            raise ConfigError(f"fluent-bit image {self.fluent_bit_image!r} is not a reference")


@dataclass(frozen=True)
class BootstrapResult:
    metadata: dict[str, str]
    """Instance metadata items, in a fixed order (``user-data`` first)."""
    warnings: tuple[str, ...] = ()
    """Near a GCE limit, or anything else the caller should surface as an Event."""
    secrets: tuple[str, ...] = ()
    """What secret material the metadata holds (readable with ``compute.instances.get``)."""

    @property
    def user_data(self) -> str:
        return self.metadata["user-data"]

    def items(self) -> list[dict[str, str]]:
        """The ``metadata.items`` list of a Compute ``instances.insert`` body."""
        return [{"key": k, "value": v} for k, v in self.metadata.items()]


# -- rendering -------------------------------------------------------------------------


def render(
    options: BootstrapOptions,
    static_pod: Mapping[str, Any],
    files: Sequence[VolumeFileLike] = (),
    *,
    secret_manifest: bool = False,
) -> BootstrapResult:
    """The instance metadata that boots ``static_pod`` on a COS VM.

    ``files`` are written before the kubelet starts (materialised volumes, pull
    credentials). ``secret_manifest`` says the manifest holds Secret values (env).
    Raises ``InvalidPod`` when the result exceeds GCE's metadata limits.
    """
    name = str((static_pod.get("metadata") or {}).get("name") or "")
    if not name:
        raise InvalidPod("the static pod has no metadata.name")
    secrets = ["the kubelet serving key"]
    entries: list[dict[str, Any]] = []
    entries.append(_text_file(KUBELET_CONFIG_PATH, _dump_yaml(kubelet_config(options)), 0o644))
    entries.append(_text_file(CLIENT_CA_PATH, options.client_ca_pem, 0o644))
    entries.append(_text_file(SERVING_CERT_PATH, options.serving_cert_pem, 0o644))
    entries.append(_text_file(SERVING_KEY_PATH, options.serving_key_pem, 0o600))
    entries.append(_file(STAGED_MANIFEST_PATH, _dump_yaml(dict(static_pod)).encode(), 0o600))
    if secret_manifest:
        secrets.append("Secret values in the pod's env")
    groups: list[tuple[int, str]] = []
    secret_files = 0
    taken = {e["path"] for e in entries} | _own_paths(options)
    for f in files:
        if not posixpath.isabs(f.path) or posixpath.normpath(f.path) != f.path:
            raise InvalidPod(f"volume file path {f.path!r} is not a clean absolute path")
        if f.path in taken:
            raise InvalidPod(f"volume file path {f.path!r} is written twice or is vnode's own")
        taken.add(f.path)
        entries.append(_file(f.path, bytes(f.content), f.mode))
        gid = getattr(f, "gid", None)
        if gid is not None:
            groups.append((int(gid), f.path))
        secret_files += bool(getattr(f, "sensitive", False))
    if secret_files:
        secrets.append(f"{secret_files} file(s) from Secrets or tokens")
    entries.append(_text_file(FETCH_SCRIPT, FETCH_VERIFIED_SH, 0o755))
    entries.append(_text_file(INSTALL_MANIFEST_SCRIPT, INSTALL_MANIFEST_SH, 0o755))
    if options.cni_bridge:
        entries.append(_text_file(CNI_CONFIG_PATH, json.dumps(cni_config(), indent=2), 0o644))
    if options.logging:
        conf, parsers = fluent_bit_config(options)
        entries.append(_text_file(f"{FLUENT_BIT_DIR}/fluent-bit.conf", conf, 0o644))
        entries.append(_text_file(f"{FLUENT_BIT_DIR}/parsers.conf", parsers, 0o644))
    for unit, text in units(options).items():
        entries.append(_text_file(f"{UNIT_DIR}/{unit}", text, 0o644))

    config: dict[str, Any] = {"write_files": entries, "runcmd": _runcmd(options, groups)}
    user_data = "#cloud-config\n" + _dump_yaml(config)
    metadata = {"user-data": user_data, "google-logging-enabled": "true"}
    if options.disable_os_updates:
        metadata["cos-update-strategy"] = "update_disabled"
    warnings = _check_size(metadata)
    return BootstrapResult(metadata=metadata, warnings=warnings, secrets=tuple(secrets))


def _own_paths(options: BootstrapOptions) -> set[str]:
    paths = {
        FETCH_SCRIPT,
        INSTALL_MANIFEST_SCRIPT,
        CNI_CONFIG_PATH,
        f"{MANIFEST_DIR}/{MANIFEST_NAME}",
    }
    paths |= {f"{FLUENT_BIT_DIR}/fluent-bit.conf", f"{FLUENT_BIT_DIR}/parsers.conf"}
    return paths | {f"{UNIT_DIR}/{unit}" for unit in units(options)}


def kubelet_config(options: BootstrapOptions) -> dict[str, Any]:
    """The KubeletConfiguration (v1beta1) of a standalone one-pod VM."""
    no_eviction = {
        signal: "0%"
        for signal in (
            "memory.available",
            "nodefs.available",
            "nodefs.inodesFree",
            "imagefs.available",
            "imagefs.inodesFree",
        )
    }
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "staticPodPath": MANIFEST_DIR,
        "fileCheckFrequency": "5s",
        "tlsCertFile": SERVING_CERT_PATH,
        "tlsPrivateKeyFile": SERVING_KEY_PATH,
        "tlsMinVersion": "VersionTLS12",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": CLIENT_CA_PATH},
        },
        # No API server to ask (Webhook); the client CA above is vnode's alone.
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "systemd",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "failSwapOn": False,
        # "0%" disables a signal; an explicit map leaves no default to merge in.
        "evictionHard": no_eviction,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "resolvConf": "/etc/resolv.conf",
    }


def cni_config() -> dict[str, Any]:
    """The bridge network of the kubelet-in-Docker design, as a CNI conflist."""
    return {
        "cniVersion": "1.0.0",
        "name": "vnode",
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": CNI_SUBNET, "gateway": CNI_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            # Admits the pods' forwarded traffic past COS's FORWARD policy.
            {"type": "firewall"},
        ],
    }


# -- container logs --------------------------------------------------------------------


def log_path_regex(node_name: str, *, python: bool = False) -> str:
    """The regex that reads the labels out of a CRI log path of this VM.

    Onigmo syntax (fluent-bit) by default, Python's with ``python=True``; same pattern.
    The kubelet names the pod directory after the mirror pod ``<pod>-<node>``; the
    node suffix is cut so the label holds the API pod's name.
    """
    g = "(?P<" if python else "(?<"
    return (
        f"^{re.escape(POD_LOGS_DIR)}/{g}namespace>[^_/]+)_{g}pod>[^_/]+)-{re.escape(node_name)}"
        f"_{g}pod_uid>[^_/]+)/{g}container>[^/]+)/{g}restart_count>[0-9]+)\\.log$"
    )


def log_labels(path: str, node_name: str, stream: str) -> dict[str, str] | None:
    """The Cloud Logging labels fluent-bit gives a line of ``path``; None when the path
    is not a container log of this VM (fluent-bit then ships it unlabelled)."""
    m = re.match(log_path_regex(node_name, python=True), path)
    if m is None:
        return None
    labels = {label: m.group(group) for group, label in _PATH_GROUPS.items()}
    labels[LABEL_STREAM] = stream
    return labels


@dataclass(frozen=True)
class LogRecord:
    """One Cloud Logging entry as the fluent-bit config above makes it."""

    timestamp: str
    """The CRI timestamp of the line's first chunk (RFC 3339, as the kubelet wrote it)."""
    message: str
    """The whole line, ``P`` chunks joined, without its newline."""
    labels: dict[str, str]
    """:data:`LOG_LABELS`, empty when the file is not a container log of this VM."""


_CRI_LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$")


def log_records(path: str, text: str, node_name: str) -> list[LogRecord]:
    """The entries fluent-bit ships for CRI log ``text`` read from ``path``: the Python
    twin of :func:`fluent_bit_config`, for the VM simulator. ``P`` chunks are joined up
    to the next ``F`` of the same file; a trailing ``P`` (output that ended without a
    newline) is flushed as it is."""
    records: list[LogRecord] = []
    pending: tuple[str, str, list[str]] | None = None  # time, stream, chunks
    for line in text.splitlines():
        m = _CRI_LINE.match(line)
        if m is None:
            continue
        time, stream, tag, chunk = m.groups()
        if pending is None:
            pending = (time, stream, [])
        pending[2].append(chunk)
        if tag == "F":
            records.append(_record(path, node_name, *pending))
            pending = None
    if pending is not None:
        records.append(_record(path, node_name, *pending))
    return records


def _record(path: str, node: str, time: str, stream: str, chunks: list[str]) -> LogRecord:
    return LogRecord(time, "".join(chunks), log_labels(path, node, stream) or {})


def fluent_bit_config(options: BootstrapOptions) -> tuple[str, str]:
    """``fluent-bit.conf`` and ``parsers.conf`` (classic format) for container logs."""
    tag = options.log_name
    renames = "".join(f"    Rename        {g} {label}\n" for g, label in _PATH_GROUPS.items())
    conf = (
        "[SERVICE]\n"
        "    Flush         1\n"
        "    Grace         10\n"
        "    Log_Level     warn\n"
        f"    Parsers_File  {FLUENT_BIT_DIR}/parsers.conf\n"
        f"    storage.path  {FLUENT_BIT_STATE_DIR}/storage\n"
        "    storage.sync  normal\n"
        "\n"
        "# One file per container instance: <ns>_<pod>-<node>_<uid>/<container>/<n>.log.\n"
        "# The CRI parser joins P chunks up to their F line and takes the CRI timestamp\n"
        "# as the record time. Read from the head: a short pod may be done before we start.\n"
        "[INPUT]\n"
        "    Name              tail\n"
        f"    Tag               {tag}\n"
        f"    Path              {POD_LOGS_DIR}/*/*/*.log\n"
        f"    Path_Key          {_PATH_KEY}\n"
        "    multiline.parser  cri\n"
        "    Read_from_Head    On\n"
        f"    DB                {FLUENT_BIT_STATE_DIR}/tail.db\n"
        "    Refresh_Interval  1\n"
        "    Buffer_Max_Size   1MB\n"
        "    Skip_Long_Lines   Off\n"
        "    storage.type      filesystem\n"
        "\n"
        "[FILTER]\n"
        "    Name          parser\n"
        f"    Match         {tag}\n"
        f"    Key_Name      {_PATH_KEY}\n"
        "    Parser        vnode_pod_log_path\n"
        "    Reserve_Data  On\n"
        "\n"
        "[FILTER]\n"
        "    Name          modify\n"
        f"    Match         {tag}\n"
        f"    Rename        log {PAYLOAD_KEY}\n"
        f"{renames}"
        f"    Rename        stream {LABEL_STREAM}\n"
        "    Remove        _p\n"
        f"    Remove        {_PATH_KEY}\n"
        "\n"
        "[FILTER]\n"
        "    Name          nest\n"
        f"    Match         {tag}\n"
        "    Operation     nest\n"
        "    Wildcard      vnode.dev/*\n"
        f"    Nest_under    {_LABELS_KEY}\n"
        "\n"
        "# The tag is the log ID: projects/<project>/logs/<tag>.\n"
        "[OUTPUT]\n"
        "    Name          stackdriver\n"
        f"    Match         {tag}\n"
        "    Resource      gce_instance\n"
        f"    labels_key    {_LABELS_KEY}\n"
        "    Retry_Limit   False\n"
    )
    parsers = (
        "[PARSER]\n"
        "    Name    vnode_pod_log_path\n"
        "    Format  regex\n"
        f"    Regex   {log_path_regex(options.node_name)}\n"
    )
    return conf, parsers


# -- systemd units and boot scripts ----------------------------------------------------

FETCH_VERIFIED_SH = """\
#!/bin/bash
# fetch-verified URL SHA256 DEST: install URL's content at DEST (mode 0755) only if its
# SHA-256 is SHA256. Any other content fails, and with it every unit that requires ours.
set -euo pipefail
url="$1"; sum="$2"; dest="$3"
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp "$dest.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
curl --fail --silent --show-error --location --retry 5 --retry-delay 2 \\
  --retry-connrefused --output "$tmp" "$url"
if ! echo "$sum  $tmp" | sha256sum --check --strict --status -; then
  echo "fetch-verified: $url does not have SHA-256 $sum; refusing it" >&2
  exit 1
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
"""

INSTALL_MANIFEST_SH = f"""\
#!/bin/bash
# install-manifest STAGED DIR NAME: put the pod's manifest into the kubelet's folder,
# with the VM's internal IP in place of {HOST_IP_PLACEHOLDER}. Written to a dotfile
# and renamed: the kubelet skips dotfiles, so it never reads half a manifest.
set -euo pipefail
staged="$1"; dir="$2"; name="$3"
ip="${{VNODE_HOST_IP:-}}"
if [ -z "$ip" ] && grep -q {HOST_IP_PLACEHOLDER} "$staged"; then
  ip="$(curl --fail --silent --show-error --retry 10 --retry-connrefused \\
    -H 'Metadata-Flavor: Google' \\
    http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/ip)"
fi
mkdir -p "$dir"
umask 077
sed "s/{HOST_IP_PLACEHOLDER}/$ip/g" "$staged" > "$dir/.$name.tmp"
mv -f "$dir/.$name.tmp" "$dir/$name"
"""


def units(options: BootstrapOptions) -> dict[str, str]:
    """The systemd units, by file name."""
    out: dict[str, str] = {}
    out[FIREWALL_UNIT] = _unit(
        "vnode: open tcp/10250 (the kubelet, for vnode) in COS's host firewall",
        ["Before=" + KUBELET_UNIT],
        [
            "Type=oneshot",
            "RemainAfterExit=true",
            # -C first: a restarted unit must not stack duplicate rules.
            "ExecStart=/bin/sh -c '/sbin/iptables -w -C INPUT -p tcp --dport "
            f"{KUBELET_PORT} -j ACCEPT || /sbin/iptables -w -A INPUT -p tcp --dport "
            f"{KUBELET_PORT} -j ACCEPT'",
        ],
    )
    out[MANIFEST_UNIT] = _unit(
        "vnode: move the pod's static manifest into the kubelet's folder",
        ["Wants=network-online.target", "After=network-online.target", "Before=" + KUBELET_UNIT],
        [
            "Type=oneshot",
            "RemainAfterExit=true",
            f"ExecStart={INSTALL_MANIFEST_SCRIPT} {STAGED_MANIFEST_PATH} {MANIFEST_DIR} "
            f"{MANIFEST_NAME}",
        ],
    )
    requires = ["containerd.service", MANIFEST_UNIT]
    after = ["network-online.target", "containerd.service", FIREWALL_UNIT, MANIFEST_UNIT]
    binary = COS_KUBELET
    if options.kubelet is not None:
        binary = PINNED_KUBELET
        out[KUBELET_FETCH_UNIT] = _unit(
            "vnode: fetch the pinned kubelet release and check its SHA-256",
            ["Wants=network-online.target", "After=network-online.target"],
            [
                "Type=oneshot",
                "RemainAfterExit=true",
                f"ExecStart={FETCH_SCRIPT} {_unit_word(options.kubelet.url)} "
                f"{options.kubelet.sha256} {PINNED_KUBELET}",
            ],
        )
        requires.append(KUBELET_FETCH_UNIT)
        after.append(KUBELET_FETCH_UNIT)
    if options.cni_bridge and options.cni_plugins is not None:
        bin_dir = options.cni_bin_dir
        out[CNI_PLUGINS_UNIT] = _unit(
            "vnode: fetch the pinned CNI plugins and check their SHA-256",
            ["Wants=network-online.target", "After=network-online.target"],
            [
                "Type=oneshot",
                "RemainAfterExit=true",
                f"ExecStart={FETCH_SCRIPT} {_unit_word(options.cni_plugins.url)} "
                f"{options.cni_plugins.sha256} {CNI_ARCHIVE}",
                f"ExecStart=/bin/mkdir -p {bin_dir}",
                # The stateful partition is noexec; a bind mount of its own may be exec.
                f"ExecStart=/bin/mount --bind {bin_dir} {bin_dir}",
                f"ExecStart=/bin/mount -o remount,exec {bin_dir}",
                f"ExecStart=/bin/tar -xzf {CNI_ARCHIVE} -C {bin_dir}",
            ],
        )
        requires.append(CNI_PLUGINS_UNIT)
        after.append(CNI_PLUGINS_UNIT)
    out[KUBELET_UNIT] = _unit(
        "vnode: standalone kubelet running the pod as a static pod",
        [
            "Wants=network-online.target",
            "After=" + " ".join(after),
            "Requires=" + " ".join(requires),
        ],
        [
            f"ExecStart={binary} --config={KUBELET_CONFIG_PATH} "
            f"--hostname-override={options.node_name} --v={int(options.kubelet_verbosity)}",
            "Restart=always",
            "RestartSec=2s",
        ],
    )
    if options.logging:
        volumes = " ".join(
            f"-v {host}:{host}{suffix}"
            for host, suffix in (
                ("/var/log", ":ro"),
                (FLUENT_BIT_DIR, ":ro"),
                (FLUENT_BIT_STATE_DIR, ""),
            )
        )
        out[FLUENT_BIT_UNIT] = _unit(
            "vnode: ship the pod's container logs to Cloud Logging",
            [
                "Wants=network-online.target",
                "After=network-online.target docker.service",
                "Requires=docker.service",
            ],
            [
                f"ExecStartPre=/bin/mkdir -p {FLUENT_BIT_STATE_DIR}",
                "ExecStartPre=-/usr/bin/docker rm -f vnode-fluent-bit",
                # Host network: the metadata server gives the credentials and resource.
                "ExecStart=/usr/bin/docker run --rm --name vnode-fluent-bit --network host "
                f"{volumes} --entrypoint /fluent-bit/bin/fluent-bit "
                f"{options.fluent_bit_image} -c {FLUENT_BIT_DIR}/fluent-bit.conf",
                # Lets fluent-bit flush its buffer (Grace 10) when the VM goes down.
                "ExecStop=/usr/bin/docker stop -t 15 vnode-fluent-bit",
                "Restart=always",
                "RestartSec=5s",
            ],
        )
    return out


def _unit(description: str, unit: list[str], service: list[str]) -> str:
    lines = ["[Unit]", f"Description={description}", *unit, "", "[Service]", *service]
    return "\n".join(lines) + "\n"


def _unit_word(text: str) -> str:
    # systemd expands %-specifiers in ExecStart; a literal % is written %%.
    return text.replace("%", "%%")


def _runcmd(options: BootstrapOptions, groups: list[tuple[int, str]]) -> list[list[str]]:
    cmds: list[list[str]] = [["systemctl", "daemon-reload"]]
    # cloud-init's owner field takes names; fsGroup is a number.
    cmds += [["chgrp", str(gid), path] for gid, path in groups]
    start = [FIREWALL_UNIT]
    if options.logging:
        start.append(FLUENT_BIT_UNIT)
    start.append(KUBELET_UNIT)
    cmds.append(["systemctl", "start", "--no-block", *start])
    return cmds


# -- write_files -----------------------------------------------------------------------


def _text_file(path: str, text: str, mode: int) -> dict[str, Any]:
    return _file(path, text.encode(), mode)


def _file(path: str, content: bytes, mode: int) -> dict[str, Any]:
    """A ``write_files`` entry in the smallest encoding cloud-init reads back exactly."""
    entry: dict[str, Any] = {
        "path": path,
        "permissions": f"0{mode & 0o7777:o}",
        "owner": "root:root",
    }
    text = _plain_text(content)
    b64 = base64.b64encode(content).decode()
    best: tuple[str | None, str] = (None, text) if text is not None else ("b64", b64)
    if len(content) >= _GZIP_MIN:
        packed = base64.b64encode(gzip.compress(content, mtime=0)).decode()
        if len(packed) < len(best[1]):
            best = ("gz+b64", packed)
    encoding, value = best
    if encoding:
        entry["encoding"] = encoding
    entry["content"] = value
    return entry


def _plain_text(content: bytes) -> str | None:
    """The content as text when YAML carries it unchanged: UTF-8 without control
    characters other than newline and tab (YAML normalises CR and drops BOMs)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 32 and c not in "\n\t") or c in "\x7f\ufeff\x85\u2028\u2029" for c in text):
        return None
    return text


def decode_write_file(entry: Mapping[str, Any]) -> bytes:
    """The bytes cloud-init writes for one ``write_files`` entry (for the VM simulator
    and for tests)."""
    content = entry.get("content", "")
    raw = content.encode() if isinstance(content, str) else bytes(content)
    encoding = str(entry.get("encoding") or "text/plain").lower()
    try:
        if encoding in ("b64", "base64"):
            return base64.b64decode(raw, validate=True)
        if encoding in ("gz+b64", "gz+base64", "gzip+b64", "gzip+base64"):
            return gzip.decompress(base64.b64decode(raw, validate=True))
        if encoding in ("gz", "gzip"):
            return gzip.decompress(raw)
    except (binascii.Error, OSError) as err:
        raise ValueError(f"write_files {entry.get('path')}: bad {encoding} content") from err
    if encoding != "text/plain":
        raise ValueError(f"write_files {entry.get('path')}: unknown encoding {encoding!r}")
    return raw


def install_manifest(staged: str, host_ip: str) -> str:
    """What ``install-manifest.sh`` puts in the kubelet's folder (for the simulator)."""
    return staged.replace(HOST_IP_PLACEHOLDER, host_ip)


@dataclass(frozen=True)
class BootView:
    """What a VM booting from a ``user-data`` document ends up with: for the VM
    simulator, which must boot from the instance's metadata alone, as COS does."""

    files: dict[str, bytes]
    """Every ``write_files`` path and its bytes."""
    node_name: str
    """The kubelet's ``--hostname-override``."""
    kubelet_config: dict[str, Any]
    staged_manifest: str
    """The manifest before the host IP is filled in (see :func:`install_manifest`)."""
    log_name: str | None
    """The Cloud Logging log of container lines; None when the VM ships none."""


def read_user_data(user_data: str) -> BootView:
    """Read back a document :func:`render` made. Raises ``ValueError`` when it is not one."""
    if not user_data.startswith("#cloud-config\n"):
        raise ValueError("user-data is not a #cloud-config document")
    config = yaml.safe_load(user_data)
    if not isinstance(config, dict) or not isinstance(config.get("write_files"), list):
        raise ValueError("user-data has no write_files")
    files = {str(e["path"]): decode_write_file(e) for e in config["write_files"]}
    try:
        kubelet_unit = files[f"{UNIT_DIR}/{KUBELET_UNIT}"].decode()
        kubelet_config = yaml.safe_load(files[KUBELET_CONFIG_PATH])
        staged = files[STAGED_MANIFEST_PATH].decode()
    except KeyError as err:
        raise ValueError(f"user-data does not write {err.args[0]}") from None
    node = re.search(r"--hostname-override=(\S+)", kubelet_unit)
    if node is None:
        raise ValueError("the kubelet unit sets no --hostname-override")
    log_name = None
    conf = files.get(f"{FLUENT_BIT_DIR}/fluent-bit.conf")
    if conf is not None:
        tag = re.search(r"^\s*Tag\s+(\S+)\s*$", conf.decode(), re.MULTILINE)
        log_name = tag.group(1) if tag else None
    return BootView(
        files=files,
        node_name=node.group(1),
        kubelet_config=kubelet_config,
        staged_manifest=staged,
        log_name=log_name,
    )


# -- YAML and limits -------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the user-data stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted scalar when a literal block cannot hold the text.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump_yaml(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1 << 16,
        allow_unicode=True,
    )


def _check_size(metadata: Mapping[str, str]) -> tuple[str, ...]:
    warnings: list[str] = []
    total = 0
    for key, value in metadata.items():
        size = len(value.encode())
        total += size + len(key.encode())
        if size > MAX_VALUE_BYTES:
            raise InvalidPod(
                f"the VM's metadata value {key!r} would be {size} bytes, over GCE's limit of "
                f"{MAX_VALUE_BYTES} bytes per value; the pod's volumes and manifest are too "
                "large to pass through instance metadata"
            )
        if size > WARN_FRACTION * MAX_VALUE_BYTES:
            warnings.append(
                f"metadata value {key!r} is {size} bytes, close to GCE's {MAX_VALUE_BYTES}"
            )
    if total > MAX_TOTAL_BYTES:
        raise InvalidPod(
            f"the VM's metadata would be {total} bytes in all, over GCE's limit of "
            f"{MAX_TOTAL_BYTES} bytes"
        )
    if total > WARN_FRACTION * MAX_TOTAL_BYTES:
        warnings.append(f"metadata is {total} bytes in all, close to GCE's {MAX_TOTAL_BYTES}")
    return tuple(warnings)


__all__ = [
    "LOG_LABELS",
    "BootView",
    "BootstrapOptions",
    "BootstrapResult",
    "LogRecord",
    "PinnedDownload",
    "cni_config",
    "decode_write_file",
    "fluent_bit_config",
    "install_manifest",
    "kubelet_config",
    "log_labels",
    "log_records",
    "read_user_data",
    "render",
    "units",
]
