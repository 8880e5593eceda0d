"""The reader's pure parts: which container instance the kubelet would show, the
kubelet's refusals, line formatting, the since bound, the byte budget, resuming."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.sandbox.logging_harness import pod
from vnode.errors import NotFound
from vnode.gce.logs import (
    ByteBudget,
    ContainerLogsUnavailable,
    Line,
    LiveTracker,
    ResumePoint,
    Skipper,
    format_line,
    select_instance,
    since_ns,
)
from vnode.provider import LogOptions

FIN = "2026-11-23T16:00:05Z"


def terminated(code: int = 0) -> dict[str, Any]:
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": FIN}


def test_running_container_is_its_restart_count() -> None:
    chosen = select_instance(pod(restarts=2, last=terminated(1)), "main", previous=False)
    assert (chosen.restart_count, chosen.running) == (2, True)
    prev = select_instance(pod(restarts=2, last=terminated(1)), "main", previous=True)
    assert (prev.restart_count, prev.running) == (1, False)


def test_crash_loop_back_off_shows_the_last_exited_run_both_ways() -> None:
    # restartCount 1 waiting in CrashLoopBackOff: runs 0 and 1 happened; 1 ended last.
    p = pod(
        restarts=1,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last=terminated(1),
    )
    assert select_instance(p, "main", previous=False).restart_count == 1
    assert select_instance(p, "main", previous=True).restart_count == 1


def test_terminated_container_is_read_whole() -> None:
    p = pod(state={"terminated": terminated(0)})
    chosen = select_instance(p, "main", previous=False)
    assert chosen.restart_count == 0 and not chosen.running
    assert chosen.finished_at == dt.datetime(2026, 11, 23, 16, 0, 5, tzinfo=dt.UTC)


def test_previous_without_an_earlier_run_is_the_kubelets_400() -> None:
    with pytest.raises(ContainerLogsUnavailable) as info:
        select_instance(pod(), "main", previous=True)
    assert info.value.http_status == 400
    assert info.value.message == 'previous terminated container "main" in pod "job" not found'
    assert isinstance(info.value, NotFound)


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("PodInitializing", "PodInitializing"),
        ("ContainerCreating", "ContainerCreating"),
        ("CreateContainerConfigError", "CreateContainerConfigError"),
        ("ErrImagePull", "image can't be pulled"),
        ("ImagePullBackOff", "trying and failing to pull image"),
    ],
)
def test_waiting_container_is_the_kubelets_400(reason: str, text: str) -> None:
    p = pod(state={"waiting": {"reason": reason}})
    with pytest.raises(ContainerLogsUnavailable) as info:
        select_instance(p, "main", previous=False)
    assert info.value.http_status == 400
    assert info.value.message == f'container "main" in pod "job" is waiting to start: {text}'


def test_container_without_status() -> None:
    p = pod()
    with pytest.raises(ContainerLogsUnavailable, match='container "side" in pod "job" is not'):
        select_instance(p, "side", previous=False)
    p["status"]["containerStatuses"][0]["state"] = {}
    with pytest.raises(ContainerLogsUnavailable, match="is waiting to start - no logs yet"):
        select_instance(p, "main", previous=False)


def test_init_container_statuses_count() -> None:
    p = pod()
    p["status"]["initContainerStatuses"] = [
        {"name": "init", "restartCount": 0, "state": {"terminated": terminated(0)}}
    ]
    assert select_instance(p, "init", previous=False).restart_count == 0


def test_format_line_matches_the_kubelet() -> None:
    line = Line(1_795_464_128_835_003_265, "id", "tick 8")
    assert format_line(line, timestamps=False) == b"tick 8\n"
    assert format_line(line, timestamps=True) == b"2026-11-23T20:02:08.835003265Z tick 8\n"
    # Trailing zeros are kept: always nine digits.
    line = Line(1_795_464_124_819_373_760, "id", "x")
    assert format_line(line, timestamps=True).startswith(b"2026-11-23T20:02:04.819373760Z ")
    assert format_line(Line(0, "i", "ünï"), timestamps=False) == "ünï\n".encode()


def test_since_bounds() -> None:
    now = dt.datetime(2026, 11, 23, 20, 0, 0, 250_000, tzinfo=dt.UTC)
    assert since_ns(LogOptions("c"), now) is None
    seconds = int(dt.datetime(2026, 11, 23, 20, tzinfo=dt.UTC).timestamp())
    assert since_ns(LogOptions("c", since_seconds=5), now) == (seconds - 5) * 10**9 + 250_000_000
    at = dt.datetime(2026, 11, 23, 19, 0, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    assert since_ns(LogOptions("c", since_time=at), now) == seconds * 10**9


def test_byte_budget_cuts_inside_a_line() -> None:
    budget = ByteBudget(7)
    assert budget.take(b"hello\n") == b"hello\n" and not budget.spent
    assert budget.take(b"bye\n") == b"b" and budget.spent
    assert budget.take(b"more") == b""
    unlimited = ByteBudget(None)
    assert unlimited.take(b"x" * 100) == b"x" * 100 and not unlimited.spent


def test_skipper_resumes_after_lines_sharing_a_timestamp() -> None:
    skip = Skipper(ResumePoint(100, lines_at_timestamp=2), remember_from_ns=0)
    lines = [Line(99, "a", ""), Line(100, "b", ""), Line(100, "c", ""), Line(100, "d", "")]
    assert [x.insert_id for x in lines if skip.admit(x)] == ["d"]
    # Repeats (by insert ID) are dropped; lines before the memory bound are not tracked.
    assert not skip.admit(Line(100, "d", ""))
    assert skip.admit(Line(101, "e", ""))
    # A long follow forgets IDs older than any catch-up can return.
    skip.forget_before(101)
    assert set(skip.sent) == {"e"}
    assert not skip.admit(Line(101, "e", ""))


def test_live_tracker_strips_prefixes_and_knows_where_it_got_to() -> None:
    tracker = LiveTracker(timestamps=False)
    stream = (
        b"2026-11-23T20:02:08.835003265Z one\n2026-11-23T20:02:08.8350032"
        b"65Z two\n2026-11-23T20:02:09.000000000Z thr"
    )
    assert tracker.feed(stream[:40]) == b"one\n"
    assert tracker.resume_point == ResumePoint(1_795_464_128_835_003_265, 1)
    assert tracker.feed(stream[40:]) == b"two\n"
    assert tracker.resume_point == ResumePoint(1_795_464_128_835_003_265, 2)  # same instant
    assert tracker.end() == b"thr"  # the last line, without a newline
    assert tracker.resume_point == ResumePoint(1_795_464_129_000_000_000, 1)
    assert tracker.forwarded == len(b"one\ntwo\nthr")


def test_live_tracker_keeps_prefixes_when_asked_and_passes_other_text() -> None:
    tracker = LiveTracker(timestamps=True)
    line = b"2026-11-23T20:02:08.835003265Z one\n"
    assert tracker.feed(line + b"unable to retrieve container logs\n") == (
        line + b"unable to retrieve container logs\n"
    )
    assert tracker.resume_point == ResumePoint(1_795_464_128_835_003_265, 1)
    live = LiveTracker.live_options(LogOptions("c", limit_bytes=5, follow=True))
    assert (live.timestamps, live.limit_bytes, live.follow) == (True, None, True)


def test_parse_timestamp_ns_inverts_the_format() -> None:
    from vnode.gce.logfilter import parse_timestamp_ns, timestamp_ns

    ns = 1_795_464_124_819_373_760
    assert parse_timestamp_ns(timestamp_ns(ns)) == ns
    assert parse_timestamp_ns("2026-11-23T20:02:04.81937376Z") == ns  # trimmed zeros
    assert parse_timestamp_ns("2026-11-23T21:02:04.81937376+01:00") == ns
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp_ns("yesterday")
