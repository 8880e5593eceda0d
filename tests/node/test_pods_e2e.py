"""The pod controller end to end: the sandbox API server, a FakeProvider, real watches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI
from tests.providers import FakeProvider
from tests.waiting import async_wait_for
from vnode.clock import SystemClock
from vnode.node.cluster import ApiClusterReader, ApiError, request_json
from vnode.node.events import EventRecorder
from vnode.node.pods import PodController, normalise
from vnode.provider import ProviderContext
from vnode.settings import NodeSettings, PodControllerSettings, Settings

NODE = "vnode-test"
SETTINGS = Settings(
    provider="tests.providers:FakeProvider",
    node=NodeSettings(name=NODE),
    pods=PodControllerSettings(workers=4, status_period=0.2, retry_base=0.05, retry_max=0.5),
)


@dataclass
class Vnode:
    """One running pod controller with its provider, recorder and API client."""

    client: Any
    provider: FakeProvider
    controller: PodController
    recorder: EventRecorder
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.provider.stop()


@dataclass
class Harness:
    """Starts and stops vnodes against one sandbox; talks to the API like a user."""

    kubeapi: RunningKubeAPI
    client: Any
    state_file: Path
    running: list[Vnode] = field(default_factory=list)
    writes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def start(
        self, provider: FakeProvider | None = None, *, orphan_period: float = 60.0
    ) -> Vnode:
        provider = provider or FakeProvider(state_file=self.state_file, pending=0.2, run=0.6)
        recorder = EventRecorder(self.client, NODE, SystemClock())
        controller = PodController(
            self.client, provider, SETTINGS, recorder, SystemClock(), orphan_period=orphan_period
        )
        context = ProviderContext(
            NODE, ApiClusterReader(self.client), recorder, notify=controller.notify
        )
        await provider.start(context)
        tasks = [
            asyncio.create_task(recorder.run(), name="events"),
            asyncio.create_task(controller.run(), name="pods"),
        ]
        vnode = Vnode(self.client, provider, controller, recorder, tasks)
        self.running.append(vnode)
        await asyncio.wait_for(controller.wait_synced(), 10)
        return vnode

    async def create_pod(
        self,
        name: str,
        *,
        annotations: dict[str, str] | None = None,
        node: str | None = NODE,
        containers: tuple[str, ...] = ("main",),
        tolerate: bool = False,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "containers": [
                {"name": c, "image": "busybox", "command": ["true"]} for c in containers
            ],
            "restartPolicy": "Never",
        }
        if node:
            spec["nodeName"] = node
        if tolerate:
            spec["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        return await request_json(self.client, "POST", "/api/v1/namespaces/default/pods", body=body)

    async def get_pod(self, name: str) -> dict[str, Any] | None:
        try:
            return await request_json(self.client, "GET", f"/api/v1/namespaces/default/pods/{name}")
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def phase(self, name: str) -> str | None:
        pod = await self.get_pod(name)
        return None if pod is None else pod.get("status", {}).get("phase")

    async def wait_phase(self, name: str, phase: str, within: float = 15) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            pod = await self.get_pod(name)
            return pod if pod and pod.get("status", {}).get("phase") == phase else None

        return await async_wait_for(check, within, what=f"pod {name} {phase}")

    async def delete_pod(self, name: str, grace: int | None = None) -> None:
        query = {} if grace is None else {"gracePeriodSeconds": grace}
        await request_json(
            self.client, "DELETE", f"/api/v1/namespaces/default/pods/{name}", query=query
        )

    async def events(self, name: str) -> list[dict[str, Any]]:
        listed = await request_json(
            self.client,
            "GET",
            "/api/v1/namespaces/default/events",
            query={"fieldSelector": f"involvedObject.name={name}"},
        )
        return list(listed["items"])

    async def reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in await self.events(name)]

    def record_writes(self) -> None:
        """Keep every stored version of each pod (from the server's change listener)."""
        from vnode.sandbox.kubeapi.resources import lookup

        pods = lookup("", "v1", "pods")

        def listener(kind: str, res: Any, new: dict[str, Any], old: Any) -> None:
            if res is pods:
                with self.lock:
                    self.writes.setdefault(new["metadata"]["name"], []).append(
                        {
                            "type": kind,
                            "status": new.get("status", {}),
                            "rv": new["metadata"].get("resourceVersion"),
                        }
                    )

        self.kubeapi.call(lambda: self.kubeapi.api.store.add_listener(listener))

    def phases(self, name: str) -> list[str]:
        with self.lock:
            seen = [w["status"].get("phase") for w in self.writes.get(name, [])]
        return [p for i, p in enumerate(seen) if i == 0 or p != seen[i - 1]]

    def write_count(self, name: str) -> int:
        with self.lock:
            return len(self.writes.get(name, []))


@pytest.fixture
async def harness(kubeapi: RunningKubeAPI, tmp_path: Path) -> AsyncIterator[Harness]:
    from kubernetes.aio import config

    client = await config.new_client_from_config(config_file=str(kubeapi.kubeconfig))
    h = Harness(kubeapi, client, tmp_path / "fake-provider.json")
    h.record_writes()
    try:
        yield h
    finally:
        for vnode in h.running:
            await vnode.stop()
        await client.close()


async def until(predicate: Callable[[], Any], within: float = 15, what: str = "") -> Any:
    async def check() -> Any:
        return predicate()

    return await async_wait_for(check, within, what=what)


@pytest.mark.kubeapi(controllers=False)
async def test_a_bound_pod_runs_then_succeeds_as_the_provider_reports(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod("job-1")
    uid = created["metadata"]["uid"]
    done = await harness.wait_phase("job-1", "Succeeded")
    assert harness.phases("job-1")[-3:] == ["Pending", "Running", "Succeeded"]
    (status,) = done["status"]["containerStatuses"]
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert {c["type"]: c["status"] for c in done["status"]["conditions"]}["Ready"] == "False"
    assert vnode.provider.creates == {uid: 1}
    await async_wait_for(
        lambda: _has(harness, "job-1", {"Creating", "Started"}), what="Creating and Started events"
    )


async def _has(harness: Harness, name: str, reasons: set[str]) -> bool:
    return reasons <= set(await harness.reasons(name))


@pytest.mark.kubeapi(controllers=False)
async def test_a_refused_pod_ends_failed_with_reason_message_and_event(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod(
        "refused", annotations={"test.vnode.dev/refuse": "needs a PersistentVolumeClaim"}
    )
    uid = created["metadata"]["uid"]
    failed = await harness.wait_phase("refused", "Failed")
    assert failed["status"]["reason"] == "ProviderFailed"
    assert failed["status"]["message"] == "needs a PersistentVolumeClaim"
    await async_wait_for(lambda: _has(harness, "refused", {"ProviderFailed"}))
    (event,) = [e for e in await harness.events("refused") if e["reason"] == "ProviderFailed"]
    assert event["type"] == "Warning"
    assert event["message"] == "needs a PersistentVolumeClaim"
    # Never retried: a later pod runs its whole course meanwhile, the refused one is not
    # asked for again.
    await harness.create_pod("after")
    await harness.wait_phase("after", "Succeeded")
    assert vnode.provider.create_calls[uid] == 1
    assert uid not in vnode.provider.creates


@pytest.mark.kubeapi(controllers=False)
async def test_transient_create_failures_are_retried_and_reported(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod("flaky", annotations={"test.vnode.dev/create-failures": "2"})
    uid = created["metadata"]["uid"]
    await harness.wait_phase("flaky", "Succeeded")
    assert vnode.provider.create_calls[uid] == 3
    assert vnode.provider.creates[uid] == 1
    await async_wait_for(lambda: _has(harness, "flaky", {"FailedCreate", "Creating"}))
    warnings = [e for e in await harness.events("flaky") if e["reason"] == "FailedCreate"]
    assert all(e["type"] == "Warning" for e in warnings)
    assert sum(e["count"] for e in warnings) == 2
    assert "fake transient failure" in warnings[0]["message"]


@pytest.mark.kubeapi(controllers=False)
async def test_deleting_a_pod_deletes_it_in_the_provider_then_removes_it(
    harness: Harness,
) -> None:
    vnode = await harness.start()
    created = await harness.create_pod(
        "server", annotations={"test.vnode.dev/script": "run=forever"}
    )
    uid = created["metadata"]["uid"]
    await harness.wait_phase("server", "Running")
    # kubectl deletes gracefully and waits until the object is gone.
    kubectl = await asyncio.create_subprocess_exec(
        "kubectl", "delete", "pod", "server", "--timeout=30s",
        env=harness.kubeapi.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(kubectl.communicate(), 60)
    assert kubectl.returncode == 0, out.decode()
    assert out.decode().startswith('pod "server" deleted')
    assert await _gone(harness, "server")
    assert 1 <= vnode.provider.deletes[uid] <= 2
    assert uid not in vnode.provider.pods
    await async_wait_for(lambda: _has(harness, "server", {"Killing"}))
    (killing,) = [e for e in await harness.events("server") if e["reason"] == "Killing"]
    assert killing["message"] == "Stopping container main"
    assert killing["involvedObject"]["fieldPath"] == "spec.containers{main}"
    await until(lambda: "default/server" not in vnode.controller.tracked(), what="state forgotten")


@pytest.mark.kubeapi(controllers=False)
async def test_a_force_deleted_pod_is_still_deleted_in_the_provider(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod(
        "forced", annotations={"test.vnode.dev/script": "run=forever"}
    )
    uid = created["metadata"]["uid"]
    await harness.wait_phase("forced", "Running")
    await harness.delete_pod("forced", grace=0)  # kubectl delete --force --grace-period=0
    await until(lambda: vnode.provider.deletes.get(uid), what="provider delete")
    assert uid not in vnode.provider.pods


@pytest.mark.kubeapi(controllers=False)
async def test_pods_bound_before_vnode_started_are_reconciled(harness: Harness) -> None:
    created = await harness.create_pod("early")
    vnode = await harness.start()
    await harness.wait_phase("early", "Succeeded")
    assert vnode.provider.creates == {created["metadata"]["uid"]: 1}


@pytest.mark.kubeapi(controllers=False)
async def test_pods_of_other_nodes_are_not_touched(harness: Harness) -> None:
    vnode = await harness.start()
    await harness.create_pod("elsewhere", node="another-node")
    await harness.create_pod("mine")
    await harness.wait_phase("mine", "Succeeded")
    assert [p["metadata"]["name"] for p in vnode.controller.pods()] == ["mine"]
    assert await harness.phase("elsewhere") == "Pending"
    assert vnode.controller.get_pod("default", "elsewhere") is None
    mine = vnode.controller.get_pod("default", "mine")
    assert mine is not None and mine["metadata"]["name"] == "mine"


@pytest.mark.kubeapi(controllers=False)
async def test_a_restart_creates_nothing_twice_and_deletes_nothing_wanted(
    harness: Harness,
) -> None:
    first = await harness.start()
    forever = {"test.vnode.dev/script": "run=forever"}
    a = await harness.create_pod("keep-a", annotations=forever)
    b = await harness.create_pod("keep-b", annotations=forever)
    c = await harness.create_pod("drop-c", annotations=forever)
    for name in ("keep-a", "keep-b", "drop-c"):
        await harness.wait_phase(name, "Running")
    await first.stop()

    # While vnode is down: one pod is deleted, one is created.
    await harness.delete_pod("drop-c")
    d = await harness.create_pod("new-d", annotations=forever)
    writes_before = harness.write_count("keep-a")

    provider = FakeProvider(state_file=harness.state_file, pending=0.2, run=0.6)
    second = await harness.start(provider)
    await harness.wait_phase("new-d", "Running")
    await async_wait_for(lambda: _gone(harness, "drop-c"))
    uid = {p["metadata"]["name"]: p["metadata"]["uid"] for p in (a, b, c, d)}
    assert provider.creates == {
        uid["keep-a"]: 1,
        uid["keep-b"]: 1,
        uid["drop-c"]: 1,
        uid["new-d"]: 1,
    }
    assert set(provider.deletes) == {uid["drop-c"]}
    # The adopted pods were not handed to create_pod again at all.
    assert provider.create_calls[uid["keep-a"]] == 1
    assert provider.create_calls[uid["keep-b"]] == 1
    assert set(provider.pods) == {uid["keep-a"], uid["keep-b"], uid["new-d"]}
    # Their status was already right: the restart wrote nothing to them.
    calls = provider.status_calls
    await until(lambda: provider.status_calls >= calls + 6, what="a few more status polls")
    assert harness.write_count("keep-a") == writes_before
    assert second.controller.status_patches >= 1  # new-d's


@pytest.mark.kubeapi(controllers=False)
async def test_orphan_provider_pods_are_deleted_only_after_the_cache_synced(
    harness: Harness,
) -> None:
    kept = await harness.create_pod("kept", annotations={"test.vnode.dev/script": "run=forever"})
    kept_uid = kept["metadata"]["uid"]

    class Watching(FakeProvider):
        """Records whether the controller had synced when each delete came."""

        controller: PodController | None = None
        synced_at_delete: list[bool] = []

        async def delete_pod(self, pod: Any) -> None:
            assert self.controller is not None
            self.synced_at_delete.append(self.controller.synced)
            await super().delete_pod(pod)

    provider = Watching(state_file=harness.state_file, pending=0.2, run=0.6)
    provider.add_orphan("default", "left-behind", "orphan-uid")
    provider.add_orphan("default", "kept", kept_uid)  # adopted: it has an API pod
    # Start the controller by hand so the provider knows it before its first call.
    recorder = EventRecorder(harness.client, NODE, SystemClock())
    controller = PodController(harness.client, provider, SETTINGS, recorder, SystemClock())
    provider.controller = controller
    assert await controller.delete_orphans() == 0  # before sync: refuses to judge
    assert provider.list_calls == 0
    await provider.start(
        ProviderContext(NODE, ApiClusterReader(harness.client), recorder, controller.notify)
    )
    tasks = [asyncio.create_task(controller.run()), asyncio.create_task(recorder.run())]
    harness.running.append(Vnode(harness.client, provider, controller, recorder, tasks))
    await until(lambda: "orphan-uid" not in provider.pods, what="orphan deleted")
    assert provider.synced_at_delete == [True]
    assert kept_uid in provider.pods
    assert provider.deletes == {"orphan-uid": 1}
    await harness.wait_phase("kept", "Running")
    assert provider.create_calls.get(kept_uid) is None  # adopted, not created


@pytest.mark.kubeapi(controllers=False)
async def test_status_is_patched_only_when_it_changed(harness: Harness) -> None:
    vnode = await harness.start()
    await harness.create_pod("steady", annotations={"test.vnode.dev/script": "run=forever"})
    await harness.wait_phase("steady", "Running")
    await until(lambda: harness.phases("steady")[-1:] == ["Running"])
    # What the API server holds is exactly what the provider reports (for its keys).
    pod = await harness.get_pod("steady")
    assert pod is not None
    reported = normalise(await vnode.provider.pod_status(pod))  # type: ignore[arg-type]
    stored = normalise(pod["status"])
    assert {k: stored.get(k) for k in reported} == reported
    writes = harness.write_count("steady")
    patches = vnode.controller.status_patches
    calls = vnode.provider.status_calls
    await until(lambda: vnode.provider.status_calls >= calls + 10, what="ten more status polls")
    assert harness.write_count("steady") == writes
    assert vnode.controller.status_patches == patches
    # Pending then Running: two status writes in all (nothing for polls that changed nothing).
    assert patches == 2


@pytest.mark.kubeapi(controllers=False)
async def test_a_terminal_phase_never_regresses(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod("finished")
    uid = created["metadata"]["uid"]
    await harness.wait_phase("finished", "Succeeded")
    writes = harness.write_count("finished")
    vnode.provider.set_status(uid, {"phase": "Running"})  # the backend gets confused
    calls = vnode.provider.status_calls
    await harness.create_pod("other")  # keeps polls going so we can see time pass
    await harness.wait_phase("other", "Succeeded")
    await until(lambda: vnode.provider.status_calls >= calls + 3)
    assert await harness.phase("finished") == "Succeeded"
    assert harness.write_count("finished") == writes


@pytest.mark.kubeapi(controllers=False)
async def test_a_lost_backend_pod_fails_with_the_providers_reason(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod("lost", annotations={"test.vnode.dev/script": "run=forever"})
    uid = created["metadata"]["uid"]
    await harness.wait_phase("lost", "Running")
    vnode.provider.set_status(
        uid, {"phase": "Failed", "reason": "VMLost", "message": "the VM vanished"}
    )
    failed = await harness.wait_phase("lost", "Failed")
    assert failed["status"]["reason"] == "VMLost"
    await async_wait_for(lambda: _has(harness, "lost", {"VMLost"}))


@pytest.mark.kubeapi(controllers=False)
async def test_provider_pushes_refresh_status_without_waiting_for_a_poll(
    harness: Harness,
) -> None:
    provider = FakeProvider(state_file=harness.state_file, pending=0.2, run=0.5, push=True)
    vnode = await harness.start(provider)
    assert getattr(provider, "pushes_status", False)
    await harness.create_pod("pushed")
    await harness.wait_phase("pushed", "Succeeded")
    assert harness.phases("pushed")[-2:] == ["Running", "Succeeded"]
    assert vnode.controller.status_patches >= 2


@pytest.mark.kubeapi(controllers=False)
async def test_a_pod_recreated_under_the_same_name_replaces_the_old_one(
    harness: Harness,
) -> None:
    vnode = await harness.start()
    forever = {"test.vnode.dev/script": "run=forever"}
    old = await harness.create_pod("same", annotations=forever)
    await harness.wait_phase("same", "Running")
    await harness.delete_pod("same", grace=0)
    new = await harness.create_pod("same", annotations=forever)
    await harness.wait_phase("same", "Running")
    old_uid, new_uid = old["metadata"]["uid"], new["metadata"]["uid"]
    await until(lambda: old_uid in vnode.provider.deletes)
    assert set(vnode.provider.pods) == {new_uid}
    assert vnode.controller.tracked() == {"default/same": new_uid}


@pytest.mark.kubeapi(controllers=True)
async def test_the_scheduler_binds_a_tolerating_pod_to_a_ready_node_and_it_runs(
    harness: Harness,
) -> None:
    await request_json(
        harness.client,
        "POST",
        "/api/v1/nodes",
        body={
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"type": "virtual-kubelet"}},
            "spec": {
                "taints": [
                    {"key": "virtual-kubelet.io/provider", "value": "gce", "effect": "NoSchedule"}
                ]
            },
        },
    )
    await request_json(
        harness.client,
        "PATCH",
        f"/api/v1/nodes/{NODE}/status",
        content_type="application/strategic-merge-patch+json",
        body={
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "capacity": {"cpu": "100", "memory": "100Gi", "pods": "100"},
                "allocatable": {"cpu": "100", "memory": "100Gi", "pods": "100"},
            }
        },
    )
    vnode = await harness.start()
    created = await harness.create_pod("scheduled", node=None, tolerate=True)
    await harness.wait_phase("scheduled", "Succeeded", within=30)
    assert vnode.provider.creates == {created["metadata"]["uid"]: 1}


async def _gone(harness: Harness, name: str) -> bool:
    return await harness.get_pod(name) is None


@pytest.mark.kubeapi(controllers=False)
async def test_kubectl_describe_shows_vnodes_events(harness: Harness) -> None:
    await harness.start()
    await harness.create_pod("described")
    await harness.wait_phase("described", "Succeeded")
    await async_wait_for(lambda: _has(harness, "described", {"Creating", "Started"}))
    kubectl = await asyncio.create_subprocess_exec(
        "kubectl", "describe", "pod", "described",
        env=harness.kubeapi.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(kubectl.communicate(), 60)
    text = out.decode()
    assert kubectl.returncode == 0, text
    events = text.split("Events:", 1)[1]
    rows = [line.split() for line in events.splitlines() if line.strip().startswith("Normal")]
    assert ["Normal", "Creating"] in [r[:2] for r in rows]
    started = next(r for r in rows if r[1] == "Started")
    assert "vnode" in started  # the From column
    assert "Started container main" in events


@pytest.mark.kubeapi(controllers=False)
async def test_label_changes_reach_the_provider_as_updates(harness: Harness) -> None:
    vnode = await harness.start()
    await harness.create_pod("labelled", annotations={"test.vnode.dev/script": "run=forever"})
    await harness.wait_phase("labelled", "Running")
    assert vnode.provider.update_calls == 0
    await request_json(
        harness.client,
        "PATCH",
        "/api/v1/namespaces/default/pods/labelled",
        body={"metadata": {"labels": {"tier": "batch"}}},
        content_type="application/merge-patch+json",
    )
    await until(lambda: vnode.provider.update_calls == 1, what="update_pod called")
    calls = vnode.provider.status_calls
    await until(lambda: vnode.provider.status_calls >= calls + 5)
    assert vnode.provider.update_calls == 1  # once per change, not once per poll


@pytest.mark.kubeapi(controllers=False)
async def test_a_pod_without_room_fails_with_quota_exceeded(harness: Harness) -> None:
    vnode = await harness.start()
    created = await harness.create_pod(
        "too-big", annotations={"test.vnode.dev/quota": "no c4-standard-4 left in the zone"}
    )
    failed = await harness.wait_phase("too-big", "Failed")
    assert failed["status"]["reason"] == "QuotaExceeded"
    assert failed["status"]["message"] == "no c4-standard-4 left in the zone"
    await async_wait_for(lambda: _has(harness, "too-big", {"QuotaExceeded"}))
    assert vnode.provider.create_calls[created["metadata"]["uid"]] == 1


@pytest.mark.kubeapi(controllers=False)
async def test_active_deadline_stops_the_pod_and_fails_it(harness: Harness) -> None:
    vnode = await harness.start()
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "deadline", "annotations": {"test.vnode.dev/script": "run=forever"}},
        "spec": {
            "nodeName": NODE,
            "activeDeadlineSeconds": 1,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "1d"]}],
        },
    }
    created = await request_json(
        harness.client, "POST", "/api/v1/namespaces/default/pods", body=body
    )
    uid = created["metadata"]["uid"]
    failed = await harness.wait_phase("deadline", "Failed")
    assert failed["status"]["reason"] == "DeadlineExceeded"
    assert failed["status"]["message"] == (
        "Pod was active on the node longer than the specified deadline"
    )
    assert vnode.provider.deletes.get(uid) == 1
    assert uid not in vnode.provider.pods
    await async_wait_for(lambda: _has(harness, "deadline", {"DeadlineExceeded"}))
    # Deleting it afterwards does not stop it again; the object simply goes.
    await harness.delete_pod("deadline")
    await async_wait_for(lambda: _gone(harness, "deadline"))
    assert vnode.provider.deletes.get(uid) == 1
