"""The pod status a standalone kubelet v1.33 reports, from what its containers are doing.

Pure functions over :class:`ContainerView`: container statuses in the kubelet's shape
(waiting/running/terminated, ``lastState``, IDs only once a container exists), the phase
rules of ``getPhase``, and the five conditions with their reasons and messages. No
``hostIP``/``podIP``: a kubelet without an API client never sets them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from vnode.clock import rfc3339
from vnode.sandbox.kubeapi import quantity
from vnode.sandbox.vm.probes import ProbeState
from vnode.sandbox.vm.runtime import EPOCH, Instance, image_id


@dataclass
class ContainerView:
    """What the kubelet knows of one container: current state and the last finished run."""

    spec: dict[str, Any]
    init: bool = False
    # ("waiting", reason, message | None) | ("running", Instance) | ("terminated", Instance)
    state: tuple[Any, ...] = ("waiting", "ContainerCreating", None)
    last: Instance | None = None
    instances: list[Instance] = field(default_factory=list)
    restart_count: int = 0
    backoff: float | None = None
    probes: ProbeState | None = None
    running_seen: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sidecar(self) -> bool:
        """An init container with ``restartPolicy: Always`` keeps running beside the pod."""
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def current(self) -> Instance | None:
        """The instance the status's containerID names."""
        if self.state[0] in ("running", "terminated"):
            inst: Instance = self.state[1]
            return inst
        return self.last


def _terminated(inst: Instance) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": inst.exit_code if inst.exit_code is not None else 0}
    if inst.start_error is not None:
        out["reason"] = "StartError"
        out["message"] = inst.start_error
    else:
        out["reason"] = "Completed" if inst.exit_code == 0 else "Error"
    out["startedAt"] = rfc3339(inst.started_at or EPOCH)
    out["finishedAt"] = rfc3339(inst.finished_at or inst.created_at)
    out["containerID"] = inst.container_id
    return out


def _resources(spec: dict[str, Any]) -> dict[str, Any]:
    res = spec.get("resources") or {}
    out: dict[str, Any] = {}
    for kind in ("limits", "requests"):
        values = {k: v for k, v in (res.get(kind) or {}).items() if k in ("cpu", "memory")}
        if values:
            out[kind] = {k: values[k] for k in sorted(values)}
    return out


def container_status(view: ContainerView) -> dict[str, Any]:
    kind = view.state[0]
    if kind == "waiting":
        waiting: dict[str, Any] = {"reason": view.state[1]}
        if view.state[2]:
            waiting["message"] = view.state[2]
        state: dict[str, Any] = {"waiting": waiting}
    elif kind == "running":
        state = {"running": {"startedAt": rfc3339(view.state[1].started_at)}}
    else:
        state = {"terminated": _terminated(view.state[1])}
    running = kind == "running"
    probes = view.probes
    # A startup probe holds "started" back; a readiness probe holds "ready" back.
    started = running and (probes is None or probes.started is not False)
    probed_ready = started and (probes is None or probes.ready is not False)
    # A finished init container counts as ready; an app container only while it runs.
    if view.init and not view.sidecar:
        ready = kind == "terminated" and view.state[1].exit_code == 0
    else:
        ready = probed_ready
    current = view.current
    image = str(view.spec.get("image", ""))
    out: dict[str, Any] = {
        "name": view.name,
        "state": state,
        "lastState": {"terminated": _terminated(view.last)} if view.last is not None else {},
        "ready": ready,
        "restartCount": view.restart_count,
        "image": image,
        "imageID": image_id(image) if current is not None else "",
    }
    if current is not None:
        out["containerID"] = current.container_id
    out["started"] = started
    if current is not None:
        out["resources"] = _resources(view.spec)
    mounts = []
    for m in view.spec.get("volumeMounts") or []:
        vm: dict[str, Any] = {"name": m.get("name"), "mountPath": m.get("mountPath")}
        if m.get("readOnly"):
            vm["readOnly"] = True
            vm["recursiveReadOnly"] = (
                "Enabled" if m.get("recursiveReadOnly") == "Enabled" else "Disabled"
            )
            vm = {k: vm[k] for k in ("name", "mountPath", "readOnly", "recursiveReadOnly")}
        mounts.append(vm)
    if mounts:
        out["volumeMounts"] = mounts
    return out


