"""How vnode's own log lines look: JSON in a container, readable text on a terminal.

In a cluster, vnode's stderr goes to a log pipeline (GKE's agent, Loki, ...), which wants
one JSON object per line with fixed field names; at a terminal a person wants text. So
``auto`` (the default) writes JSON unless stderr is a terminal; ``--log-format``
(``VNODE_LOG_FORMAT``) decides otherwise.

Every line about a pod or a VM carries their names as fields (``pod`` as
``namespace/name``, ``vm`` as the instance name) besides saying them in the message, so
"everything about this pod" is one query. The names travel in a context variable, so
the code that knows them sets them once for a block and everything logged inside it, in
any module, carries them:

    with log_context(pod="default/job-x"):
        await provider.create_pod(pod)   # its lines get pod=default/job-x
        # and inside, after naming the VM:  bind(vm="vnode-...")

``asyncio`` copies the context into each task it creates, so a task started inside the
block keeps the names (and :func:`bind` in a task of its own names that task's lines).

JSON fields: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``severity`` (the same,
in the form Cloud Logging reads from structured lines), ``logger``, ``message``, then
``pod``, ``vm``, ``node`` when known, and ``exc_info`` with the formatted traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
import types
from collections.abc import Iterator, Mapping
from typing import IO, Any

FORMATS = ("auto", "json", "text")
FIELDS = ("pod", "vm", "node")
"""Context fields, in the order they appear."""

_NONE: Mapping[str, str] = types.MappingProxyType({})
_fields: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "vnode_log_fields", default=_NONE
)
_process: dict[str, str] = {}  # fields true for the whole process (the Node's name)
_HANDLER_NAME = "vnode"


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (empty values ignored) to every line logged within the block."""
    token = _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _fields.reset(token)


def bind(**fields: str | None) -> None:
    """Add ``fields`` for the rest of the current context: until the enclosing
    :func:`log_context` ends, or for the rest of a task of its own."""
    _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v}})


def set_process_fields(**fields: str | None) -> None:
    """Fields for every line of this process (``node``)."""
    _process.update({k: v for k, v in fields.items() if v})


def current_fields() -> dict[str, str]:
    return {**_process, **_fields.get()}


class ContextFilter(logging.Filter):
    """Stamps the context fields on each record (``extra=`` values given in the call win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_fields().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


def _fields_of(record: logging.LogRecord) -> dict[str, str]:
    out = {}
    for key in FIELDS:
        value = getattr(record, key, None)
        if value:
            out[key] = str(value)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields_of(record),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message [pod=... vm=...]`` for people (the Node is left out:
    it is the same on every line)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = {k: v for k, v in _fields_of(record).items() if k != "node"}
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each line (as logging's own
    last-resort handler does), so a replaced stderr never leaves it writing to a closed one."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def resolve(fmt: str, stream: IO[str]) -> str:
    """``json`` or ``text`` for ``fmt`` (``auto``: text only on a terminal)."""
    if fmt not in FORMATS:
        raise ValueError(f"invalid log format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> str:
    """Send the root logger to ``stream`` (stderr) in ``fmt``; returns the format used.

    Calling it again replaces vnode's handler (the format of ``vnode run`` may differ
    from the global one); handlers others added (pytest's) are left alone.
    """
    chosen = resolve(fmt, stream if stream is not None else sys.stderr)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return chosen
