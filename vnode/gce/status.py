"""VM state + the VM kubelet's view of its static pod -> the API pod's status.

Pure functions, no I/O: the provider gathers the facts (one listing, one ``/pods`` per
VM) and this module decides, row by row, what DESIGN.md section 4 says:

=====================================================  =========  ===========================
VM / kubelet state                                     phase      reason / containers
=====================================================  =========  ===========================
insert requested, PROVISIONING, STAGING                Pending    waiting ContainerCreating,
                                                                  message names the VM state
RUNNING, kubelet not answering yet                     Pending    same, message "VM booting"
kubelet reports the static pod                         kubelet's  statuses and conditions
                                                                  copied; IPs = the VM's
all containers done (restartPolicy Never/OnFailure)    Succeeded  from the exit codes
                                                       / Failed
Spot VM preempted                                      Failed     reason Preempted
VM vanished or stopped without vnode deleting it       Failed     reason VMLost
=====================================================  =========  ===========================

A terminal phase never regresses: once a pod is Succeeded or Failed, later facts (the
VM being deleted after the delay, the kubelet forgetting the pod) change nothing.

Timestamps of the synthesised statuses come from when the VM was requested, not from
"now", so an unchanged situation yields an identical status and no API write.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vnode.clock import rfc3339
from vnode.provider import PodStatus

TERMINAL = ("Succeeded", "Failed")
BOOTING = ("PROVISIONING", "STAGING")
RUNNING = "RUNNING"
STOPPED = ("STOPPING", "SUSPENDING", "SUSPENDED", "TERMINATED", "REPAIRING")

PREEMPTED = "Preempted"
VM_LOST = "VMLost"
LOST_EXIT_CODE = 137  # what Kubernetes reports for a container that was killed or lost

# What may be copied from the VM kubelet. qosClass is the API server's (immutable) and
# the kubelet's own notion of IPs is empty in standalone mode.
_COPIED = (
    "phase",
    "conditions",
    "message",
    "reason",
    "startTime",
    "initContainerStatuses",
    "containerStatuses",
    "ephemeralContainerStatuses",
)


@dataclass(frozen=True)
class VMState:
    """What the listing says about a pod's VM."""

    name: str
    status: str
    internal_ip: str = ""
    zone: str = ""


def pod_status(
    pod: Mapping[str, Any],
    *,
    vm: VMState | None,
    kubelet_pod: Mapping[str, Any] | None,
    since: dt.datetime,
    now: dt.datetime,
    requested: bool = False,
    preempted: bool = False,
    lost: bool = False,
    deleting: bool = False,
    host_network: bool = True,
    previous: PodStatus | None = None,
    last_kubelet: Mapping[str, Any] | None = None,
) -> PodStatus | None:
    """The pod's status in API form, or None when nothing is known (yet).

    ``vm``: the pod's VM from the last listing (None: not there). ``kubelet_pod``: the
    mirror pod from the VM kubelet's ``/pods`` (None: not answering or not listed yet).
    ``since``: when vnode asked for the VM. ``requested``: vnode asked for the VM and it
    may not be listed yet. ``preempted``: Compute preempted it. ``lost``: the VM was seen
    (or created) and is gone, and vnode did not delete it. ``deleting``: vnode is
    deleting the VM. ``previous``: the last status reported (the API's or vnode's).
    ``last_kubelet``: the last mirror pod seen, for the containers' final states.
    """
    if previous and previous.get("phase") in TERMINAL:
        return copy.deepcopy(dict(previous))
    last = kubelet_pod or last_kubelet
    if preempted:
        name = vm.name if vm else "of this pod"
        return failed(
            pod,
            PREEMPTED,
            f"The Spot VM {name} running this pod was preempted by Compute Engine",
            last=last,
            now=now,
            previous=previous,
        )
    if vm is not None and vm.status == RUNNING and kubelet_pod is not None:
        return from_kubelet(pod, kubelet_pod, vm, host_network=host_network, previous=previous)
    if deleting:
        return None  # vnode stops it: the pod is going away, its status no longer matters
    if vm is None or vm.status in STOPPED:
        done = _finished(pod, last)
        if done is not None and last is not None:
            status = from_kubelet(pod, last, vm, host_network=host_network, previous=previous)
            status["phase"] = done
            return status
        if vm is None and not lost:
            if requested:
                return pending(pod, "VM requested", since=since, previous=previous)
            return None
        state = "is gone" if vm is None else f"is {vm.status}"
        name = vm.name if vm else "of this pod"
        return failed(
            pod,
            VM_LOST,
            f"The VM {name} running this pod {state}, and vnode did not stop it",
            last=last,
            now=now,
            previous=previous,
        )
    if vm.status in BOOTING:
        where = f" in {vm.zone}" if vm.zone else ""
        message = f"VM {vm.name} is {vm.status}{where}"
        return pending(pod, message, since=since, vm=vm, previous=previous)
    # RUNNING (or a state Compute may add later) and the kubelet has not answered yet.
    return pending(pod, "VM booting", since=since, vm=vm, previous=previous)


