"""All of vnode's settings: one tree of frozen dataclasses, every field documented.

The CLI (flags and ``VNODE_*`` environment variables) builds one :class:`Settings` and
hands it down; nothing else reads the environment. Defaults follow what a real kubelet
and the virtual-kubelet conventions do, so that a Node from vnode looks familiar.
"""

from __future__ import annotations

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
class Settings:
    provider: str = "gce"
    """``gce`` or ``package.module:attribute`` naming a Provider (or a factory for one)."""

    node: NodeSettings = field(default_factory=NodeSettings)
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    kubelet_api: KubeletAPISettings = field(default_factory=KubeletAPISettings)
    pods: PodControllerSettings = field(default_factory=PodControllerSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
