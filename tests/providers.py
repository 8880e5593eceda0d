"""FakeProvider: a Provider whose pods live only in memory (and a JSON file), for tests.

End-to-end tests need a backend whose behaviour they can script and whose calls they can
count, without any cloud. Each pod follows a lifecycle computed from the time it was
created, so its status is a pure function of the clock and never flickers between polls:

    Pending (ContainerCreating) --pending s--> Running --run s--> Succeeded / Failed

Per-pod behaviour comes from annotations on the API pod:

- ``test.vnode.dev/script: "pending=0.2,run=1,exit=0,lines=3,every=0"``. ``run=forever``
  keeps it running until deleted; ``exit`` non-zero ends ``Failed``; ``lines`` default
  log lines ``line 1``..``line N`` per container, written ``every`` seconds apart from
  the start of Running (0: all at once).
- ``test.vnode.dev/logs``: the log text of every container (lines split on newlines);
  ``test.vnode.dev/logs.<container>`` for one container.
- ``test.vnode.dev/refuse: "<message>"``: ``create_pod`` raises ``InvalidPod``.
- ``test.vnode.dev/quota: "<message>"``: ``create_pod`` raises ``QuotaExceeded``.
- ``test.vnode.dev/create-failures: "N"``: the first N ``create_pod`` calls raise
  ``Retryable``.

Defaults for pods without a script come from the constructor (or the environment:
``VNODE_FAKE_PROVIDER_PENDING``, ``..._RUN`` (seconds or ``forever``), ``..._EXIT``), so
``--provider tests.providers:FakeProvider`` works with no arguments.

State (pods and call counters) is written to the JSON file named by
``VNODE_FAKE_PROVIDER_STATE`` (or ``state_file=``) after every change and read at
construction, so a restarted vnode adopts the pods of the previous one and tests can
count calls across restarts (:func:`read_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vnode.clock import Clock, SystemClock, parse_time, rfc3339
from vnode.errors import InvalidPod, NotFound, QuotaExceeded, Retryable
from vnode.provider import LogOptions, Pod, PodRef, PodStatus, ProviderContext

ANNOTATION = "test.vnode.dev/"
FOREVER = float("inf")


def _seconds(text: str) -> float:
    return FOREVER if text in ("forever", "inf", "") else float(text)


@dataclass
class Script:
    """How one fake pod behaves over time."""

    pending: float = 0.2
    run: float = 1.0
    exit: int = 0
    lines: int = 3
    every: float = 0.0

    def with_text(self, text: str) -> Script:
        values = asdict(self)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            if key not in values:
                raise InvalidPod(f"unknown fake script key {key!r}")
            if key in ("exit", "lines"):
                values[key] = int(value)
            else:
                values[key] = _seconds(value)
        return Script(**values)


@dataclass
class FakePod:
    """What the fake backend keeps of a pod it runs (all JSON-serialisable)."""

    namespace: str
    name: str
    uid: str
    created: str  # microsecond ISO time the backend accepted the pod
    script: dict[str, Any]
    containers: list[dict[str, str]]  # name, image
    logs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.uid)


def _env_script() -> Script:
    script = Script()
    if (v := os.environ.get("VNODE_FAKE_PROVIDER_PENDING")) is not None:
        script.pending = _seconds(v)
    if (v := os.environ.get("VNODE_FAKE_PROVIDER_RUN")) is not None:
        script.run = _seconds(v)
    if (v := os.environ.get("VNODE_FAKE_PROVIDER_EXIT")) is not None:
        script.exit = int(v)
    return script


def read_state(path: Path | str) -> dict[str, Any]:
    """The state file of a FakeProvider (maybe in another process): pods and counters."""
    p = Path(path)
    if not p.exists():
        return {"pods": {}, "creates": {}, "create_calls": {}, "deletes": {}}
    loaded: dict[str, Any] = json.loads(p.read_text())
    return loaded


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _nano(t: dt.datetime) -> str:
    """RFC 3339 with exactly nine fractional digits, as the kubelet's timestamps=true."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond * 1000:09d}Z"


