"""vnode's Prometheus metrics and the small plain-HTTP server that exposes them.

A platform team watches vnode the way it watches every controller: Prometheus scrapes
``/metrics`` on a port of its own (plain HTTP, never the kubelet API's TLS port, which
only the API server should reach), and the kubelet-style ``/healthz`` answers probes
there too. The default port is :data:`DEFAULT_PORT` (9090). Not 10255: that is the
kubelet read-only port, which vnode's security model keeps closed.

All metrics live in one :class:`Metrics` object with a private ``CollectorRegistry``, not
in prometheus_client's global one, so tests can make as many as they like. The code
being measured reaches the active object through :func:`current`; a test installs a
fresh one with :func:`installed`. Names start with ``vnode_``; labels take few values
(a result class, an API method, a pod phase), so the series count never grows with pods.

- ``vnode_pods{phase}``: pods bound to this Node by phase, read from the pod
  controller's cache when scraped (:meth:`Metrics.count_pods_from`).
- ``vnode_vm_creates_total{result}``, ``vnode_vm_create_duration_seconds{result}`` and the
  same for deletes: one per ``instances.insert``/``delete``, operation wait included.
- ``vnode_compute_api_calls_total{method,result}``: every attempt, retries included;
  ``result`` is ``ok``, the HTTP code, or ``connection_error``.
- ``vnode_lease_renew_duration_seconds{result}`` and
  ``vnode_lease_last_success_timestamp_seconds``: alert when now minus that nears 40 s.
- ``vnode_kubelet_poll_duration_seconds{result}``: one ``/pods`` call to a VM kubelet.
- ``vnode_workqueue_depth`` and ``vnode_workqueue_retries_total``: the pod controller's
  queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

DEFAULT_PORT = 9090
"""Where ``/metrics`` and ``/healthz`` listen unless told otherwise."""
DISABLED = -1
"""The port value that switches the metrics server off."""
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
BIND_RETRY = (1.0, 60.0)
"""Seconds between attempts to listen while the port is taken: first, cap."""

# Compute calls and VM operations take seconds to minutes; API calls and polls less.
_VM_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

P = ParamSpec("P")
R = TypeVar("R")


class _PodPhases(Collector):
    """``vnode_pods{phase}``, counted from a pod source at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Mapping[str, Any]]] | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "vnode_pods", "Pods bound to this Node, by phase.", labels=["phase"]
        )
        counts: Tally[str] = Tally()
        if self.source is not None:
            for pod in self.source():
                counts[str((pod.get("status") or {}).get("phase") or "Pending")] += 1
        for phase in (*PHASES, *sorted(set(counts) - set(PHASES))):
            family.add_metric([phase], counts.get(phase, 0))
        yield family


