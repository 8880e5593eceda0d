"""Kubelet log-query decoding: every refusal with the status and body a real kubelet sends."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.refdata import REFERENCE
from vnode.node.logopts import (
    DECODE_ERROR_BODY,
    INVALID_BODY,
    LogQuery,
    LogQueryError,
    parse_query,
)
from vnode.provider import LogOptions

KUBELET_LOGS = REFERENCE / "kubelet/logs"


def q(text: str) -> LogQuery:
    return parse_query(parse_qsl(text, keep_blank_values=True))


def refused(text: str) -> LogQueryError:
    with pytest.raises(LogQueryError) as info:
        q(text)
    return info.value


def test_no_parameters_mean_the_whole_log() -> None:
    assert q("").options("main") == LogOptions(container="main")


def test_every_option_decoded() -> None:
    opts = q(
        "follow=true&previous=1&timestamps=TRUE&tailLines=3&limitBytes=100&sinceSeconds=300"
    ).options("c")
    assert opts == LogOptions(
        container="c",
        follow=True,
        previous=True,
        timestamps=True,
        tail_lines=3,
        limit_bytes=100,
        since_seconds=300,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("", True), ("yes", True), ("0", False), ("false", False), ("FALSE", False)],
)
def test_booleans_as_apimachinery_converts_them(value: str, expected: bool) -> None:
    # Only "0" and "false" (any case) are false; even an empty value is true.
    assert q(f"follow={value}").follow is expected


def test_absent_boolean_is_false() -> None:
    assert q("timestamps=true").follow is False


def test_first_value_wins() -> None:
    assert q("tailLines=2&tailLines=5").tail_lines == 2


def test_legacy_tail_overrides_tail_lines() -> None:
    assert q("tailLines=5&tail=2").tail_lines == 2
    assert q("tailLines=5&tail=all").tail_lines is None
    assert q("tailLines=5&tail=").tail_lines == 5  # an empty tail is ignored
    assert refused("tail=x").http_status == 400


def test_since_time_rfc3339() -> None:
    opts = q("sinceTime=2026-01-01T00%3A00%3A00Z").options("c")
    assert opts.since_time == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    opts = q("sinceTime=2026-01-01T02:30:00.123456789%2B02:00").options("c")
    assert opts.since_time == dt.datetime(2026, 1, 1, 0, 30, 0, 123456, tzinfo=dt.UTC)


def test_empty_since_time_is_the_zero_time_and_bounds_nothing() -> None:
    query = q("sinceTime=")
    assert query.since_time is not None  # present: it still conflicts with sinceSeconds
    assert query.options("c").since_time is None
    assert q("sinceTime=null").options("c").since_time is None


@pytest.mark.parametrize(
    "text",
    [
        "tailLines=abc",
        "tailLines=",
        "tailLines=1.5",
        "tailLines=%201",
        "tailLines=1_0",
        "tailLines=99999999999999999999",
        "limitBytes=ten",
        "sinceSeconds=5s",
        "sinceTime=yesterday",
        "sinceTime=2026-01-01",
        "sinceTime=2026-01-01 00:00:00Z",
        "sinceTime=2026-13-01T00:00:00Z",
        "sinceTime=2026-01-01T00:00:00",
    ],
)
def test_undecodable_values_are_400(text: str) -> None:
    err = refused(text)
    assert (err.http_status, err.message) == (400, DECODE_ERROR_BODY)


@pytest.mark.parametrize(
    "text",
    [
        "tailLines=-1",
        "limitBytes=0",
        "limitBytes=-5",
        "sinceSeconds=0",
        "sinceSeconds=-1",
        "sinceSeconds=10&sinceTime=2026-01-01T00:00:00Z",
        "sinceSeconds=10&sinceTime=",
        "stream=",
        "stream=Both",
        "stream=Stdout&tailLines=1",
    ],
)
def test_invalid_options_are_422(text: str) -> None:
    err = refused(text)
    assert (err.http_status, err.message) == (422, INVALID_BODY)


def test_zero_tail_lines_is_valid() -> None:
    assert q("tailLines=0").tail_lines == 0


def test_split_streams_refused_after_the_pod_is_found() -> None:
    query = q("stream=Stdout")  # valid as an option ...
    with pytest.raises(LogQueryError) as info:
        query.options("c")  # ... but the feature gate is off in v1.33
    assert info.value.http_status == 400
    assert info.value.message == (
        'unable to return the given log stream: "Stdout". '
        "Please enable PodLogsQuerySplitStreams feature gate in kubelet"
    )
    assert q("stream=All").options("c").container == "c"


def _captured_errors() -> list[tuple[str, int, str]]:
    path = KUBELET_LOGS / "errors.json"
    out = []
    for e in json.loads(path.read_text())["exchanges"]:
        query = urlsplit(e["request"]["url"]).query
        if query:  # the query refusals (the others are pod/container lookups)
            out.append((query, e["response"]["status"], e["response"]["body"]))
    return out


def test_refusals_match_the_captured_kubelet() -> None:
    cases = _captured_errors()
    assert cases, "the recording holds query refusals"
    for query, status, body in cases:
        err = refused(query)
        assert (err.http_status, err.message) == (status, body), query