# -- the rows ------------------------------------------------------------------------------


def pending(
    pod: Mapping[str, Any],
    message: str,
    *,
    since: dt.datetime,
    vm: VMState | None = None,
    previous: PodStatus | None = None,
) -> PodStatus:
    """Pending with every container waiting, as a kubelet shows a pod it is preparing."""
    spec = pod.get("spec") or {}
    at = rfc3339(since)
    inits = [c.get("name", "") for c in spec.get("initContainers") or []]
    apps = [c.get("name", "") for c in spec.get("containers") or []]
    status: PodStatus = {
        "phase": "Pending",
        "conditions": _conditions(
            at,
            ready_to_start=False,
            initialized=not inits,
            unready=apps,
            uninitialised=inits,
        ),
        "startTime": (previous or {}).get("startTime") or at,
    }
    waiting = {"reason": "ContainerCreating", "message": message}
    if inits:
        status["initContainerStatuses"] = [
            _waiting(c, waiting) for c in spec.get("initContainers") or []
        ]
        app_waiting = {"reason": "PodInitializing"}
    else:
        app_waiting = waiting
    status["containerStatuses"] = [_waiting(c, app_waiting) for c in spec.get("containers") or []]
    if vm is not None and vm.internal_ip:
        status["hostIP"] = vm.internal_ip
        status["hostIPs"] = [{"ip": vm.internal_ip}]
    return status


def from_kubelet(
    pod: Mapping[str, Any],
    kubelet_pod: Mapping[str, Any],
    vm: VMState | None,
    *,
    host_network: bool = True,
    previous: PodStatus | None = None,
) -> PodStatus:
    """The VM kubelet's status of the static pod, with the VM's addresses."""
    source = kubelet_pod.get("status") or {}
    status: PodStatus = {k: copy.deepcopy(source[k]) for k in _COPIED if k in source}
    status.setdefault("phase", "Pending")
    started = (previous or {}).get("startTime")
    if started:
        status["startTime"] = started  # once set, startTime never moves
    if vm is not None and vm.internal_ip:
        status["hostIP"] = vm.internal_ip
        status["hostIPs"] = [{"ip": vm.internal_ip}]
        if host_network:
            # The pod shares the VM's network namespace: its IP is the VM's.
            status["podIP"] = vm.internal_ip
            status["podIPs"] = [{"ip": vm.internal_ip}]
    done = _finished(pod, kubelet_pod)
    if done is not None and status["phase"] not in TERMINAL:
        status["phase"] = done
    return status


