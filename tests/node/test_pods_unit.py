"""Pod controller units: the status diff, and list/watch bookkeeping against a fake API."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.providers import FakeProvider
from tests.waiting import async_wait_for
from vnode.clock import FakeClock
from vnode.node import pods as pods_module
from vnode.node.cluster import ApiError
from vnode.node.pods import PodController, normalise, status_patch
from vnode.settings import NodeSettings, Settings

# -- the status diff ----------------------------------------------------------------------

WAITING = {
    "phase": "Pending",
    "conditions": [
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None},
        {
            "type": "Ready",
            "status": "False",
            "reason": "ContainersNotReady",
            "message": "containers with unready status: [main]",
        },
    ],
    "containerStatuses": [
        {
            "name": "main",
            "image": "busybox",
            "ready": False,
            "restartCount": 0,
            "lastState": {},
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }
    ],
    "qosClass": "BestEffort",
}
RUNNING = {
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True"}],
    "containerStatuses": [
        {
            "name": "main",
            "image": "busybox",
            "ready": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-23T20:00:00Z"}},
        }
    ],
}


def test_normalise_drops_nulls_and_empty_maps_but_keeps_falsy_values() -> None:
    assert normalise({"a": None, "b": {}, "c": {"d": None}, "e": 0, "f": False, "g": []}) == {
        "e": 0,
        "f": False,
        "g": [],
    }


def test_no_change_gives_an_empty_patch_whatever_the_noise() -> None:
    reordered = {
        "containerStatuses": WAITING["containerStatuses"],
        "conditions": list(reversed(WAITING["conditions"])),
        "phase": "Pending",
    }
    assert status_patch(normalise(WAITING), normalise(reordered)) == {}


def test_a_patch_carries_only_what_changed_and_deletes_stale_condition_fields() -> None:
    patch = status_patch(normalise(WAITING), normalise(RUNNING))
    assert patch["phase"] == "Running"
    # Ready changes in place; its old reason and message must go (a merge keeps them).
    assert patch["conditions"] == [
        {"type": "Ready", "status": "True", "reason": None, "message": None}
    ]
    # containerStatuses is atomic on the server: the whole new list is sent.
    assert patch["containerStatuses"] == normalise(RUNNING)["containerStatuses"]
    # Fields other writers own are not touched.
    assert "qosClass" not in patch


def test_conditions_of_other_types_are_left_alone() -> None:
    old = normalise({"conditions": [{"type": "DisruptionTarget", "status": "True"}]})
    new = normalise({"conditions": [{"type": "Ready", "status": "True"}]})
    assert status_patch(old, new) == {"conditions": [{"type": "Ready", "status": "True"}]}


def test_pod_ips_the_provider_no_longer_reports_are_deleted() -> None:
    old = {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}
    new = {"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}]}
    assert status_patch(old, new) == {
        "podIP": "10.0.0.2",
        "podIPs": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1", "$patch": "delete"}],
    }


def test_nested_maps_are_diffed_with_deletions() -> None:
    old = {"nominatedNodeName": "x", "resize": "", "extra": {"a": 1, "b": 2}}
    new = {"extra": {"a": 1, "c": 3}}
    assert status_patch(old, new) == {"extra": {"c": 3, "b": None}}


# -- list and watch against a fake API ----------------------------------------------------


def pod(name: str, rv: str, uid: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "main"}]},
        "status": {"phase": "Succeeded"},  # terminal: reconcile leaves the provider alone
    }


class FakeStream:
    """A watch response: the given events as newline-framed JSON, in awkward chunks."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.content = self
        self.released = False

    async def iter_any(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 7):
            yield self.data[i : i + 7]

    def release(self) -> None:
        self.released = True


