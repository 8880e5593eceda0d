"""One static pod's life on the simulated kubelet: the pod worker.

It does what the kubelet's pod worker does for a static pod, in the same order: wait
for the pod network (without ``hostNetwork`` a pod needs a CNI config in
``/etc/cni/net.d``; with one, its processes still share the host's network here), wait
for volumes (those a standalone kubelet cannot provide leave the pod ContainerCreating
for ever, as on the real one), create the sandbox, run the init containers one by one
(a sidecar, ``restartPolicy: Always``, only until it runs; it is stopped once the app
containers are done), then start the app containers and keep them per
``restartPolicy``: the first restart of a failed container comes one sync later, each
later one after a CrashLoopBackOff that starts at 10 s and doubles. After every change
it recomputes the pod status, so ``/pods`` shows what the kubelet's status manager
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnode.clock import Clock, rfc3339
from vnode.sandbox.kubeapi import quantity
from vnode.sandbox.vm import probes, runtime
from vnode.sandbox.vm.cloudinit import host_path
from vnode.sandbox.vm.crilog import LineCallback
from vnode.sandbox.vm.status import (
    ConditionMemory,
    ContainerView,
    conditions,
    container_status,
    phase,
    qos_class,
)
from vnode.sandbox.vm.timings import Timings, go_duration

log = logging.getLogger(__name__)

# Volume kinds a kubelet without an API server can set up; the rest never mount.
_LOCAL_VOLUMES = {"hostPath", "emptyDir", "downwardAPI"}


@dataclass(frozen=True)
class PodHost:
    """What a pod worker needs from its VM."""

    root: Path  # the VM's root directory
    node_name: str
    host_ip: str
    pod_logs_dir: str  # VM path
    root_dir: str  # the kubelet's --root-dir, VM path
    clock: Clock
    now_ns: Callable[[], int]
    timings: Timings
    line_sink: Callable[[dict[str, Any], str, int], LineCallback | None]
    cpu_count: int
    memory_bytes: int


def unsupported_volume(volume: dict[str, Any]) -> str | None:
    """Why a standalone kubelet cannot mount this volume (None: it can)."""
    kinds = [k for k in volume if k != "name"]
    if not kinds or kinds[0] in _LOCAL_VOLUMES:
        return None
    kind = kinds[0]
    name = volume.get("name")
    if kind == "projected":
        sources = (volume["projected"] or {}).get("sources") or []
        if all(set(s) <= {"downwardAPI"} for s in sources):
            return None
        if any("serviceAccountToken" in s for s in sources):
            return f"cannot setup projected volume {name} because kube client is not configured"
    return (
        f'MountVolume.SetUp failed for volume "{name}" : not supported due to running '
        "kubelet in standalone mode"
    )


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; ``$$`` escapes, unknown references stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, text)


class ConfigError(Exception):
    """CreateContainerConfigError: the container cannot be configured."""


class PodWorker:
    def __init__(self, pod: dict[str, Any], host: PodHost) -> None:
        self.pod = pod
        self.host = host
        spec = pod["spec"]
        self.init_views = [ContainerView(c, init=True) for c in spec.get("initContainers") or []]
        self.app_views = [ContainerView(c) for c in spec.get("containers") or []]
        first = "PodInitializing" if self.init_views else "ContainerCreating"
        for v in [*self.init_views, *self.app_views]:
            v.state = ("waiting", first, None)
        self.sandbox_ready = False
        self.start_time: dt.datetime | None = None
        self._conds = ConditionMemory()
        self._task: asyncio.Task[None] | None = None
        self._deadline: asyncio.Task[None] | None = None
        self.failure: tuple[str, str] | None = None  # pod-level (reason, message)
        self._background: set[asyncio.Task[None]] = set()
        self._sidecars: list[asyncio.Task[bool]] = []
        self.status: dict[str, Any] = {"phase": "Pending"}

    # -- names and paths ------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def log_dir(self) -> Path:
        return host_path(
            self.host.root, f"{self.host.pod_logs_dir}/{self.namespace}_{self.name}_{self.uid}"
        )

    def view(self, container: str) -> ContainerView | None:
        for v in [*self.app_views, *self.init_views]:
            if v.name == container:
                return v
        return None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self.start_time = self.host.clock.now()
        self.refresh()
        self._task = asyncio.create_task(self._run(), name=f"pod-worker-{self.name}")
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            self._deadline = asyncio.create_task(
                self._enforce_deadline(float(deadline)), name=f"pod-deadline-{self.name}"
            )

    async def _enforce_deadline(self, seconds: float) -> None:
        """activeDeadlineSeconds: the kubelet fails the pod and kills its containers."""
        await self.host.clock.sleep(seconds)
        if self.status.get("phase") in ("Succeeded", "Failed"):
            return
        self.failure = (
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )
        await self._kill_all(None)
        for view in [*self.init_views, *self.app_views]:
            if view.state[0] == "running":
                view.state = ("terminated", view.state[1])
        self.refresh()
        await self.host.clock.sleep(self.host.timings.sandbox_teardown)
        self.sandbox_ready = False
        self.refresh()

    async def stop(self, grace: float | None = None) -> None:
        """Kill the containers (SIGTERM, then SIGKILL after the grace period)."""
        if self._deadline is not None:
            self._deadline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadline
        await self._kill_all(grace)

    async def _kill_all(self, grace: float | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._cancel_sidecars()
        for view in [*self.init_views, *self.app_views]:
            if view.probes is not None:
                await view.probes.cancel()
                view.probes = None
        period = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        if grace is not None:
            period = min(period, grace)
        running = [i for v in [*self.init_views, *self.app_views] for i in v.instances]
        await asyncio.gather(*(i.kill(period) for i in running if not i.done.is_set()))
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def remove_logs(self) -> None:
        shutil.rmtree(self.log_dir, ignore_errors=True)
        links = host_path(self.host.root, "/var/log/containers")
        prefix = f"{self.name}_{self.namespace}_"
        if links.is_dir():
            for link in links.iterdir():
                if link.name.startswith(prefix):
                    with contextlib.suppress(OSError):
                        link.unlink()

    async def _run(self) -> None:
        try:
            await self._pod_main()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker for %s/%s failed", self.namespace, self.name)

    async def _pod_main(self) -> None:
        t = self.host.timings
        logged = False
        while not self._network_ready():
            # A pod network needs a CNI config; without one the kubelet only runs
            # hostNetwork pods and leaves the others ContainerCreating.
            if not logged:
                log.warning(
                    "pod %s/%s: network is not ready: container runtime network not ready: "
                    "NetworkReady=false reason:NetworkPluginNotReady message:Network plugin "
                    "returns error: cni plugin not initialized",
                    self.namespace,
                    self.name,
                )
                logged = True
            await self.host.clock.sleep(t.sync)
        for volume in self.pod["spec"].get("volumes") or []:
            why = unsupported_volume(volume)
            if why:
                # The real kubelet retries the mount for ever; the pod stays ContainerCreating.
                log.warning("pod %s/%s: %s", self.namespace, self.name, why)
                await asyncio.Event().wait()
        self._make_local_volumes()
        await self.host.clock.sleep(t.create)
        self.sandbox_ready = True
        self.refresh()
        for view in self.init_views:
            if view.sidecar:
                # A sidecar starts, and the next container follows once it runs.
                task = asyncio.create_task(self._supervise(view), name=f"sidecar-{view.name}")
                self._sidecars.append(task)
                await view.running_seen.wait()
                continue
            ok = await self._supervise(view)
            if not ok:
                await self._end_sidecars()
                return await self._finish()
            # The next container starts on the sync after the kubelet sees this one end.
            await self.host.clock.sleep(t.sync)
        await asyncio.gather(*(self._supervise(v) for v in self.app_views))
        await self._end_sidecars()
        await self._finish()

    async def _cancel_sidecars(self) -> None:
        for task in self._sidecars:
            task.cancel()
        await asyncio.gather(*self._sidecars, return_exceptions=True)
        self._sidecars.clear()

    async def _end_sidecars(self) -> None:
        """The app containers are done: the kubelet stops the sidecars too."""
        if not self._sidecars:
            return
        await self._cancel_sidecars()
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        for view in self.init_views:
            if view.sidecar and view.state[0] == "running":
                inst = view.state[1]
                if view.probes is not None:
                    await view.probes.cancel()
                    view.probes = None
                await inst.kill(grace)
                view.state = ("terminated", inst)
        self.refresh()

    async def _finish(self) -> None:
        if self.status.get("phase") not in ("Succeeded", "Failed"):
            return
        await self.host.clock.sleep(self.host.timings.sandbox_teardown)
        self.sandbox_ready = False
        self.refresh()

    def _network_ready(self) -> bool:
        """hostNetwork pods always run; others need a CNI config where containerd looks."""
        if self.pod["spec"].get("hostNetwork"):
            return True
        conf = host_path(self.host.root, "/etc/cni/net.d")
        return conf.is_dir() and any(
            p.suffix in (".conf", ".conflist", ".json") for p in conf.iterdir()
        )

    def _make_local_volumes(self) -> None:
        for volume in self.pod["spec"].get("volumes") or []:
            if "emptyDir" in volume:
                path = f"{self.host.root_dir}/pods/{self.uid}/volumes/kubernetes.io~empty-dir"
                host_path(self.host.root, f"{path}/{volume['name']}").mkdir(
                    parents=True, exist_ok=True
                )
            elif "hostPath" in volume and (volume["hostPath"] or {}).get("type") in (
                "DirectoryOrCreate",
            ):
                host_path(self.host.root, volume["hostPath"]["path"]).mkdir(
                    parents=True, exist_ok=True
                )

    # -- one container ----------------------------------------------------------------

    def _should_restart(self, view: ContainerView, exit_code: int) -> bool:
        if view.sidecar:
            return True
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if view.init:
            return policy != "Never" and exit_code != 0
        if policy == "Always":
            return True
        return policy == "OnFailure" and exit_code != 0

    async def _supervise(self, view: ContainerView) -> bool:
        """Run a container per the restart policy; True when it ended successfully."""
        t = self.host.timings
        clock = self.host.clock
        while True:
            try:
                launch = self._launch(view)
            except ConfigError as e:
                view.state = ("waiting", "CreateContainerConfigError", str(e))
                self.refresh()
                # Nothing changes a static pod's config: it stays in this state.
                await asyncio.Event().wait()
            attempt = view.instances[-1].attempt + 1 if view.instances else 0
            inst = await runtime.start(
                container=view.name,
                attempt=attempt,
                log_path=self.log_dir / view.name / f"{attempt}.log",
                link_path=None,
                launch=launch,
                now=clock.now,
                now_ns=self.host.now_ns,
                on_line=self.host.line_sink(self.pod, view.name, attempt),
                drain=t.drain,
            )
            self._link(view, inst)
            previous = view.instances[-1] if view.instances else None
            view.instances.append(inst)
            view.restart_count = attempt
            self._collect_old_logs(view)
            never = not self._should_restart(view, 1)
            if inst.start_error is not None:
                if never:
                    view.state = ("terminated", inst)
                    view.last = previous
                    self.refresh()
                    return False
                view.state = ("waiting", "RunContainerError", inst.start_error)
                view.last = inst
                self.refresh()
            else:
                view.state = ("running", inst)
                view.last = previous
                view.probes = self._start_probes(view, inst, launch)
                view.running_seen.set()
                self.refresh()
                began = clock.monotonic()
                await inst.wait()
                await view.probes.cancel()
                view.probes = None
                view.state = ("terminated", inst)
                self.refresh()
                if clock.monotonic() - began > 2 * t.backoff_max:
                    view.backoff = None
            code = inst.exit_code if inst.exit_code is not None else 0
            if not self._should_restart(view, code):
                return code == 0
            exited = clock.monotonic()
            await clock.sleep(t.sync)
            if view.backoff is None:
                view.backoff = t.backoff_initial
                continue
            message = (
                f"back-off {go_duration(view.backoff)} restarting failed container="
                f"{view.name} pod={self.name}_{self.namespace}({self.uid})"
            )
            view.state = ("waiting", "CrashLoopBackOff", message)
            view.last = inst
            self.refresh()
            await clock.sleep(max(0.0, exited + view.backoff - clock.monotonic()))
            view.backoff = min(view.backoff * 2, t.backoff_max)

    def _start_probes(
        self, view: ContainerView, inst: runtime.Instance, launch: runtime.Launch
    ) -> probes.ProbeState:
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

        def kill(why: str) -> None:
            log.info(
                "pod %s/%s: container %s failed its %s probe, killing it",
                self.namespace,
                self.name,
                view.name,
                why,
            )
            task = asyncio.create_task(inst.kill(grace), name=f"probe-kill-{inst.id[:12]}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        return probes.start(
            view.spec,
            env=launch.env,
            host=self.host.host_ip,
            clock=self.host.clock,
            changed=self.refresh,
            kill=kill,
        )

    def _link(self, view: ContainerView, inst: runtime.Instance) -> None:
        """/var/log/containers/<pod>_<ns>_<container>-<id>.log, relative to stay in the VM."""
        links = host_path(self.host.root, "/var/log/containers")
        links.mkdir(parents=True, exist_ok=True)
        link = links / f"{self.name}_{self.namespace}_{view.name}-{inst.id}.log"
        with contextlib.suppress(FileExistsError):
            link.symlink_to(os.path.relpath(inst.log_path, links))

    def _collect_old_logs(self, view: ContainerView) -> None:
        """The kubelet keeps the newest dead instance of a container; older ones go."""
        links = host_path(self.host.root, "/var/log/containers")
        for old in view.instances[:-2]:
            with contextlib.suppress(FileNotFoundError):
                old.log_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                (links / f"{self.name}_{self.namespace}_{view.name}-{old.id}.log").unlink()
        del view.instances[:-2]

    # -- what a container runs ----------------------------------------------------------

    def _field(self, path: str) -> str:
        meta = self.pod["metadata"]
        spec = self.pod["spec"]
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": self.host.host_ip,
            "status.hostIPs": self.host.host_ip,
            "status.podIP": self.host.host_ip if spec.get("hostNetwork") else "",
            "status.podIPs": self.host.host_ip if spec.get("hostNetwork") else "",
        }
        if path in simple:
            return str(simple[path])
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        raise ConfigError(f"unsupported fieldRef {path}")

    def _resource(self, container: dict[str, Any], ref: dict[str, Any]) -> str:
        name = ref.get("containerName") or container["name"]
        target = next(
            (c for c in self.pod["spec"].get("containers") or [] if c.get("name") == name),
            container,
        )
        kind, _, res = str(ref.get("resource", "")).partition(".")
        values = (target.get("resources") or {}).get(kind) or {}
        if res in values:
            amount = quantity.parse(values[res])
        elif res == "cpu":
            amount = quantity.parse(self.host.cpu_count)
        elif res == "memory":
            amount = quantity.parse(self.host.memory_bytes)
        else:
            amount = quantity.parse(0)
        divisor = quantity.parse(ref.get("divisor") or "1")
        value = amount / divisor
        whole = -(-value.numerator // value.denominator)  # the kubelet rounds up
        return str(whole)

    def _launch(self, view: ContainerView) -> runtime.Launch:
        c = view.spec
        ns = self.namespace
        env: dict[str, str] = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOSTNAME": self.host.node_name,
            "HOME": "/root",
        }
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                raise ConfigError(
                    f"couldn't get configMap {ns}/{src['configMapRef'].get('name')}, "
                    "no kubeClient defined"
                )
            if "secretRef" in src:
                ref = src["secretRef"].get("name")
                raise ConfigError(f"couldn't get secret {ns}/{ref}, no kubeClient defined")
        for e in c.get("env") or []:
            name = str(e.get("name"))
            source = e.get("valueFrom")
            if not source:
                env[name] = expand(str(e.get("value", "")), env)
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"].get("name")
                raise ConfigError(f"couldn't get configMap {ns}/{ref}, no kubeClient defined")
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"].get("name")
                raise ConfigError(f"couldn't get secret {ns}/{ref}, no kubeClient defined")
            elif "fieldRef" in source:
                env[name] = self._field(str(source["fieldRef"].get("fieldPath", "")))
            elif "resourceFieldRef" in source:
                env[name] = self._resource(c, source["resourceFieldRef"])
        command = [str(x) for x in c.get("command") or []]
        if not command:
            raise ConfigError(
                f"the sandbox does not pull images, so the image entrypoint of container "
                f'"{c.get("name")}" cannot run: set an explicit command'
            )
        argv = [expand(x, env) for x in [*command, *(str(a) for a in c.get("args") or [])]]
        cwd = host_path(self.host.root, str(c.get("workingDir") or "/"))
        return runtime.Launch(argv=argv, env=env, cwd=cwd)

    # -- status -------------------------------------------------------------------------

    def refresh(self) -> None:
        now = self.host.clock.now()
        init = [container_status(v) for v in self.init_views]
        app = sorted((container_status(v) for v in self.app_views), key=lambda s: s["name"])
        spec = self.pod["spec"]
        previous = self.status.get("phase")
        sidecars = frozenset(v.name for v in self.init_views if v.sidecar)
        pod_phase = phase(spec, init, app, sidecars)
        if previous in ("Succeeded", "Failed"):
            pod_phase = previous  # a terminal phase never changes back
        if self.failure is not None:
            pod_phase = "Failed"
        conds = conditions(
            pod_phase=pod_phase,
            sandbox_ready=self.sandbox_ready,
            init=init,
            app=app,
            sidecars=sidecars,
        )
        status: dict[str, Any] = {
            "phase": pod_phase,
            "conditions": self._conds.render(conds, now),
        }
        if self.failure is not None:
            status["message"] = self.failure[1]
            status["reason"] = self.failure[0]
        if self.start_time is not None:
            status["startTime"] = rfc3339(self.start_time)
        if init:
            status["initContainerStatuses"] = init
        status["containerStatuses"] = app
        status["qosClass"] = qos_class(spec)
        self.status = status
