"""The simulated standalone kubelet: static pods from a folder, each run by a pod worker.

A manifest that appears becomes a pod at once (the "SyncLoop ADD"); one that goes away
takes its pod out of ``/pods`` at once while its containers are still being killed
("SyncLoop REMOVE"), and its logs are removed after that. Duplicate pod names keep the
first manifest, as the kubelet's pod manager does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from vnode.sandbox.vm.bootconfig import KubeletSetup
from vnode.sandbox.vm.crilog import format_ns, rotate_logs
from vnode.sandbox.vm.manifests import Manifest, ManifestFolder
from vnode.sandbox.vm.pods import PodHost, PodWorker
from vnode.sandbox.vm.podspec import static_pod

log = logging.getLogger(__name__)


class Kubelet:
    def __init__(self, setup: KubeletSetup, host: PodHost) -> None:
        self.setup = setup
        self.host = host
        self.workers: dict[str, PodWorker] = {}  # by manifest file
        self._by_file: dict[str, str] = {}
        self._folder = (
            ManifestFolder(setup.static_pod_path, setup.static_pod_vm_path)
            if setup.static_pod_path is not None
            else None
        )
        self._task: asyncio.Task[None] | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.started_at = host.clock.now()

    # -- queries for the API ------------------------------------------------------------

    def pods(self) -> list[PodWorker]:
        return list(self.workers.values())

    def pod(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            if w.namespace == namespace and w.name == name:
                return w
        return None

    def pod_json(self, worker: PodWorker) -> dict[str, Any]:
        return {**worker.pod, "status": worker.status}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.sync_manifests()
        self._task = asyncio.create_task(self._watch(), name=f"kubelet-{self.setup.node_name}")
        self._rotation = asyncio.create_task(
            self._rotate_logs(), name=f"kubelet-logs-{self.setup.node_name}"
        )

    async def stop(self, grace: float | None = None) -> None:
        for task in (self._task, self._rotation):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        workers = list(self.workers.values())
        self.workers.clear()
        await asyncio.gather(*(w.stop(grace) for w in workers))
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    async def _watch(self) -> None:
        period = min(self.host.timings.manifest_poll, self.setup.file_check_frequency)
        while True:
            await self.host.clock.sleep(period)
            try:
                self.sync_manifests()
            except Exception:
                log.exception("kubelet %s: manifest scan failed", self.setup.node_name)

    async def _rotate_logs(self) -> None:
        """containerLogMaxSize/MaxFiles: the kubelet's log manager, every monitor interval."""
        setup = self.setup
        period = min(setup.container_log_monitor_interval, self.host.timings.log_monitor)
        while True:
            await self.host.clock.sleep(period)
            for worker in list(self.workers.values()):
                for view in [*worker.init_views, *worker.app_views]:
                    inst = view.state[1] if view.state[0] == "running" else None
                    if inst is None or inst.writer is None:
                        continue
                    try:
                        rotate_logs(
                            inst.writer,
                            setup.container_log_max_size,
                            setup.container_log_max_files,
                            self.host.clock.now(),
                        )
                    except OSError:
                        log.exception("log rotation failed for %s", inst.log_path)

    def sync_manifests(self) -> None:
        if self._folder is None:
            return
        added, removed = self._folder.scan()
        for m in removed:
            self._remove(m)
        for m in added:
            self._add(m)

    def _add(self, manifest: Manifest) -> None:
        pod = static_pod(
            manifest.pod,
            node_name=self.setup.node_name,
            source=manifest.file,
            seen=format_ns(self.host.now_ns()),
        )
        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        if self.pod(ns, name) is not None:
            log.warning(
                "kubelet: duplicate static pod %s/%s from %s ignored", ns, name, manifest.file
            )
            return
        worker = PodWorker(pod, self.host)
        self.workers[manifest.file] = worker
        log.info('SyncLoop ADD source="file" pods=["%s/%s"]', ns, name)
        worker.start()

    def _remove(self, manifest: Manifest) -> None:
        worker = self.workers.pop(manifest.file, None)
        if worker is None:
            return
        log.info('SyncLoop REMOVE source="file" pods=["%s/%s"]', worker.namespace, worker.name)

        async def finish() -> None:
            try:
                await worker.stop()
            finally:
                worker.remove_logs()

        task = asyncio.create_task(finish(), name=f"kill-pod-{worker.name}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