class FakeApi:
    """Scripted answers for the controller's list and watch requests."""

    def __init__(self, lists: list[dict[str, Any]], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.list_queries: list[dict[str, Any]] = []
        self.watch_queries: list[dict[str, Any]] = []
        self.streams: list[FakeStream] = []
        self.idle = asyncio.Event()

    async def request_json(self, api: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/api/v1/pods"), (method, path)
        self.list_queries.append(dict(kw.get("query") or {}))
        return self.lists.pop(0)

    async def request(self, api: Any, method: str, path: str, **kw: Any) -> FakeStream:
        self.watch_queries.append(dict(kw.get("query") or {}))
        if not self.watches:
            self.idle.set()
            await asyncio.Event().wait()  # the last watch stays open
        item = self.watches.pop(0)
        if isinstance(item, Exception):
            raise item
        stream = FakeStream(item)
        self.streams.append(stream)
        return stream


@pytest.fixture
def controller() -> PodController:
    settings = Settings(node=NodeSettings(name="n1"))

    def record(*args: Any, **kwargs: Any) -> None:
        pass

    return PodController(None, FakeProvider(), settings, record, FakeClock())


async def test_list_then_watch_resumes_and_relists_on_410(
    controller: PodController, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeApi(
        lists=[
            {"metadata": {"resourceVersion": "10"}, "items": [pod("a", "5")]},
            {"metadata": {"resourceVersion": "50"}, "items": [pod("b", "45")]},
        ],
        watches=[
            [
                {"type": "ADDED", "object": pod("c", "11")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
            ],  # then the server ends the watch (its timeout)
            ApiError(0, "connection reset"),
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
        ],
    )
    monkeypatch.setattr(pods_module, "request_json", api.request_json)
    monkeypatch.setattr(pods_module, "request", api.request)
    clock: FakeClock = controller._clock  # type: ignore[assignment]
    task = asyncio.create_task(controller._watch_loop())
    try:

        async def waiting() -> bool:
            if not api.idle.is_set():
                await clock.advance(1.0)  # past the backoff after the broken connection
            return api.idle.is_set()

        await async_wait_for(waiting, what="the watch loop to settle")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [q["resourceVersion"] for q in api.watch_queries] == ["10", "20", "20", "50"]
    assert all(q["fieldSelector"] == "spec.nodeName=n1" for q in api.watch_queries)
    assert all(q["allowWatchBookmarks"] == "true" for q in api.watch_queries)
    assert all(q["fieldSelector"] == "spec.nodeName=n1" for q in api.list_queries)
    assert len(api.list_queries) == 2  # the broken connection resumed; only 410 re-listed
    assert [p["metadata"]["name"] for p in controller.pods()] == ["b"]
    assert all(s.released for s in api.streams)
    assert controller.synced


async def test_a_stale_event_does_not_replace_a_newer_cached_pod(
    controller: PodController,
) -> None:
    controller._on_event({"type": "ADDED", "object": pod("a", "7")})
    controller._on_event({"type": "MODIFIED", "object": pod("a", "6")})
    cached = controller.get_pod("default", "a")
    assert cached is not None and cached["metadata"]["resourceVersion"] == "7"
    # A DELETED for an older namesake (another uid) does not drop the current pod.
    controller._on_event({"type": "DELETED", "object": pod("a", "8", uid="old-uid")})
    assert controller.get_pod("default", "a") is not None
    controller._on_event({"type": "DELETED", "object": pod("a", "9")})
    assert controller.get_pod("default", "a") is None


async def test_a_watch_error_event_other_than_410_is_an_error(controller: PodController) -> None:
    with pytest.raises(ApiError) as caught:
        controller._on_event({"type": "ERROR", "object": {"code": 500, "message": "boom"}})
    assert caught.value.status == 500 and not caught.value.gone


async def test_orphans_are_never_judged_before_the_cache_synced(
    controller: PodController,
) -> None:
    provider: FakeProvider = controller._provider  # type: ignore[assignment]
    provider.add_orphan("default", "x", "uid-x")
    assert await controller.delete_orphans() == 0
    assert provider.list_calls == 0 and provider.total_deletes() == 0
    controller._synced.set()
    assert await controller.delete_orphans() == 1
    assert provider.deletes == {"uid-x": 1}


# -- the FakeProvider the end-to-end tests rely on ----------------------------------------


async def test_fake_provider_lifecycle_logs_and_state_survive_a_restart(tmp_path: Any) -> None:
    from vnode.provider import LogOptions

    clock = FakeClock()
    state = tmp_path / "state.json"
    provider = FakeProvider(clock=clock, state_file=state)
    spec = {"containers": [{"name": "main", "image": "busybox"}]}
    meta = {"name": "p", "namespace": "default", "uid": "u1"}
    script = {"test.vnode.dev/script": "pending=1,run=2,exit=3,lines=4,every=0.5"}
    p: Any = {"metadata": {**meta, "annotations": script}, "spec": spec}
    await provider.create_pod(p)
    await provider.create_pod(p)  # again: success, not a second pod
    assert (await provider.pod_status(p))["phase"] == "Pending"  # type: ignore[index]
    with pytest.raises(Exception, match="is waiting to start: ContainerCreating"):
        provider.container_logs(p, LogOptions("main"))
    await clock.advance(1.6)
    assert (await provider.pod_status(p))["phase"] == "Running"  # type: ignore[index]
    lines = [c async for c in provider.container_logs(p, LogOptions("main"))]
    assert lines == [b"line 1\n", b"line 2\n"]
    await clock.advance(5)
    status = await provider.pod_status(p)
    assert status is not None and status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    tail = [c async for c in provider.container_logs(p, LogOptions("main", tail_lines=1))]
    assert tail == [b"line 4\n"]

    again = FakeProvider(clock=clock, state_file=state)
    assert [r.uid for r in await again.list_pods()] == ["u1"]
    assert again.creates == {"u1": 1} and again.create_calls == {"u1": 2}
    await again.delete_pod(p)
    await again.delete_pod(p)  # a missing pod is success
    assert await again.pod_status(p) is None
    assert FakeProvider(state_file=state).deletes == {"u1": 2}


async def test_a_terminal_phase_is_never_patched_back(
    controller: PodController, monkeypatch: pytest.MonkeyPatch
) -> None:
    patches: list[Any] = []

    async def fake_request_json(api: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        patches.append(kw.get("body"))
        return {"metadata": {"uid": "uid-a", "resourceVersion": "99"}}

    monkeypatch.setattr(pods_module, "request_json", fake_request_json)
    provider: FakeProvider = controller._provider  # type: ignore[assignment]
    done = pod("a", "5")  # Succeeded on the API server
    provider.set_status("uid-a", {"phase": "Running"})
    state = pods_module._PodState("uid-a", created=True)
    await controller._sync_status("default/a", done, state)
    assert patches == []
    # The same terminal phase with new details is still written.
    provider.set_status("uid-a", {"phase": "Succeeded", "message": "all done"})
    await controller._sync_status("default/a", done, state)
    assert patches == [{"metadata": {"uid": "uid-a"}, "status": {"message": "all done"}}]


async def test_a_lost_deadline_patch_is_sent_again(
    controller: PodController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod past activeDeadlineSeconds must end Failed even if the first patch is lost."""
    clock: FakeClock = controller._clock  # type: ignore[assignment]
    started = (clock.now() - dt.timedelta(seconds=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    running = {
        "metadata": {"name": "a", "namespace": "default", "uid": "uid-a", "resourceVersion": "5"},
        "spec": {"nodeName": "n1", "activeDeadlineSeconds": 10, "containers": [{"name": "main"}]},
        "status": {"phase": "Running", "startTime": started},
    }
    controller._cache["default/a"] = running
    controller._states["default/a"] = pods_module._PodState("uid-a", created=True)
    patches: list[Any] = []

    async def flaky_request_json(api: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        patches.append(kw.get("body"))
        if len(patches) == 1:
            raise ApiError(500, "etcdserver: request timed out")
        return {**running, "status": {"phase": "Failed", "reason": "DeadlineExceeded"}}

    monkeypatch.setattr(pods_module, "request_json", flaky_request_json)
    await controller.reconcile("default/a")  # the patch is lost
    await controller.reconcile("default/a")  # the retry sends it again
    failed = [b for b in patches if (b or {}).get("status", {}).get("phase") == "Failed"]
    assert len(failed) == 2
    assert failed[-1]["status"]["reason"] == "DeadlineExceeded"
    assert controller._states["default/a"].deleted
