"""All of vnode's settings: one tree of frozen dataclasses, every field documented.

The CLI (flags and ``VNODE_*`` environment variables) builds one :class:`Settings` and
hands it down; nothing else reads the environment. Defaults follow what a real kubelet
and the virtual-kubelet conventions do, so that a Node from vnode looks familiar.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from vnode.errors import ConfigError

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    @classmethod
    def parse(cls, text: str) -> Taint:
        """``key[=value]:Effect``, the form ``kubectl taint`` uses."""
        spec, sep, effect = text.rpartition(":")
        if not sep or effect not in TAINT_EFFECTS or not spec:
            raise ConfigError(
                f"invalid taint {text!r}: expected key[=value]:Effect with Effect one of "
                + ", ".join(TAINT_EFFECTS)
            )
        key, _, value = spec.partition("=")
        return cls(key, value, effect)

    def to_api(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        return out


DEFAULT_TAINT = Taint("virtual-kubelet.io/provider", "gce", "NoSchedule")
"""The virtual-kubelet convention: pods must tolerate it to land on the Node."""


@dataclass(frozen=True)
class NodeSettings:
    name: str = "vnode"
    """The Node's name; also the holder of its Lease and the ``vnode-node`` VM label."""

    labels: dict[str, str] = field(default_factory=dict)
    """Extra Node labels, merged over the standard ones (``type=virtual-kubelet``, ...)."""

    taints: tuple[Taint, ...] = (DEFAULT_TAINT,)
    """Node taints. Empty removes the default taint, letting any pod land here."""

    capacity: dict[str, str] = field(
        default_factory=lambda: {
            "cpu": "1000",
            "memory": "4Ti",
            "pods": "1000",
            "ephemeral-storage": "100Ti",
            "nvidia.com/gpu": "0",
        }
    )
    """Resource quantities the scheduler may place here, unless the provider reports them."""

    internal_ip: str = ""
    """Address the API server uses to reach vnode's kubelet API (``InternalIP``).
    Empty: the pod IP when in a cluster (``VNODE_POD_IP``), else 127.0.0.1."""

    os: str = "linux"
    arch: str = "amd64"
    region: str = ""
    """``topology.kubernetes.io/region`` label; empty leaves it out."""
    zone: str = ""
    """``topology.kubernetes.io/zone`` label; empty leaves it out."""

    status_period: float = 60.0
    """Seconds between Node status updates when nothing changed (kubelet: 1 minute)."""

    check_period: float = 10.0
    """Seconds between checks whether the Node status changed (capacity from the provider,
    addresses); a change is posted at once (kubelet: ``nodeStatusUpdateFrequency``, 10 s)."""

    provider_id: str = ""
    """``spec.providerID``; empty: the provider's own (``vnode://gce/<project>/<zone>/<node>``)
    or ``vnode://<provider>/<node>``. Never a cloud scheme such as ``gce://``: a cloud node
    controller would delete a Node whose instance it cannot find."""


@dataclass(frozen=True)
class LeaseSettings:
    duration_seconds: int = 40
    """``leaseDurationSeconds`` (kubelet default: 40)."""

    renew_interval: float = 10.0
    """Seconds between renewals (kubelet: a quarter of the duration)."""

    retry_interval: float = 1.0
    """Seconds between attempts after a failed renewal (fast: the lease must not lapse)."""


@dataclass(frozen=True)
class KubeletAPISettings:
    address: str = "0.0.0.0"
    """Address vnode's kubelet API listens on."""

    port: int = 10250
    """The kubelet port; written into the Node's ``daemonEndpoints``."""

    cert_file: Path | None = None
    key_file: Path | None = None
    """Serving certificate; when unset vnode generates one with the Node's addresses."""

    client_ca_file: Path | None = None
    """CA that signs API server (and other) client certificates; unset: only tokens."""


@dataclass(frozen=True)
class PodControllerSettings:
    workers: int = 8
    """Pods reconciled at once."""

    status_period: float = 10.0
    """Seconds between status polls of each pod (the k8sless prototype used 10 s)."""

    retry_base: float = 0.5
    retry_max: float = 120.0
    """Per-pod retry backoff: doubling from ``retry_base`` up to ``retry_max`` seconds."""


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: Path | None = None
    """Kubeconfig to use; unset: in-cluster config, then ``~/.kube/config``."""


