"""The CRI container log file format, written and read as containerd and the kubelet do.

Each line is ``<RFC3339Nano> <stdout|stderr> <P|F> <content>\\n``: the timestamp is
when the runtime read the output (trailing zeros of the fraction trimmed), ``F`` ends a
line of the container's output, ``P`` is a piece of a longer one. containerd cuts a line
into ``P`` pieces of exactly 16 KiB and ends it with an ``F`` piece; output still
unterminated when the container exits is written as ``P``. Past ``containerLogMaxSize``
the file is rotated (:func:`rotate_logs`). The kubelet reads them back
joined: a ``P`` piece adds no newline and, with timestamps, only the first piece of a
line carries one.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 16 * 1024

LineCallback = Callable[[str, int, bytes], None]
"""(stream, timestamp in ns of the line's first piece, whole line without newline)."""


def format_ns(ns: int, *, fixed: bool = False) -> str:
    """Unix nanoseconds as Go's RFC3339Nano (``fixed``: always nine digits)."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}"
    if not fixed:
        digits = digits.rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def parse_ns(text: str) -> int:
    """RFC 3339 with up to nine fractional digits -> Unix nanoseconds."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, rest = text.partition(".")
    frac = ""
    tz = ""
    if rest:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
    else:
        for sign in ("+", "-"):
            pos = main.rfind(sign)
            if pos > 10:
                main, tz = main[:pos], main[pos:]
                break
    when = dt.datetime.fromisoformat(main + (tz or "+00:00"))
    return int(when.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


class CriLogWriter:
    """One container instance's log file; feed it raw output per stream."""

    def __init__(
        self, path: Path, now_ns: Callable[[], int], on_line: LineCallback | None = None
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.chmod(path, 0o640)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._now_ns = now_ns
        self._on_line = on_line
        self._pending: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        # Pieces of a line already written as P, kept to hand the whole line to on_line.
        self._joined: dict[str, tuple[int, bytearray] | None] = {"stdout": None, "stderr": None}

    def _emit(self, stream: str, tag: str, content: bytes) -> None:
        ts = self._now_ns()
        self._file.write(f"{format_ns(ts)} {stream} {tag} ".encode() + content + b"\n")
        if self._on_line is None:
            return
        joined = self._joined[stream]
        if joined is None:
            joined = (ts, bytearray())
        joined[1].extend(content)
        if tag == "F":
            self._joined[stream] = None
            self._on_line(stream, joined[0], bytes(joined[1]))
        else:
            self._joined[stream] = joined

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending[stream]
        buf.extend(data)
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE + 1)
            if nl >= 0:
                self._emit(stream, "F", bytes(buf[:nl]))
                del buf[: nl + 1]
            elif len(buf) >= MAX_LINE:
                self._emit(stream, "P", bytes(buf[:MAX_LINE]))
                del buf[:MAX_LINE]
            else:
                break

    @property
    def size(self) -> int:
        return self._file.tell()

    def rotate(self, rotated: Path) -> None:
        """Move the current file aside and carry on in a fresh one, as the kubelet's log
        manager does (it renames the file and asks the runtime to reopen)."""
        self._file.close()
        os.rename(self.path, rotated)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.chmod(self.path, 0o640)
        self._file = os.fdopen(fd, "ab", buffering=0)

    def close(self) -> None:
        """The container is gone: unterminated output is written as a final P piece."""
        for stream, buf in self._pending.items():
            if buf:
                self._emit(stream, "P", bytes(buf))
                buf.clear()
            joined = self._joined[stream]
            if joined is not None and self._on_line is not None:
                self._joined[stream] = None
                self._on_line(stream, joined[0], bytes(joined[1]))
        self._file.close()


@dataclass(frozen=True)
class CriLine:
    ts_ns: int
    stream: str
    partial: bool
    content: bytes


def parse_line(raw: bytes) -> CriLine | None:
    """One file line (without its newline); None when it is not CRI format."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        ts = parse_ns(parts[0].decode())
    except ValueError:
        return None
    stream = parts[1].decode(errors="replace")
    if stream not in ("stdout", "stderr"):
        return None
    tag = parts[2]
    content = parts[3] if len(parts) == 4 else b""
    return CriLine(ts, stream, tag == b"P", content)


def rotate_logs(writer: CriLogWriter, max_size: int, max_files: int, now: dt.datetime) -> bool:
    """Rotate ``writer``'s file when it is over ``max_size`` bytes; keep ``max_files``
    files in all (the current one, the newest rotated one as is, older ones gzipped)."""
    if writer.size <= max_size or max_files < 2:
        return False
    path = writer.path
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")
    writer.rotate(path.with_name(f"{path.name}.{stamp}"))
    rotated = sorted(
        (p for p in path.parent.glob(f"{path.name}.*") if p.name != path.name),
        key=lambda p: p.name.removesuffix(".gz"),
    )
    for old in rotated[:-1]:
        if not old.name.endswith(".gz"):
            gz = old.with_name(old.name + ".gz")
            with open(old, "rb") as src, gzip.open(gz, "wb") as dst:
                dst.write(src.read())
            old.unlink()
    rotated = sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: p.name.removesuffix(".gz"))
    for old in rotated[: max(0, len(rotated) - (max_files - 1))]:
        old.unlink()
    return True