class Metrics:
    """Every vnode metric, in a registry of its own."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:  # memory, CPU, open files: what every exporter offers
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self._pods = _PodPhases()
        r.register(self._pods)
        self.vm_creates = Counter(
            "vnode_vm_creates", "VM creations (insert and its operation), by result.",
            ["result"], registry=r,
        )  # fmt: skip
        self.vm_create_seconds = Histogram(
            "vnode_vm_create_duration_seconds",
            "Time from the insert call until its operation finished, by result.",
            ["result"], buckets=_VM_BUCKETS, registry=r,
        )  # fmt: skip
        self.vm_deletes = Counter(
            "vnode_vm_deletes", "VM deletions, by result.", ["result"], registry=r
        )
        self.vm_delete_seconds = Histogram(
            "vnode_vm_delete_duration_seconds", "Time a VM deletion took, by result.",
            ["result"], buckets=_VM_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute_calls = Counter(
            "vnode_compute_api_calls",
            "Compute Engine API calls (each attempt), by method and result "
            "(ok, the HTTP code, or connection_error).",
            ["method", "result"], registry=r,
        )  # fmt: skip
        self.lease_renew_seconds = Histogram(
            "vnode_lease_renew_duration_seconds", "Time one Lease renewal took, by result.",
            ["result"], buckets=_FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.lease_last_success = Gauge(
            "vnode_lease_last_success_timestamp_seconds",
            "Unix time of the last successful Lease renewal (0: none yet).",
            registry=r,
        )
        self.kubelet_poll_seconds = Histogram(
            "vnode_kubelet_poll_duration_seconds",
            "Time one /pods poll of a VM kubelet took, by result.",
            ["result"], buckets=_FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "vnode_workqueue_depth", "Pod keys waiting in the work queue.", registry=r
        )
        self.queue_retries = Counter(
            "vnode_workqueue_retries", "Pod keys queued again after a failure.", registry=r
        )

    def count_pods_from(self, source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        """Report ``vnode_pods`` from ``source()`` (the pod controller's cache)."""
        self._pods.source = source

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value (``name`` as exposed, e.g. ``vnode_vm_creates_total``)."""
        return self.registry.get_sample_value(name, dict(labels or {}))


_current = Metrics()


def current() -> Metrics:
    """The metrics the running code records into."""
    return _current


@contextlib.contextmanager
def installed(metrics: Metrics) -> Iterator[Metrics]:
    """Record into ``metrics`` for the duration of the block (tests)."""
    global _current
    previous, _current = _current, metrics
    try:
        yield metrics
    finally:
        _current = previous


def result_of(err: BaseException | None) -> str:
    """A low-cardinality result label: ``ok``, or the error's class in snake case."""
    if err is None:
        return "ok"
    name = type(err).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def timed(
    histogram: str, counter: str | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a coroutine function: observe its duration into the histogram attribute
    ``histogram`` of :func:`current` (and count it in ``counter``), labelled by result.

    Cancellation is not an outcome and is not recorded."""

    def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def measured(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                out = await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                _observe(histogram, counter, result_of(e), time.perf_counter() - started)
                raise
            _observe(histogram, counter, "ok", time.perf_counter() - started)
            return out

        return measured

    return wrap


def counted_call(method: str, fn: Callable[[], R]) -> Callable[[], R]:
    """``fn`` (one Compute API call), counted in ``vnode_compute_api_calls_total`` with
    ``method`` and its result: ``ok``, the HTTP code of an API error, or
    ``connection_error``."""

    def call() -> R:
        try:
            out = fn()
        except Exception as err:
            code = getattr(err, "code", None)
            if isinstance(code, int) and code > 0:
                result = str(code)
            elif isinstance(err, OSError | ConnectionError):
                result = "connection_error"
            else:
                result = result_of(err)
            current().compute_calls.labels(method, result).inc()
            raise
        current().compute_calls.labels(method, "ok").inc()
        return out

    return call


def _observe(histogram: str, counter: str | None, result: str, seconds: float) -> None:
    m = current()
    getattr(m, histogram).labels(result).observe(seconds)
    if counter is not None:
        getattr(m, counter).labels(result).inc()


# -- the server ---------------------------------------------------------------------------


def make_app(metrics: Metrics | None = None) -> web.Application:
    """``/metrics`` (text exposition) and ``/healthz`` (``ok``), unauthenticated."""

    async def scrape(request: web.Request) -> web.Response:
        # On the loop, not in a thread: the pod counts read the controller's live cache.
        body = (metrics or current()).exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    return app


class MetricsServer:
    """The plain-HTTP metrics endpoint. ``port`` 0 takes any free port."""

    def __init__(self, address: str, port: int, metrics: Metrics | None = None) -> None:
        self.address = address
        self.port = port
        self._app = make_app(metrics)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; raises OSError when the port cannot be had."""
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.address, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def serve(self) -> None:
        """Listen until cancelled (the runner's supervised ``metrics`` task). A taken port
        is an error in the log and another attempt later, never a reason to stop the
        Node: the heartbeats matter more than the metrics."""
        delay, cap = BIND_RETRY
        while True:
            try:
                await self.start()
                break
            except OSError as e:
                log.error(
                    "metrics server cannot listen on %s:%d (retrying in %g s): %s",
                    self.address, self.port, delay, e,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)
        log.info("metrics on http://%s:%d/metrics", self.address, self.port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
