"""The Node object: registering it and keeping its status fresh, as a kubelet does.

The scheduler places pods only on a Node that is Ready, has room and whose taints they
tolerate, so this module decides exactly what the Node says: labels, taints, capacity,
conditions, addresses, the kubelet endpoint and ``nodeInfo``.

Other parties write to the same Node (the node lifecycle controller adds and removes
taints and annotations, an admin labels or cordons it), so the Node is **updated, never
replaced**: vnode changes only what it owns. Which labels and taints it owns is recorded
in the annotation ``vnode.dev/managed``, so a label or taint dropped from the settings
is removed at the next start while everyone else's stay.

Status follows the kubelet's rhythm: every ``check_period`` the Node is read and the
desired status compared with it; a difference is posted at once, and an unchanged status
is posted anyway every ``status_period`` (the heartbeat). Heartbeat times move with every
post, transition times only when a condition's status changes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from vnode import __version__
from vnode.clock import Clock, rfc3339
from vnode.node import kube
from vnode.provider import Provider, SupportsCapacity
from vnode.settings import DEFAULT_TAINT, Settings

log = logging.getLogger(__name__)

NODES = kube.path("v1", "nodes")
MANAGED_ANNOTATION = "vnode.dev/managed"
PROVIDER_LABEL = "vnode.dev/provider"
KUBELET_VERSION = f"v1.33.0-vnode-{__version__}"
# Conflicts on the Node are normal (the lifecycle controller writes it too); the kubelet
# tries a status update this many times before waiting for the next period.
UPDATE_ATTEMPTS = 5

# The kubelet's conditions, in its order: (type, status, reason, message).
CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)  # fmt: skip

EventRecorder = Callable[[dict[str, Any], str, str, str], None]


def node_addresses(settings: Settings) -> list[dict[str, str]]:
    """InternalIP (the settings' address, else loopback) and Hostname (the Node's name)."""
    return [
        {"type": "InternalIP", "address": settings.node.internal_ip or "127.0.0.1"},
        {"type": "Hostname", "address": settings.node.name},
    ]


def node_labels(settings: Settings, provider_name: str) -> dict[str, str]:
    """The labels vnode owns: the standard ones, then the settings' extra labels over them."""
    node = settings.node
    labels = {
        "type": "virtual-kubelet",
        "kubernetes.io/os": node.os,
        "kubernetes.io/arch": node.arch,
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/role": "agent",
        # A cloud load-balancer controller cannot send traffic to a virtual Node.
        "node.kubernetes.io/exclude-from-external-load-balancers": "true",
        PROVIDER_LABEL: provider_name,
    }
    if node.region:
        labels["topology.kubernetes.io/region"] = node.region
    if node.zone:
        labels["topology.kubernetes.io/zone"] = node.zone
    labels.update(node.labels)
    return labels


def node_taints(settings: Settings) -> list[dict[str, str]]:
    return [t.to_api() for t in settings.node.taints]


def provider_id(settings: Settings, provider: Provider) -> str:
    """``spec.providerID``, never a cloud scheme such as ``gce://`` (a cloud node controller
    would delete a Node whose instance it cannot find).

    In order: the settings' own; the provider's, when it offers the optional
    ``provider_id(node_name) -> str``; for GCE ``vnode://gce/<project>/<zone>/<node>``
    (the first zone); else ``vnode://<provider>/<node>``.
    """
    node = settings.node.name
    if settings.node.provider_id:
        return settings.node.provider_id
    own = getattr(provider, "provider_id", None)
    if callable(own):
        value = own(node)
        if isinstance(value, str) and value:
            return value
    gce = settings.gce
    if provider.name == "gce" and gce.project and gce.zones:
        return f"vnode://gce/{gce.project}/{gce.zones[0]}/{node}"
    return f"vnode://{provider.name}/{node}"


