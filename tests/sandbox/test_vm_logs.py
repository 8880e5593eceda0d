"""The VM kubelet's log reading, held against the real kubelet's answers for the same files.

The CRI files in the reference are the ones the captured ``/containerLogs`` answers were
read from, so feeding them to the simulator's reader with the same query (and the same
"now" for ``sinceSeconds``) must give the same bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.sandbox.vm_harness import REFERENCE
from vnode.sandbox.vm.crilog import CriLogWriter, format_ns, parse_ns
from vnode.sandbox.vm.logs import LogOptions, QueryError, parse_query, stream_log

XRUN = "<16384 x chars>"


def _exchanges(name: str) -> dict[str, dict]:
    data = json.loads((REFERENCE / "logs" / name).read_text())
    return {e["label"]: e for e in data["exchanges"]}


def _captured_at(url: str) -> int:
    index = json.loads((REFERENCE / "http-index.json").read_text())
    for e in index:
        if e["request"]["url"] == url:
            return parse_ns(e["capturedAt"])
    raise AssertionError(f"{url} not in http-index.json")


async def _read(path: Path, query: str, now_ns: int, opts: LogOptions | None = None) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    options = opts or parse_query(dict(parse_qsl(query)))
    await stream_log(path, options, write, now_ns=now_ns, running=lambda: False)
    return bytes(out)


CASES = [
    ("a-echo-never.json", "a-echo-never.echo__0.log"),
    ("g-ticker.json", "g-ticker.tick__0.log"),
    ("h-partial.json", "h-partial.p__0.log"),
    ("c-crashloop.json", "c-crashloop.crash__2.log"),
]


@pytest.mark.parametrize(("exchanges", "cri"), CASES)
async def test_container_log_bodies_match_the_real_kubelet(exchanges: str, cri: str) -> None:
    checked = 0
    for label, e in _exchanges(exchanges).items():
        url = e["request"]["url"]
        if not url.startswith("https://") or e["response"]["status"] != 200:
            continue
        if "anonymous" in label or "follow" in url:
            continue
        query = urlsplit(url).query
        opts = parse_query(dict(parse_qsl(query)))
        # previous=true names the same (last exited) instance here: the file is that one.
        body = await _read(REFERENCE / "cri-logs" / cri, query, _captured_at(url), opts)
        resp = e["response"]
        text = body.decode()
        if "body" in resp:
            assert text == resp["body"], label
        else:
            assert len(body) == resp["bodyLength"], label
            assert text.replace("x" * 16384, XRUN) == resp["bodyWithXRunElided"], label
        checked += 1
    assert checked >= 3


async def test_follow_on_a_finished_container_returns_the_whole_log() -> None:
    e = _exchanges("a-echo-never.json")["follow-true-terminated"]
    body = await _read(REFERENCE / "cri-logs/a-echo-never.echo__0.log", "follow=true", 0)
    assert body.decode() == e["response"]["body"]


async def test_follow_streams_new_lines_until_the_container_stops(tmp_path: Path) -> None:
    import asyncio

    clock = iter(range(1_795_464_000_000_000_000, 1_795_465_000_000_000_000, 1_000_000))
    path = tmp_path / "0.log"
    writer = CriLogWriter(path, lambda: next(clock))
    writer.write("stdout", b"tick 1\n")
    running = True
    got: list[bytes] = []

    async def write(data: bytes) -> None:
        got.append(data)

    opts = LogOptions(follow=True, tail_lines=1, timestamps=True)
    task = asyncio.create_task(
        stream_log(path, opts, write, now_ns=0, running=lambda: running, poll=0.01)
    )

    async def wait_lines(n: int) -> None:
        async with asyncio.timeout(5):
            while len(got) < n:  # noqa: ASYNC110 - polling a list the reader fills
                await asyncio.sleep(0.01)

    await wait_lines(1)
    writer.write("stdout", b"tick 2\n")
    await wait_lines(2)
    assert not task.done()
    running = False
    writer.close()
    async with asyncio.timeout(5):
        await task
    lines = [g.decode() for g in got]
    assert [ln.split(" ", 1)[1] for ln in lines] == ["tick 1\n", "tick 2\n"]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ln.split(" ")[0]) for ln in lines
    )


def test_query_errors_are_the_kubelets() -> None:
    errors = _exchanges("errors.json")
    for label in ("bad-tailLines", "negative-tailLines"):
        e = errors[label]
        query = dict(parse_qsl(urlsplit(e["request"]["url"]).query))
        with pytest.raises(QueryError) as info:
            parse_query(query)
        assert info.value.status == e["response"]["status"]
        assert info.value.body == e["response"]["body"]
    for bad in ({"limitBytes": "0"}, {"sinceSeconds": "0"}, {"follow": "yes"}, {"sinceTime": "x"}):
        with pytest.raises(QueryError):
            parse_query(bad)
    with pytest.raises(QueryError) as both:
        parse_query({"sinceSeconds": "5", "sinceTime": "2026-11-23T20:00:00Z"})
    assert both.value.status == 422
    assert parse_query({"tail": "3"}).tail_lines == 3
    assert parse_query({"tail": "all", "tailLines": "3"}).tail_lines is None


def test_writer_splits_long_lines_and_marks_unterminated_output(tmp_path: Path) -> None:
    ns = iter(range(1_795_464_137_211_465_045, 1_795_464_237_211_465_045, 1000))
    lines: list[tuple[str, bytes]] = []
    path = tmp_path / "p" / "0.log"
    w = CriLogWriter(path, lambda: next(ns), lambda s, t, c: lines.append((s, c)))
    w.write("stdout", b"to-stdout\n")
    w.write("stderr", b"to-stderr\n")
    w.write("stdout", b"x" * 10000)
    w.write("stdout", b"x" * 6384 + b"-tail-after-16KiB\nshort\nab")
    w.write("stdout", b"c")
    w.close()
    raw = path.read_bytes().split(b"\n")[:-1]
    fields = [r.split(b" ", 3) for r in raw]
    assert [(f[1], f[2]) for f in fields] == [
        (b"stdout", b"F"),
        (b"stderr", b"F"),
        (b"stdout", b"P"),
        (b"stdout", b"F"),
        (b"stdout", b"F"),
        (b"stdout", b"P"),
    ]
    assert fields[2][3] == b"x" * 16384
    assert fields[3][3] == b"-tail-after-16KiB"
    assert fields[5][3] == b"abc"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    # The same shape as the reference file, line by line.
    ref = (REFERENCE / "cri-logs/h-partial.p__0.log").read_bytes().split(b"\n")[:-1]
    pattern = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (stdout|stderr) [PF] .*")
    assert all(pattern.fullmatch(r) for r in [*raw, *ref])
    # Joined lines reach the shipping hook, one per line of output.
    assert lines == [
        ("stdout", b"to-stdout"),
        ("stderr", b"to-stderr"),
        ("stdout", b"x" * 16384 + b"-tail-after-16KiB"),
        ("stdout", b"short"),
        ("stdout", b"abc"),
    ]


def test_timestamps_trim_zeros_in_files_and_keep_nine_digits_over_http() -> None:
    ns = parse_ns("2026-11-23T20:02:04.81937376Z")
    assert format_ns(ns) == "2026-11-23T20:02:04.81937376Z"
    assert format_ns(ns, fixed=True) == "2026-11-23T20:02:04.819373760Z"
    assert format_ns(parse_ns("2026-11-23T20:02:04Z")) == "2026-11-23T20:02:04Z"


def test_rotation_keeps_max_files_and_gzips_all_but_the_newest(tmp_path: Path) -> None:
    import datetime as dt
    import gzip

    from vnode.sandbox.vm.crilog import rotate_logs

    ns = iter(range(1_795_464_000_000_000_000, 1_795_465_000_000_000_000, 1000))
    w = CriLogWriter(tmp_path / "c" / "0.log", lambda: next(ns))
    start = dt.datetime(2026, 11, 23, 20, 0, 0, tzinfo=dt.UTC)
    for i in range(4):
        w.write("stdout", f"line {i}\n".encode() * 10)
        assert rotate_logs(w, 100, 3, start + dt.timedelta(seconds=i))
    assert not rotate_logs(w, 100, 3, start)  # the fresh file is small
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["0.log", "0.log.20261123-200002.gz", "0.log.20261123-200003"]
    old = gzip.decompress((tmp_path / "c/0.log.20261123-200002.gz").read_bytes())
    assert old.count(b" stdout F line 2") == 10
    w.write("stdout", b"after\n")
    w.close()
    assert (tmp_path / "c/0.log").read_bytes().endswith(b" stdout F after\n")


async def test_follow_continues_in_the_new_file_after_rotation(tmp_path: Path) -> None:
    import asyncio
    import datetime as dt

    from vnode.sandbox.vm.crilog import rotate_logs

    ns = iter(range(1_795_464_000_000_000_000, 1_795_465_000_000_000_000, 1000))
    path = tmp_path / "0.log"
    w = CriLogWriter(path, lambda: next(ns))
    w.write("stdout", b"one\n")
    got = bytearray()
    running = True

    async def write(data: bytes) -> None:
        got.extend(data)

    task = asyncio.create_task(
        stream_log(
            path, LogOptions(follow=True), write, now_ns=0, running=lambda: running, poll=0.01
        )
    )
    async with asyncio.timeout(5):
        while got != b"one\n":  # noqa: ASYNC110 - the reader fills it
            await asyncio.sleep(0.01)
    w.write("stdout", b"two\n")
    rotate_logs(w, 1, 5, dt.datetime(2026, 11, 23, tzinfo=dt.UTC))
    w.write("stdout", b"three\n")
    async with asyncio.timeout(5):
        while got != b"one\ntwo\nthree\n":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    running = False
    w.close()
    async with asyncio.timeout(5):
        await task
    assert bytes(got) == b"one\ntwo\nthree\n"
