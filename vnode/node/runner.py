"""``vnode run``: build every part of the virtual Node, supervise it, stop it in stages.

Start order follows what depends on what: the provider (it may be asked for capacity),
the kubelet API (its port goes into the Node), the Node (its uid goes into the Lease),
then the Lease, the Node status loop and the pod controller. The Lease and the Node
status share a second API connection (the kubelet's "heartbeat client"), so that no
amount of pod traffic can delay them.

Every long-lived task runs under a :class:`Supervisor`: it is named, and when it ends
for any reason but shutdown the traceback is logged and either the task is restarted
(the heartbeats, which must outlive any bug in one renewal) or the process stops with a
non-zero exit code. Nothing vanishes silently.

SIGTERM/SIGINT stop everything in stages, in reverse order of dependence, within
``settings.shutdown_timeout``: stop taking pod work, stop the kubelet API, stop the
heartbeats (the Lease is left to expire, never deleted), send the last Events, stop
the provider (its pods keep running), close the API connections. The exit code is 0.
A second signal abandons whatever is left of the shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from vnode.clock import SystemClock
from vnode.errors import ConfigError
from vnode.metrics import DISABLED, MetricsServer
from vnode.node import kube
from vnode.node.auth import KubeletAuth
from vnode.node.cluster import ApiClusterReader
from vnode.node.events import EventRecorder
from vnode.node.kubelet_api import KubeletAPI
from vnode.node.lease import LeaseKeeper
from vnode.node.nodestatus import NodeKeeper, node_addresses
from vnode.node.pods import PodController
from vnode.provider import Provider, ProviderContext
from vnode.settings import Settings

log = logging.getLogger(__name__)

BUILTIN_PROVIDERS = {"gce": "vnode.gce.provider:from_settings"}
"""Built-in backends, imported by name like any other (``vnode.node`` never imports them).
A built-in factory takes the Settings; a user's ``module:attribute`` takes nothing."""

RESTART_DELAY = 1.0
"""Seconds before a crashed restartable task runs again (a crash loop must not spin)."""
SIGNAL_REPEAT_WINDOW = 1.0
"""Seconds within which a repeated signal is the same one delivered twice (to the process
and to its group), not a person asking a second time."""
REGISTER_BACKOFF = (1.0, 30.0)
"""Seconds between Node registration attempts while the API server refuses: first, cap."""


# -- the provider ---------------------------------------------------------------------


async def load_provider(settings: Settings) -> Provider:
    """The Provider named by ``settings.provider`` (``gce`` or ``package.module:attr``).

    The attribute is called with no arguments if callable (a class or a factory), and
    the result awaited if awaitable. The working directory is importable, as for other
    servers that load application code by name.
    """
    spec = settings.provider
    builtin = spec in BUILTIN_PROVIDERS
    module_name, _, attribute = BUILTIN_PROVIDERS.get(spec, spec).partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"invalid provider {spec!r}: expected gce or package.module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if builtin and e.name is not None and module_name.startswith(e.name):
            raise ConfigError(
                f"the {spec} provider is not available in this build of vnode yet; "
                "give --provider package.module:attribute"
            ) from e
        raise ConfigError(f"cannot import provider module {module_name!r}: {e}") from e
    except Exception as e:
        raise ConfigError(f"importing provider module {module_name!r} failed: {e!r}") from e
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"provider module {module_name!r} has no {attribute!r}") from None
    try:
        provider = (target(settings) if builtin else target()) if callable(target) else target
        if inspect.isawaitable(provider):
            provider = await provider
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"creating the provider {spec!r} failed: {e!r}") from e
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"{spec} gave {type(provider).__name__}, which does not implement the Provider "
            "protocol (see vnode/provider.py)"
        )
    return provider


# -- supervision ----------------------------------------------------------------------


class TaskCrashed(Exception):
    """A supervised task ended on its own (the process must stop)."""


