"""The kubelet's ``/containerLogs`` query: decoded, validated, and refused in its words.

The API server forwards ``kubectl logs`` options to the kubelet as query parameters, and
callers (the API server, monitoring agents, people with ``curl``) see the kubelet's answer
verbatim. So vnode decodes them exactly as a v1.33 kubelet does, in the same order, and
refuses bad ones with the same status and body (``shared/reference/kubelet/logs/errors.json``):

1. the legacy ``tail`` parameter overrides ``tailLines`` (``tail=all`` drops it);
2. each known parameter is converted the way apimachinery converts query values
   (booleans: only ``0`` and ``false`` are false; integers: Go's ``ParseInt``; ``sinceTime``:
   RFC 3339, empty or ``null`` meaning the zero time). A value that does not convert is
   400 ``{"message": "Unable to decode query."}``;
3. ``ValidatePodLogOptions``: a negative ``tailLines``, ``limitBytes`` < 1,
   ``sinceSeconds`` < 1, both ``sinceSeconds`` and ``sinceTime``, or an unknown ``stream``
   is 422 ``{"message": "Invalid request."}``;
4. only after the pod and container were found: any ``stream`` other than ``All`` is 400,
   because the ``PodLogsQuerySplitStreams`` gate is off in v1.33 (:meth:`LogQuery.options`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from vnode.errors import VnodeError
from vnode.provider import LogOptions

# The bodies really are JSON inside a text/plain answer (the kubelet's own TODO says so).
DECODE_ERROR_BODY = '{"message": "Unable to decode query."}'
INVALID_BODY = '{"message": "Invalid request."}'

STREAM_ALL = "All"
_STREAMS = ("Stdout", "Stderr", STREAM_ALL)

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT = re.compile(r"[+-]?[0-9]+")
# Go's time.Parse(time.RFC3339, ...): a one-digit hour is tolerated, a fraction is allowed.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# metav1.Time's zero value: what an empty or "null" sinceTime decodes to.
ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


class LogQueryError(VnodeError):
    """A query the kubelet refuses; ``http_status`` and ``message`` are its exact answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.http_status = status


def decode_error() -> LogQueryError:
    return LogQueryError(400, DECODE_ERROR_BODY)


def invalid_request() -> LogQueryError:
    return LogQueryError(422, INVALID_BODY)


@dataclass(frozen=True)
class LogQuery:
    """The decoded and validated ``PodLogOptions`` of one request (minus the container)."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: dt.datetime | None = None
    limit_bytes: int | None = None
    stream: str | None = None

    def options(self, container: str) -> LogOptions:
        """The provider's options; a split ``stream`` is refused here (the gate is off)."""
        if self.stream is not None and self.stream != STREAM_ALL:
            raise LogQueryError(
                400,
                f'unable to return the given log stream: "{self.stream}". '
                "Please enable PodLogsQuerySplitStreams feature gate in kubelet",
            )
        since_time = self.since_time
        if since_time == ZERO_TIME:
            since_time = None  # "since the beginning of time" bounds nothing
        return LogOptions(
            container=container,
            follow=self.follow,
            tail_lines=self.tail_lines,
            since_seconds=self.since_seconds,
            since_time=since_time,
            timestamps=self.timestamps,
            limit_bytes=self.limit_bytes,
            previous=self.previous,
        )


def parse_query(pairs: Iterable[tuple[str, str]]) -> LogQuery:
    """Decode and validate the query pairs (in order, repeats kept) as the kubelet does."""
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    # Backwards compatibility: "tail" wins over "tailLines"; "all" means no tail at all.
    tail = values.get("tail", [""])[0]
    if tail:
        values["tailLines"] = [tail]
        if tail == "all":
            del values["tailLines"]
    query = LogQuery(
        follow=_bool(values.get("follow")),
        previous=_bool(values.get("previous")),
        timestamps=_bool(values.get("timestamps")),
        tail_lines=_int64(values.get("tailLines")),
        since_seconds=_int64(values.get("sinceSeconds")),
        since_time=_time(values["sinceTime"]) if "sinceTime" in values else None,
        limit_bytes=_int64(values.get("limitBytes")),
        stream=values["stream"][0] if values.get("stream") else None,
    )
    _validate(query)
    return query


def _bool(values: list[str] | None) -> bool:
    # apimachinery: only absence, "0" and "false" (any case) are false; "" is true.
    if not values:
        return False
    return not (values[0] == "0" or values[0].lower() == "false")


def _int64(values: list[str] | None) -> int | None:
    if not values:
        return None
    text = values[0]
    if not _INT.fullmatch(text):
        raise decode_error()
    number = int(text)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise decode_error()
    return number


def _time(values: list[str]) -> dt.datetime:
    text = values[0] if values else ""
    if text in ("", "null"):
        return ZERO_TIME
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise decode_error()
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = dt.UTC
        if zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        return dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        ).astimezone(dt.UTC)
    except ValueError as exc:  # out-of-range fields (month 13, hour 24, offset 24:00...)
        raise decode_error() from exc


def _validate(q: LogQuery) -> None:
    """``ValidatePodLogOptions`` of the v1 API (any failure: 422 Invalid request)."""
    if q.tail_lines is not None and q.tail_lines < 0:
        raise invalid_request()
    if q.limit_bytes is not None and q.limit_bytes < 1:
        raise invalid_request()
    if q.since_seconds is not None and (q.since_time is not None or q.since_seconds < 1):
        raise invalid_request()
    if q.stream is not None:
        if q.stream not in _STREAMS:
            raise invalid_request()
        if q.stream != STREAM_ALL and q.tail_lines is not None:
            raise invalid_request()
