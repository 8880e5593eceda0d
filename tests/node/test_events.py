"""EventRecorder against the sandbox API server: client-go's Event shape and counting."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI, reference
from tests.waiting import async_wait_for
from vnode.clock import FakeClock
from vnode.node.cluster import ApiClusterReader, request_json
from vnode.node.events import EventRecorder

pytestmark = pytest.mark.kubeapi(controllers=False)

POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {
        "name": "web",
        "namespace": "default",
        "uid": "891bdee1-7fbb-4ba6-aca0-cc9ada3ea707",
        "resourceVersion": "472",
    },
    "spec": {"containers": [{"name": "main", "image": "busybox"}]},
}


@pytest.fixture
async def aclient(kubeapi: RunningKubeAPI) -> AsyncIterator[Any]:
    from kubernetes.aio import config

    client = await config.new_client_from_config(config_file=str(kubeapi.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def recorder(aclient: Any) -> AsyncIterator[EventRecorder]:
    rec = EventRecorder(
        aclient, "vnode-test", FakeClock(dt.datetime(2026, 11, 23, 20, 13, 4, tzinfo=dt.UTC))
    )
    task = asyncio.create_task(rec.run(), name="events")
    try:
        yield rec
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def aclock_recorder(aclient: Any) -> AsyncIterator[tuple[EventRecorder, FakeClock]]:
    clock = FakeClock(dt.datetime(2026, 11, 23, 20, 13, 4, tzinfo=dt.UTC))
    rec = EventRecorder(aclient, "vnode-test", clock)
    task = asyncio.create_task(rec.run(), name="events")
    try:
        yield rec, clock
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def events(aclient: Any, namespace: str = "default") -> list[dict[str, Any]]:
    listed = await request_json(aclient, "GET", f"/api/v1/namespaces/{namespace}/events")
    return list(listed["items"])


async def sent(rec: EventRecorder) -> bool:
    return rec.pending == 0


async def test_event_has_the_shape_client_go_gives_it(
    aclient: Any, recorder: EventRecorder
) -> None:
    recorder(POD, "Normal", "Started", "Started container main", field_path="spec.containers{main}")
    await async_wait_for(lambda: sent(recorder), what="event sent")
    (event,) = await events(aclient)
    ref = reference("10-events/01-corev1-create.json")["request"]["body"]
    assert set(event) - {"eventTime"} >= set(ref)
    assert event["involvedObject"] == {
        **POD["metadata"],
        "kind": "Pod",
        "apiVersion": "v1",
        "fieldPath": "spec.containers{main}",
    }
    name, _, nano = event["metadata"]["name"].partition(".")
    assert name == "web"
    assert (
        int(nano, 16)
        == int(dt.datetime(2026, 11, 23, 20, 13, 4, tzinfo=dt.UTC).timestamp()) * 10**9
    )
    assert event["source"] == {"component": "vnode", "host": "vnode-test"}
    assert event["reportingComponent"] == "vnode"
    assert event["reportingInstance"] == "vnode-test"
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-11-23T20:13:04Z"
    assert event["count"] == 1
    assert (event["type"], event["reason"], event["message"]) == (
        "Normal",
        "Started",
        "Started container main",
    )
    assert recorder.sent == 1


async def test_an_identical_repeat_patches_the_count(aclient: Any, aclock_recorder: Any) -> None:
    rec, clock = aclock_recorder
    rec(POD, "Warning", "ProviderRetry", "backend busy")
    await async_wait_for(lambda: sent(rec))
    await clock.advance(5)
    rec(POD, "Warning", "ProviderRetry", "backend busy")
    rec(POD, "Warning", "ProviderRetry", "backend busy")
    rec(POD, "Warning", "ProviderRetry", "something else")
    await async_wait_for(lambda: sent(rec))
    found = sorted(await events(aclient), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in found] == [
        ("backend busy", 3),
        ("something else", 1),
    ]
    busy = found[0]
    assert busy["firstTimestamp"] == "2026-11-23T20:13:04Z"
    assert busy["lastTimestamp"] == "2026-11-23T20:13:09Z"


async def test_a_repeat_after_the_window_is_a_new_event(aclient: Any, aclock_recorder: Any) -> None:
    rec, clock = aclock_recorder
    rec(POD, "Normal", "Killing", "Stopping pod")
    await async_wait_for(lambda: sent(rec))
    await clock.advance(601)
    rec(POD, "Normal", "Killing", "Stopping pod")
    await async_wait_for(lambda: sent(rec))
    assert sorted(e["count"] for e in await events(aclient)) == [1, 1]


async def test_a_repeat_of_a_deleted_event_is_written_again(
    aclient: Any, aclock_recorder: Any
) -> None:
    rec, _ = aclock_recorder
    rec(POD, "Normal", "Pulled", "same")
    await async_wait_for(lambda: sent(rec))
    (first,) = await events(aclient)
    await request_json(
        aclient, "DELETE", f"/api/v1/namespaces/default/events/{first['metadata']['name']}"
    )
    rec(POD, "Normal", "Pulled", "same")
    await async_wait_for(lambda: sent(rec))
    (again,) = await events(aclient)
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["count"] == 2


async def test_node_events_go_to_the_default_namespace(
    aclient: Any, recorder: EventRecorder
) -> None:
    node = {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": "vnode-test", "uid": "vnode-test"},
    }
    recorder(node, "Normal", "NodeReady", "Node vnode-test status is now: NodeReady")
    await async_wait_for(lambda: sent(recorder))
    (event,) = await events(aclient)
    assert event["metadata"]["namespace"] == "default"
    assert event["involvedObject"]["kind"] == "Node"
    assert not event["involvedObject"].get("namespace")


async def test_a_full_buffer_drops_and_logs_without_blocking(
    aclient: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rec = EventRecorder(aclient, "vnode-test", FakeClock(), buffer_size=3)
    with caplog.at_level(logging.WARNING, logger="vnode.node.events"):
        for i in range(10):
            rec(POD, "Normal", "Started", f"message {i}")  # nothing sends yet
    assert rec.pending == 3
    assert rec.dropped == 7
    assert any("event buffer full" in r.getMessage() for r in caplog.records)
    await rec.flush(10)
    assert sorted(e["message"] for e in await events(aclient)) == [
        "message 0",
        "message 1",
        "message 2",
    ]


async def test_an_event_the_server_refuses_is_dropped_not_retried_forever(
    aclient: Any, recorder: EventRecorder
) -> None:
    bad = {"metadata": {"name": "x", "namespace": "no-such-namespace", "uid": "u"}}
    recorder(bad, "Normal", "Started", "into a missing namespace")
    recorder(POD, "Normal", "Started", "still delivered")
    await async_wait_for(lambda: sent(recorder))
    assert recorder.failed == 1
    assert [e["message"] for e in await events(aclient)] == ["still delivered"]


async def test_cluster_reader_reads_config_maps_secrets_and_tokens(aclient: Any) -> None:
    reader = ApiClusterReader(aclient)
    assert await reader.get_config_map("default", "missing") is None
    assert await reader.get_secret("default", "missing") is None
    await request_json(
        aclient,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        body={"metadata": {"name": "cfg"}, "data": {"k": "v"}},
    )
    await request_json(
        aclient,
        "POST",
        "/api/v1/namespaces/default/secrets",
        body={"metadata": {"name": "sec"}, "stringData": {"k": "v"}},
    )
    cm = await reader.get_config_map("default", "cfg")
    assert cm is not None and cm["data"] == {"k": "v"}
    secret = await reader.get_secret("default", "sec")
    assert secret is not None and secret["data"] == {"k": "dg=="}
    token = await reader.request_token(
        "default", "default", audiences=["vnode-test"], expiration_seconds=3600
    )
    assert token.count(".") == 2


async def test_a_transient_api_error_is_retried_then_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vnode.node import events as events_module
    from vnode.node.cluster import ApiError

    calls: list[str] = []
    answers: list[Exception | None] = [ApiError(503, "busy"), None, *[ApiError(500, "x")] * 3]

    async def fake_request_json(api: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        calls.append(kw["body"]["message"])
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return {}

    monkeypatch.setattr(events_module, "request_json", fake_request_json)
    clock = FakeClock()
    rec = EventRecorder(None, "vnode-test", clock)
    rec(POD, "Normal", "Started", "first")
    rec(POD, "Normal", "Started", "second")
    task = asyncio.create_task(rec.run())
    try:

        async def settled() -> bool:
            await clock.advance(1.0)
            return rec.pending == 0

        await async_wait_for(settled, what="both events handled")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert calls == ["first", "first", "second", "second", "second"]
    assert (rec.sent, rec.failed) == (1, 1)


async def test_many_different_messages_for_one_reason_are_combined(
    aclient: Any, recorder: EventRecorder
) -> None:
    for i in range(1, 13):
        recorder(POD, "Warning", "FailedCreate", f"attempt {i} failed")
    await async_wait_for(lambda: sent(recorder))
    found = {e["message"]: e["count"] for e in await events(aclient)}
    assert found == {
        **{f"attempt {i} failed": 1 for i in range(1, 10)},
        "(combined from similar events): attempt 12 failed": 3,
    }