@dataclass(frozen=True)
class MetricsSettings:
    address: str = "0.0.0.0"
    """Address the metrics server (``/metrics`` for Prometheus, ``/healthz`` for probes)
    listens on; plain HTTP."""

    port: int = 9090
    """Port of the metrics server; 0 picks a free one, -1 switches it off. Not 10255: that
    is the kubelet's read-only port, which vnode keeps closed."""


@dataclass(frozen=True)
class Settings:
    provider: str = "gce"
    """``gce`` or ``package.module:attribute`` naming a Provider (or a factory for one)."""

    node: NodeSettings = field(default_factory=NodeSettings)
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    kubelet_api: KubeletAPISettings = field(default_factory=KubeletAPISettings)
    pods: PodControllerSettings = field(default_factory=PodControllerSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    # A lambda: GCESettings is defined further down, after the parsing helpers.
    gce: GCESettings = field(default_factory=lambda: GCESettings())  # noqa: PLW0108

    shutdown_timeout: float = 20.0
    """Seconds a SIGTERM/SIGINT shutdown may take in total before the rest is abandoned
    (well inside Kubernetes' default 30 s termination grace period)."""


# -- parsing the textual forms the CLI and the environment use -------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_QUANTITY = re.compile(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


def is_dns_subdomain(text: str) -> bool:
    """RFC 1123 subdomain, as Kubernetes requires for Node names (at most 253 characters)."""
    return len(text) <= 253 and bool(_DNS_SUBDOMAIN.match(text))


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a valid label (or taint) key, or None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or not is_dns_subdomain(prefix)):
        return f"prefix {prefix!r} must be a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"name {name!r} must be 1-63 characters of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def label_value_error(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None when it is."""
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return (
            f"value {value!r} must be at most 63 characters of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def parse_label(text: str) -> tuple[str, str]:
    """``key=value`` (a Node label)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"invalid label {text!r}: expected key=value")
    if (why := label_key_error(key) or label_value_error(value)) is not None:
        raise ConfigError(f"invalid label {text!r}: {why}")
    return key, value


def parse_capacity(text: str) -> tuple[str, str]:
    """``resource=quantity`` (e.g. ``cpu=64``, ``memory=256Gi``, ``nvidia.com/gpu=8``)."""
    name, sep, quantity = text.partition("=")
    if not sep or not name:
        raise ConfigError(f"invalid capacity {text!r}: expected resource=quantity")
    if (why := label_key_error(name)) is not None:
        raise ConfigError(f"invalid capacity {text!r}: resource {why}")
    if not _QUANTITY.match(quantity):
        raise ConfigError(
            f"invalid capacity {text!r}: {quantity!r} is not a quantity (e.g. 8, 500m, 16Gi)"
        )
    return name, quantity