class Supervisor:
    """Named long-lived tasks; a crash is logged and restarts the task or stops vnode."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.crashed = asyncio.Event()
        self.crash: str | None = None  # name of the first task that ended on its own
        self.restarts: dict[str, int] = {}

    def spawn(
        self, name: str, factory: Callable[[], Awaitable[None]], *, restart: bool = False
    ) -> None:
        """Run ``factory()`` as task ``name``; on a crash restart it, or flag the crash."""
        self.tasks[name] = asyncio.create_task(self._guard(name, factory, restart), name=name)

    async def _guard(
        self, name: str, factory: Callable[[], Awaitable[None]], restart: bool
    ) -> None:
        while True:
            try:
                await factory()
                log.error("task %s ended although it should run until vnode stops", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s crashed", name)
            if not restart:
                if self.crash is None:
                    self.crash = name
                self.crashed.set()
                return
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.warning("restarting task %s in %.0f s", name, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)

    async def stop(self, *names: str, timeout: float) -> bool:  # noqa: ASYNC109 - a budget, not a timeout of this call
        """Cancel the named tasks and wait for them; False if one outlived ``timeout``."""
        tasks = [self.tasks.pop(n) for n in names if n in self.tasks]
        for task in tasks:
            task.cancel()
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, timeout))
        for task in pending:
            log.error("task %s did not stop within its shutdown budget", task.get_name())
        return not pending


# -- the run --------------------------------------------------------------------------


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = asyncio.get_running_loop().time() + seconds

    def left(self) -> float:
        return max(0.0, self.end - asyncio.get_running_loop().time())


async def _bounded(what: str, awaitable: Awaitable[Any], deadline: _Deadline) -> None:
    """One shutdown stage: awaited within what is left of the budget, failures logged."""
    try:
        await asyncio.wait_for(awaitable, timeout=deadline.left())
    except TimeoutError:
        log.error("shutdown: %s did not finish in time; going on", what)
    except Exception:
        log.exception("shutdown: %s failed; going on", what)


async def _register(node: NodeKeeper) -> None:
    """Register the Node, retrying with backoff while the API server refuses (as a kubelet)."""
    delay, cap = REGISTER_BACKOFF
    while True:
        try:
            await node.register()
            return
        except Exception as e:
            log.error("registering Node %s failed (retrying in %.0f s): %r", node.name, delay, e)
        await asyncio.sleep(delay)
        delay = min(cap, delay * 2)


async def run(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Run the virtual Node until SIGTERM/SIGINT (exit 0) or a task crash (exit 1).

    ``stop``: an embedding program (``vnode demo``) sets it to stop vnode as a signal
    would; it then owns SIGTERM/SIGINT itself, so no handlers are installed here.

    Raises ConfigError before anything starts when the provider or the Kubernetes
    configuration cannot be loaded.
    """
    if stop is not None:
        return await _run(settings, stop, asyncio.Event())
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    hurry = asyncio.Event()

    first: list[float] = []  # loop time of the first signal

    def on_signal(sig: signal.Signals) -> None:
        if not stopping.is_set():
            stopping.set()
            first.append(loop.time())
        elif loop.time() - first[0] < SIGNAL_REPEAT_WINDOW:
            # One signal delivered twice: `timeout`, `kill -- -PGID` and some init systems
            # signal the process and then its whole group.
            log.info("%s again at once: taken as the same request to stop", sig.name)
        elif not hurry.is_set():
            log.warning("second %s: stopping without waiting for the rest", sig.name)
            hurry.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await _run(settings, stopping, hurry)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


