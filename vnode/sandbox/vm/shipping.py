"""The hook where container log lines leave the VM, as COS's fluent-bit would send them.

On a real VM fluent-bit tails the CRI files with the CRI parser (``P`` pieces joined
into one record) and sends one entry per line to Cloud Logging with the
``gce_instance`` resource. Here each joined line becomes one :data:`LogEntry` handed,
in file order, to an async ``log_sink``; whoever emulates Cloud Logging turns it into a
LogEntry with the log name and labels vnode's bootstrap configures. The VM only ships
when its metadata says ``google-logging-enabled=true``, as COS does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vnode.sandbox.vm.crilog import LineCallback, format_ns

log = logging.getLogger(__name__)

LogEntry = dict[str, Any]
"""Keys: ``timestamp`` (RFC 3339, nanoseconds), ``timestamp_ns`` (int), ``stream``,
``log`` (the line, newline removed, UTF-8 with replacement), ``namespace``,
``pod_name`` (the static pod's name, ``<pod>-<node>``), ``pod_uid`` (the static pod's
UID), ``container_name``, ``restart_count``, ``file`` (the CRI file's
path on the VM), ``instance_id``, ``instance_name``, ``zone``, ``project``,
``instance_labels`` (the instance's GCE labels, e.g. ``vnode-pod-uid``), ``node_name``
(the kubelet's node name) and, when the VM runs a fluent-bit with a tail input,
``log_name`` (that input's Tag: the log the lines go to)."""

LogSink = Callable[[LogEntry], Awaitable[None]]
QUEUE_LIMIT = 50_000


class Shipper:
    """Keeps entries in order through one queue and one sending task."""

    def __init__(self, sink: LogSink, resource: dict[str, Any], pod_logs_dir: str) -> None:
        self._sink = sink
        self._resource = resource
        self._pod_logs_dir = pod_logs_dir.rstrip("/")
        # Bounded like fluent-bit's memory buffer; what does not fit is dropped and counted.
        self._queue: asyncio.Queue[LogEntry | None] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vm-log-shipper")

    async def stop(self, drain: float = 5.0) -> None:
        """Send what is queued (within ``drain`` seconds), then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(drain):
                await self._queue.put(None)
                await asyncio.shield(self._task)
        except TimeoutError:
            log.warning("log shipping: %d entries not sent at shutdown", self._queue.qsize())
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            entry = await self._queue.get()
            if entry is None:
                return
            try:
                await self._sink(entry)
            except Exception:
                # fluent-bit retries and eventually drops; one bad entry must not stop the rest.
                log.exception("log shipping: sink failed for one entry")

    def line_sink(self, pod: dict[str, Any], container: str, attempt: int) -> LineCallback:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        file = f"{self._pod_logs_dir}/{ns}_{name}_{uid}/{container}/{attempt}.log"

        def on_line(stream: str, ts_ns: int, content: bytes) -> None:
            if self._queue.full():
                self.dropped += 1
                if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                    log.warning("log shipping: buffer full, %d lines dropped", self.dropped)
                return
            self._queue.put_nowait(
                {
                    "timestamp": format_ns(ts_ns, fixed=True),
                    "timestamp_ns": ts_ns,
                    "stream": stream,
                    "log": content.decode("utf-8", errors="replace"),
                    "namespace": ns,
                    "pod_name": name,
                    "pod_uid": uid,
                    "container_name": container,
                    "restart_count": attempt,
                    "file": file,
                    **self._resource,
                }
            )

        return on_line
