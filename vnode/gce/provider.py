"""The GCE provider: each pod on the vnode Node runs on its own one-shot COS VM.

It composes the parts: :mod:`~vnode.gce.machines` sizes the VM, :mod:`~vnode.gce.manifest`
turns the pod into a static pod, :mod:`~vnode.gce.bootstrap` renders the VM's metadata,
:mod:`~vnode.gce.instances` talks to Compute Engine, :mod:`~vnode.gce.kubelets` to the VM
kubelets and :mod:`~vnode.gce.status` decides the pod status.

**One sync loop** refreshes everything the controller asks about: every
``status_period`` one filtered ``instances.aggregatedList`` (whatever the number of
pods), then every running VM's kubelet ``/pods`` at once with bounded concurrency.
``pod_status`` answers from that cache; a changed status is pushed through
``ProviderContext.notify``. The same loop deletes a finished pod's VM after
``delete_delay_seconds``, notices Spot preemptions (one operation listing per zone, only
when a Spot VM stopped unasked) and VMs that vanished without vnode deleting them.

**Creating** tries the configured zones in order: a zone without quota or capacity
(or without a fitting machine type) is reported as an Event and the next zone tried.
``create_pod`` waits up to ``accept_wait`` seconds: a quick refusal (``InvalidPod``,
``PodTooLarge``, ``QuotaExceeded`` everywhere, Compute unreachable) goes to the
controller, which fails or retries the pod; an insert still waiting for its VM to run
goes on in the background, so no controller worker waits out a VM's boot. A background
placement that finds no zone fails the pod through its status (with the reason); one
that meets transient trouble tries again with backoff, reported as Events. Everything
repeats safely: the VM name and the insert ``requestId`` derive from the pod uid, an
existing VM is success, a restart finds the VMs by label and adopts them.

**Logs** take one path: while the VM runs, its kubelet answers (live); once it is gone,
:mod:`~vnode.gce.logs` reads what the VM shipped to Cloud Logging. A stream that
outlives its VM (broken, or quiet while the listing shows the VM stopping) goes on from
Cloud Logging after the last line it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp

from vnode.clock import Clock, SystemClock
from vnode.errors import InvalidPod, NotFound, QuotaExceeded, Retryable, VnodeError
from vnode.gce import naming
from vnode.gce import status as st
from vnode.gce.bootstrap import BootstrapOptions, render
from vnode.gce.instances import VM, InsertSpec, Instances, RetryPolicy
from vnode.gce.kubelets import KubeletClient, KubeletRefused, find_mirror
from vnode.gce.logs import CloudLogs, CloudLogsConfig, ContainerLogsUnavailable, LiveTracker
from vnode.gce.machines import MachineCatalogue, MachineChoice, choose_machine
from vnode.gce.manifest import ManifestOptions, StaticPod, build_static_pod
from vnode.gce.pki import VnodePKI, default_ca_dir
from vnode.logging_setup import bind as bind_log_fields
from vnode.provider import LogOptions, Pod, PodRef, PodStatus, ProviderContext
from vnode.settings import GCESettings, Settings

log = logging.getLogger(__name__)

PROVISIONING_MODEL_ANNOTATION = "vnode.dev/provisioning-model"
DEADLINE_SLACK = 60
"""Seconds a VM outlives the pod's ``activeDeadlineSeconds``, so that the controller's
own DeadlineExceeded (with its reason) comes before Compute deletes the VM."""
FORGET_AFTER = 600.0
"""Seconds a finished pod whose VM is gone is remembered (for the never-regress rule)."""
DELETE_CONCURRENCY = 8
ACCEPT_WAIT = 5.0
"""Seconds ``create_pod`` waits for the insert before it lets it finish in the background."""
RETRY_BASE, RETRY_CAP = 2.0, 120.0
"""Backoff of a background insert that failed for a transient reason: first, cap."""
LIVE_WATCH = 1.0
"""Seconds a quiet live log stream waits before it checks that its VM still runs: a
VM that went away may leave the connection hanging instead of closing it."""
_VM_DONE = ("TERMINATED", "SUSPENDED")
"""VM states in which nothing on the VM runs any more."""
_LIVE_BROKEN = (Retryable, NotFound, aiohttp.ClientError, OSError, TimeoutError)
"""What ends a live log stream without the container ending: the VM (or the way to it)
is gone, or its kubelet no longer has the pod. Cloud Logging takes over."""


class _VMGone(Exception):
    """The VM of a live log stream stopped running while the stream was open."""


@dataclass
class _Track:
    """What vnode knows about one pod's VM (small, constant size per pod)."""

    uid: str
    vm_name: str
    since: dt.datetime
    zone: str = ""
    pod: Mapping[str, Any] | None = None
    created_at: float | None = None
    """Monotonic time the insert finished (None: adopted or not created by this run)."""
    seen: bool = False
    """The VM appeared in a listing."""
    deleting: bool = False
    pod_deleted: bool = False
    placing: asyncio.Task[None] | None = None
    """The insert going on in the background, if any."""
    failure: tuple[str, str] | None = None
    """(reason, message) when the background insert found no zone for the pod."""
    attempts: int = 0
    preempted: bool = False
    last_kubelet: dict[str, Any] | None = None
    finished_at: float | None = None
    terminal: PodStatus | None = None
    reported: PodStatus | None = None


