"""What vnode would send to Compute Engine for a pod, computed without calling any API.

Before trusting a controller with their pods, platform engineers want to read what it
will run: the machine it picks, the labels, the scheduling, and the cloud-init that
turns the VM into a one-pod kubelet. ``vnode render POD.yaml`` shows exactly that.

There is no second implementation to drift from the real one: the real
:class:`~vnode.gce.provider.GCEProvider` runs its own ``create_pod`` against stand-ins
for what would need the network, and the body it hands to ``instances.insert`` is the
one printed (in the REST form Compute Engine receives):

- Compute Engine: :class:`_RecordingInstances` answers ``machineTypes.list`` from a
  catalogue the caller supplies (offline), lists no VMs, and records the insert instead
  of sending it;
- the cluster: :class:`OfflineCluster` knows only the ConfigMaps and Secrets given to
  it, says "not found" for others (as the pod would then fail), and gives a placeholder
  instead of a service-account token;
- vnode's CAs: :class:`PlaceholderPKI` puts clearly marked placeholder PEM text where the
  VM's serving certificate, its key and the client CA go.

A pod that cannot be mapped raises the same :class:`~vnode.errors.VnodeError` (with
the pod reason and message) that would fail it on the Node.
"""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud import compute_v1

from vnode.certs import KeyPair
from vnode.errors import InvalidPod
from vnode.gce.instances import VM, InsertSpec, Instances, instance_body
from vnode.gce.kubelets import KubeletClient
from vnode.gce.pki import VnodePKI
from vnode.gce.provider import GCEProvider
from vnode.provider import Pod, ProviderContext
from vnode.settings import GCESettings

PLACEHOLDER_UID = "00000000-0000-4000-8000-000000000000"
"""The uid of a pod read from a file without one (the API server assigns the real one,
and the VM name derives from it)."""
PLACEHOLDER_TOKEN = "PLACEHOLDER-service-account-token-minted-by-TokenRequest-at-create-time"

PLACEMENT_WAIT = 120.0
"""Seconds ``create_pod`` may take here: nothing waits on the network, so this only
bounds a bug, and the insert or the refusal always comes within the call."""

MachineTypes = Callable[[str], Sequence[Mapping[str, Any]]]
"""A zone's ``machineTypes.list`` items, offline."""


def _pem(kind: str, text: str) -> str:
    return f"-----BEGIN {kind}-----\nPLACEHOLDER: {text}\n-----END {kind}-----\n"


class PlaceholderPKI(VnodePKI):
    """Stands in for vnode's CAs: no CA directory is read or created, no key made."""

    def __init__(self) -> None:  # nothing to load
        pass

    def serving_pair(self, vm_name: str) -> KeyPair:
        return KeyPair(
            cert_pem=_pem(
                "CERTIFICATE",
                f"the serving certificate vnode's serving CA issues for {vm_name} at create time",
            ).encode(),
            key_pem=_pem(
                "PRIVATE KEY", f"the private key of that certificate ({vm_name})"
            ).encode(),
        )

    @property
    def client_ca_pem(self) -> str:
        return _pem("CERTIFICATE", "vnode's client CA (the only issuer the VM kubelet trusts)")


class OfflineCluster:
    """A :class:`~vnode.provider.ClusterReader` over objects given up front."""

    def __init__(self, objects: Iterable[Mapping[str, Any]] = ()) -> None:
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.tokens: list[str] = []  # service accounts a token was asked for
        for obj in objects:
            meta = obj.get("metadata") or {}
            key = (str(obj.get("kind")), str(meta.get("namespace") or "default"), meta.get("name"))
            self._objects[(key[0], key[1], str(key[2]))] = copy.deepcopy(dict(obj))

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._objects.get(("ConfigMap", namespace, name)))

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self._objects.get(("Secret", namespace, name)))

    async def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str],
        expiration_seconds: int,
        pod: Pod | None = None,
    ) -> str:
        self.tokens.append(f"{namespace}/{service_account}")
        return PLACEHOLDER_TOKEN