def validate(settings: Settings) -> None:
    """Raise ConfigError (one clear sentence) for settings that cannot work."""
    node = settings.node
    if not is_dns_subdomain(node.name):
        raise ConfigError(
            f"invalid node name {node.name!r}: it must be a lowercase RFC 1123 subdomain "
            "(a-z, 0-9, '-', '.'; at most 253 characters)"
        )
    for key, value in node.labels.items():
        if (why := label_key_error(key) or label_value_error(value)) is not None:
            raise ConfigError(f"invalid label {key}={value}: {why}")
    seen: set[tuple[str, str]] = set()
    for taint in node.taints:
        if taint.effect not in TAINT_EFFECTS:
            raise ConfigError(f"invalid taint effect {taint.effect!r} for {taint.key}")
        if (why := label_key_error(taint.key) or label_value_error(taint.value)) is not None:
            raise ConfigError(f"invalid taint {taint.key}: {why}")
        if (taint.key, taint.effect) in seen:
            raise ConfigError(f"taint {taint.key}:{taint.effect} is given twice")
        seen.add((taint.key, taint.effect))
    for name, quantity in node.capacity.items():
        parse_capacity(f"{name}={quantity}")
    if node.internal_ip:
        try:
            ipaddress.ip_address(node.internal_ip)
        except ValueError:
            raise ConfigError(
                f"invalid internal IP {node.internal_ip!r}: not an IPv4 or IPv6 address"
            ) from None
    _positive("node status period", node.status_period)
    _positive("node status check period", node.check_period)
    lease = settings.lease
    if lease.duration_seconds < 1:
        raise ConfigError(f"lease duration must be at least 1 s, not {lease.duration_seconds}")
    _positive("lease renew interval", lease.renew_interval)
    _positive("lease retry interval", lease.retry_interval)
    if lease.renew_interval >= lease.duration_seconds:
        raise ConfigError(
            f"lease renew interval ({lease.renew_interval} s) must be shorter than the lease "
            f"duration ({lease.duration_seconds} s), or the Node goes NotReady between renewals"
        )
    api = settings.kubelet_api
    if not 0 <= api.port <= 65535:
        raise ConfigError(f"invalid kubelet port {api.port}: expected 0-65535 (0: any free port)")
    try:
        ipaddress.ip_address(api.address)
    except ValueError:
        raise ConfigError(f"invalid kubelet address {api.address!r}: not an IP address") from None
    if (api.cert_file is None) != (api.key_file is None):
        raise ConfigError("give both --tls-cert-file and --tls-key-file, or neither")
    for what, path in (
        ("client CA file", api.client_ca_file),
        ("TLS certificate file", api.cert_file),
        ("TLS key file", api.key_file),
        ("kubeconfig", settings.kube.kubeconfig),
    ):
        if path is not None and not all(Path(p).is_file() for p in str(path).split(":")):
            raise ConfigError(f"{what} {path} does not exist or is not a file")
    metrics = settings.metrics
    if not -1 <= metrics.port <= 65535:
        raise ConfigError(
            f"invalid metrics port {metrics.port}: expected 0-65535 (0: any free port, -1: off)"
        )
    try:
        ipaddress.ip_address(metrics.address)
    except ValueError:
        raise ConfigError(
            f"invalid metrics address {metrics.address!r}: not an IP address"
        ) from None
    pods = settings.pods
    if pods.workers < 1:
        raise ConfigError(f"workers must be at least 1, not {pods.workers}")
    _positive("pod status period", pods.status_period)
    _positive("shutdown timeout", settings.shutdown_timeout)
    validate_gce(settings.gce, in_use=settings.provider == "gce")
    if settings.provider != "gce":
        module, sep, attribute = settings.provider.partition(":")
        if not sep or not module or not attribute:
            raise ConfigError(
                f"invalid provider {settings.provider!r}: expected gce or package.module:attribute"
            )