@dataclass
class _Snapshot:
    """The last listing: VMs by pod uid, and when the listing started."""

    vms: dict[str, VM] = field(default_factory=dict)
    started: float = float("-inf")
    complete: bool = False


class GCEProvider:
    """:class:`vnode.provider.Provider` on Compute Engine (see the module docstring)."""

    name = "gce"
    pushes_status = True

    def __init__(
        self,
        settings: GCESettings,
        *,
        clock: Clock | None = None,
        instances: Instances | None = None,
        retry: RetryPolicy | None = None,
        pki: VnodePKI | None = None,
        kubelets: KubeletClient | None = None,
        archive: CloudLogs | None = None,
        accept_wait: float = ACCEPT_WAIT,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.instances = instances or Instances(settings, clock=self.clock, retry=retry)
        self.catalogue = MachineCatalogue(
            self.instances.machine_types, self.clock, ttl=settings.machine_types_ttl_seconds
        )
        self._pki = pki
        self._context: ProviderContext | None = None
        self._kubelets = kubelets
        self._archive = archive
        self._tracks: dict[str, _Track] = {}
        self._snap = _Snapshot()
        self._sync_task: asyncio.Task[None] | None = None
        self._deletes: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.accept_wait = accept_wait
        self._delete_limit = asyncio.Semaphore(DELETE_CONCURRENCY)
        self.syncs = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def node(self) -> str:
        assert self._context is not None, "start() first"
        return self._context.node_name

    @property
    def pki(self) -> VnodePKI:
        if self._pki is None:
            directory = Path(self.settings.ca_dir) if self.settings.ca_dir else default_ca_dir()
            self._pki = VnodePKI.load_or_create(directory.expanduser())
        return self._pki

    async def start(self, context: ProviderContext) -> None:
        self._context = context
        await self.instances.open()
        pki = await asyncio.to_thread(lambda: self.pki)
        if self._kubelets is None:
            self._kubelets = KubeletClient(
                pki.ssl_context(),
                timeout=self.settings.kubelet_timeout_seconds,
                concurrency=self.settings.kubelet_concurrency,
            )
        if self._archive is None:
            self._archive = CloudLogs(
                CloudLogsConfig(
                    project=self.settings.project,
                    log_name=self.settings.log_name,
                    endpoint=self.settings.logging_endpoint,
                ),
                clock=self.clock,
            )
        self._sync_task = asyncio.create_task(self._sync_loop(), name="gce-sync")
        log.info(
            "GCE provider: project %s, zones %s, VMs labelled %s",
            self.settings.project,
            ", ".join(self.settings.zones),
            naming.node_filter(context.node_name),
        )

    async def stop(self) -> None:
        tasks = [t for t in (self._sync_task, *self._deletes, *self._background) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._sync_task = None
        if self._kubelets is not None:
            await self._kubelets.close()
        if self._archive is not None:
            await self._archive.close()
        await self.instances.close()

    # -- creating ------------------------------------------------------------------------

    async def create_pod(self, pod: Pod) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        vm_name = naming.vm_name(uid)
        bind_log_fields(vm=vm_name)  # within the pod controller's per-pod log context
        track = self._tracks.get(uid)
        if track is not None and (
            track.created_at is not None
            or track.placing is not None
            or track.failure is not None
            or self._listed(uid)
        ):
            track.pod = pod
            return  # created, being created, refused or adopted already
        if self._snap.complete and self._snap.vms.get(uid) is None and _has_run(pod):
            # It ran on a VM that is gone now (lost while vnode was down): running it
            # again would repeat its work behind the user's back.
            raise InvalidPod(
                f"The VM {vm_name} that ran this pod is gone, and vnode did not delete it",
                reason=st.VM_LOST,
            )
        track = self._tracks.setdefault(
            uid, _Track(uid=uid, vm_name=vm_name, since=self.clock.now())
        )
        track.pod = pod
        task = asyncio.create_task(self._place(pod, track), name=f"gce-create-{vm_name}")
        track.placing = task
        # A refusal that comes quickly (bad pod, no room, Compute down) goes to the
        # controller as usual; an insert still waiting for its VM after accept_wait goes
        # on in the background, so that no controller worker waits out a VM's boot.
        done, _ = await asyncio.wait({task}, timeout=self.accept_wait)
        if task in done:
            track.placing = None
            if task.exception() is not None and not track.seen:
                self._tracks.pop(uid, None)
            task.result()
            return
        self._background.add(task)
        task.add_done_callback(lambda t: self._placed(track, t))

    def _placed(self, track: _Track, task: asyncio.Task[None]) -> None:
        """A background placement ended: a refusal fails the pod, trouble tries again."""
        self._background.discard(task)
        track.placing = None
        if task.cancelled() or track.pod is None:
            return
        err = task.exception()
        if err is None:
            return
        pod = cast(Pod, track.pod)
        if isinstance(err, (InvalidPod, QuotaExceeded)):
            track.failure = (err.pod_reason, err.message)
            if self._context is not None:
                self._context.notify(pod)
            return
        track.attempts += 1
        delay = min(RETRY_CAP, RETRY_BASE * 2 ** (track.attempts - 1))
        message = getattr(err, "message", None) or repr(err)
        self._event(pod, "Warning", "FailedCreate", f"{message} (retrying in {delay:g}s)")

        async def again() -> None:
            await self.clock.sleep(delay)
            await self._place(pod, track)

        retry = asyncio.create_task(again(), name=f"gce-create-{track.vm_name}")
        track.placing = retry
        self._background.add(retry)
        retry.add_done_callback(lambda t: self._placed(track, t))

    async def _place(self, pod: Pod, track: _Track) -> None:
        """Create the pod's VM in the first configured zone that takes it."""
        uid, vm_name = track.uid, track.vm_name
        static = None
        refusals: list[str] = []
        unfit: VnodeError | None = None
        for zone in self.settings.zones:
            try:
                choice = choose_machine(
                    pod, await self.catalogue.get(zone), self.settings, zone=zone
                )
            except InvalidPod as e:  # too large here, or no such machine type here
                unfit = unfit or e
                continue
            if static is None:
                options = ManifestOptions.from_settings(
                    self.settings, allocatable=choice.allocatable
                )
                assert self._context is not None
                static = await build_static_pod(pod, self._context.cluster, options)
                for warning in static.warnings:
                    self._event(pod, "Warning", "ManifestWarning", warning)
            spec = await self._insert_spec(pod, vm_name, zone, choice, static)
            track.zone = zone
            try:
                await self.instances.insert(
                    spec,
                    request_id=naming.request_id(uid, zone),
                    on_retry=lambda m: self._event(pod, "Warning", "ComputeRetry", m),
                )
            except QuotaExceeded as e:
                refusals.append(e.message)
                self._event(pod, "Warning", "ZoneUnavailable", e.message)
                continue
            track.created_at = self.clock.monotonic()
            kind = "Spot " if spec.spot else ""
            self._event(
                pod,
                "Normal",
                "VMCreated",
                f"Created {kind}VM {vm_name} ({choice.machine_type}, {choice.boot_disk_gb} GB "
                f"disk) in {zone}",
            )
            return
        if refusals:
            raise QuotaExceeded(
                "No configured zone could take the pod's VM: " + " | ".join(refusals)
            )
        if unfit is not None:
            raise unfit
        raise InvalidPod("No zone is configured for the GCE provider")

    async def _insert_spec(
        self, pod: Pod, vm_name: str, zone: str, choice: MachineChoice, static: StaticPod
    ) -> InsertSpec:
        meta = pod["metadata"]
        pair = await asyncio.to_thread(self.pki.serving_pair, vm_name)
        options = BootstrapOptions(
            node_name=vm_name,
            client_ca_pem=self.pki.client_ca_pem,
            serving_cert_pem=pair.cert_pem.decode(),
            serving_key_pem=pair.key_pem.decode(),
            cni_bridge=self.settings.cni_bridge,
            log_name=self.settings.log_name,
        )
        boot = render(options, static.manifest, static.files, secret_manifest=static.has_secret_env)
        for warning in boot.warnings:
            self._event(pod, "Warning", "MetadataWarning", warning)
        return InsertSpec(
            name=vm_name,
            zone=zone,
            machine_type=choice.machine_type,
            boot_disk_gb=choice.boot_disk_gb,
            labels=naming.pod_labels(self.node, meta["namespace"], meta["name"], meta["uid"]),
            metadata=boot.items(),
            spot=self._spot(pod),
            max_run_duration=self._max_run(pod),
            gpu_terminate=choice.on_host_maintenance == "TERMINATE",
        )

    def _spot(self, pod: Pod) -> bool:
        annotations = pod["metadata"].get("annotations") or {}
        asked = str(annotations.get(PROVISIONING_MODEL_ANNOTATION, "")).strip().lower()
        if asked in ("spot", "standard"):
            return asked == "spot"
        if asked:
            raise InvalidPod(
                f"annotation {PROVISIONING_MODEL_ANNOTATION}={asked!r}: expected spot or standard"
            )
        return self.settings.spot

    def _max_run(self, pod: Pod) -> int:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is None:
            return self.settings.max_run_duration_seconds
        return max(30, min(int(deadline) + DEADLINE_SLACK, 120 * 24 * 3600))

    async def update_pod(self, pod: Pod) -> None:
        track = self._tracks.get(pod["metadata"]["uid"])
        if track is not None:
            track.pod = pod

    # -- deleting ------------------------------------------------------------------------

    async def delete_pod(self, pod: Pod) -> None:
        uid = pod["metadata"]["uid"]
        track = self._tracks.get(uid)
        name = naming.vm_name(uid)
        if track is not None:
            track.deleting = True
            track.pod_deleted = True
            placing, track.placing = track.placing, None
            if placing is not None:  # stop placing it; what the insert made goes below
                placing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await placing
        listed = self._snap.vms.get(uid)
        zones = [listed.zone] if listed else [track.zone] if track and track.zone else []
        any_found = False
        for zone in zones or list(self.settings.zones):
            if await self.instances.delete(name, zone):
                any_found = True
                if not zones:
                    break
        if not any_found:
            self._tracks.pop(uid, None)

    async def _delete_finished(self, track: _Track, vm: VM) -> None:
        bind_log_fields(vm=vm.name)  # a task of its own: its lines are about this VM
        async with self._delete_limit:
            try:
                await self.instances.delete(vm.name, vm.zone)
                log.info("deleted VM %s of finished pod (uid %s)", vm.name, track.uid)
            except Exception as e:
                track.deleting = False  # the next sync tries again
                log.warning("deleting VM %s of a finished pod failed: %s", vm.name, e)

    # -- status --------------------------------------------------------------------------

    async def pod_status(self, pod: Pod) -> PodStatus | None:
        uid = pod["metadata"]["uid"]
        track = self._tracks.get(uid)
        if track is not None:
            track.pod = pod
            return self._status(track)
        return None  # unknown until a sync lists its VM (and adopts it)

    def _listed(self, uid: str) -> bool:
        return uid in self._snap.vms

    def _status(self, track: _Track) -> PodStatus | None:
        pod = track.pod
        if pod is None:
            return None
        if track.failure is not None and track.terminal is None:
            reason, message = track.failure  # no zone took it: the pod fails with why
            track.terminal = st.failed(pod, reason, message, now=self.clock.now())
            track.finished_at = self.clock.monotonic()
        vm = self._snap.vms.get(track.uid)
        api_status = pod.get("status") or {}
        previous = track.terminal or (
            api_status if api_status.get("phase") in st.TERMINAL else None
        )
        lost = (
            vm is None
            and not track.deleting
            and track.placing is None  # a stockout removes the VM while we place it
            and self._snap.complete
            and (
                track.seen
                or (track.created_at is not None and self._snap.started > track.created_at)
            )
        )
        mirror = track.last_kubelet if vm is not None and vm.status == st.RUNNING else None
        result = st.pod_status(
            pod,
            vm=st.VMState(vm.name, vm.status, vm.internal_ip, vm.zone) if vm else None,
            kubelet_pod=mirror,
            since=track.since,
            now=self.clock.now(),
            requested=track.created_at is not None or track.placing is not None,
            preempted=track.preempted,
            lost=lost,
            deleting=track.deleting and not track.terminal,
            host_network=not self.settings.cni_bridge or bool(pod["spec"].get("hostNetwork")),
            previous=previous or _keep_start(api_status),
            last_kubelet=track.last_kubelet,
        )
        if result is not None and result.get("phase") in st.TERMINAL and track.terminal is None:
            track.terminal = result
            track.finished_at = self.clock.monotonic()
        return result

    # -- the sync loop -------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one failed sync must not end the loop
                log.warning("GCE sync failed (retrying next period): %s", e)
            await self.clock.sleep(self.settings.status_period)

    async def sync(self) -> None:
        """One listing, one kubelet poll per running VM, then statuses and cleanup."""
        started = self.clock.monotonic()
        vms = await self.instances.list_vms(self.node)
        by_uid = {vm.pod_uid: vm for vm in vms if vm.pod_uid}
        previous = self._snap.vms
        self._snap = _Snapshot(by_uid, started, complete=True)
        self.syncs += 1
        for uid, vm in by_uid.items():
            track = self._tracks.get(uid)
            if track is None:
                track = self._tracks[uid] = _Track(uid=uid, vm_name=vm.name, since=self.clock.now())
            track.seen = True
            track.zone = vm.zone
        await self._find_preemptions(by_uid, previous)
        await self._poll_kubelets(by_uid)
        now = self.clock.monotonic()
        for uid, track in list(self._tracks.items()):
            self._settle(uid, track, by_uid.get(uid), now)

    def _settle(self, uid: str, track: _Track, vm: VM | None, now: float) -> None:
        """After a sync: push a changed status, delete a finished pod's VM when its
        delay ran out, forget what is no longer needed."""
        if vm is None and track.deleting and track.pod_deleted:
            del self._tracks[uid]  # deleted pod, VM gone: nothing left to know
            return
        status = self._status(track) if track.pod is not None else None
        if track.pod is None and track.finished_at is None and _mirror_phase(track) in st.TERMINAL:
            track.finished_at = now  # an adopted VM whose pod finished (nobody asks)
        if status is not None and status != track.reported:
            track.reported = status
            if self._context is not None and track.pod is not None:
                self._context.notify(cast(Pod, track.pod))
        finished = track.finished_at
        if finished is None:
            return
        delay = self.settings.delete_delay_seconds
        if vm is not None and not track.deleting and now - finished >= delay:
            track.deleting = True
            task = asyncio.create_task(
                self._delete_finished(track, vm), name=f"gce-delete-{vm.name}"
            )
            self._deletes.add(task)
            task.add_done_callback(self._deletes.discard)
        elif vm is None and now - finished >= delay + FORGET_AFTER:
            del self._tracks[uid]

    async def _find_preemptions(self, vms: dict[str, VM], previous: dict[str, VM]) -> None:
        """Spot VMs that stopped or vanished without vnode deleting them: ask Compute
        whether it preempted them (one operation listing per zone involved)."""
        suspects: dict[str, set[str]] = {}
        for uid, track in self._tracks.items():
            if track.deleting or track.preempted:
                continue
            vm = vms.get(uid) or previous.get(uid)
            if vm is None or not vm.spot:
                continue
            gone = uid not in vms or vms[uid].status in st.STOPPED
            if gone:
                suspects.setdefault(vm.zone, set()).add(vm.name)
        for zone, names in suspects.items():
            try:
                found = await self.instances.preempted(zone, names)
            except VnodeError as e:
                log.warning("looking for preemptions in %s failed: %s", zone, e)
                continue
            for track in self._tracks.values():
                if track.vm_name in found and track.zone == zone:
                    track.preempted = True

    async def _poll_kubelets(self, vms: dict[str, VM]) -> None:
        assert self._kubelets is not None
        targets = {
            vm.name: vm.internal_ip
            for uid, vm in vms.items()
            if vm.status == st.RUNNING and vm.internal_ip and not self._tracks[uid].deleting
        }
        # A VM that does not answer this time keeps its last answer: a slow poll must
        # not turn a running pod back into a booting one.
        answers = await self._kubelets.poll(targets)
        for uid, vm in vms.items():
            items = answers.get(vm.name)
            if items is None:
                continue
            track = self._tracks[uid]
            pod = track.pod or _pod_from_labels(vm)
            mirror = find_mirror(items, pod, vm.name)
            if mirror is not None:
                track.last_kubelet = mirror

    # -- listing and logs ----------------------------------------------------------------

    async def list_pods(self) -> list[PodRef]:
        vms = await self.instances.list_vms(self.node)
        out: list[PodRef] = []
        for vm in vms:
            if not vm.pod_uid:
                continue
            out.append(
                PodRef(
                    namespace=vm.labels.get(naming.LABEL_NAMESPACE, ""),
                    name=vm.labels.get(naming.LABEL_POD, ""),
                    uid=vm.pod_uid,
                )
            )
        return out

    async def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        """One path whatever became of the VM: live from its kubelet while it runs, from
        Cloud Logging once it is gone, and a stream that outlives the VM goes on from
        Cloud Logging where the live one stopped (no line lost or repeated)."""
        meta = pod["metadata"]
        name = meta["name"]
        names = [
            c.get("name")
            for k in ("initContainers", "containers")
            for c in pod["spec"].get(k) or []
        ]
        if options.container not in names:
            raise NotFound(f'container "{options.container}" not found in pod "{name}"')
        vm = self._snap.vms.get(meta["uid"])
        if vm is not None and (
            vm.status in st.BOOTING or (vm.status == st.RUNNING and not vm.internal_ip)
        ):
            raise ContainerLogsUnavailable(
                f'container "{options.container}" in pod "{name}" is waiting to start: '
                "ContainerCreating"
            )
        if vm is not None and vm.status == st.RUNNING:
            stream = self._live_then_archived(pod, options, vm)
        else:
            stream = self._archived(pod, options)
        async for chunk in stream:
            yield chunk

    async def _archived(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        assert self._archive is not None, "start() first"
        async for chunk in self._archive.read_logs(
            self._latest(pod),
            options,
            pod_finished=lambda: self._wrote_last(pod, options.container),
        ):
            yield chunk

    async def _live_then_archived(
        self, pod: Pod, options: LogOptions, vm: VM
    ) -> AsyncIterator[bytes]:
        assert self._kubelets is not None and self._archive is not None, "start() first"
        meta = pod["metadata"]
        uid, name = meta["uid"], meta["name"]
        mirror = naming.mirror_name(name, vm.name)
        # Timestamps on and no byte limit on the VM side: each line's time says where
        # Cloud Logging resumes should the VM go; the prefixes and the limit are ours.
        tracker = LiveTracker(timestamps=options.timestamps)
        left = options.limit_bytes
        live = self._kubelets.container_logs(
            vm.name,
            vm.internal_ip,
            meta.get("namespace") or "default",
            mirror,
            LiveTracker.live_options(options),
        )
        broke: BaseException | None = None
        try:
            async for chunk in self._while_running(uid, live):
                out = tracker.feed(chunk)
                if left is not None:
                    out = out[:left]
                    left -= len(out)
                if out:
                    yield out
                if left is not None and left <= 0:
                    return
        except KubeletRefused as e:  # the kubelet's own answer, in the user's pod name
            raise KubeletRefused(e.http_status, _user_named(e.message, mirror, name)) from e
        except (_VMGone, *_LIVE_BROKEN) as e:
            broke = e
        finally:
            close = getattr(live, "aclose", None)
            if close is not None:
                await close()
        out = tracker.end()
        if left is not None:
            out = out[:left]
            left -= len(out)
        if out:
            yield out
        if broke is None or (left is not None and left <= 0):
            return  # the stream ended as the kubelet ends it: the container exited
        log.info(
            "live log of %s/%s container %s ended (%s); going on from Cloud Logging",
            meta.get("namespace") or "default",
            name,
            options.container,
            broke.__class__.__name__,
        )
        resume = tracker.resume_point
        rest = dataclasses.replace(options, limit_bytes=left)
        reading = self._archive.read_logs(
            self._latest(pod),
            rest,
            pod_finished=lambda: self._wrote_last(pod, options.container),
            resume_after=resume,  # None: nothing went out, so it starts afresh
        )
        try:
            async for chunk in reading:
                yield chunk
        except ContainerLogsUnavailable as e:
            if resume is None:
                raise  # nothing went out yet: the answer is this error
            log.warning("the rest of the log of %s is not in Cloud Logging: %s", name, e)

    async def _while_running(self, uid: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``stream``'s chunks; :class:`_VMGone` once a quiet stream's VM stops running."""
        it = aiter(stream)

        async def step() -> bytes:
            return await anext(it)

        pending: asyncio.Task[bytes] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.create_task(step())
                done, _ = await asyncio.wait({pending}, timeout=LIVE_WATCH)
                if not done:
                    if not self._vm_runs(uid):
                        raise _VMGone()
                    continue
                task, pending = pending, None
                try:
                    chunk = task.result()
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

    def _vm_runs(self, uid: str) -> bool:
        vm = self._snap.vms.get(uid)
        return vm is not None and vm.status == st.RUNNING

    def _latest(self, pod: Pod) -> Pod:
        """``pod`` with the status vnode last worked out for it, when it has one (it may
        be newer than the API's copy)."""
        track = self._tracks.get(pod["metadata"]["uid"])
        status = (track.terminal or track.reported) if track is not None else None
        if not status or not status.get("containerStatuses"):
            return pod
        return cast(Pod, {**pod, "status": status})

    def _wrote_last(self, pod: Pod, container: str) -> bool:
        """The container can write no more lines: its VM is gone, or the pod ended, or
        the container ended with no restart coming."""
        vm = self._snap.vms.get(pod["metadata"]["uid"])
        if self._snap.complete and (vm is None or vm.status in _VM_DONE):
            return True
        if vm is not None and vm.status in st.STOPPED:
            return False  # shutting down: the container may write until the VM stops
        latest = self._latest(pod)
        status = latest.get("status") or {}
        if status.get("phase") in st.TERMINAL:
            return True
        spec = latest.get("spec") or {}
        restart = spec.get("restartPolicy") or "Always"
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                if c.get("name") == container and c.get("restartPolicy"):
                    restart = c["restartPolicy"]  # a sidecar's own policy
        for key in ("initContainerStatuses", "containerStatuses"):
            for c in status.get(key) or []:
                if c.get("name") != container:
                    continue
                ended = (c.get("state") or {}).get("terminated")
                if ended is None:
                    return False
                if restart == "Never":
                    return True
                return restart == "OnFailure" and ended.get("exitCode") == 0
        return False

    def _event(self, pod: Pod, type_: str, reason: str, message: str) -> None:
        if self._context is not None:
            self._context.record_event(pod, type_, reason, message)


def _user_named(text: str, mirror: str, name: str) -> str:
    """A VM kubelet's sentence about its static pod, about the user's pod instead."""
    return text.replace(f'pod "{mirror}"', f'pod "{name}"')


def _has_run(pod: Mapping[str, Any]) -> bool:
    """The API says the pod ran somewhere (so a missing VM was lost, not never made)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Running":
        return True
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def _keep_start(api_status: Mapping[str, Any]) -> PodStatus | None:
    return {"startTime": api_status["startTime"]} if api_status.get("startTime") else None


def _mirror_phase(track: _Track) -> str:
    return str(((track.last_kubelet or {}).get("status") or {}).get("phase") or "")


def _pod_from_labels(vm: VM) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": vm.pod_uid,
            "name": vm.labels.get(naming.LABEL_POD, ""),
            "namespace": vm.labels.get(naming.LABEL_NAMESPACE, "default"),
        }
    }


def from_settings(settings: Settings) -> GCEProvider:
    """The built-in ``gce`` provider (``vnode run --provider gce``)."""
    return GCEProvider(settings.gce)
