"""Filters for one container's lines: values quoted and escaped, keys quoted, bounds exact.

Each built filter is also run through the emulator's parser, which implements the
query language, to prove that a hostile value stays one string literal.
"""

from __future__ import annotations

import pytest

from vnode.gce import logfilter
from vnode.sandbox.logging.filters import Fields, compile_filter, parse_timestamp_ns


def fields(**kw: object) -> Fields:
    base: dict[str, object] = {
        "log_name": "projects/p/logs/vnode_containers",
        "resource_type": "gce_instance",
        "resource_labels": {},
        "labels": {},
        "timestamp_ns": 0,
        "receive_ns": 0,
        "severity": 0,
        "insert_id": "a",
        "text_payload": None,
        "json_payload": None,
    }
    base.update(kw)
    return Fields(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("two\nlines\ttab\r", '"two\\nlines\\ttab\\r"'),
        ("", '""'),
        ("x OR y", '"x OR y"'),
    ],
)
def test_quote_escapes_backslash_quote_and_control_characters(value: str, literal: str) -> None:
    assert logfilter.quote(value) == literal


@pytest.mark.parametrize(
    "hostile",
    ['a" OR labels.x="y', 'a\\" OR "1"="1', "a) OR (b", 'x"\nOR\n"', "NOT", "*"],
)
def test_hostile_values_stay_one_literal(hostile: str) -> None:
    text = logfilter.equals(logfilter.label("vnode.dev/container"), hostile)
    pred = compile_filter(text)
    assert pred(fields(labels={"vnode.dev/container": hostile}))
    assert not pred(fields(labels={"vnode.dev/container": "a"}))
    assert not pred(fields(labels={"vnode.dev/container": "other", "x": "y"}))


def test_label_keys_with_dots_and_slashes_are_quoted() -> None:
    assert logfilter.label("vnode.dev/pod-uid") == 'labels."vnode.dev/pod-uid"'


def test_timestamp_has_nine_fraction_digits() -> None:
    ns = 1_795_464_128_835_003_265
    assert logfilter.timestamp_ns(ns) == "2026-11-23T20:02:08.835003265Z"
    assert logfilter.timestamp_ns(ns - 835_003_265) == "2026-11-23T20:02:08.000000000Z"
    assert parse_timestamp_ns(logfilter.timestamp_ns(ns)) == ns


def test_log_name_encodes_slashes() -> None:
    assert logfilter.log_name("p", "a/b") == "projects/p/logs/a%2Fb"


def test_container_filter_selects_exactly_one_instance() -> None:
    text = logfilter.container_filter(
        project="proj",
        log_id="vnode_containers",
        labels={"vnode.dev/pod-uid": "u-1", "vnode.dev/restart-count": "2"},
        since_ns=1_000_000_000_000_000_005,
        until_ns=1_000_000_000_000_000_009,
    )
    assert text == (
        'logName="projects/proj/logs/vnode_containers" AND resource.type="gce_instance" '
        'AND labels."vnode.dev/pod-uid"="u-1" AND labels."vnode.dev/restart-count"="2" '
        'AND timestamp>="2001-09-09T01:46:40.000000005Z" '
        'AND timestamp<="2001-09-09T01:46:40.000000009Z"'
    )
    pred = compile_filter(text)
    good = {
        "log_name": "projects/proj/logs/vnode_containers",
        "labels": {"vnode.dev/pod-uid": "u-1", "vnode.dev/restart-count": "2"},
    }
    assert pred(fields(timestamp_ns=1_000_000_000_000_000_005, **good))
    assert pred(fields(timestamp_ns=1_000_000_000_000_000_009, **good))
    assert not pred(fields(timestamp_ns=1_000_000_000_000_000_004, **good))
    assert not pred(fields(timestamp_ns=1_000_000_000_000_000_010, **good))
    other = {**good, "labels": {"vnode.dev/pod-uid": "u-1", "vnode.dev/restart-count": "1"}}
    assert not pred(fields(timestamp_ns=1_000_000_000_000_000_006, **other))


def test_strictly_after_bound() -> None:
    text = logfilter.container_filter(project="p", log_id="l", labels={}, after_ns=10)
    assert 'timestamp>"1970-01-01T00:00:00.000000010Z"' in text


def test_conjunction_parenthesises_disjunctions() -> None:
    assert logfilter.conjunction(["a=1", "b=1 OR b=2", ""]) == "a=1 AND (b=1 OR b=2)"
    assert logfilter.conjunction(["a=1"]) == "a=1"
