"""Container logs read back from Cloud Logging, served with the kubelet's semantics.

Once a pod's VM is gone, its lines live only in Cloud Logging, where the VM's
fluent-bit put them: one entry per line, the container's own timestamp, the labels
``LOG_LABELS`` of :mod:`vnode.gce.bootstrap`. :class:`CloudLogs` reads them with
google-cloud-logging's async gRPC client and answers as ``/containerLogs`` would:

- the container instance comes from the pod's status the way the kubelet picks it
  (running or last exited; ``previous``: the one before), errors in the kubelet's words;
- ``sinceTime``/``sinceSeconds`` become a timestamp bound in the filter;
- ``tailLines=N`` lists newest first with page size N and reverses, so a long log is
  never read whole;
- ``timestamps`` prefixes RFC 3339 with nine fractional digits; ``limitBytes`` cuts;
- ``follow`` opens a TailLogEntries stream *before* listing (so no line falls in the
  gap), drops what both return by ``insertId``, reconnects after a failure with a
  catch-up list from the last line sent, and ends once the caller says the container
  is finished and no line arrived for a quiet period (the service shows entries some
  seconds after they were written).

Every call has a deadline and goes through one retry policy (tenacity): UNAVAILABLE,
DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retried with jittered backoff, capped in
attempts and time; anything else surfaces at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as api_exceptions
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from vnode.clock import Clock, SystemClock, parse_time
from vnode.errors import NotFound, Retryable, VnodeError
from vnode.gce import bootstrap as logfields
from vnode.gce import logfilter
from vnode.provider import LogOptions, Pod

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_PAGE_SIZE = 1000
"""The service refuses larger pages."""
_NS = 1_000_000_000
_RETRYABLE_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)
_RETRYABLE_EXCEPTIONS = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.ResourceExhausted,
)


class ContainerLogsUnavailable(NotFound):
    """The container has no log to show (never started, or no earlier instance).

    The kubelet answers these with 400 and a fixed sentence; so does vnode.
    """

    http_status = 400


class LogReadError(VnodeError):
    """Cloud Logging refused a read for a reason retrying cannot fix."""

    http_status = 500


@dataclass(frozen=True)
class ResumePoint:
    """Where a stream of the same container instance already got to.

    ``timestamp_ns`` is the last line sent (nanoseconds since the epoch) and
    ``lines_at_timestamp`` how many lines carrying exactly that timestamp were sent, so a
    stream that started live on the VM continues here without repeating or losing one.
    """

    timestamp_ns: int
    lines_at_timestamp: int = 1


@dataclass(frozen=True)
class CloudLogsConfig:
    """How to reach Cloud Logging and how patient a read is (seconds throughout)."""

    project: str
    log_name: str = logfields.DEFAULT_LOG_NAME
    endpoint: str = ""
    """``host:port`` of a plaintext gRPC endpoint (the sandbox's emulator); empty: the
    real service with the default credentials."""
    call_timeout: float = 30.0
    """Deadline of each List call."""
    attempts: int = 5
    retry_max_seconds: float = 60.0
    """Total time one call may spend on retries."""
    page_size: int = MAX_PAGE_SIZE
    tail_buffer_window: float = 1.0
    """How long the service holds tailed entries to put late ones in order."""
    poll_interval: float = 1.0
    """How often an idle follow asks whether the container finished."""
    drain_quiet: float = 5.0
    """After the container finished, a follow ends once no line came for this long..."""
    drain_max: float = 60.0
    """...or this long after it saw the container finished, whichever is first."""
    tail_session: float = 3000.0
    """A tail stream is reopened (with a catch-up list) after this long."""
    catch_up_margin: float = 300.0
    """How far back (before the follow started, or before a tail stream broke) a
    catch-up list looks for lines the stream may have missed: the longest ingestion
    delay vnode expects."""


# -- which container instance ------------------------------------------------------------


def _container_status(pod: Pod, container: str) -> dict[str, Any] | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for item in status.get(key) or []:
            if item.get("name") == container:
                return dict(item)
    return None


@dataclass(frozen=True)
class Instance:
    """One run of a container: its restart count (the ``<n>.log`` file) and whether it
    can still write."""

    restart_count: int
    running: bool
    finished_at: dt.datetime | None = None


def select_instance(pod: Pod, container: str, *, previous: bool) -> Instance:
    """The instance ``/containerLogs`` shows, chosen from the pod status as the kubelet
    does; :class:`ContainerLogsUnavailable` with the kubelet's sentence when there is none."""
    name = pod["metadata"]["name"]
    status = _container_status(pod, container)
    if status is None:
        raise ContainerLogsUnavailable(f'container "{container}" in pod "{name}" is not available')
    count = int(status.get("restartCount") or 0)
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated")
    if previous:
        if not last:
            raise ContainerLogsUnavailable(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        # Waiting (crash loop back-off): the last run was this count; otherwise the
        # current run has this count and the one before it count - 1.
        n = count if "waiting" in state else count - 1
        return Instance(max(n, 0), False, _time(last.get("finishedAt")))
    if "running" in state:
        return Instance(count, True)
    if "terminated" in state:
        return Instance(count, False, _time(state["terminated"].get("finishedAt")))
    if last:
        return Instance(count, False, _time(last.get("finishedAt")))
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason") or ""
        detail = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        raise ContainerLogsUnavailable(
            f'container "{container}" in pod "{name}" is waiting to start: {detail}'
        )
    raise ContainerLogsUnavailable(
        f'container "{container}" in pod "{name}" is waiting to start - no logs yet'
    )


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        return None


def _always() -> bool:
    return True


# -- formatting ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    timestamp_ns: int
    insert_id: str
    text: str


def line_of(entry: Any) -> Line:
    """A raw ``LogEntry`` protobuf -> the line it carries."""
    ts = entry.timestamp.seconds * _NS + entry.timestamp.nanos
    kind = entry.WhichOneof("payload")
    if kind == "json_payload":
        field = entry.json_payload.fields.get(logfields.PAYLOAD_KEY)
        if field is not None and field.WhichOneof("kind") == "string_value":
            text = field.string_value
        else:
            from google.protobuf import json_format

            text = json_format.MessageToJson(entry.json_payload, indent=None)
    elif kind == "text_payload":
        text = entry.text_payload
    else:
        text = ""
    return Line(ts, entry.insert_id, text)


def format_line(line: Line, *, timestamps: bool) -> bytes:
    """The bytes the kubelet sends for one line (timestamp prefix when asked)."""
    body = line.text.encode() + b"\n"
    if timestamps:
        return logfilter.timestamp_ns(line.timestamp_ns).encode() + b" " + body
    return body


def since_ns(options: LogOptions, now: dt.datetime) -> int | None:
    """The lower timestamp bound of ``sinceTime``/``sinceSeconds`` (inclusive)."""
    if options.since_time is not None:
        return _to_ns(options.since_time)
    if options.since_seconds is not None:
        return _to_ns(now) - options.since_seconds * _NS
    return None


def _to_ns(t: dt.datetime) -> int:
    t = t.astimezone(dt.UTC)
    whole = int(t.replace(microsecond=0).timestamp())
    return whole * _NS + t.microsecond * 1000


class ByteBudget:
    """``limitBytes``: what may still be sent; cuts the chunk that crosses it."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def take(self, chunk: bytes) -> bytes:
        if self.left is None:
            return chunk
        chunk = chunk[: self.left]
        self.left -= len(chunk)
        return chunk


class Skipper:
    """Drops lines at or before a :class:`ResumePoint`, and lines already sent.

    Insert IDs are remembered for lines at or after ``remember_from_ns``: the only
    lines that can come twice (from the list and the tail, or from a catch-up list).
    :meth:`forget_before` lets a long follow drop IDs no catch-up can return again.
    """

    def __init__(self, resume: ResumePoint | None, remember_from_ns: int | None = None) -> None:
        self.resume = resume
        self.left_at_resume = resume.lines_at_timestamp if resume else 0
        self.remember_from_ns = remember_from_ns
        self.sent: dict[str, int] = {}

    def admit(self, line: Line) -> bool:
        if line.insert_id and line.insert_id in self.sent:
            return False
        if self.resume is not None:
            if line.timestamp_ns < self.resume.timestamp_ns:
                return False
            if line.timestamp_ns == self.resume.timestamp_ns and self.left_at_resume > 0:
                self.left_at_resume -= 1
                self._remember(line)
                return False
        self._remember(line)
        return True

    def mark(self, line: Line) -> None:
        """Count ``line`` as sent without sending it (it is deliberately left out)."""
        if line.insert_id:
            self.sent[line.insert_id] = line.timestamp_ns

    def forget_before(self, ns: int) -> None:
        self.remember_from_ns = max(self.remember_from_ns or ns, ns)
        self.sent = {k: t for k, t in self.sent.items() if t >= ns}

    def _remember(self, line: Line) -> None:
        if self.remember_from_ns is None or not line.insert_id:
            return
        if line.timestamp_ns >= self.remember_from_ns:
            self.sent[line.insert_id] = line.timestamp_ns


class LiveTracker:
    """Passes on a VM kubelet's live log stream and remembers where it got to.

    The live stream is requested with ``timestamps=true`` and no ``limitBytes``
    (:meth:`live_options`); :meth:`feed` strips the prefixes again unless the caller
    asked for them, and keeps the last line's timestamp. If the stream breaks because
    the VM went away, :attr:`resume_point` and :attr:`forwarded` say how Cloud Logging
    continues it: ``read_logs(..., resume_after=tracker.resume_point)`` with
    ``limit_bytes`` reduced by ``forwarded``.
    """

    def __init__(self, *, timestamps: bool) -> None:
        self.timestamps = timestamps
        self.resume_point: ResumePoint | None = None
        self.forwarded = 0
        self._pending = b""

    @staticmethod
    def live_options(options: LogOptions) -> LogOptions:
        return replace(options, timestamps=True, limit_bytes=None)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on for ``chunk`` (whole lines; a partial one waits)."""
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        return self._lines(data[:cut])

    def end(self) -> bytes:
        """What is left when the stream ends: a last line without a newline."""
        rest, self._pending = self._pending, b""
        return self._lines(rest)

    def _lines(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = []
        for raw in data.splitlines(keepends=True):
            stamp, sep, rest = raw.partition(b" ")
            try:
                ns = logfilter.parse_timestamp_ns(stamp.decode()) if sep else None
            except (UnicodeDecodeError, ValueError):
                ns = None
            if ns is None:  # not a line of ours (an error text ending the body): as is
                out.append(raw)
                continue
            point = self.resume_point
            if point is not None and point.timestamp_ns == ns:
                self.resume_point = ResumePoint(ns, point.lines_at_timestamp + 1)
            else:
                self.resume_point = ResumePoint(ns)
            out.append(raw if self.timestamps else rest)
        text = b"".join(out)
        self.forwarded += len(text)
        return text


# -- the reader --------------------------------------------------------------------------


@dataclass
class _Floor:
    """The earliest timestamp a follow's catch-up lists look at (raised as it learns)."""

    ns: int


def _retryable(err: BaseException) -> bool:
    if isinstance(err, _RETRYABLE_EXCEPTIONS):
        return True
    return isinstance(err, grpc.aio.AioRpcError) and err.code() in _RETRYABLE_CODES


class CloudLogs:
    """Reads container logs from Cloud Logging (one client, shared by every read)."""

    def __init__(
        self,
        config: CloudLogsConfig,
        *,
        clock: Clock | None = None,
        client: Any = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._client = client
        self._channel: grpc.aio.Channel | None = None

    # -- client -----------------------------------------------------------------------
    def _get_client(self) -> Any:
        if self._client is None:
            from google.cloud.logging_v2.services.logging_service_v2 import (
                LoggingServiceV2AsyncClient,
            )

            if self.config.endpoint:
                from google.auth.credentials import AnonymousCredentials
                from google.cloud.logging_v2.services.logging_service_v2.transports import (
                    grpc_asyncio,
                )

                self._channel = grpc.aio.insecure_channel(self.config.endpoint)
                transport = grpc_asyncio.LoggingServiceV2GrpcAsyncIOTransport(
                    channel=self._channel,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                )
                self._client = LoggingServiceV2AsyncClient(transport=transport)
            else:
                from google.auth import exceptions as auth_exceptions

                try:
                    self._client = LoggingServiceV2AsyncClient()
                except auth_exceptions.DefaultCredentialsError as err:
                    raise LogReadError(
                        f"Cloud Logging: no credentials to read logs with ({err}); give vnode "
                        "Application Default Credentials, or a --logging-endpoint"
                    ) from err
        return self._client

    async def close(self) -> None:
        """Close the connection (a later read opens a new one)."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        elif self._client is not None and hasattr(self._client, "transport"):
            await self._client.transport.close()
        self._client = None

    async def _retry(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retryable),
                stop=stop_after_attempt(self.config.attempts)
                | stop_after_delay(self.config.retry_max_seconds),
                wait=wait_exponential_jitter(multiplier=0.2, max=10.0, jitter=0.2),
                sleep=self.clock.sleep,
                reraise=True,
            ):
                with attempt:
                    return await call()
        except _RETRYABLE_EXCEPTIONS as err:
            raise Retryable(f"Cloud Logging {what}: {err}") from err
        except api_exceptions.GoogleAPICallError as err:
            raise LogReadError(f"Cloud Logging {what}: {err}") from err
        except grpc.aio.AioRpcError as err:
            if err.code() in _RETRYABLE_CODES:
                raise Retryable(f"Cloud Logging {what}: {err.details()}") from err
            raise LogReadError(f"Cloud Logging {what}: {err.details()}") from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_page(
        self, filter_: str, *, descending: bool, page_size: int, page_token: str = ""
    ) -> tuple[list[Line], str]:
        """One ListLogEntries call (retried): its lines and the next page token."""
        from google.cloud.logging_v2.types import logging as logging_types

        request = logging_types.ListLogEntriesRequest(
            resource_names=[f"projects/{self.config.project}"],
            filter=filter_,
            order_by="timestamp desc" if descending else "timestamp asc",
            page_size=page_size,
            page_token=page_token,
        )

        async def call() -> Any:
            pager = await self._get_client().list_log_entries(
                request=request, retry=None, timeout=self.config.call_timeout
            )
            async for page in pager.pages:  # the first page only: paging is ours
                return logging_types.ListLogEntriesResponse.pb(page)
            return None

        raw = await self._retry("entries.list", call)
        if raw is None:
            return [], ""
        return [line_of(e) for e in raw.entries], raw.next_page_token

    async def list_lines(
        self, filter_: str, *, descending: bool = False, limit: int | None = None
    ) -> AsyncIterator[list[Line]]:
        """Pages of lines in timestamp order, at most ``limit`` lines in all.

        A page may come back short or empty with a token (the service stops searching
        after a while); paging goes on until the token runs out or the limit is met.
        """
        token = ""
        got = 0
        while True:
            size = self.config.page_size
            if limit is not None:
                size = min(size, limit - got)
                if size <= 0:
                    return
            lines, token = await self.list_page(
                filter_, descending=descending, page_size=size, page_token=token
            )
            if limit is not None:
                lines = lines[: limit - got]
            got += len(lines)
            if lines:
                yield lines
            if not token:
                return

    # -- the public read -------------------------------------------------------------
    def filter_for(
        self, pod: Pod, container: str, instance: Instance, *, since: int | None = None
    ) -> str:
        """The filter of one container instance's lines at or after ``since`` (ns)."""
        labels = {
            logfields.LABEL_POD_UID: pod["metadata"]["uid"],
            logfields.LABEL_CONTAINER: container,
            logfields.LABEL_RESTART_COUNT: str(instance.restart_count),
        }
        floor = since
        meta: dict[str, Any] = dict(pod["metadata"])
        created = _time(meta.get("creationTimestamp"))
        if created is not None:
            # Nothing of the pod predates it (a margin for the VM's clock), and a time
            # bound keeps the service from searching the project's whole retention.
            pod_floor = _to_ns(created) - 600 * _NS
            floor = pod_floor if floor is None else max(floor, pod_floor)
        return logfilter.container_filter(
            project=self.config.project,
            log_id=self.config.log_name,
            labels=labels,
            since_ns=floor,
        )

    async def read_logs(
        self,
        pod: Pod,
        options: LogOptions,
        *,
        pod_finished: Callable[[], bool] = lambda: True,
        resume_after: ResumePoint | None = None,
    ) -> AsyncIterator[bytes]:
        """The container's log as ``/containerLogs`` would stream it.

        ``pod_finished``: True once the followed container can write no more lines (it
        exited, the pod ended, the VM is gone); a follow ends after that, once the
        lines still on their way are in. ``resume_after``: continue a stream of the same
        instance that already sent up to there (``tail_lines`` is then ignored; pass a
        ``limit_bytes`` that counts only what remains).

        Raises :class:`ContainerLogsUnavailable` (400, the kubelet's sentences) before
        the first chunk when there is no such log; :class:`~vnode.errors.Retryable` when
        Cloud Logging stays unavailable.
        """
        instance = select_instance(pod, options.container, previous=options.previous)
        since = since_ns(options, self.clock.now())
        if resume_after is not None:
            since = (
                resume_after.timestamp_ns
                if since is None
                else max(since, resume_after.timestamp_ns)
            )

        def filter_since(bound: int | None = None) -> str:
            low = since if bound is None else (bound if since is None else max(since, bound))
            return self.filter_for(pod, options.container, instance, since=low)

        budget = ByteBudget(options.limit_bytes)
        tail = None if resume_after is not None else options.tail_lines
        follow = options.follow and not options.previous and self._worth_following(instance)
        if not follow:
            skipper = Skipper(resume_after)
            async for chunk in self._read_once(
                filter_since(), tail, options.timestamps, budget, skipper
            ):
                yield chunk
            return
        async for chunk in self._follow(
            filter_since=filter_since,
            tail=tail,
            timestamps=options.timestamps,
            budget=budget,
            resume=resume_after,
            # A run that already ended writes nothing more, whatever the pod does next
            # (a crash loop starts a new run with its own log).
            pod_finished=pod_finished if instance.running else _always,
        ):
            yield chunk

    def _worth_following(self, instance: Instance) -> bool:
        """A run that ended long ago has all its lines in: read it once."""
        if instance.running or instance.finished_at is None:
            return True
        age = (self.clock.now() - instance.finished_at).total_seconds()
        return age < self.config.drain_max

    def _emit(
        self, lines: Iterable[Line], timestamps: bool, budget: ByteBudget, skipper: Skipper
    ) -> bytes:
        out = b"".join(format_line(x, timestamps=timestamps) for x in lines if skipper.admit(x))
        return budget.take(out)

    async def _read_once(
        self,
        filter_: str,
        tail: int | None,
        timestamps: bool,
        budget: ByteBudget,
        skipper: Skipper,
    ) -> AsyncIterator[bytes]:
        if tail is not None:
            if tail <= 0:
                return
            newest: list[Line] = []
            async for page in self.list_lines(filter_, descending=True, limit=tail):
                newest.extend(page)
            newest.reverse()
            for start in range(0, len(newest), MAX_PAGE_SIZE):
                part = newest[start : start + MAX_PAGE_SIZE]
                chunk = self._emit(part, timestamps, budget, skipper)
                if chunk:
                    yield chunk
                if budget.spent:
                    return
            return
        async for page in self.list_lines(filter_):
            chunk = self._emit(page, timestamps, budget, skipper)
            if chunk:
                yield chunk
            if budget.spent:
                return

    def _wall_ns(self) -> int:
        return _to_ns(self.clock.now())

    async def _follow(
        self,
        *,
        filter_since: Callable[..., str],
        tail: int | None,
        timestamps: bool,
        budget: ByteBudget,
        resume: ResumePoint | None,
        pod_finished: Callable[[], bool],
    ) -> AsyncIterator[bytes]:
        margin = int(self.config.catch_up_margin * _NS)
        floor = _Floor(self._wall_ns() - margin)
        skipper = Skipper(resume, remember_from_ns=floor.ns)
        queue: asyncio.Queue[list[Line] | BaseException] = asyncio.Queue()
        opened = asyncio.Event()
        loop = asyncio.get_running_loop()
        tailer = asyncio.create_task(
            self._tail_into(filter_since, floor, queue, opened), name="cloud-logs-tail"
        )
        try:
            # The stream is open before the list runs: whatever lands in between comes
            # through it, and what both return is dropped by insert ID.
            opening = asyncio.ensure_future(opened.wait())
            getting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({opening, getting}, return_when=asyncio.FIRST_COMPLETED)
            opening.cancel()
            if getting in done:
                first = getting.result()
                if isinstance(first, BaseException):
                    raise first
                queue.put_nowait(first)
            else:
                getting.cancel()
            if tail is None:
                async for chunk in self._read_once(
                    filter_since(), None, timestamps, budget, skipper
                ):
                    yield chunk
                    if budget.spent:
                        return
            else:
                # The newest line (even with tailLines=0) marks where "new" begins: a
                # catch-up list never goes back before it, or it would undo the tail.
                newest: list[Line] = []
                async for page in self.list_lines(
                    filter_since(), descending=True, limit=max(tail, 1)
                ):
                    newest.extend(page)
                newest.reverse()
                if newest:
                    floor.ns = max(floor.ns, newest[-1].timestamp_ns)
                shown = newest[len(newest) - tail :] if tail > 0 else []
                for line in newest[: len(newest) - len(shown)]:
                    skipper.mark(line)
                chunk = self._emit(shown, timestamps, budget, skipper)
                if chunk:
                    yield chunk
                if budget.spent:
                    return
            finished_at: float | None = None
            last_line_at = loop.time()
            # Once the stream has surely been open a while, one list from just before
            # the start finds what the stream missed while it was opening.
            settle_at: float | None = loop.time() + self.config.tail_buffer_window + 2.0
            while True:
                if settle_at is not None and loop.time() >= settle_at:
                    settle_at = None
                    async for chunk in self._catch_up(
                        filter_since(floor.ns), timestamps, budget, skipper
                    ):
                        yield chunk
                    if budget.spent:
                        return
                if len(skipper.sent) > 50_000:
                    skipper.forget_before(self._wall_ns() - 2 * margin)
                if finished_at is None and pod_finished():
                    finished_at = loop.time()
                    last_line_at = max(last_line_at, finished_at)
                now = loop.time()
                if finished_at is not None and (
                    now - last_line_at >= self.config.drain_quiet
                    or now - finished_at >= self.config.drain_max
                ):
                    break
                wait = self.config.poll_interval
                if settle_at is not None:
                    wait = min(wait, settle_at - now)
                if finished_at is not None:
                    wait = min(wait, last_line_at + self.config.drain_quiet - now)
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.01))
                except TimeoutError:
                    continue
                if isinstance(item, BaseException):
                    raise item
                last_line_at = loop.time()
                chunk = self._emit(item, timestamps, budget, skipper)
                if chunk:
                    yield chunk
                if budget.spent:
                    return
            if settle_at is not None:  # ended before the settling look: take it now
                async for chunk in self._catch_up(
                    filter_since(floor.ns), timestamps, budget, skipper
                ):
                    yield chunk
        finally:
            tailer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await tailer

    async def _catch_up(
        self, filter_: str, timestamps: bool, budget: ByteBudget, skipper: Skipper
    ) -> AsyncIterator[bytes]:
        async for page in self.list_lines(filter_):
            chunk = self._emit(page, timestamps, budget, skipper)
            if chunk:
                yield chunk
            if budget.spent:
                return

    async def _tail_into(
        self,
        filter_since: Callable[..., str],
        floor: _Floor,
        queue: asyncio.Queue[list[Line] | BaseException],
        opened: asyncio.Event,
    ) -> None:
        """Feed ``queue`` from TailLogEntries, reopening the stream when it ends or fails;
        after a reopen, a catch-up list covers the time the stream was down."""
        from google.cloud.logging_v2.types import logging as logging_types

        request = logging_types.TailLogEntriesRequest(
            resource_names=[f"projects/{self.config.project}"], filter=filter_since()
        )
        request.buffer_window = dt.timedelta(seconds=self.config.tail_buffer_window)
        margin = int(self.config.catch_up_margin * _NS)
        gap_from: int | None = None  # set while a reopened stream must catch up
        failures = 0
        while True:
            hold = asyncio.Event()

            async def requests(hold: asyncio.Event = hold) -> AsyncIterator[Any]:
                yield request
                await hold.wait()  # keep our side open while we read

            opened_at = asyncio.get_running_loop().time()
            try:
                stream = await self._get_client().tail_log_entries(
                    requests=requests(), retry=None, timeout=self.config.tail_session
                )
                opened.set()
                if gap_from is not None:
                    async for page in self.list_lines(filter_since(max(gap_from, floor.ns))):
                        await queue.put(page)
                    gap_from = None
                async for response in stream:
                    failures = 0
                    raw = logging_types.TailLogEntriesResponse.pb(response)
                    if raw.entries:
                        await queue.put([line_of(e) for e in raw.entries])
                # The service ends sessions after a while: reopen and catch up.
                gap_from = self._wall_ns() - margin
            except asyncio.CancelledError:
                raise
            except Exception as err:
                gap_from = self._wall_ns() - margin
                if not (_retryable(err) or isinstance(err, Retryable)):
                    await queue.put(LogReadError(f"Cloud Logging entries.tail: {err}"))
                    return
                # A stream that ran a while and then ended (the service's session
                # limit) is not a run of failures.
                long_lived = asyncio.get_running_loop().time() - opened_at > 60.0
                failures = 1 if long_lived else failures + 1
                if failures >= self.config.attempts:
                    await queue.put(Retryable(f"Cloud Logging entries.tail: {err}"))
                    return
                log.info("Cloud Logging tail interrupted (%s); reopening", err)
                await self.clock.sleep(min(10.0, 0.2 * 2**failures))
            finally:
                hold.set()
