"""Containers as local processes, with CRI log files, standing in for containerd.

Images are not pulled: a container's ``command`` + ``args`` run directly on this host
(``/bin/sh -c ...`` from a busybox manifest behaves the same under the local shell). Each
run is one container instance with a containerd-style ID; its stdout and stderr become
the CRI log file ``<podLogsDir>/<ns>_<pod>_<uid>/<container>/<attempt>.log`` with the
``/var/log/containers`` symlink the kubelet makes. A command that cannot be executed is
a StartError with runc's message, exit code 128, as containerd reports it.

The processes see the host's filesystem, not the VM's: volume mounts are not applied
and absolute paths in commands mean host paths. The working directory is the VM path
under the VM's root.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import shutil
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vnode.sandbox.vm.crilog import CriLogWriter, LineCallback

_RUNC = (
    "failed to create containerd task: failed to create shim task: OCI runtime create "
    "failed: runc create failed: unable to start container process: {}: unknown"
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def image_id(image: str) -> str:
    """A stable stand-in for the image config digest (``sha256:<64 hex>``)."""
    return "sha256:" + hashlib.sha256(f"vnode-sandbox-image:{image}".encode()).hexdigest()


def exec_error(argv0: str, path_env: str) -> str | None:
    """runc's message when ``argv0`` cannot be executed, or None when it can."""
    if "/" in argv0:
        if not os.path.exists(argv0):
            return _RUNC.format(f'exec: "{argv0}": stat {argv0}: no such file or directory')
        if os.path.isdir(argv0) or not os.access(argv0, os.X_OK):
            return _RUNC.format(f'exec: "{argv0}": permission denied')
        return None
    if shutil.which(argv0, path=path_env) is None:
        return _RUNC.format(f'exec: "{argv0}": executable file not found in $PATH')
    return None


@dataclass
class Instance:
    """One run of a container (a containerd container)."""

    container: str
    attempt: int
    id: str
    log_path: Path
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    start_error: str | None = None
    pid: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _proc: asyncio.subprocess.Process | None = None
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)
    writer: CriLogWriter | None = None  # while the process runs
    _reaper: asyncio.Task[None] | None = None

    @property
    def container_id(self) -> str:
        return f"containerd://{self.id}"

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.finished_at is None

    async def wait(self) -> None:
        await self.done.wait()

    async def kill(self, grace: float) -> None:
        """SIGTERM to the container's processes, SIGKILL after ``grace`` seconds."""
        proc = self._proc
        if proc is None or self.done.is_set():
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.done.wait(), timeout=max(grace, 0.0))
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await self.done.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


async def start(
    *,
    container: str,
    attempt: int,
    log_path: Path,
    link_path: Path | None,
    launch: Launch,
    now: Callable[[], dt.datetime],
    now_ns: Callable[[], int],
    on_line: LineCallback | None,
    drain: float,
) -> Instance:
    """Create the instance and start its process; a StartError comes back finished."""
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    inst = Instance(container, attempt, cid, log_path, created_at=now())
    writer = CriLogWriter(log_path, now_ns, on_line)
    if link_path is not None:
        link_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            link_path.symlink_to(log_path)  # noqa: ASYNC240 - local and instant
    error = exec_error(launch.argv[0], launch.env.get("PATH", os.defpath)) if launch.argv else None
    proc = None
    if error is None:
        launch.cwd.mkdir(parents=True, exist_ok=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=launch.env,
                cwd=str(launch.cwd),
                start_new_session=True,  # one process group: the container's processes
            )
        except OSError as e:
            error = _RUNC.format(f'exec: "{launch.argv[0]}": {e.strerror or e}'.lower())
    if proc is None:
        writer.close()
        inst.start_error = error
        inst.exit_code = 128
        inst.finished_at = now()
        inst.done.set()
        return inst
    inst._proc = proc
    inst.writer = writer
    inst.pid = proc.pid
    inst.started_at = now()

    async def pump(stream: str, reader: asyncio.StreamReader | None) -> None:
        if reader is None:
            return
        while True:
            chunk = await reader.read(64 * 1024)
            if not chunk:
                return
            writer.write(stream, chunk)

    inst._pumps = [
        asyncio.create_task(pump("stdout", proc.stdout), name=f"cri-{cid[:12]}-stdout"),
        asyncio.create_task(pump("stderr", proc.stderr), name=f"cri-{cid[:12]}-stderr"),
    ]

    async def reap() -> None:
        code = await proc.wait()
        # PID 1 of a container gone means the whole container is gone.
        _signal_group(proc.pid, signal.SIGKILL)
        _, pending = await asyncio.wait(inst._pumps, timeout=drain)
        for task in pending:
            task.cancel()
        inst.writer = None
        writer.close()
        inst.exit_code = code if code >= 0 else 128 - code
        inst.finished_at = now()
        inst.done.set()

    inst._reaper = asyncio.create_task(reap(), name=f"cri-{cid[:12]}-reap")
    return inst