class FakeProvider:
    """A scripted in-memory Provider that counts every call. See the module docstring."""

    name = "fake"

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        state_file: Path | str | None = None,
        pending: float | None = None,
        run: float | None = None,
        exit_code: int | None = None,
        push: bool = False,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.default = _env_script()
        if pending is not None:
            self.default.pending = pending
        if run is not None:
            self.default.run = run
        if exit_code is not None:
            self.default.exit = exit_code
        env_state = os.environ.get("VNODE_FAKE_PROVIDER_STATE")
        self.state_file = (
            Path(state_file) if state_file else (Path(env_state) if env_state else None)
        )
        # Whether this provider pushes status changes through ProviderContext.notify.
        self.pushes_status = push
        self.context: ProviderContext | None = None
        self.pods: dict[str, FakePod] = {}
        self.creates: dict[str, int] = {}  # uid -> pods actually started
        self.create_calls: dict[str, int] = {}  # uid -> create_pod calls
        self.deletes: dict[str, int] = {}  # uid -> delete_pod calls
        self.status_calls = 0
        self.list_calls = 0
        self.update_calls = 0
        self.started = False
        self.stopped = False
        self.overrides: dict[str, PodStatus] = {}  # uid -> status forced by a test
        self._pusher: asyncio.Task[None] | None = None
        self._load()

    # -- persistence -------------------------------------------------------------------

    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        state = read_state(self.state_file)
        self.pods = {uid: FakePod(**p) for uid, p in state.get("pods", {}).items()}
        self.creates = dict(state.get("creates", {}))
        self.create_calls = dict(state.get("create_calls", {}))
        self.deletes = dict(state.get("deletes", {}))

    def _save(self) -> None:
        if self.state_file is None:
            return
        state = {
            "pods": {uid: asdict(p) for uid, p in self.pods.items()},
            "creates": self.creates,
            "create_calls": self.create_calls,
            "deletes": self.deletes,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)  # atomic: a reader never sees half a file

    # -- test helpers ------------------------------------------------------------------

    def add_orphan(self, namespace: str, name: str, uid: str, *, run: float = FOREVER) -> None:
        """Pretend the backend runs a pod that the API server may not know."""
        script = Script(pending=0.0, run=run)
        self.pods[uid] = FakePod(
            namespace,
            name,
            uid,
            _stamp(self.clock.now()),
            asdict(script),
            [{"name": "main", "image": "busybox"}],
        )
        self._save()

    def set_status(self, uid: str, status: PodStatus) -> None:
        """Force what pod_status answers for ``uid`` (e.g. a lost VM), and push it."""
        self.overrides[uid] = status
        pod = self.pods.get(uid)
        if pod is not None and self.context is not None:
            self.context.notify(pod.ref)

    def total_creates(self) -> int:
        return sum(self.creates.values())

    def total_deletes(self) -> int:
        return sum(self.deletes.values())

    # -- Provider ----------------------------------------------------------------------

    async def start(self, context: ProviderContext) -> None:
        self.context = context
        self.started = True
        if self.pushes_status:
            self._pusher = asyncio.create_task(self._push_loop(), name="fake-provider-push")

    async def stop(self) -> None:
        self.stopped = True
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
            self._pusher = None

    async def create_pod(self, pod: Pod) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        self.create_calls[uid] = self.create_calls.get(uid, 0) + 1
        annotations = meta.get("annotations") or {}
        if (message := annotations.get(ANNOTATION + "refuse")) is not None:
            self._save()
            raise InvalidPod(message or "refused by the fake provider")
        if (message := annotations.get(ANNOTATION + "quota")) is not None:
            self._save()
            raise QuotaExceeded(message or "no capacity left in the fake provider")
        failures = int(annotations.get(ANNOTATION + "create-failures", "0"))
        if self.create_calls[uid] <= failures:
            self._save()
            raise Retryable(f"fake transient failure {self.create_calls[uid]} of {failures}")
        if uid in self.pods:
            self._save()
            return  # already running: creating again is success
        script = self.default.with_text(annotations.get(ANNOTATION + "script", ""))
        containers = [
            {"name": c["name"], "image": c.get("image", "")}
            for c in pod["spec"].get("containers", [])
        ]
        logs: dict[str, list[str]] = {}
        for c in containers:
            text = annotations.get(
                ANNOTATION + "logs." + c["name"], annotations.get(ANNOTATION + "logs")
            )
            if text is not None:
                logs[c["name"]] = text.splitlines()
        self.pods[uid] = FakePod(
            meta["namespace"],
            meta["name"],
            uid,
            _stamp(self.clock.now()),
            asdict(script),
            containers,
            logs,
        )
        self.creates[uid] = self.creates.get(uid, 0) + 1
        self._save()

    async def update_pod(self, pod: Pod) -> None:
        self.update_calls += 1

    async def delete_pod(self, pod: Pod) -> None:
        uid = pod["metadata"]["uid"]
        self.deletes[uid] = self.deletes.get(uid, 0) + 1
        self.pods.pop(uid, None)
        self.overrides.pop(uid, None)
        self._save()

    async def pod_status(self, pod: Pod) -> PodStatus | None:
        self.status_calls += 1
        uid = pod["metadata"]["uid"]
        if uid in self.overrides:
            return self.overrides[uid]
        fake = self.pods.get(uid)
        if fake is None:
            return None
        return self._status(fake, pod)

    async def list_pods(self) -> list[PodRef]:
        self.list_calls += 1
        return [p.ref for p in self.pods.values()]

    def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        fake = self.pods.get(pod["metadata"]["uid"])
        name = pod["metadata"]["name"]
        if fake is None:
            raise NotFound(f'pod "{name}" does not exist')
        if options.container not in [c["name"] for c in fake.containers]:
            raise NotFound(f'container "{options.container}" not found in pod "{name}"')
        if options.previous:
            raise InvalidPod(
                f'previous terminated container "{options.container}" in pod "{name}" not found'
            )
        if self.clock.now() < self._times(fake)[0]:
            raise InvalidPod(
                f'container "{options.container}" in pod "{name}" is waiting to start: '
                "ContainerCreating"
            )
        return self._stream(fake, options)

    # -- stats (SupportsStats) ---------------------------------------------------------

    async def stats_summary(self) -> dict[str, Any]:
        node = self.context.node_name if self.context else ""
        now = rfc3339(self.clock.now())
        return {
            "node": {"nodeName": node, "startTime": now, "cpu": {"time": now, "usageNanoCores": 0}},
            "pods": [
                {
                    "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                    "startTime": rfc3339(parse_time(p.created)),
                    "containers": [
                        {
                            "name": c["name"],
                            "cpu": {"time": now, "usageNanoCores": 1000000},
                            "memory": {"time": now, "workingSetBytes": 1048576},
                        }
                        for c in p.containers
                    ],
                }
                for p in self.pods.values()
            ],
        }

    async def metrics_resource(self) -> str:
        lines = [
            "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting "
            "container metrics, 0 otherwise",
            "# TYPE resource_scrape_error gauge",
            "resource_scrape_error 0",
        ]
        return "\n".join(lines) + "\n"

    # -- lifecycle ---------------------------------------------------------------------

    def _times(self, fake: FakePod) -> tuple[dt.datetime, dt.datetime | None]:
        """When the containers start, and when they end (None: never)."""
        s = Script(**fake.script)
        created = parse_time(fake.created)
        started = created + dt.timedelta(seconds=s.pending)
        ended = None if s.run == FOREVER else started + dt.timedelta(seconds=s.run)
        return started, ended

    def _status(self, fake: FakePod, pod: Pod) -> PodStatus:
        s = Script(**fake.script)
        now = self.clock.now()
        created = parse_time(fake.created)
        started, ended = self._times(fake)
        names = [c["name"] for c in fake.containers]
        if now < started:
            phase, since = "Pending", created
            states = [{"waiting": {"reason": "ContainerCreating"}} for _ in names]
        elif ended is None or now < ended:
            phase, since = "Running", started
            states = [{"running": {"startedAt": rfc3339(started)}} for _ in names]
        else:
            phase = "Succeeded" if s.exit == 0 else "Failed"
            since = ended
            term = {
                "exitCode": s.exit,
                "reason": "Completed" if s.exit == 0 else "Error",
                "startedAt": rfc3339(started),
                "finishedAt": rfc3339(ended),
            }
            states = [
                {"terminated": {**term, "containerID": f"fake://{fake.uid}/{n}"}} for n in names
            ]
        running = phase == "Running"
        ready = "True" if running else "False"
        t = rfc3339(since)

        def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
            c: dict[str, Any] = {
                "type": type_,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": t,
            }
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        if phase == "Pending":
            not_ready = (
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(names)}]",
            )
        elif phase == "Succeeded":
            not_ready = ("PodCompleted", "")
        else:
            not_ready = ("PodFailed", "")
        conditions = [
            cond("PodReadyToStartContainers", "True"),
            cond("Initialized", "True", "PodCompleted" if phase == "Succeeded" else ""),
            cond("Ready", ready, *(() if running else not_ready)),
            cond("ContainersReady", ready, *(() if running else not_ready)),
            cond("PodScheduled", "True"),
        ]
        statuses = []
        for c, state in zip(fake.containers, states, strict=True):
            cs: dict[str, Any] = {
                "name": c["name"],
                "state": state,
                "lastState": {},
                "ready": running,
                "restartCount": 0,
                "image": c["image"],
                "imageID": "" if phase == "Pending" else "sha256:" + "0" * 64,
                "started": running,
            }
            if phase != "Pending":
                cs["containerID"] = f"fake://{fake.uid}/{c['name']}"
            statuses.append(cs)
        return {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": statuses,
            "startTime": rfc3339(created),
        }

    def _lines(self, fake: FakePod, container: str) -> list[tuple[dt.datetime, str]]:
        s = Script(**fake.script)
        texts = fake.logs.get(container)
        if texts is None:
            texts = [f"line {i}" for i in range(1, s.lines + 1)]
        started, ended = self._times(fake)
        lines = [(started + dt.timedelta(seconds=s.every * i), t) for i, t in enumerate(texts)]
        # A container writes nothing after it exits.
        return [(t, x) for t, x in lines if ended is None or t <= ended]

    async def _stream(self, fake: FakePod, options: LogOptions) -> AsyncIterator[bytes]:
        lines = self._lines(fake, options.container)
        now = self.clock.now()
        since: dt.datetime | None = options.since_time
        if options.since_seconds is not None:
            since = now - dt.timedelta(seconds=options.since_seconds)
        written = [(t, x) for t, x in lines if t <= now]
        if options.tail_lines is not None:
            written = written[len(written) - options.tail_lines :] if options.tail_lines else []
        pending = [(t, x) for t, x in lines if t > now] if options.follow else []
        budget = options.limit_bytes
        for when, text in [*written, *pending]:
            if when > self.clock.now():
                await self.clock.sleep((when - self.clock.now()).total_seconds())
                if fake.uid not in self.pods:
                    return  # deleted while following
            if since is not None and when < since:
                continue
            data = ((_nano(when) + " ") if options.timestamps else "") + text + "\n"
            out = data.encode()
            if budget is not None:
                out = out[:budget]
                budget -= len(out)
            if out:
                yield out
            if budget is not None and budget <= 0:
                return
        if options.follow:
            # Like the kubelet: keep the stream open until the container ends.
            _, ended = self._times(fake)
            while fake.uid in self.pods and (ended is None or self.clock.now() < ended):
                wait = 1.0 if ended is None else (ended - self.clock.now()).total_seconds()
                await self.clock.sleep(min(1.0, max(wait, 0.0)))

    async def _push_loop(self) -> None:
        """Push each pod at the moments its status changes (start, end)."""
        pushed: dict[str, int] = {}  # uid -> transitions already pushed
        while True:
            now = self.clock.now()
            for fake in list(self.pods.values()):
                started, ended = self._times(fake)
                done = sum(1 for t in (started, ended) if t is not None and t <= now)
                if done > pushed.get(fake.uid, 0) and self.context is not None:
                    pushed[fake.uid] = done
                    self.context.notify(fake.ref)
            for uid in [u for u in pushed if u not in self.pods]:
                del pushed[uid]
            await self.clock.sleep(0.05)


class CapacityFakeProvider(FakeProvider):
    """A FakeProvider that also reports the Node's capacity (SupportsCapacity)."""

    capacity: dict[str, str] = {
        "cpu": "64",
        "memory": "256Gi",
        "pods": "110",
        "nvidia.com/gpu": "4",
    }

    async def node_capacity(self) -> dict[str, str]:
        return dict(self.capacity)