def failed(
    pod: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    last: Mapping[str, Any] | None = None,
    previous: PodStatus | None = None,
) -> PodStatus:
    """Failed with ``reason``; containers that had not ended are reported lost."""
    spec = pod.get("spec") or {}
    at = rfc3339(now)
    known = (last or {}).get("status") or previous or {}
    status: PodStatus = {"phase": "Failed", "reason": reason, "message": message}
    start = (previous or {}).get("startTime") or known.get("startTime")
    if start:
        status["startTime"] = start
    for kind, key in (
        ("initContainers", "initContainerStatuses"),
        ("containers", "containerStatuses"),
    ):
        containers = spec.get(kind) or []
        if not containers:
            continue
        seen = {c.get("name"): c for c in known.get(key) or []}
        status[key] = [_lost(c, seen.get(c.get("name")), message, at) for c in containers]
    status["conditions"] = [
        _condition("PodReadyToStartContainers", "False", at),
        _condition("Initialized", "True", at),
        _condition("Ready", "False", at, "PodFailed"),
        _condition("ContainersReady", "False", at, "PodFailed"),
        _condition("PodScheduled", "True", at),
    ]
    return status


# -- helpers --------------------------------------------------------------------------------


def _finished(pod: Mapping[str, Any], kubelet_pod: Mapping[str, Any] | None) -> str | None:
    """Succeeded/Failed when every app container has ended and none will restart."""
    if kubelet_pod is None:
        return None
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    if policy == "Always":
        return None
    names = [c.get("name") for c in spec.get("containers") or []]
    statuses = {
        c.get("name"): c for c in (kubelet_pod.get("status") or {}).get("containerStatuses") or []
    }
    codes: list[int] = []
    for name in names:
        terminated = ((statuses.get(name) or {}).get("state") or {}).get("terminated")
        if terminated is None:
            return None
        codes.append(int(terminated.get("exitCode") or 0))
    if not codes:
        return None
    if all(code == 0 for code in codes):
        return "Succeeded"
    return "Failed" if policy == "Never" else None  # OnFailure restarts the failed ones


def _waiting(container: Mapping[str, Any], waiting: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": container.get("name", ""),
        "state": {"waiting": dict(waiting)},
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": container.get("image", ""),
        "imageID": "",
        "started": False,
    }


def _lost(
    container: Mapping[str, Any], seen: Mapping[str, Any] | None, message: str, at: str
) -> dict[str, Any]:
    if seen is not None and "terminated" in (seen.get("state") or {}):
        out = copy.deepcopy(dict(seen))
        out["ready"] = False
        out["started"] = False
        return out
    base = dict(_waiting(container, {}))
    if seen is not None:
        base.update(copy.deepcopy(dict(seen)))
    terminated: dict[str, Any] = {
        "exitCode": LOST_EXIT_CODE,
        "reason": "ContainerStatusUnknown",
        "message": message,
        "finishedAt": at,
    }
    started = ((seen or {}).get("state") or {}).get("running", {}).get("startedAt")
    if started:
        terminated["startedAt"] = started
    if seen is not None and seen.get("containerID"):
        terminated["containerID"] = seen["containerID"]
    base["state"] = {"terminated": terminated}
    base["ready"] = False
    base["started"] = False
    return base


def _condition(
    kind: str, value: str, at: str, reason: str = "", message: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": kind,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": at,
    }
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _conditions(
    at: str,
    *,
    ready_to_start: bool,
    initialized: bool,
    unready: list[str],
    uninitialised: list[str],
) -> list[dict[str, Any]]:
    """The kubelet's five conditions, in its order, with its reasons and messages."""
    unready_msg = f"containers with unready status: [{' '.join(unready)}]"
    init_msg = f"containers with incomplete status: [{' '.join(uninitialised)}]"
    return [
        _condition("PodReadyToStartContainers", "True" if ready_to_start else "False", at),
        _condition("Initialized", "True", at)
        if initialized
        else _condition("Initialized", "False", at, "ContainersNotInitialized", init_msg),
        _condition("Ready", "False", at, "ContainersNotReady", unready_msg),
        _condition("ContainersReady", "False", at, "ContainersNotReady", unready_msg),
        _condition("PodScheduled", "True", at),
    ]