def phase(
    spec: dict[str, Any],
    init: list[dict[str, Any]],
    app: list[dict[str, Any]],
    sidecars: frozenset[str] = frozenset(),
) -> str:
    """pkg/kubelet getPhase: init containers (sidecars count until started), then app ones."""
    policy = spec.get("restartPolicy", "Always")
    pending_init = failed_init = 0
    app_started = any("running" in s["state"] or "terminated" in s["state"] for s in app)
    for s in init:
        st, last = s["state"], s["lastState"]
        if s["name"] in sidecars:
            if not s.get("started") and not app_started:
                pending_init += 1
            continue
        if "running" in st:
            pending_init += 1
        elif "terminated" in st:
            if st["terminated"]["exitCode"] != 0:
                failed_init += 1
        elif "waiting" in st:
            if "terminated" in last:
                if last["terminated"]["exitCode"] != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for s in app:
        st, last = s["state"], s["lastState"]
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"]["exitCode"] == 0:
                succeeded += 1
        elif "terminated" in last:
            stopped += 1
        else:
            waiting += 1
    if failed_init > 0 and policy == "Never":
        return "Failed"
    if pending_init > 0 or waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def conditions(
    *,
    pod_phase: str,
    sandbox_ready: bool,
    init: list[dict[str, Any]],
    app: list[dict[str, Any]],
    sidecars: frozenset[str] = frozenset(),
) -> list[tuple[str, str, str | None, str | None]]:
    """(type, status, reason, message) in the kubelet's order."""

    def initialized_one(s: dict[str, Any]) -> bool:
        if s["name"] in sidecars:
            return bool(s.get("started"))
        return "terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0

    incomplete = [s["name"] for s in init if not initialized_one(s)]
    app_started = any(
        "running" in s["state"] or "terminated" in s["state"] or "terminated" in s["lastState"]
        for s in app
    )
    if pod_phase == "Succeeded":
        initialized: tuple[str, str | None, str | None] = ("True", "PodCompleted", None)
    elif not incomplete or app_started:
        initialized = ("True", None, None)
    else:
        msg = f"containers with incomplete status: [{' '.join(incomplete)}]"
        initialized = ("False", "ContainersNotInitialized", msg)
    unready = [s["name"] for s in init if s["name"] in sidecars and not s["ready"]]
    unready += [s["name"] for s in app if not s["ready"]]
    if pod_phase == "Succeeded":
        ready: tuple[str, str | None, str | None] = ("False", "PodCompleted", None)
    elif pod_phase == "Failed":
        ready = ("False", "PodFailed", None)
    elif unready:
        ready = (
            "False",
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    else:
        ready = ("True", None, None)
    return [
        ("PodReadyToStartContainers", "True" if sandbox_ready else "False", None, None),
        ("Initialized", *initialized),
        ("Ready", *ready),
        ("ContainersReady", *ready),
        ("PodScheduled", "True", None, None),
    ]


class ConditionMemory:
    """lastTransitionTime moves only when a condition's status changes."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[str, dt.datetime]] = {}

    def render(
        self, conds: list[tuple[str, str, str | None, str | None]], now: dt.datetime
    ) -> list[dict[str, Any]]:
        out = []
        for ctype, status, reason, message in conds:
            prev = self._since.get(ctype)
            if prev is None or prev[0] != status:
                prev = (status, now)
                self._since[ctype] = prev
            c: dict[str, Any] = {
                "type": ctype,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(prev[1]),
            }
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            out.append(c)
        return out


def qos_class(spec: dict[str, Any]) -> str:
    """BestEffort / Burstable / Guaranteed from requests and limits (cpu and memory)."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        for k, v in req.items():
            if quantity.parse(v) != 0:
                requests[k] = requests.get(k, Fraction(0)) + quantity.parse(v)
        for k, v in lim.items():
            if quantity.parse(v) != 0:
                limits[k] = limits.get(k, Fraction(0)) + quantity.parse(v)
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"