class _RecordingInstances(Instances):
    """Compute Engine as the provider sees it, with nothing sent anywhere."""

    def __init__(self, settings: GCESettings, machine_types: MachineTypes) -> None:
        super().__init__(settings)
        self._catalogue = machine_types
        self.inserted: list[tuple[InsertSpec, str]] = []

    async def open(self) -> None:
        """Nothing to connect to: this stand-in sends nothing."""

    async def machine_types(self, zone: str) -> list[dict[str, Any]]:
        return [dict(m) for m in self._catalogue(zone)]

    async def insert(self, spec: InsertSpec, *, request_id: str, **_: Any) -> None:
        self.inserted.append((spec, request_id))

    async def list_vms(self, node: str) -> list[VM]:
        return []

    async def delete(self, name: str, zone: str, *, wait: bool = False) -> bool:
        return False

    async def preempted(self, zone: str, names: set[str]) -> set[str]:
        return set()


@dataclass(frozen=True)
class Rendered:
    zone: str
    request_id: str
    instance: dict[str, Any]
    """The ``instances.insert`` body as Compute Engine receives it (REST JSON form)."""
    user_data: str
    """The cloud-init document in the instance metadata."""
    events: tuple[tuple[str, str, str], ...] = ()
    """``(type, reason, message)`` of the Events vnode would record on the pod."""
    placeholders: tuple[str, ...] = ()
    """What in the output is a placeholder for something known only at create time."""


def prepare(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A pod from a file as the API server would hand it to vnode: a namespace and a uid,
    and no status (a rendered pod has never run)."""
    if pod.get("kind", "Pod") != "Pod" or not isinstance(pod.get("spec"), Mapping):
        raise InvalidPod(f"expected a Pod with a spec, not a {pod.get('kind') or 'document'}")
    out = copy.deepcopy(dict(pod))
    meta = out.setdefault("metadata", {})
    if not meta.get("name"):
        raise InvalidPod("the pod has no metadata.name")
    meta.setdefault("namespace", "default")
    meta.setdefault("uid", PLACEHOLDER_UID)
    out.pop("status", None)
    return out


async def render_pod(
    pod: Mapping[str, Any],
    settings: GCESettings,
    *,
    node_name: str,
    machine_types: MachineTypes,
    cluster: OfflineCluster | None = None,
) -> Rendered:
    """What vnode on Node ``node_name`` would insert for ``pod`` (see the module docstring).

    Raises the pod's failure (``InvalidPod``, ``PodTooLarge``, ``QuotaExceeded``) as vnode
    would fail it."""
    api_pod = prepare(pod)
    cluster = cluster or OfflineCluster()
    instances = _RecordingInstances(settings, machine_types)
    events: list[tuple[str, str, str]] = []
    provider = GCEProvider(
        settings,
        instances=instances,
        pki=PlaceholderPKI(),
        kubelets=KubeletClient(ssl.create_default_context()),  # never used: no VM is listed
        accept_wait=PLACEMENT_WAIT,  # the whole placement, refusals included, in this call
    )
    context = ProviderContext(
        node_name,
        cluster,
        lambda _pod, type_, reason, message: events.append((type_, reason, message)),
    )
    await provider.start(context)
    try:
        await provider.create_pod(api_pod)  # type: ignore[arg-type]
    finally:
        await provider.stop()
    if not instances.inserted:
        raise InvalidPod("vnode would not create a VM for this pod")
    spec, request_id = instances.inserted[-1]
    body = compute_v1.Instance(instance_body(settings, spec))
    instance = json.loads(
        compute_v1.Instance.to_json(body, always_print_fields_with_no_presence=False)
    )
    items = {i["key"]: i["value"] for i in (instance.get("metadata") or {}).get("items") or []}
    placeholders = ["the VM's serving certificate and key, and vnode's client CA"]
    if api_pod["metadata"]["uid"] == PLACEHOLDER_UID and "uid" not in (pod.get("metadata") or {}):
        placeholders.append(
            f"the pod uid {PLACEHOLDER_UID} (and the VM name and requestId derived from it)"
        )
    if cluster.tokens:
        placeholders.append(
            "the service-account token for " + ", ".join(sorted(set(cluster.tokens)))
        )
    return Rendered(
        zone=spec.zone,
        request_id=request_id,
        instance=instance,
        user_data=items.get("user-data", ""),
        events=tuple(events),
        placeholders=tuple(placeholders),
    )
