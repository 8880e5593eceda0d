"""The Cloud Logging reader against the emulator, through the real async gRPC client:
what ``/containerLogs`` options give, how much of the log is read, and follow."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.sandbox.logging_harness import (
    BASE_NS,
    PROJECT,
    emulator,
    pod,
    until,
    write_lines,
)
from vnode.clock import FakeClock
from vnode.errors import Retryable
from vnode.gce.logs import (
    CloudLogs,
    CloudLogsConfig,
    ContainerLogsUnavailable,
    LogReadError,
    ResumePoint,
)
from vnode.provider import LogOptions
from vnode.sandbox.logging import LoggingEmulator

__all__ = ["emulator"]  # the fixture, re-exported for pytest

SEC = 1_000_000_000


def now_ns() -> int:
    """Lines of a follow carry real times: its catch-up lists look back from now."""
    return time.time_ns()


def config(em: LoggingEmulator, **kw: Any) -> CloudLogsConfig:
    base: dict[str, Any] = {
        "project": PROJECT,
        "endpoint": em.endpoint,
        "call_timeout": 10.0,
        "tail_buffer_window": 0.0,
        "poll_interval": 0.05,
        "drain_quiet": 0.5,
        "drain_max": 10.0,
        "retry_max_seconds": 10.0,
    }
    base.update(kw)
    return CloudLogsConfig(**base)


@pytest.fixture
async def reader(emulator: LoggingEmulator) -> AsyncIterator[CloudLogs]:
    r = CloudLogs(config(emulator))
    try:
        yield r
    finally:
        await r.close()


async def read(reader: CloudLogs, p: dict[str, Any], **options: Any) -> bytes:
    opts = LogOptions(options.pop("container", "main"), **options)
    return b"".join([chunk async for chunk in reader.read_logs(p, opts)])  # type: ignore[arg-type]


async def test_whole_log_of_one_instance_in_order(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, ["hello", "bye"])
    write_lines(emulator, ["side"], container="side", start_ns=BASE_NS + 1)
    write_lines(emulator, ["old run"], restart=1, start_ns=BASE_NS + 2)
    write_lines(emulator, ["other pod"], uid="another", start_ns=BASE_NS + 3)
    assert await read(reader, pod()) == b"hello\nbye\n"
    assert await read(reader, pod(restarts=1)) == b"old run\n"


async def test_many_pages(emulator: LoggingEmulator, reader: CloudLogs) -> None:
    texts = [f"line {i}" for i in range(2500)]
    write_lines(emulator, texts)
    assert await read(reader, pod()) == "".join(t + "\n" for t in texts).encode()
    assert emulator.counters.list_calls == 3


async def test_tail_of_100000_lines_reads_only_the_tail(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, [f"line {i}" for i in range(100_000)])
    assert await read(reader, pod(), tail_lines=3) == b"line 99997\nline 99998\nline 99999\n"
    assert emulator.counters.listed == 3
    assert emulator.counters.list_calls == 1
    out = await read(reader, pod(), tail_lines=2500)
    lines = out.decode().splitlines()
    assert lines[0] == "line 97500" and lines[-1] == "line 99999" and len(lines) == 2500
    assert emulator.counters.listed == 3 + 2500


async def test_tail_zero_and_tail_beyond_the_log(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, ["a", "b"])
    assert await read(reader, pod(), tail_lines=0) == b""
    assert await read(reader, pod(), tail_lines=10) == b"a\nb\n"


async def test_tail_survives_short_pages(emulator: LoggingEmulator, reader: CloudLogs) -> None:
    write_lines(emulator, [f"l{i}" for i in range(10)])
    write_lines(emulator, [f"s{i}" for i in range(30)], container="side", start_ns=BASE_NS + SEC)
    emulator.scan_limit = 4
    assert await read(reader, pod(), tail_lines=2) == b"l8\nl9\n"


async def test_timestamps_with_nine_digits(emulator: LoggingEmulator, reader: CloudLogs) -> None:
    write_lines(emulator, ["tick 8"], start_ns=1_795_464_128_835_003_265)
    write_lines(emulator, ["x"], start_ns=1_795_464_124_819_373_760)
    assert await read(reader, pod(), timestamps=True) == (
        b"2026-11-23T20:02:04.819373760Z x\n2026-11-23T20:02:08.835003265Z tick 8\n"
    )


async def test_limit_bytes_cuts_and_stops_reading(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, ["hello", "bye"])
    assert await read(reader, pod(), limit_bytes=7) == b"hello\nb"
    assert await read(reader, pod(), limit_bytes=10) == b"hello\nbye\n"
    write_lines(emulator, [f"more {i}" for i in range(3000)], start_ns=BASE_NS + SEC)
    before = emulator.counters.list_calls
    assert len(await read(reader, pod(), limit_bytes=20)) == 20
    assert emulator.counters.list_calls == before + 1  # the rest was never listed
    # The budget counts the timestamp prefixes, as the kubelet's does.
    out = await read(reader, pod(), tail_lines=3, timestamps=True, limit_bytes=45)
    assert out == b"2026-11-23T16:00:03.997000000Z more 2997\n2026"


async def test_since_time_and_since_seconds(emulator: LoggingEmulator) -> None:
    stamps = write_lines(emulator, ["t0", "t1", "t2", "t3"], step_ns=SEC)
    clock = FakeClock(dt.datetime(2026, 11, 23, 16, 0, 4, tzinfo=dt.UTC))
    reader = CloudLogs(config(emulator), clock=clock)
    try:
        at = dt.datetime(2026, 11, 23, 16, 0, 2, tzinfo=dt.UTC)
        assert stamps[2] == int(at.timestamp()) * SEC
        assert await read(reader, pod(), since_time=at) == b"t2\nt3\n"  # inclusive
        assert await read(reader, pod(), since_seconds=3) == b"t1\nt2\nt3\n"
        assert await read(reader, pod(), since_seconds=1) == b"t3\n"
        await clock.advance(0.5)
        assert await read(reader, pod(), since_seconds=1) == b""
        assert await read(reader, pod(), since_seconds=3, tail_lines=1) == b"t3\n"
    finally:
        await reader.close()


async def test_previous_reads_the_prior_instance(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, ["attempt 0"], restart=0)
    write_lines(emulator, ["attempt 1"], restart=1, start_ns=BASE_NS + SEC)
    write_lines(emulator, ["attempt 2"], restart=2, start_ns=BASE_NS + 2 * SEC)
    last = {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-23T16:00:02Z"}
    running = pod(restarts=2, last=last)
    assert await read(reader, running) == b"attempt 2\n"
    assert await read(reader, running, previous=True) == b"attempt 1\n"
    backoff = pod(restarts=1, state={"waiting": {"reason": "CrashLoopBackOff"}}, last=last)
    assert await read(reader, backoff) == b"attempt 1\n"
    assert await read(reader, backoff, previous=True) == b"attempt 1\n"


async def test_no_log_yet_is_refused_before_the_first_byte(reader: CloudLogs) -> None:
    with pytest.raises(ContainerLogsUnavailable) as info:
        await read(reader, pod(state={"waiting": {"reason": "ContainerCreating"}}))
    assert info.value.message == (
        'container "main" in pod "job" is waiting to start: ContainerCreating'
    )
    with pytest.raises(ContainerLogsUnavailable, match="previous terminated container"):
        await read(reader, pod(), previous=True)


async def test_started_container_with_no_lines_is_empty(reader: CloudLogs) -> None:
    assert await read(reader, pod()) == b""


async def test_list_retries_transient_failures(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, ["x"])
    emulator.fail_next("ListLogEntries", grpc.StatusCode.UNAVAILABLE, times=2)
    emulator.fail_next("ListLogEntries", grpc.StatusCode.RESOURCE_EXHAUSTED, times=1)
    assert await read(reader, pod()) == b"x\n"
    assert emulator.counters.by_method["ListLogEntries"] == 4


async def test_retries_are_capped(emulator: LoggingEmulator) -> None:
    reader = CloudLogs(config(emulator, attempts=3))
    try:
        emulator.fail_next("ListLogEntries", grpc.StatusCode.UNAVAILABLE, times=5)
        with pytest.raises(Retryable, match=r"entries\.list"):
            await read(reader, pod())
        assert emulator.counters.by_method["ListLogEntries"] == 3
    finally:
        await reader.close()


async def test_permanent_errors_are_not_retried(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    emulator.fail_next("ListLogEntries", grpc.StatusCode.PERMISSION_DENIED, times=1)
    with pytest.raises(LogReadError, match=r"entries\.list") as info:
        await read(reader, pod())
    assert not isinstance(info.value, Retryable)
    assert emulator.counters.by_method["ListLogEntries"] == 1


async def test_resume_after_continues_a_stream(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    stamps = write_lines(emulator, ["a", "b1", "b2", "c"], step_ns=0)  # one shared timestamp
    write_lines(emulator, ["d"], start_ns=stamps[0] + 1)
    chunks = reader.read_logs(
        pod(),  # type: ignore[arg-type]
        LogOptions("main", tail_lines=1),
        resume_after=ResumePoint(stamps[0], lines_at_timestamp=2),
    )
    assert b"".join([c async for c in chunks]) == b"b2\nc\nd\n"  # tail ignored on resume


class Finished:
    def __init__(self) -> None:
        self.value = False

    def __call__(self) -> bool:
        return self.value


async def collect(stream: AsyncIterator[bytes], out: list[bytes]) -> None:
    async for chunk in stream:
        out.append(chunk)


async def test_follow_starts_before_any_line_and_ends_when_finished(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    t0 = now_ns()
    finished = Finished()
    out: list[bytes] = []
    stream = reader.read_logs(pod(), LogOptions("main", follow=True), pod_finished=finished)  # type: ignore[arg-type]
    task = asyncio.create_task(collect(stream, out))
    await until(lambda: emulator.counters.tail_sessions, what="tail open")
    await until(lambda: emulator.counters.list_calls, what="initial list")
    write_lines(emulator, ["first"], start_ns=t0)
    await until(lambda: b"".join(out) == b"first\n", what="first line")
    emulator.ingestion_delay = 0.3  # the last lines arrive after the container ended
    write_lines(emulator, ["second", "third"], start_ns=t0 + SEC)
    finished.value = True
    await asyncio.wait_for(task, 20)
    assert b"".join(out) == b"first\nsecond\nthird\n"


async def test_follow_drops_the_overlap_of_list_tail_and_catch_up(
    emulator: LoggingEmulator,
) -> None:
    reader = CloudLogs(config(emulator, drain_quiet=3.0))  # outlives the settling list
    try:
        t0 = now_ns()
        write_lines(emulator, [f"old {i}" for i in range(5)], start_ns=t0 - SEC)
        finished = Finished()
        out: list[bytes] = []
        stream = reader.read_logs(
            pod(),  # type: ignore[arg-type]
            LogOptions("main", follow=True, tail_lines=2),
            pod_finished=finished,
        )
        task = asyncio.create_task(collect(stream, out))
        await until(lambda: b"".join(out) == b"old 3\nold 4\n", what="tail of the old lines")
        write_lines(emulator, ["new 0", "new 1"], start_ns=t0 + SEC)
        await until(lambda: b"new 1\n" in b"".join(out), what="new lines")
        finished.value = True
        await asyncio.wait_for(task, 20)
        # The catch-up list returned every line again; each went out once.
        assert b"".join(out) == b"old 3\nold 4\nnew 0\nnew 1\n"
        assert emulator.counters.listed > 4
    finally:
        await reader.close()


async def test_follow_reopens_a_failed_tail_and_catches_up(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    emulator.fail_next("TailLogEntries", grpc.StatusCode.UNAVAILABLE, times=2)
    t0 = now_ns()
    finished = Finished()
    out: list[bytes] = []
    stream = reader.read_logs(pod(), LogOptions("main", follow=True), pod_finished=finished)  # type: ignore[arg-type]
    task = asyncio.create_task(collect(stream, out))
    await until(lambda: emulator.counters.list_calls, what="initial list")
    write_lines(emulator, ["during the outage"], start_ns=t0)
    await until(lambda: emulator.counters.by_method.get("TailLogEntries", 0) >= 3, what="reopen")
    write_lines(emulator, ["after"], start_ns=t0 + SEC)
    await until(lambda: b"after\n" in b"".join(out), what="line after the reopen")
    finished.value = True
    await asyncio.wait_for(task, 20)
    assert b"".join(out) == b"during the outage\nafter\n"


async def test_follow_of_a_long_finished_container_reads_once(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    write_lines(emulator, ["done"])
    old = pod(state={"terminated": {"exitCode": 0, "finishedAt": "2026-11-23T16:00:01Z"}})
    never = Finished()  # never says finished: only the age of the run ends the read
    chunks = reader.read_logs(old, LogOptions("main", follow=True), pod_finished=never)  # type: ignore[arg-type]
    assert b"".join([c async for c in chunks]) == b"done\n"
    assert "TailLogEntries" not in emulator.counters.by_method


async def test_follow_honours_limit_bytes(emulator: LoggingEmulator, reader: CloudLogs) -> None:
    t0 = now_ns()
    write_lines(emulator, ["hello"], start_ns=t0)
    finished = Finished()
    out: list[bytes] = []
    stream = reader.read_logs(
        pod(),  # type: ignore[arg-type]
        LogOptions("main", follow=True, limit_bytes=9),
        pod_finished=finished,
    )
    task = asyncio.create_task(collect(stream, out))
    await until(lambda: out, what="first chunk")
    write_lines(emulator, ["world"], start_ns=t0 + SEC)
    await asyncio.wait_for(task, 20)  # ends on the budget, not on the pod
    assert b"".join(out) == b"hello\nwor"


async def test_follow_with_tail_zero_shows_only_new_lines(emulator: LoggingEmulator) -> None:
    reader = CloudLogs(config(emulator, drain_quiet=3.0))  # outlives the settling list
    try:
        t0 = now_ns()
        write_lines(emulator, ["old 0", "old 1"], start_ns=t0 - SEC)
        finished = Finished()
        out: list[bytes] = []
        stream = reader.read_logs(
            pod(),  # type: ignore[arg-type]
            LogOptions("main", follow=True, tail_lines=0),
            pod_finished=finished,
        )
        task = asyncio.create_task(collect(stream, out))
        await until(lambda: emulator.counters.list_calls, what="initial list")
        write_lines(emulator, ["new"], start_ns=t0 + SEC)
        await until(lambda: out, what="the new line")
        finished.value = True
        await asyncio.wait_for(task, 20)
        assert b"".join(out) == b"new\n"
        assert emulator.counters.list_calls >= 2  # the settling list ran, and added nothing
    finally:
        await reader.close()


async def test_live_stream_handed_over_to_cloud_logging_loses_and_repeats_nothing(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    t0 = now_ns()
    stamps = [t0, t0 + 1, t0 + 1, t0 + 2, t0 + 3]  # two lines share an instant
    texts = ["l0", "l1", "l2", "l3", "l4"]
    for text, ts in zip(texts, stamps, strict=True):
        write_lines(emulator, [text], start_ns=ts)
    full = b"".join(t.encode() + b"\n" for t in texts)
    # The VM's kubelet sent three lines (with timestamps, as live_options asks) and broke.
    from vnode.gce.logfilter import timestamp_ns
    from vnode.gce.logs import LiveTracker

    live = b"".join(
        timestamp_ns(ts).encode() + b" " + t.encode() + b"\n"
        for t, ts in zip(texts[:3], stamps[:3], strict=True)
    )
    tracker = LiveTracker(timestamps=False)
    sent = tracker.feed(live[:25]) + tracker.feed(live[25:])
    finished = Finished()
    finished.value = True
    rest = reader.read_logs(
        pod(),  # type: ignore[arg-type]
        LogOptions("main", follow=True),
        pod_finished=finished,
        resume_after=tracker.resume_point,
    )
    sent += b"".join([c async for c in rest])
    assert sent == full


async def test_follow_of_an_ended_run_ends_though_the_pod_runs_on(
    emulator: LoggingEmulator, reader: CloudLogs
) -> None:
    t0 = now_ns()
    write_lines(emulator, ["attempt 1"], restart=1, start_ns=t0)
    just_now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    backoff = pod(
        restarts=1,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last={"exitCode": 1, "reason": "Error", "finishedAt": just_now},
    )
    never = Finished()  # the pod keeps running: the crash loop goes on
    stream = reader.read_logs(backoff, LogOptions("main", follow=True), pod_finished=never)  # type: ignore[arg-type]
    out = await asyncio.wait_for(collect_all(stream), 20)
    assert out == b"attempt 1\n"


async def collect_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


async def test_missing_credentials_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth import exceptions as auth_exceptions

    def no_credentials(*_: Any, **__: Any) -> Any:
        raise auth_exceptions.DefaultCredentialsError("none found")

    # Looking for real credentials could reach past loopback (the metadata server).
    monkeypatch.setattr(google.auth, "default", no_credentials)
    reader = CloudLogs(CloudLogsConfig(project=PROJECT))
    with pytest.raises(LogReadError, match="no credentials"):
        await read(reader, pod())
    await reader.close()