def _positive(what: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{what} must be a positive number of seconds, not {value}")


# -- the GCE provider ------------------------------------------------------------------

_SCOPES = (
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring.write",
    "https://www.googleapis.com/auth/devstorage.read_only",
)


@dataclass(frozen=True)
class GCESettings:
    """How pods become Compute Engine VMs (``vnode run --provider gce``)."""

    project: str = ""
    """The Google Cloud project the VMs are created in."""

    zones: tuple[str, ...] = ()
    """Zones a pod's VM may go to; the first is the default, the others take pods the
    first cannot (stockout, quota, no such machine type there)."""

    machine_families: tuple[str, ...] = ("e2", "n2")
    """Machine families vnode picks from for pods without GPUs, in order of preference
    when two shapes cost the same. E2 is the cheapest general-purpose family, N2 reaches
    the large shapes (128 vCPUs, 864 GB) E2 stops short of."""

    gpu_families: tuple[str, ...] = ("g2",)
    """Machine families with bundled GPUs, used for pods with ``nvidia.com/gpu`` limits
    (G2: NVIDIA L4, 1 to 8 per VM)."""

    allow_custom_machine_types: bool = True
    """Let vnode use custom shapes (``e2-custom-4-6144``) when one is smaller than every
    predefined type that fits: a VM sized to the pod rather than to the next table row."""

    kubelet_overhead_cpu: str = "250m"
    """CPU kept free for the VM's own services beside the pod: kubelet, containerd and the
    fluent-bit log shipper. A quarter core covers their steady use on a one-pod VM, where
    the kubelet tracks one pod instead of a hundred."""

    kubelet_overhead_memory: str = "512Mi"
    """Memory kept free for COS itself, kubelet, containerd and fluent-bit. Measured COS
    systems settle around 300-400 MiB with one pod; 512 MiB leaves room for page cache
    and log bursts without sizing every VM one step up."""

    boot_disk_min_gb: int = 10
    """Smallest boot disk in GB (GiB); 10 is the COS image's own minimum."""

    boot_disk_headroom_gb: int = 20
    """GB added to the pod's ``ephemeral-storage`` need for what shares the disk: COS's
    own partitions (about 5 GB) and the pulled images (a CUDA runtime image alone is
    several GB). A pull that fills the disk fails the pod; 20 GB of pd-balanced costs
    far less per hour than the VM."""

    boot_disk_type: str = "pd-balanced"
    """Boot disk type (``pd-balanced``: SSD-backed, far faster image pulls than
    ``pd-standard`` for a small price)."""

    image: str = "projects/cos-cloud/global/images/family/cos-stable"
    """Boot image: the COS image family (newest stable image at each insert) or a pinned
    image (``projects/cos-cloud/global/images/cos-stable-...``)."""

    network: str = "global/networks/default"
    """VPC network of the VMs' one interface."""

    subnetwork: str = ""
    """Subnetwork (``regions/R/subnetworks/S``); empty: the network's auto-mode subnet."""

    external_ip: bool = False
    """Give VMs an external IP. Off: vnode reaches them on the internal IP, and image
    pulls go through Cloud NAT or Private Google Access."""

    network_tags: tuple[str, ...] = ("vnode",)
    """Network tags on every VM, the target of the firewall rule that lets vnode reach
    the VM kubelet on tcp:10250."""

    service_account: str = "default"
    """Service account the VMs run as (``default``: the Compute Engine default account)."""

    scopes: tuple[str, ...] = _SCOPES
    """OAuth scopes of the VM's account: write logs and metrics, read images from GCR/AR."""

    spot: bool = False
    """Run every VM as Spot (cheaper, may be preempted); a pod can ask for it alone with
    the annotation ``vnode.dev/provisioning-model: spot``."""

    max_run_duration_seconds: int = 4 * 3600
    """Longest a VM may live (``maxRunDuration``) when the pod sets no
    ``activeDeadlineSeconds``; a backstop against forgotten VMs."""

    delete_delay_seconds: float = 60.0
    """Seconds a finished pod's VM is kept before it is deleted (logs, debugging)."""

    status_period: float = 10.0
    """Seconds between polls of the VM kubelets' ``/pods``."""

    compute_endpoint: str = ""
    """Compute API endpoint; empty: the real one. Tests point it at the emulator
    (``VNODE_COMPUTE_ENDPOINT``)."""

    machine_types_ttl_seconds: float = 3600.0
    """How long a zone's machine-type list is reused before it is listed again."""

    cni_bridge: bool = False
    """Give pods their own network namespace on the CNI bridge ``kubelet0``
    (10.88.0.0/16) instead of the VM's host network."""

    service_account_tokens: bool = True
    """Mint service-account tokens (TokenRequest) for pods that mount one; off: the
    default token volume is dropped and a pod that asks for a token explicitly fails."""

    allowed_host_paths: tuple[str, ...] = ()
    """``hostPath`` volumes a pod may use (the path or anything below it); every other
    hostPath fails the pod, since the VM's disk is not the user's to browse."""

    ca_dir: str = ""
    """Where vnode keeps the CA its VM kubelets trust (created on first start). It must
    outlive restarts, or vnode can no longer talk to the VMs it made; empty:
    ``~/.local/state/vnode/gce-ca``."""

    operation_timeout_seconds: float = 300.0
    """Longest vnode waits for one Compute operation (an insert lasts until the VM runs,
    usually well under a minute); a timeout is an error, retried like a 503."""

    kubelet_timeout_seconds: float = 5.0
    """Bound on one request to a VM kubelet's ``/pods``: a slow VM must not hold the sync."""

    kubelet_concurrency: int = 32
    """VM kubelets polled at once (one connection pool for all of them)."""

    api_threads: int = 8
    """Threads for the synchronous Compute client (calls in flight at once)."""

    logging_endpoint: str = ""
    """Cloud Logging gRPC endpoint (``host:port``, plaintext) from which archived
    container logs are read; empty: the real service with the default credentials.
    ``vnode sandbox`` writes its emulator's as ``VNODE_LOGGING_ENDPOINT``."""

    log_name: str = "vnode_containers"
    """Cloud Logging log ID the VMs ship container lines to (``projects/<p>/logs/<id>``)
    and vnode reads them back from."""


_PROJECT = re.compile(r"^(?:[a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_MAX_RUN_DURATION = (30, 120 * 24 * 3600)  # what Compute Engine accepts for maxRunDuration


def validate_gce(gce: GCESettings, *, in_use: bool = True) -> None:
    """Raise ConfigError (one clear sentence) for GCE settings that cannot work.

    ``in_use``: the GCE provider is the one selected, so a project and a zone are needed.
    """
    if in_use and not gce.project:
        raise ConfigError("the GCE provider needs a project (--project or VNODE_PROJECT)")
    if gce.project and not _PROJECT.match(gce.project):
        raise ConfigError(f"invalid GCE project ID {gce.project!r}")
    if in_use and not gce.zones:
        raise ConfigError("the GCE provider needs at least one zone (--zone or VNODE_ZONE)")
    for zone in gce.zones:
        if not _ZONE.match(zone):
            raise ConfigError(f"invalid zone {zone!r}: expected a name such as us-central1-a")
    if not gce.machine_families:
        raise ConfigError("give at least one machine family (e.g. e2)")
    for family in (*gce.machine_families, *gce.gpu_families):
        if not re.match(r"^[a-z][a-z0-9]*$", family):
            raise ConfigError(f"invalid machine family {family!r}: expected a name such as e2")
    for what, text in (
        ("kubelet CPU overhead", gce.kubelet_overhead_cpu),
        ("kubelet memory overhead", gce.kubelet_overhead_memory),
    ):
        if not _QUANTITY.match(text):
            raise ConfigError(f"invalid {what} {text!r}: expected a quantity such as 250m or 512Mi")
    if gce.boot_disk_min_gb < 10:
        raise ConfigError(
            f"boot disk minimum must be at least 10 GB (the COS image), not {gce.boot_disk_min_gb}"
        )
    if gce.boot_disk_headroom_gb < 0:
        raise ConfigError(f"boot disk headroom cannot be negative ({gce.boot_disk_headroom_gb})")
    low, high = _MAX_RUN_DURATION
    if not low <= gce.max_run_duration_seconds <= high:
        raise ConfigError(
            f"maximum run duration must be between {low} s and {high} s (120 days), "
            f"not {gce.max_run_duration_seconds}"
        )
    if gce.delete_delay_seconds < 0:
        raise ConfigError(f"VM deletion delay cannot be negative ({gce.delete_delay_seconds} s)")
    _positive("VM status period", gce.status_period)
    _positive("machine type cache lifetime", gce.machine_types_ttl_seconds)
    for tag in gce.network_tags:
        if not _RFC1035.match(tag):
            raise ConfigError(
                f"invalid network tag {tag!r}: 1-63 lowercase letters, digits or '-', "
                "starting with a letter"
            )
    for path in gce.allowed_host_paths:
        if not path.startswith("/"):
            raise ConfigError(f"allowed host path {path!r} must be absolute")
    _positive("Compute operation timeout", gce.operation_timeout_seconds)
    _positive("VM kubelet timeout", gce.kubelet_timeout_seconds)
    if gce.kubelet_concurrency < 1 or gce.api_threads < 1:
        raise ConfigError("VM kubelet concurrency and Compute API threads must be at least 1")
    if gce.compute_endpoint and not gce.compute_endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"invalid Compute endpoint {gce.compute_endpoint!r}: expected an http(s) URL"
        )
