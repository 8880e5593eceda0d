"""Cloud Logging filter expressions for one container's lines, built safely.

Every value that reaches a filter comes from a user (pod names, container names) or a
cloud (project IDs), so each one is quoted as a filter string literal: inside double
quotes, with backslash and double quote escaped and newline, return and tab written
as escapes. Label keys hold dots and slashes (``vnode.dev/pod-uid``), which the filter
language only accepts quoted (``labels."vnode.dev/pod-uid"``). Building filters in one
place keeps that rule from being forgotten at one call site.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """``value`` as a filter string literal (always quoted, whatever it holds)."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def label(key: str) -> str:
    """The field path of user label ``key`` (quoted: keys carry dots and slashes)."""
    return f"labels.{quote(key)}"


def equals(field: str, value: str) -> str:
    return f"{field}={quote(value)}"


def log_name(project: str, log_id: str) -> str:
    """The full log name ``projects/<p>/logs/<id>``; the ID is URL-encoded the way the
    API stores it (``/`` becomes ``%2F``)."""
    return f"projects/{project}/logs/{log_id.replace('/', '%2F')}"


def timestamp_ns(ns: int) -> str:
    """RFC 3339 UTC with nine fractional digits, exact to the nanosecond."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp_ns(text: str) -> int:
    """The inverse of :func:`timestamp_ns` (any offset, up to nine fractional digits);
    ValueError when ``text`` is not RFC 3339."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))


def conjunction(terms: Iterable[str]) -> str:
    """``a AND b AND c``; every term is parenthesised so an OR inside stays inside."""
    parts = [t for t in terms if t]
    if len(parts) == 1:
        return parts[0]
    return " AND ".join(f"({t})" if " OR " in t else t for t in parts)


def container_filter(
    *,
    project: str,
    log_id: str,
    labels: dict[str, str],
    since_ns: int | None = None,
    after_ns: int | None = None,
    until_ns: int | None = None,
) -> str:
    """One container instance's lines: the log, the resource type, the identifying
    labels, and optional timestamp bounds (``since``: at or after; ``after``: strictly
    after; ``until``: at or before)."""
    terms = [
        equals("logName", log_name(project, log_id)),
        equals("resource.type", "gce_instance"),
    ]
    terms += [equals(label(k), v) for k, v in labels.items()]
    if since_ns is not None:
        terms.append(f"timestamp>={quote(timestamp_ns(since_ns))}")
    if after_ns is not None:
        terms.append(f"timestamp>{quote(timestamp_ns(after_ns))}")
    if until_ns is not None:
        terms.append(f"timestamp<={quote(timestamp_ns(until_ns))}")
    return conjunction(terms)
