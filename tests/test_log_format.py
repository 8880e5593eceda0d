"""vnode's own log lines: JSON for pipelines, text for people, pod and VM as fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vnode import logging_setup
from vnode.logging_setup import bind, configure, log_context, resolve

ROOT = Path(__file__).resolve().parents[1]
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
log = logging.getLogger("vnode.test")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    process = dict(logging_setup._process)
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging_setup._process.clear()
    logging_setup._process.update(process)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_auto_is_json_unless_on_a_terminal() -> None:
    assert resolve("auto", io.StringIO()) == "json"
    assert resolve("auto", Terminal()) == "text"
    assert resolve("text", io.StringIO()) == "text"
    assert resolve("json", Terminal()) == "json"
    with pytest.raises(ValueError, match="invalid log format 'xml'"):
        resolve("xml", io.StringIO())


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_time_level_logger_message_and_context() -> None:
    out = io.StringIO()
    assert configure("info", "auto", stream=out) == "json"
    logging_setup.set_process_fields(node="vnode-a")
    log.info("plain line")
    with log_context(pod="default/job-x"):
        log.warning("about the pod: %s", 'quoted "text" and ünïcode')
        bind(vm="vnode-abc")
        log.info("about its VM")
    log.debug("below the level")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")

    first, pod_line, vm_line, failed = lines(out)
    assert set(first) == {"time", "level", "severity", "logger", "message", "node"}
    assert RFC3339_MS.match(first["time"])
    assert (first["level"], first["severity"], first["logger"]) == ("info", "INFO", "vnode.test")
    assert first["node"] == "vnode-a"
    assert pod_line["message"] == 'about the pod: quoted "text" and ünïcode'
    assert (pod_line["level"], pod_line["pod"]) == ("warning", "default/job-x")
    assert "vm" not in pod_line
    assert (vm_line["pod"], vm_line["vm"]) == ("default/job-x", "vnode-abc")
    # The block ended: neither the pod nor the VM it bound stays behind.
    assert "pod" not in failed and "vm" not in failed
    assert failed["level"] == "error"
    assert failed["exc_info"].startswith("Traceback")
    assert "RuntimeError: boom" in failed["exc_info"]


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_append_pod_and_vm_for_people() -> None:
    out = Terminal()
    assert configure("info", "auto", stream=out) == "text"
    logging_setup.set_process_fields(node="vnode-a")
    with log_context(pod="default/job-x", vm="vnode-abc"):
        log.info("created")
    log.info("no context")
    first, second = out.getvalue().splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    vnode\.test: created", first)
    assert first.endswith(" [pod=default/job-x vm=vnode-abc]")
    assert second.endswith("vnode.test: no context")  # the Node's name is not repeated


@pytest.mark.usefixtures("restore_logging")
def test_explicit_extra_fields_win_over_the_context() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    with log_context(pod="default/a"):
        log.info("about another", extra={"pod": "default/b"})
    assert lines(out)[0]["pod"] == "default/b"


@pytest.mark.usefixtures("restore_logging")
async def test_tasks_inherit_the_context_and_keep_their_own_bindings() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)

    async def worker(vm: str) -> None:
        bind(vm=vm)
        await asyncio.sleep(0)
        log.info("working on %s", vm)

    with log_context(pod="default/p"):
        await asyncio.gather(worker("vnode-1"), worker("vnode-2"))
    log.info("after")
    got = {e["message"]: (e.get("pod"), e.get("vm")) for e in lines(out)}
    assert got == {
        "working on vnode-1": ("default/p", "vnode-1"),
        "working on vnode-2": ("default/p", "vnode-2"),
        "after": (None, None),
    }


@pytest.mark.usefixtures("restore_logging")
def test_configuring_again_replaces_vnodes_handler_only() -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if h.get_name() != "vnode"]
    first, second = io.StringIO(), io.StringIO()
    configure("info", "json", stream=first)
    configure("warning", "text", stream=second)
    log.info("hidden")
    log.warning("shown")
    assert first.getvalue() == ""
    assert "vnode.test: shown" in second.getvalue()
    assert [h for h in root.handlers if h.get_name() != "vnode"] == others


def vnode(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vnode.cli", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_format_comes_from_the_flag_or_vnode_log_format() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNODE_")}
    bad = vnode("version", env={**env, "VNODE_LOG_FORMAT": "xml"})
    assert bad.returncode == 2
    assert bad.stderr.strip() == "vnode: error: invalid log format 'xml': one of auto, json, text"
    ok = vnode("--log-format", "text", "version", env={**env, "VNODE_LOG_FORMAT": "xml"})
    assert ok.returncode == 0, ok.stderr  # the flag wins over the environment
    usage = vnode("--log-format", "xml", "version", env=env)
    assert usage.returncode == 2
    assert "invalid choice: 'xml'" in usage.stderr


def test_vnode_run_takes_log_format_and_checks_the_metrics_port() -> None:
    """`vnode run --log-format text` parses (the chart passes flags after the command), and
    a bad metrics port is one clear line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VNODE_", "KUBE"))}
    env["HOME"] = "/nonexistent"
    done = vnode("run", "--log-format", "text", "--provider", "tests.providers:FakeProvider",
                 "--metrics-port", "70000", env=env)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "vnode run: error: invalid metrics port 70000: expected 0-65535 (0: any free port, -1: off)"
    )


@pytest.mark.parametrize(
    ("argv", "env", "address", "port"),
    [
        ([], {}, "0.0.0.0", 9090),
        (["--metrics-port", "-1"], {}, "0.0.0.0", -1),
        ([], {"VNODE_METRICS_PORT": "0", "VNODE_METRICS_ADDRESS": "127.0.0.1"}, "127.0.0.1", 0),
        (["--metrics-port", "9100"], {"VNODE_METRICS_PORT": "0"}, "0.0.0.0", 9100),
    ],
)
def test_metrics_settings_from_flags_and_environment(
    argv: list[str], env: dict[str, str], address: str, port: int
) -> None:
    from vnode.cli import build_parser, settings_from

    parser = build_parser()
    args = parser.parse_args(["run", *argv])
    settings = settings_from(args, args.run_parser, env)
    assert (settings.metrics.address, settings.metrics.port) == (address, port)
