"""The Cloud Logging emulator through google-cloud-logging's own async client: writes,
order, paging, project scoping, ingestion delay, tail streams, faults, and the entries
a simulated VM's lines become."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.api_core import exceptions

from tests.sandbox.logging_harness import (
    BASE_NS,
    PROJECT,
    UID,
    client_for,
    emulator,
    line,
    until,
    write_lines,
)
from vnode.clock import FakeClock
from vnode.gce import bootstrap
from vnode.sandbox.logging import LoggingEmulator, fluentbit

__all__ = ["emulator"]  # the fixture, re-exported for pytest

LOG = f"projects/{PROJECT}/logs/vnode_containers"


@pytest.fixture
async def client(emulator: LoggingEmulator) -> AsyncIterator[Any]:
    c, channel = client_for(emulator.endpoint)
    try:
        yield c
    finally:
        await channel.close()


async def list_texts(client: Any, **request: Any) -> tuple[list[str], str]:
    request.setdefault("resource_names", [f"projects/{PROJECT}"])
    pager = await client.list_log_entries(request=request, timeout=10, retry=None)
    async for page in pager.pages:
        texts = [e.text_payload or (e.json_payload or {}).get("message") for e in page.entries]
        return texts, page.next_page_token
    raise AssertionError("no page")


def text_entry(text: str, ts: str, **kw: Any) -> dict[str, Any]:
    return {
        "logName": LOG,
        "resource": {"type": "gce_instance", "labels": {"zone": "z"}},
        "textPayload": text,
        "timestamp": ts,
        **kw,
    }


async def test_write_assigns_insert_id_and_receive_timestamp(
    emulator: LoggingEmulator, client: Any
) -> None:
    await client.write_log_entries(
        request={
            "log_name": LOG,
            "resource": {"type": "gce_instance", "labels": {"zone": "z"}},
            "labels": {"shared": "yes"},
            "entries": [
                {"text_payload": "one", "labels": {"own": "1"}},
                {"text_payload": "two", "insert_id": "mine", "labels": {"shared": "no"}},
            ],
        },
        timeout=10,
    )
    stored = emulator.entries()
    assert [e.text_payload for e in stored] == ["one", "two"]
    assert stored[0].insert_id and stored[1].insert_id == "mine"
    assert stored[0].HasField("receive_timestamp") and stored[0].HasField("timestamp")
    assert dict(stored[0].labels) == {"shared": "yes", "own": "1"}
    assert dict(stored[1].labels) == {"shared": "no"}  # the entry's own label wins
    assert stored[0].resource.type == "gce_instance"


async def test_write_refuses_bad_log_names(client: Any) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="Invalid log name"):
        await client.write_log_entries(
            request={
                "log_name": "logs/x",
                "resource": {"type": "global"},
                "entries": [{"text_payload": "x"}],
            },
            timeout=10,
        )


async def test_order_and_nanosecond_timestamps(emulator: LoggingEmulator, client: Any) -> None:
    emulator.write(
        [
            text_entry("b", "2026-11-23T16:00:00.000000002Z"),
            text_entry("a", "2026-11-23T16:00:00.000000001Z"),
            text_entry("c", "2026-11-23T16:00:00.000000003Z"),
            text_entry("c2", "2026-11-23T16:00:00.000000003Z"),  # a tie keeps arrival order
        ]
    )
    assert (await list_texts(client))[0] == ["a", "b", "c", "c2"]
    assert (await list_texts(client, order_by="timestamp asc"))[0] == ["a", "b", "c", "c2"]
    assert (await list_texts(client, order_by="timestamp desc"))[0] == ["c2", "c", "b", "a"]
    with pytest.raises(exceptions.InvalidArgument, match="order_by"):
        await list_texts(client, order_by="severity desc")
    pager = await client.list_log_entries(request={"resource_names": [f"projects/{PROJECT}"]})
    first = await anext(aiter(pager))
    assert first.timestamp.nanosecond == 1


async def test_paging(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, [f"l{i}" for i in range(7)])
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        texts, token = await list_texts(client, page_size=3, page_token=token)
        seen += texts
        pages += 1
        if not token:
            break
    assert seen == [f"l{i}" for i in range(7)] and pages == 3
    # Newest first, page by page.
    texts, token = await list_texts(client, page_size=2, order_by="timestamp desc")
    more, _ = await list_texts(client, page_size=2, order_by="timestamp desc", page_token=token)
    assert texts + more == ["l6", "l5", "l4", "l3"]
    # An exact last page carries no token.
    texts, token = await list_texts(client, page_size=7)
    assert len(texts) == 7 and token == ""


async def test_page_size_default_and_limits(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, [f"l{i}" for i in range(60)])
    texts, token = await list_texts(client)
    assert len(texts) == 50 and token
    texts, token = await list_texts(client, page_size=1000)
    assert len(texts) == 60 and not token
    with pytest.raises(exceptions.InvalidArgument, match="page_size"):
        await list_texts(client, page_size=1001)


async def test_page_token_belongs_to_its_query(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, ["a", "b", "c"])
    _, token = await list_texts(client, page_size=1)
    with pytest.raises(exceptions.InvalidArgument, match="page token"):
        await list_texts(client, page_size=1, page_token=token, filter="labels.x=y")
    with pytest.raises(exceptions.InvalidArgument, match="page token"):
        await list_texts(client, page_token="garbage!")


async def test_short_pages_when_the_scan_is_limited(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, [f"other{i}" for i in range(20)], container="side")
    write_lines(emulator, ["wanted"], start_ns=BASE_NS + 10**9)
    emulator.scan_limit = 5
    found: list[str] = []
    token = ""
    empty_pages = 0
    while True:
        texts, token = await list_texts(
            client, filter='labels."vnode.dev/container"="main"', page_token=token
        )
        found += texts
        empty_pages += not texts
        if not token:
            break
    assert found == ["wanted"] and empty_pages >= 3


async def test_resource_names_scope_to_projects(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, ["mine"])
    emulator.write(
        [{**text_entry("theirs", "2026-11-23T16:00:01Z"), "logName": "projects/o/logs/x"}]
    )
    assert (await list_texts(client))[0] == ["mine"]
    assert (await list_texts(client, resource_names=["projects/o"]))[0] == ["theirs"]
    both = await list_texts(client, resource_names=[f"projects/{PROJECT}", "projects/o"])
    assert both[0] == ["mine", "theirs"]
    with pytest.raises(exceptions.InvalidArgument, match="resource"):
        await list_texts(client, resource_names=[])
    with pytest.raises(exceptions.InvalidArgument, match="Invalid resource name"):
        await list_texts(client, resource_names=["folders"])


async def test_filters_apply_and_bad_ones_are_invalid_argument(
    emulator: LoggingEmulator, client: Any
) -> None:
    write_lines(emulator, ["m0", "m1"], container="main")
    write_lines(emulator, ["s0"], container="side", start_ns=BASE_NS + 5)
    texts, _ = await list_texts(
        client,
        filter=f'labels."vnode.dev/pod-uid"="{UID}" AND labels."vnode.dev/container"="side"',
    )
    assert texts == ["s0"]
    with pytest.raises(exceptions.InvalidArgument, match="Unparseable filter"):
        await list_texts(client, filter='labels."vnode.dev/container"="side')


async def test_ingestion_delay_hides_new_entries() -> None:
    clock = FakeClock()
    em = LoggingEmulator(clock=clock)
    await em.start()
    client, channel = client_for(em.endpoint)
    try:
        em.ingestion_delay = 3.0
        write_lines(em, ["early"])
        await clock.advance(2.0)
        write_lines(em, ["late"], start_ns=BASE_NS + 10**9)
        assert (await list_texts(client))[0] == []
        await clock.advance(1.0)
        assert (await list_texts(client))[0] == ["early"]
        await clock.advance(2.0)
        assert (await list_texts(client))[0] == ["early", "late"]
    finally:
        await channel.close()
        await em.stop()


async def tail(client: Any, out: list[str], request: dict[str, Any]) -> None:
    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {"resource_names": [f"projects/{PROJECT}"], **request}
        await asyncio.Event().wait()

    stream = await client.tail_log_entries(requests=requests(), timeout=60)
    async for response in stream:
        out.extend(e.json_payload["message"] for e in response.entries)


async def test_tail_streams_new_matching_entries(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, ["before"])
    got: list[str] = []
    task = asyncio.create_task(
        tail(
            client,
            got,
            {"filter": 'labels."vnode.dev/container"="main"', "buffer_window": {"seconds": 0}},
        )
    )
    try:
        await until(lambda: emulator.counters.tail_sessions, 10)
        write_lines(emulator, ["n1"], start_ns=BASE_NS + 1)
        await until(lambda: got, 10)
        write_lines(emulator, ["n2", "n3"], start_ns=BASE_NS + 2)
        write_lines(emulator, ["other"], container="side", start_ns=BASE_NS + 3)
        await until(lambda: len(got) >= 3, 10)
        assert got == ["n1", "n2", "n3"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_tail_respects_ingestion_delay_and_orders_within_the_window() -> None:
    clock = FakeClock()
    em = LoggingEmulator(clock=clock)
    await em.start()
    client, channel = client_for(em.endpoint)
    got: list[str] = []
    task = asyncio.create_task(tail(client, got, {"buffer_window": {"seconds": 1}}))
    try:
        await until(lambda: em.counters.tail_sessions, 10)
        await until(lambda: clock.sleepers, 10)  # the session is waiting
        em.ingestion_delay = 2.0
        write_lines(em, ["second"], start_ns=BASE_NS + 2)
        write_lines(em, ["first"], start_ns=BASE_NS + 1)  # late, with an older timestamp
        await clock.advance(2.5)
        # The session ran on this loop while the clock moved: it sent nothing yet.
        assert em.counters.tailed == 0 and got == []
        await clock.advance(1.0)
        await until(lambda: len(got) == 2, 10)
        assert got == ["first", "second"]
        assert em.counters.tailed == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await channel.close()
        await em.stop()


async def test_tail_refuses_bad_requests(client: Any) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="Unparseable"):
        await tail(client, [], {"filter": "("})
    with pytest.raises(exceptions.InvalidArgument, match="buffer_window"):
        await tail(client, [], {"buffer_window": {"seconds": 61}})


async def test_injected_faults(emulator: LoggingEmulator, client: Any) -> None:
    write_lines(emulator, ["x"])
    emulator.fail_next("ListLogEntries", grpc.StatusCode.UNAVAILABLE, times=2)
    for _ in range(2):
        with pytest.raises(exceptions.ServiceUnavailable, match="injected"):
            await list_texts(client)
    assert (await list_texts(client))[0] == ["x"]
    assert emulator.counters.by_method["ListLogEntries"] == 3


async def test_vm_sink_writes_what_fluent_bit_would(emulator: LoggingEmulator) -> None:
    sink = emulator.vm_sink("my_log")
    shipped = line(
        'hello "world"', BASE_NS + 123_456_789, container="c-1", restart=2, stream="stderr"
    )
    await sink(shipped)
    (entry,) = emulator.entries()
    assert entry.log_name == f"projects/{PROJECT}/logs/my_log"
    assert entry.resource.type == "gce_instance"
    assert dict(entry.resource.labels) == {
        "instance_id": "1234567890",
        "zone": "us-central1-a",
        "project_id": PROJECT,
    }
    assert entry.json_payload["message"] == 'hello "world"'
    assert (entry.timestamp.seconds, entry.timestamp.nanos) == (BASE_NS // 10**9, 123_456_789)
    expected = bootstrap.log_labels(shipped["file"], "vnode-vm-1", "stderr")
    assert expected is not None
    assert dict(entry.labels) == expected
    assert expected[bootstrap.LABEL_POD] == "job"  # the API pod's name, node suffix cut
    assert expected[bootstrap.LABEL_RESTART_COUNT] == "2"


def test_label_keys_agree_with_the_bootstrap() -> None:
    assert fluentbit.LOG_LABELS == bootstrap.LOG_LABELS
    assert fluentbit.PAYLOAD_KEY == bootstrap.PAYLOAD_KEY
    assert fluentbit.DEFAULT_LOG_NAME == bootstrap.DEFAULT_LOG_NAME
    assert fluentbit.POD_LOGS_DIR == bootstrap.POD_LOGS_DIR
    for path in (
        "/var/log/pods/ns_pod-a-vm_uid/c/0.log",
        "/var/log/pods/ns_pod-other_uid/c/0.log",
        "/var/log/pods/ns_pod-vm_uid/c/x.log",
    ):
        assert fluentbit.path_labels(path, "vm", "stdout") == (
            bootstrap.log_labels(path, "vm", "stdout") or {}
        )


async def test_stop_ends_tail_streams(client: Any) -> None:
    em = LoggingEmulator()
    await em.start()
    c, channel = client_for(em.endpoint)
    task = asyncio.create_task(tail(c, [], {}))
    try:
        await until(lambda: em.counters.tail_sessions, 10)
        await em.stop()
        with pytest.raises(exceptions.GoogleAPICallError):
            await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await channel.close()


def test_receive_timestamp_comes_from_the_clock() -> None:
    clock = FakeClock(dt.datetime(2026, 11, 23, 16, tzinfo=dt.UTC))
    em = LoggingEmulator(clock=clock)
    write_lines(em, ["x"])
    (entry,) = em.entries()
    assert entry.receive_timestamp.ToDatetime(dt.UTC) == clock.now()


async def test_dry_run_writes_nothing(emulator: LoggingEmulator, client: Any) -> None:
    request = {
        "log_name": LOG,
        "resource": {"type": "gce_instance"},
        "entries": [{"text_payload": "x"}],
        "dry_run": True,
    }
    await client.write_log_entries(request=request, timeout=10)
    assert emulator.entries() == []
    with pytest.raises(exceptions.InvalidArgument):
        await client.write_log_entries(request={**request, "log_name": "bad"}, timeout=10)


async def test_writes_from_another_thread_reach_tails(
    emulator: LoggingEmulator, client: Any
) -> None:
    got: list[str] = []
    task = asyncio.create_task(tail(client, got, {"buffer_window": {"seconds": 0}}))
    try:
        await until(lambda: emulator.counters.tail_sessions, 10)
        await asyncio.to_thread(write_lines, emulator, ["from a thread"])
        await until(lambda: got, 10)
        assert got == ["from a thread"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
