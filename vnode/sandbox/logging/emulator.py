"""The Cloud Logging gRPC service (``google.logging.v2.LoggingServiceV2``) on loopback.

vnode reads container logs back with google-cloud-logging's async gRPC client; this
server answers that client with the same messages the real service uses (the protobuf
types the library ships, served through grpcio generic handlers):

- ``WriteLogEntries``: entries get an ``insertId`` and a ``receiveTimestamp``, and
  become visible to readers only :attr:`LoggingEmulator.ingestion_delay` seconds later;
- ``ListLogEntries``: ``resourceNames`` (projects), the filter language of
  :mod:`.filters`, ``orderBy`` ``timestamp asc|desc``, ``pageSize`` (default 50, at most
  1000) and opaque page tokens; :attr:`LoggingEmulator.scan_limit` makes it return short
  pages, as the real service does when a search takes long;
- ``TailLogEntries``: a stream of the matching entries that become visible after the
  session started, held ``buffer_window`` (default 2 s) to put late ones in order; it
  lasts until the client cancels it or the server stops.

Tests inject failures with :meth:`LoggingEmulator.fail_next` and read what was served
from :attr:`LoggingEmulator.counters`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.cloud.logging_v2.types import log_entry as _log_entry
from google.cloud.logging_v2.types import logging as _logging
from google.protobuf import json_format

from vnode.clock import Clock, SystemClock
from vnode.sandbox.logging.filters import SEVERITIES, Fields, FilterError, compile_filter
from vnode.sandbox.logging.fluentbit import DEFAULT_LOG_NAME, entry_from_line
from vnode.sandbox.logging.store import (
    Counters,
    EntryStore,
    Key,
    Stored,
    decode_token,
    encode_token,
    matches,
)

log = logging.getLogger(__name__)

SERVICE = "google.logging.v2.LoggingServiceV2"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_BUFFER_WINDOW = 2.0

LogEntryPb: Any = _log_entry.LogEntry.pb()
_WriteRequest: Any = _logging.WriteLogEntriesRequest.pb()
_WriteResponse: Any = _logging.WriteLogEntriesResponse.pb()
_ListRequest: Any = _logging.ListLogEntriesRequest.pb()
_ListResponse: Any = _logging.ListLogEntriesResponse.pb()
_TailRequest: Any = _logging.TailLogEntriesRequest.pb()
_TailResponse: Any = _logging.TailLogEntriesResponse.pb()

_SEVERITY_NAMES = {v: k for k, v in SEVERITIES.items()}


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _projects(resource_names: Iterable[str]) -> set[str]:
    """The projects a request reads (``projects/P`` or a view under it)."""
    out: set[str] = set()
    for name in resource_names:
        parts = name.split("/")
        if len(parts) < 2 or parts[0] != "projects" or not parts[1]:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid resource name: {name!r}; expected projects/[PROJECT_ID]",
            )
        out.add(parts[1])
    if not out:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "resource_names must not be empty")
    return out


def _fields(entry: Any) -> Fields:
    payload = entry.WhichOneof("payload")
    json_payload = (
        json_format.MessageToDict(entry.json_payload) if payload == "json_payload" else None
    )
    return Fields(
        log_name=entry.log_name,
        resource_type=entry.resource.type,
        resource_labels=dict(entry.resource.labels),
        labels=dict(entry.labels),
        timestamp_ns=entry.timestamp.seconds * 1_000_000_000 + entry.timestamp.nanos,
        receive_ns=entry.receive_timestamp.seconds * 1_000_000_000 + entry.receive_timestamp.nanos,
        severity=int(entry.severity),
        insert_id=entry.insert_id,
        text_payload=entry.text_payload if payload == "text_payload" else None,
        json_payload=json_payload,
        trace=entry.trace,
        span_id=entry.span_id,
    )


def _compile(text: str) -> Callable[[Fields], bool]:
    try:
        return compile_filter(text)
    except FilterError as err:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from err


class LoggingEmulator:
    """A Cloud Logging server for tests, the sandbox and the simulated VMs."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None):
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.ingestion_delay = 0.0
        """Seconds between a write and the entry showing in List and Tail."""
        self.scan_limit: int | None = None
        """Entries one ListLogEntries call looks at before answering with what it found
        (possibly nothing) and a page token; None: no limit."""
        self.counters = Counters()
        self._store = EntryStore()
        self._faults: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        handlers = {
            "WriteLogEntries": grpc.unary_unary_rpc_method_handler(
                self._write_rpc,
                request_deserializer=_WriteRequest.FromString,
                response_serializer=_WriteResponse.SerializeToString,
            ),
            "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                self._list_rpc,
                request_deserializer=_ListRequest.FromString,
                response_serializer=_ListResponse.SerializeToString,
            ),
            "TailLogEntries": grpc.stream_stream_rpc_method_handler(
                self._tail_rpc,
                request_deserializer=_TailRequest.FromString,
                response_serializer=_TailResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        await server.start()
        self._server = server
        self._loop = asyncio.get_running_loop()
        log.info("logging emulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None

    # -- test and sandbox hooks -------------------------------------------------------
    def fail_next(
        self,
        method: str,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        *,
        times: int = 1,
        message: str = "injected failure",
    ) -> None:
        """The next ``times`` calls of ``method`` (e.g. ``ListLogEntries``) fail."""
        self._faults.setdefault(method, []).extend([(code, message)] * times)

    def write(self, entries: Iterable[Any]) -> list[str]:
        """Store entries as WriteLogEntries would; returns their insert IDs.

        Each item is a ``LogEntry`` protobuf message (raw or proto-plus) or a dict in
        the API's JSON form (``{"logName": ..., "textPayload": ..., "timestamp": ...}``).
        Safe to call from another thread than the emulator's.
        """
        ids = [self._store_entry(self._to_pb(item), None, None, None) for item in entries]
        self._notify()
        return ids

    def _notify(self) -> None:
        """Wake the tails, from whichever thread wrote (a VM may ship from another loop)."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or loop.is_closed():
            self._store.notify()
        else:
            loop.call_soon_threadsafe(self._store.notify)

    def vm_sink(
        self, log_name: str = DEFAULT_LOG_NAME
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """The simulated VMs' ``log_sink``: each line becomes the entry vnode's
        fluent-bit configuration would write (see :mod:`.fluentbit`), in the log the
        line names (``log_name``, when the VM read it from its fluent-bit config) or
        else ``log_name``."""

        async def sink(line: dict[str, Any]) -> None:
            # A VM that says which log its fluent-bit writes to is believed.
            self.write([entry_from_line(line, str(line.get("log_name") or log_name))])

        return sink

    def entries(self) -> list[Any]:
        """Every stored entry, visible or not, in timestamp order (for assertions)."""
        return [s.entry for s in self._store.walk(descending=False, after=None)]

    # -- storing ----------------------------------------------------------------------
    @staticmethod
    def _to_pb(item: Any) -> Any:
        if isinstance(item, dict):
            return json_format.ParseDict(item, LogEntryPb())
        if isinstance(item, LogEntryPb):
            return item
        return _log_entry.LogEntry.pb(item)

    def _store_entry(
        self, entry: Any, log_name: str | None, resource: Any, labels: dict[str, str] | None
    ) -> str:
        stored = LogEntryPb()
        stored.CopyFrom(entry)
        if not stored.log_name and log_name:
            stored.log_name = log_name
        if not stored.HasField("resource") and resource is not None:
            stored.resource.CopyFrom(resource)
        if labels:
            merged = {**labels, **dict(stored.labels)}
            stored.labels.clear()
            stored.labels.update(merged)
        parts = stored.log_name.split("/")
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "logs" or not parts[3]:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid log name: {stored.log_name!r}; "
                "expected projects/[PROJECT_ID]/logs/[LOG_ID]",
            )
        if not stored.HasField("resource") or not stored.resource.type:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "A log entry must have a resource")
        now = self.clock.now()
        if not stored.HasField("timestamp"):
            stored.timestamp.FromDatetime(now)
        stored.receive_timestamp.FromDatetime(now)
        if not stored.insert_id:
            stored.insert_id = uuid.uuid4().hex[:16]
        ts = stored.timestamp.seconds * 1_000_000_000 + stored.timestamp.nanos
        key: Key = (ts, 0)  # the store numbers arrivals
        self._store.add(
            Stored(
                key=key,
                received_at=self.clock.monotonic(),
                fields=_fields(stored),
                entry=stored,
                project=parts[1],
            )
        )
        self.counters.written += 1
        return str(stored.insert_id)

    def _visible(self, stored: Stored, now: float) -> bool:
        return stored.received_at + self.ingestion_delay <= now

    # -- RPCs ---------------------------------------------------------------------------
    def _fault(self, method: str) -> None:
        self.counters.by_method[method] = self.counters.by_method.get(method, 0) + 1
        queue = self._faults.get(method)
        if queue:
            code, message = queue.pop(0)
            raise _Abort(code, message)

    async def _write_rpc(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self._fault("WriteLogEntries")
            if not request.entries:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "entries must not be empty")
            resource = request.resource if request.HasField("resource") else None
            if request.dry_run:  # validated like a write, stored nowhere
                scratch = LoggingEmulator(clock=self.clock)
                for entry in request.entries:
                    scratch._store_entry(entry, request.log_name, resource, dict(request.labels))
                return _WriteResponse()
            for entry in request.entries:
                self._store_entry(entry, request.log_name, resource, dict(request.labels))
            self._notify()
        except _Abort as err:
            await context.abort(err.code, err.message)
        return _WriteResponse()

    async def _list_rpc(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self._fault("ListLogEntries")
            return self._list(request)
        except _Abort as err:
            await context.abort(err.code, err.message)
            raise  # unreachable: abort raises

    def _list(self, request: Any) -> Any:
        projects = _projects(request.resource_names)
        pred = _compile(request.filter)
        order = " ".join(request.order_by.split()).lower()
        if order not in ("", "timestamp asc", "timestamp desc"):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid order_by: {request.order_by!r}; "
                'expected "timestamp asc" or "timestamp desc"',
            )
        descending = order == "timestamp desc"
        size = request.page_size or DEFAULT_PAGE_SIZE
        if not 0 < size <= MAX_PAGE_SIZE:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"page_size must be between 0 and {MAX_PAGE_SIZE}, not {request.page_size}",
            )
        query = hashlib.sha256(
            "\n".join([*sorted(request.resource_names), request.filter, order]).encode()
        ).hexdigest()[:16]
        after: Key | None = None
        if request.page_token:
            try:
                after = decode_token(request.page_token, query)
            except ValueError as err:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from err
        now = self.clock.monotonic()
        found: list[Stored] = []
        scanned = 0
        last: Key | None = None
        more = False
        with self._store.lock:
            for stored in self._store.walk(descending=descending, after=after):
                if not self._visible(stored, now):
                    continue
                if self.scan_limit is not None and scanned >= self.scan_limit:
                    more = last is not None
                    break
                scanned += 1
                if not matches(stored, projects, pred):
                    last = stored.key
                    continue
                if len(found) == size:
                    more = True  # one more match exists beyond this page
                    break
                found.append(stored)
                last = stored.key
        self.counters.list_calls += 1
        self.counters.listed += len(found)
        response = _ListResponse()
        response.entries.extend(s.entry for s in found)
        if more and last is not None:
            response.next_page_token = encode_token(last, query)
        return response

    async def _tail_rpc(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            self._fault("TailLogEntries")
            first = await anext(aiter(requests), None)
            if first is None:
                return
            projects = _projects(first.resource_names)
            pred = _compile(first.filter)
            window = DEFAULT_BUFFER_WINDOW
            if first.HasField("buffer_window"):
                window = first.buffer_window.ToTimedelta().total_seconds()
                if not 0 <= window <= 60:
                    raise _Abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "buffer_window must be between 0 and 60000 milliseconds",
                    )
        except _Abort as err:
            await context.abort(err.code, err.message)
            return
        # Later requests on the stream carry nothing we use; read them so the client's
        # writes never block, and keep streaming after it half-closes.
        drain = asyncio.create_task(self._drain(requests), name="logging-tail-requests")
        try:
            async for batch in self._tail(projects, pred, window):
                response = _TailResponse()
                response.entries.extend(s.entry for s in batch)
                self.counters.tailed += len(batch)
                yield response
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await drain

    @staticmethod
    async def _drain(requests: AsyncIterator[Any]) -> None:
        async for _ in requests:
            pass

    async def _tail(
        self, projects: set[str], pred: Callable[[Fields], bool], window: float
    ) -> AsyncIterator[list[Stored]]:
        start = self.clock.monotonic()
        # Entries written before the session but not yet visible are still "new".
        seen = self._store.last_seq
        pending = [
            s
            for s in self._store.received_since(max(0, seen - 1000))
            if not self._visible(s, start) and matches(s, projects, pred)
        ]
        self.counters.tail_sessions += 1
        while True:
            changed = self._store.changed
            fresh = self._store.received_since(seen)
            seen += len(fresh)
            pending.extend(s for s in fresh if matches(s, projects, pred))
            now = self.clock.monotonic()
            due = [s for s in pending if s.received_at + self.ingestion_delay + window <= now]
            if due:
                sent = {id(s) for s in due}
                pending = [s for s in pending if id(s) not in sent]
                yield sorted(due, key=lambda s: s.key)
                continue
            wait = 0.5  # recheck now and then: the delay may have been changed
            if pending:
                first_due = min(s.received_at for s in pending) + self.ingestion_delay + window
                wait = min(wait, max(0.0, first_due - now))
            sleeper = asyncio.ensure_future(self.clock.sleep(wait))
            waker = asyncio.ensure_future(changed.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()


def severity_name(level: int) -> str:
    """``ERROR`` for 500 (for readable test failures)."""
    return _SEVERITY_NAMES.get(level, str(level))