class _Parts:
    """What one run built, so that shutdown can take down exactly what was started."""

    def __init__(self, settings: Settings, provider: Provider, api: Any) -> None:
        self.settings = settings
        self.provider = provider
        self.api = api
        self.heartbeat_api: Any = None
        self.clock = SystemClock()
        self.sup = Supervisor()
        self.recorder = EventRecorder(api, settings.node.name, self.clock)
        self.pods = PodController(api, provider, settings, self.recorder, self.clock)
        self.kubelet: KubeletAPI | None = None
        self.provider_started = False

    async def start(self) -> NodeKeeper:
        """Provider, kubelet API, Node: each needs what the previous one gives."""
        settings, name = self.settings, self.settings.node.name
        context = ProviderContext(
            name, ApiClusterReader(self.api), self.recorder, notify=self.pods.notify
        )
        await self.provider.start(context)
        self.provider_started = True
        addresses = node_addresses(settings)
        auth = KubeletAuth(self.api, settings.kubelet_api.client_ca_file, name)
        self.kubelet = KubeletAPI(
            settings.kubelet_api, self.provider, self.pods, auth, name, addresses
        )
        await self.kubelet.start()
        node = NodeKeeper(
            self.heartbeat_api, settings, self.provider, self.clock, self.kubelet.port,
            addresses, recorder=self.recorder,
        )  # fmt: skip
        await _register(node)
        return node

    async def shutdown(self) -> None:
        """The staged stop, bounded by ``settings.shutdown_timeout`` in total."""
        deadline = _Deadline(self.settings.shutdown_timeout)
        sup = self.sup
        # 1. No new pod work (the provider's pods keep running; a restart adopts them).
        await sup.stop("pods", timeout=deadline.left())
        # 2. No new kubelet API requests; open log streams end.
        if self.kubelet is not None:
            await _bounded("stopping the kubelet API", self.kubelet.stop(), deadline)
        # 3. The heartbeats: the Lease simply stops being renewed.
        await sup.stop("node-status", "lease", timeout=deadline.left())
        # 4. The last Events, briefly.
        flush = self.recorder.flush(min(2.0, deadline.left()))
        await _bounded("sending the last events", flush, deadline)
        await sup.stop("events", timeout=deadline.left())
        # 5. The backend's connections and background tasks.
        if self.provider_started:
            await _bounded("stopping the provider", self.provider.stop(), deadline)
        # 6. The API connections.
        for client in (self.api, self.heartbeat_api):
            if client is not None:
                await _bounded("closing an API connection", client.close(), deadline)
        await sup.stop(*list(sup.tasks), timeout=deadline.left())
        log.info("vnode stopped")


async def _run(settings: Settings, stopping: asyncio.Event, hurry: asyncio.Event) -> int:
    name = settings.node.name
    provider = await load_provider(settings)
    parts = _Parts(settings, provider, await kube.connect(settings.kube, purpose="main"))
    sup = parts.sup
    waiters: list[asyncio.Task[Any]] = []
    code = 0
    try:
        # The heartbeats (Lease and Node status, as the kubelet's heartbeat client) have
        # their own connection pool: pod traffic never queues in front of a renewal.
        parts.heartbeat_api = await kube.connect(settings.kube, purpose="heartbeat")
        sup.spawn("events", parts.recorder.run, restart=True)
        if settings.metrics.port != DISABLED:  # up first: probes ask /healthz during startup
            metrics = MetricsServer(settings.metrics.address, settings.metrics.port)
            sup.spawn("metrics", metrics.serve, restart=True)

        starting = asyncio.create_task(parts.start(), name="startup")
        stop_wait = asyncio.create_task(stopping.wait(), name="wait-for-signal")
        waiters += [starting, stop_wait]
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("stop requested during startup")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        try:
            node = starting.result()
        except ConfigError:
            raise  # the CLI turns it into one line and exit code 2
        except Exception:
            log.exception("starting vnode failed")
            return 1

        lease = LeaseKeeper(parts.heartbeat_api, name, lambda: node.node_uid, settings.lease,
                            parts.clock)  # fmt: skip
        sup.spawn("lease", lease.run, restart=True)
        sup.spawn("node-status", node.run, restart=True)
        sup.spawn("pods", parts.pods.run)
        log.info(
            "vnode is running: Node %s (provider %s), kubelet API on %s:%d",
            name, provider.name, settings.kubelet_api.address, node.kubelet_port,
        )  # fmt: skip

        crashed = asyncio.create_task(sup.crashed.wait(), name="wait-for-crash")
        waiters.append(crashed)
        await asyncio.wait({stop_wait, crashed}, return_when=asyncio.FIRST_COMPLETED)
        if sup.crash is not None:
            log.error("stopping vnode because task %s ended", sup.crash)
            code = 1
        else:
            log.info("stopping vnode (signal received)")
    finally:
        for waiter in waiters:
            waiter.cancel()
        await _unless(hurry, parts.shutdown())
    return code


async def _unless(hurry: asyncio.Event, shutdown: Awaitable[None]) -> None:
    """Run the staged shutdown, abandoning what is left of it when ``hurry`` is set (a
    second signal: someone at a terminal pressed Ctrl-C again)."""
    stages = asyncio.ensure_future(shutdown)
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait({stages, hurried}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hurried.cancel()
        if not stages.done():
            stages.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stages
            log.warning("vnode stopped without finishing its shutdown")
    if not stages.cancelled():
        stages.result()  # a failure inside the shutdown itself is not swallowed