def node_info(settings: Settings, provider_name: str) -> dict[str, str]:
    """``status.nodeInfo``. The IDs derive from the Node's name so that they stay the same
    across restarts of vnode (a restart is a kubelet restart, not a machine reboot)."""
    name = settings.node.name
    machine = uuid.uuid5(uuid.NAMESPACE_URL, f"vnode://{name}/machine")
    return {
        "machineID": machine.hex,
        "systemUUID": str(machine),
        "bootID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"vnode://{name}/boot")),
        "kernelVersion": "",
        "osImage": f"vnode {__version__} ({provider_name} provider)",
        "containerRuntimeVersion": f"vnode://{__version__}",
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": "",
        "operatingSystem": settings.node.os,
        "architecture": settings.node.arch,
    }


def merge_conditions(current: list[dict[str, Any]] | None, stamp: str) -> list[dict[str, Any]]:
    """vnode's conditions over ``current``: heartbeat ``stamp`` on each, transition time
    kept while a condition's status is unchanged; conditions of others are kept."""
    by_type = {c.get("type"): c for c in current or []}
    ours: dict[str, dict[str, Any]] = {}
    for type_, status, reason, message in CONDITIONS:
        before = by_type.get(type_)
        transition = stamp
        if before is not None and before.get("status") == status:
            transition = before.get("lastTransitionTime") or stamp
        ours[type_] = {
            "type": type_,
            "status": status,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message,
        }
    merged = [ours.pop(c["type"]) if c.get("type") in ours else c for c in current or []]
    merged.extend(ours.values())
    return merged


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    """A status without the parts that change on every post (heartbeat times)."""
    out = {k: status.get(k) for k in ("capacity", "allocatable", "addresses", "daemonEndpoints",
                                       "nodeInfo")}  # fmt: skip
    out["conditions"] = sorted(
        ((c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
         for c in status.get("conditions") or []),
        key=lambda c: str(c[0]),
    )  # fmt: skip
    return out


def _taint_id(taint: dict[str, Any]) -> str:
    return f"{taint.get('key')}:{taint.get('effect')}"


class NodeKeeper:
    """Registers the Node and keeps its status fresh. See the module docstring."""

    def __init__(  # noqa: PLR0917 - the agreed constructor of the node package
        self,
        api: Any,
        settings: Settings,
        provider: Provider,
        clock: Clock,
        kubelet_port: int,
        addresses: list[dict[str, str]],
        *,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.provider = provider
        self.clock = clock
        self.kubelet_port = kubelet_port
        self.addresses = addresses
        self.recorder = recorder
        self.name = settings.node.name
        self.path = kube.path("v1", "nodes", self.name)
        self.node: dict[str, Any] | None = None  # the latest Node the API server returned
        self.posts = 0  # successful status posts (for tests and metrics)
        self._capacity = dict(settings.node.capacity)
        self._last_post = float("-inf")
        self._wake = asyncio.Event()
        self._started = False

    @property
    def node_uid(self) -> str:
        """The Node's uid, or "" before it is registered."""
        if self.node is None:
            return ""
        return str(self.node.get("metadata", {}).get("uid") or "")

    def poke(self) -> None:
        """Something the status depends on changed: check (and post) now."""
        self._wake.set()

    # -- the desired Node ----------------------------------------------------------------

    async def capacity(self) -> dict[str, str]:
        """The settings' capacity, with the provider's figures over it when it has them."""
        capacity = dict(self.settings.node.capacity)
        if isinstance(self.provider, SupportsCapacity):
            try:
                capacity.update(await self.provider.node_capacity())
            except Exception as e:
                # Keep what was last known rather than shrinking the Node on a hiccup.
                log.warning("provider %s could not report capacity: %r", self.provider.name, e)
                return dict(self._capacity)
        self._capacity = capacity
        return capacity

    def _status(self, current: dict[str, Any] | None, capacity: dict[str, str]) -> dict[str, Any]:
        status = copy.deepcopy(current) if current else {}
        status["capacity"] = dict(capacity)
        status["allocatable"] = dict(capacity)
        status["conditions"] = merge_conditions(status.get("conditions"), rfc3339(self.clock.now()))
        status["addresses"] = [dict(a) for a in self.addresses]
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.kubelet_port}}
        status["nodeInfo"] = node_info(self.settings, self.provider.name)
        return status

    def _managed(self, node: dict[str, Any]) -> tuple[set[str], set[str]]:
        """Labels and taints (``key:Effect``) vnode set last time, from its annotation."""
        text = (node.get("metadata", {}).get("annotations") or {}).get(MANAGED_ANNOTATION)
        labels: set[str] = set()
        taints: set[str] = {_taint_id(DEFAULT_TAINT.to_api())}  # always vnode's to remove
        if text:
            try:
                recorded = json.loads(text)
                labels.update(recorded.get("labels", []))
                taints.update(recorded.get("taints", []))
            except (ValueError, AttributeError):
                log.warning("ignoring unreadable annotation %s=%r", MANAGED_ANNOTATION, text)
        return labels, taints

    def merge_node(self, current: dict[str, Any]) -> dict[str, Any]:
        """``current`` with vnode's labels, taints and providerID; everyone else's kept."""
        node = copy.deepcopy(current)
        meta = node.setdefault("metadata", {})
        spec = node.setdefault("spec", {})
        labels = node_labels(self.settings, self.provider.name)
        taints = node_taints(self.settings)
        old_labels, old_taints = self._managed(current)

        merged_labels = {
            k: v for k, v in (meta.get("labels") or {}).items()
            if k not in old_labels or k in labels
        }  # fmt: skip
        merged_labels.update(labels)
        meta["labels"] = merged_labels

        wanted = {_taint_id(t) for t in taints}
        kept = [
            t for t in spec.get("taints") or []
            if _taint_id(t) not in old_taints and _taint_id(t) not in wanted
        ]  # fmt: skip
        # vnode's taints keep a timeAdded the server or an earlier run gave them.
        previous = {_taint_id(t): t for t in spec.get("taints") or []}
        ours: list[dict[str, Any]] = []
        for taint in taints:
            added = previous.get(_taint_id(taint), {}).get("timeAdded")
            ours.append({**taint, "timeAdded": added} if added else dict(taint))
        spec["taints"] = kept + ours
        if not spec["taints"]:
            del spec["taints"]

        annotations = dict(meta.get("annotations") or {})
        annotations[MANAGED_ANNOTATION] = json.dumps(
            {"labels": sorted(labels), "taints": sorted(wanted)}, separators=(",", ":")
        )
        meta["annotations"] = annotations

        want_id = provider_id(self.settings, self.provider)
        if not spec.get("providerID"):
            spec["providerID"] = want_id
        elif spec["providerID"] != want_id:
            # The API server forbids changing it once set.
            log.warning(
                "Node %s keeps providerID %s (vnode would set %s; it cannot be changed)",
                self.name, spec["providerID"], want_id,
            )  # fmt: skip
        return node

    # -- talking to the API server ---------------------------------------------------------

    async def register(self) -> dict[str, Any]:
        """Create the Node, or update the one that exists (never replace it). Returns it."""
        capacity = await self.capacity()
        for _ in range(UPDATE_ATTEMPTS):
            try:
                current = await kube.request(self.api, "GET", self.path)
            except kube.ApiError as e:
                if not e.not_found:
                    raise
                created = await self._create(capacity)
                if created is not None:
                    return created
                continue  # someone created it meanwhile: update theirs
            desired = self.merge_node(current)
            mine = (desired.get("metadata"), desired.get("spec"))
            if mine != (current.get("metadata"), current.get("spec")):
                try:
                    current = await kube.request(self.api, "PUT", self.path, body=desired)
                except kube.ApiError as e:
                    if e.conflict:
                        continue
                    raise
                log.info("updated the existing Node %s", self.name)
            self.node = current
            self._starting()
            await self.post_status(capacity)
            assert self.node is not None
            return self.node
        raise kube.api_error(409, "Conflict", f"Node {self.name} kept changing while registering")

    async def _create(self, capacity: dict[str, str]) -> dict[str, Any] | None:
        body = self.merge_node({"apiVersion": "v1", "kind": "Node",
                                "metadata": {"name": self.name}})  # fmt: skip
        body["status"] = self._status(None, capacity)
        try:
            created = await kube.request(self.api, "POST", NODES, body=body)
        except kube.ApiError as e:
            if kube.already_exists(e):
                return None
            raise
        log.info("registered Node %s (uid %s)", self.name, created["metadata"].get("uid"))
        self.node = created
        self._last_post = self.clock.monotonic()
        self.posts += 1
        self._starting()
        self._note_ready({}, created.get("status") or {})
        return created

    async def post_status(self, capacity: dict[str, str] | None = None) -> dict[str, Any]:
        """Write the status over the Node's current one, retrying conflicts at once."""
        if capacity is None:
            capacity = await self.capacity()
        node = self.node
        for _ in range(UPDATE_ATTEMPTS):
            if node is None:
                node = await self._get_or_register()
            before = node.get("status") or {}
            desired = dict(node)
            desired["status"] = self._status(before, capacity)
            try:
                updated = await kube.request(self.api, "PUT", self.path + "/status", body=desired)
            except kube.ApiError as e:
                if e.conflict:
                    node = None  # someone else wrote it: read it again and redo
                    continue
                if e.not_found:
                    self.node = None
                    node = None
                    continue
                raise
            self.node = updated
            self._last_post = self.clock.monotonic()
            self.posts += 1
            self._note_ready(before, updated.get("status") or {})
            return updated
        raise kube.api_error(409, "Conflict", f"Node {self.name} kept changing; status not posted")

    async def _get_or_register(self) -> dict[str, Any]:
        try:
            node = await kube.request(self.api, "GET", self.path)
        except kube.ApiError as e:
            if not e.not_found:
                raise
            log.warning("Node %s is gone; registering it again", self.name)
            node = await self.register()
        self.node = node
        return node

    async def check(self) -> bool:
        """Read the Node; post the status if it differs or the heartbeat is due. True if posted."""
        capacity = await self.capacity()
        node = await self._get_or_register()
        due = self.clock.monotonic() - self._last_post >= self.settings.node.status_period
        current = node.get("status") or {}
        changed = _comparable(current) != _comparable(self._status(current, capacity))
        if not (due or changed):
            return False
        if changed:
            log.info("Node %s status changed; posting it now", self.name)
        await self.post_status(capacity)
        return True

    async def run(self) -> None:
        """Keep the status fresh until cancelled; failures are logged and retried."""
        period = min(self.settings.node.check_period, self.settings.node.status_period)
        while True:
            self._wake.clear()  # a poke during the check below makes the next sleep short
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("Node %s status update failed (retrying in %.0f s): %r",
                          self.name, period, e)  # fmt: skip
            await self._sleep(period)

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the clock, cut short by :meth:`poke`."""
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _starting(self) -> None:
        """The kubelet's ``Starting`` Event, once per process (not on re-registration)."""
        if not self._started:
            self._started = True
            self._record("Normal", "Starting", f"Starting vnode {__version__}.")

    def _note_ready(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        def ready(status: dict[str, Any]) -> str | None:
            for c in status.get("conditions") or []:
                if c.get("type") == "Ready":
                    return str(c.get("status"))
            return None

        if ready(after) == "True" and ready(before) != "True":
            self._record("Normal", "NodeReady", f"Node {self.name} status is now: NodeReady")

    def _record(self, type_: str, reason: str, message: str) -> None:
        if self.recorder is None or self.node is None:
            return
        try:
            self.recorder(self.node, type_, reason, message)
        except Exception as e:  # an Event is never worth failing the Node for
            log.warning("could not record the Node event %s: %r", reason, e)
