"""The emulator's Logging query language: operators, precedence, field paths, literals,
and refusals with a message."""

from __future__ import annotations

import pytest

from vnode.sandbox.logging.filters import Fields, FilterError, compile_filter

T0 = 1_795_449_600 * 1_000_000_000  # 2026-11-23T16:00:00Z


def entry(**kw: object) -> Fields:
    base: dict[str, object] = {
        "log_name": "projects/p/logs/vnode_containers",
        "resource_type": "gce_instance",
        "resource_labels": {"zone": "us-central1-a", "instance_id": "42"},
        "labels": {"vnode.dev/pod-uid": "u1", "vnode.dev/container": "main", "app": "web"},
        "timestamp_ns": T0 + 500_000_000,
        "receive_ns": T0 + 900_000_000,
        "severity": 400,
        "insert_id": "abc123",
        "text_payload": None,
        "json_payload": {"message": "Hello World", "count": 12, "nested": {"k": "v"}},
    }
    base.update(kw)
    return Fields(**base)  # type: ignore[arg-type]


def match(text: str, e: Fields | None = None) -> bool:
    return compile_filter(text)(e or entry())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ('logName="projects/p/logs/vnode_containers"', True),
        ("logName=projects/p/logs/other", False),
        ("resource.type=gce_instance", True),
        ('resource.labels.zone="us-central1-a"', True),
        ("resource.labels.zone!=us-central1-a", False),
        ('labels."vnode.dev/pod-uid"="u1"', True),
        ('labels."vnode.dev/pod-uid"="u2"', False),
        ("labels.app=web", True),
        ("labels.app=WEB", True),  # string comparisons ignore case
        ("labels.missing=x", False),
        ("labels.missing!=x", True),
        ("labels.app:*", True),
        ("labels.missing:*", False),
        ("NOT labels.missing:*", True),
        ("-labels.app=web", False),
        ('jsonPayload.message:"hello"', True),
        ('jsonPayload.message="Hello World"', True),
        ("jsonPayload.nested.k=v", True),
        ("jsonPayload.count>10", True),
        ("jsonPayload.count<=11", False),
        ('jsonPayload.message=~"^Hel+o"', True),
        ('jsonPayload.message!~"^hello"', True),  # regular expressions keep case
        ("textPayload:x", False),
        ("severity>=WARNING", True),
        ("severity>warning", False),
        ("severity=400", True),
        ("severity<ERROR", True),
        ('timestamp>="2026-11-23T16:00:00.5Z"', True),
        ('timestamp>"2026-11-23T16:00:00.500000000Z"', False),
        ('timestamp<"2026-11-23T17:00:00+01:00"', False),
        ('timestamp<="2026-11-23T16:00:00.500000001Z"', True),
        ('receiveTimestamp>"2026-11-23T16:00:00.8Z"', True),
        ("insertId=abc123", True),
        ("Hello", True),  # a bare value searches every field
        ('"no such text"', False),
        ("labels.app=(web OR api)", True),
        ("labels.app=(api OR db)", False),
        ("labels.app=(NOT api)", True),
    ],
)
def test_comparisons(text: str, expected: bool) -> None:
    assert match(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("labels.app=web labels.container=x", False),  # juxtaposition is AND
        ("labels.app=web AND severity>=WARNING", True),
        ("labels.app=api OR labels.app=web", True),
        # OR binds tighter than AND: (api OR web) AND db -> false
        ("labels.app=api OR labels.app=web AND labels.app=db", False),
        ("labels.app=db AND labels.app=api OR labels.app=web", False),
        ("(labels.app=db AND labels.app=api) OR labels.app=web", True),
        ("NOT labels.app=api AND NOT labels.app=db", True),
        ("NOT (labels.app=web OR labels.app=api)", False),
        ("NOT NOT labels.app=web", True),
    ],
)
def test_boolean_structure(text: str, expected: bool) -> None:
    assert match(text) is expected


def test_quoted_strings_with_escapes() -> None:
    e = entry(labels={"k": 'a "quoted" \\ value\nnext'})
    assert match(r'labels.k="a \"quoted\" \\ value\nnext"', e)
    assert not match(r'labels.k="a \"quoted\" \\ value"', e)


def test_lowercase_keywords_are_values() -> None:
    # "and" in lower case is a bare value (a global search), not the operator.
    assert not match("labels.app=web and")


def test_missing_payload_matches_only_negations() -> None:
    e = entry(json_payload=None, text_payload="plain line")
    assert match("textPayload:plain", e)
    assert not match("jsonPayload.message:plain", e)
    assert match("jsonPayload.message!=plain", e)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('labels.a="unterminated', "unterminated string"),
        ("labels.a=x AND", "expected an expression after AND"),
        ("(labels.a=x", "expected ')'"),
        ("labels.a=x)", "unexpected input"),
        ("labels.a=", "expected a value"),
        ("nosuchfield=x", "unknown field"),
        ("resource.nope=x", "unknown field"),
        ('timestamp>"yesterday"', "invalid timestamp"),
        ("severity=LOUD", "invalid severity"),
        ('jsonPayload.m=~"("', "invalid regular expression"),
        ("labels=x", "labels takes one key"),
        ("x" * 20_001, "longer than"),
    ],
)
def test_invalid_filters_say_why(text: str, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text)
    assert fragment in str(info.value)


def test_error_names_the_column() -> None:
    with pytest.raises(FilterError, match="column 12 near"):
        compile_filter("labels.a=x ) labels.b=y")
    with pytest.raises(FilterError, match=r"column 15 \(end of filter\)"):
        compile_filter("labels.a=x AND")
