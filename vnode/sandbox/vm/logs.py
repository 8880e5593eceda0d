"""``/containerLogs`` on the simulated kubelet: query decoding and reading CRI log files.

The options and their edge cases follow the real kubelet (pkg/kubelet/kuberuntime/logs
and the server's getContainerLogs): ``tailLines`` counts lines of the file (CRI pieces),
``limitBytes`` cuts the output wherever the count runs out, ``timestamps`` prefixes each
line with a nine-digit RFC 3339 time (only the first piece of a joined line gets one),
``sinceSeconds``/``sinceTime`` drop pieces older than the bound, and ``follow`` keeps
reading until the container is no longer running. Decoding errors are 400
``{"message": "Unable to decode query."}``; values that decode but are invalid are 422
``{"message": "Invalid request."}``, both byte for byte as the kubelet sends them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vnode.sandbox.vm.crilog import format_ns, parse_line, parse_ns

DECODE_ERROR = '{"message": "Unable to decode query."}'
INVALID = '{"message": "Invalid request."}'


class QueryError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time_ns: int | None = None

    def since_ns(self, now_ns: int) -> int | None:
        if self.since_seconds is not None:
            return now_ns - self.since_seconds * 1_000_000_000
        return self.since_time_ns


def _go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise QueryError(400, DECODE_ERROR)


def _go_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise QueryError(400, DECODE_ERROR) from None
    if not -(2**63) <= value < 2**63:
        raise QueryError(400, DECODE_ERROR)
    return value


def parse_query(query: Mapping[str, str]) -> LogOptions:
    """Decode and validate the query like the kubelet (first value of each key wins)."""
    q = dict(query)
    tail = q.get("tail")
    if tail:
        if tail == "all":
            q.pop("tailLines", None)
        else:
            q["tailLines"] = tail
    bools = {k: _go_bool(q[k]) for k in ("follow", "previous", "timestamps") if q.get(k)}
    ints = {k: _go_int(q[k]) for k in ("tailLines", "limitBytes", "sinceSeconds") if q.get(k)}
    since_time = None
    if q.get("sinceTime"):
        try:
            since_time = parse_ns(q["sinceTime"])
        except ValueError:
            raise QueryError(400, DECODE_ERROR) from None
    opts = LogOptions(
        follow=bools.get("follow", False),
        previous=bools.get("previous", False),
        timestamps=bools.get("timestamps", False),
        tail_lines=ints.get("tailLines"),
        limit_bytes=ints.get("limitBytes"),
        since_seconds=ints.get("sinceSeconds"),
        since_time_ns=since_time,
    )
    if opts.tail_lines is not None and opts.tail_lines < 0:
        raise QueryError(422, INVALID)
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        raise QueryError(422, INVALID)
    if opts.since_seconds is not None and opts.since_seconds < 1:
        raise QueryError(422, INVALID)
    if opts.since_seconds is not None and opts.since_time_ns is not None:
        raise QueryError(422, INVALID)
    return opts


def tail_offset(path: Path, lines: int, block: int = 64 * 1024) -> int:
    """Byte offset where the last ``lines`` lines of the file start, reading from the end."""
    size = path.stat().st_size
    if lines <= 0:
        return size
    with open(path, "rb") as f:
        pos = size
        count = 0
        # A final newline ends the last line; it does not start another.
        skip_last = True
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = len(chunk)
            while True:
                i = chunk.rfind(b"\n", 0, i)
                if i < 0:
                    break
                if skip_last and start + i == size - 1:
                    skip_last = False
                    continue
                skip_last = False
                count += 1
                if count == lines:
                    return start + i + 1
            skip_last = False
            pos = start
    return 0


def _rotated(path: Path, fd: int) -> bool:
    """The file at ``path`` is no longer the one open as ``fd``."""
    try:
        return os.stat(path).st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


Write = Callable[[bytes], Awaitable[None]]


class _Limit(Exception):
    pass


class _Output:
    def __init__(self, write: Write, limit: int | None) -> None:
        self._write = write
        self._left = limit

    async def put(self, data: bytes) -> None:
        if self._left is not None:
            if len(data) >= self._left:
                data, self._left = data[: self._left], 0
                if data:
                    await self._write(data)
                raise _Limit
            self._left -= len(data)
        if data:
            await self._write(data)


async def stream_log(
    path: Path | None,
    opts: LogOptions,
    write: Write,
    *,
    now_ns: int,
    running: Callable[[], bool],
    poll: float = 0.05,
) -> None:
    """Write the container log to ``write`` as the kubelet would, following if asked."""
    out = _Output(write, opts.limit_bytes)
    since = opts.since_ns(now_ns)
    if path is None or not path.exists():  # noqa: ASYNC240 - local files, read in small steps
        return
    offset = tail_offset(path, opts.tail_lines) if opts.tail_lines is not None else 0
    new_line = True  # the next piece starts a line (and gets a timestamp)
    rest = b""

    async def emit(data: bytes) -> None:
        nonlocal rest, new_line
        rest += data
        *lines, rest = rest.split(b"\n")
        for raw in lines:
            line = parse_line(raw)
            if line is None or (since is not None and line.ts_ns < since):
                continue
            prefix = b""
            if opts.timestamps and new_line:
                prefix = format_ns(line.ts_ns, fixed=True).encode() + b" "
            await out.put(prefix + line.content + (b"" if line.partial else b"\n"))
            new_line = not line.partial

    f = open(path, "rb")  # noqa: ASYNC230, SIM115 - local files, read in small steps
    try:
        f.seek(offset)
        while True:
            # Decide before reading, so output written just before the exit is not lost.
            alive = opts.follow and running()
            data = f.read(256 * 1024)
            if data:
                await emit(data)
                continue
            if not alive:
                return
            await asyncio.sleep(poll)
            if _rotated(path, f.fileno()):
                # Rotated away: finish the old file, then go on in the new one.
                await emit(f.read())
                f.close()
                f = open(path, "rb")  # noqa: ASYNC230, SIM115
                rest = b""
    except _Limit:
        return
    finally:
        f.close()
