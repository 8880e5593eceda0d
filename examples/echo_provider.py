"""EchoProvider: the smallest complete vnode provider, as a starting point for your own.

Each container "runs" by printing its ``command`` and ``args`` joined by spaces (as
``echo`` would) and exits 0, so a pod finishes ``Succeeded`` as soon as it is created.
Nothing leaves the process; a real backend would start the pod somewhere in
``create_pod`` and report what it sees in ``pod_status``.

It follows the rules of :mod:`vnode.provider`: every call may repeat (creating a pod
that exists and deleting one that does not are both success), a pod that can never run
raises ``InvalidPod`` (vnode then fails it with that reason), an unknown container
raises ``NotFound``, and nothing blocks the event loop.

Run it from the repository root (the working directory is importable)::

    vnode run --provider examples.echo_provider:EchoProvider --node-name echo
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vnode.clock import rfc3339
from vnode.errors import InvalidPod, NotFound
from vnode.provider import LogOptions, Pod, PodRef, PodStatus, ProviderContext


@dataclass(frozen=True)
class _Ran:
    """One pod this backend ran: where it came from, its status and each container's log."""

    ref: PodRef
    status: PodStatus
    logs: dict[str, list[tuple[dt.datetime, str]]]


class EchoProvider:
    """A Provider whose containers print their command line and exit 0."""

    name = "echo"  # the Node gets the label vnode.dev/provider=echo

    def __init__(self) -> None:
        self._pods: dict[str, _Ran] = {}  # by pod uid
        self._context: ProviderContext | None = None

    async def start(self, context: ProviderContext) -> None:
        self._context = context  # node_name, cluster reads, record_event, notify

    async def stop(self) -> None:
        """Nothing to release; a real backend closes its clients here (pods keep running)."""

    async def create_pod(self, pod: Pod) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._pods:
            return  # created already: a repeated call is success
        containers = pod["spec"].get("containers") or []
        now = dt.datetime.now(dt.UTC)
        logs: dict[str, list[tuple[dt.datetime, str]]] = {}
        for c in containers:
            words = [*(c.get("command") or []), *(c.get("args") or [])]
            if not words:
                raise InvalidPod(f'container "{c["name"]}" has no command or args to echo')
            logs[c["name"]] = [(now, " ".join(words))]
        self._pods[uid] = _Ran(_ref(pod), _succeeded(containers, now), logs)

    async def update_pod(self, pod: Pod) -> None:
        """A finished pod has nothing to update."""

    async def delete_pod(self, pod: Pod) -> None:
        self._pods.pop(pod["metadata"]["uid"], None)  # a missing pod is success

    async def pod_status(self, pod: Pod) -> PodStatus | None:
        ran = self._pods.get(pod["metadata"]["uid"])
        return None if ran is None else ran.status  # None: "nothing known yet"

    async def list_pods(self) -> list[PodRef]:
        return [ran.ref for ran in self._pods.values()]

    async def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        ran = self._pods.get(pod["metadata"]["uid"])
        name = pod["metadata"]["name"]
        if ran is None or options.container not in ran.logs:
            raise NotFound(f'container "{options.container}" not found in pod "{name}"')
        lines = ran.logs[options.container]
        if options.tail_lines is not None:
            lines = lines[len(lines) - options.tail_lines :] if options.tail_lines else []
        budget = options.limit_bytes
        for when, text in lines:
            stamp = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond * 1000:09d}Z "
            data = ((stamp if options.timestamps else "") + text + "\n").encode()
            if budget is not None:
                data, budget = data[:budget], budget - len(data[:budget])
            if data:
                yield data
        # The containers have exited, so a follow ends here too.


def _ref(pod: Pod) -> PodRef:
    meta = pod["metadata"]
    return PodRef(meta["namespace"], meta["name"], meta["uid"])


def _succeeded(containers: list[dict[str, Any]], at: dt.datetime) -> PodStatus:
    """A pod whose containers all exited 0, in the API's own PodStatus shape."""
    t = rfc3339(at)
    done = {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}
    conditions = [
        {"type": kind, "status": status, "lastTransitionTime": t, **extra}
        for kind, status, extra in (
            ("Initialized", "True", {"reason": "PodCompleted"}),
            ("Ready", "False", {"reason": "PodCompleted"}),
            ("ContainersReady", "False", {"reason": "PodCompleted"}),
            ("PodScheduled", "True", {}),
        )
    ]
    return {
        "phase": "Succeeded",
        "startTime": t,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"terminated": {**done, "containerID": f"echo://{c['name']}"}},
                "lastState": {},
            }
            for c in containers
        ],
    }
