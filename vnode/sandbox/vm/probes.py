"""Container probes as the kubelet runs them: startup, then readiness and liveness.

``exec`` probes run their command as a local process with the container's environment;
``httpGet`` and ``tcpSocket`` probes connect to the pod's host (its hostNetwork address,
the VM's internal IP, unless the probe names a host); ``grpc`` probes are not simulated
and count as failures. A container with a startup probe is not ``started`` until it
passes; one with a readiness probe is not ``ready`` until ``successThreshold`` passes in
a row; ``failureThreshold`` failures of a startup or liveness probe kill the container,
which then restarts per the pod's restart policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from vnode.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class ProbeState:
    """What the probes currently say (None: the container has no such probe)."""

    started: bool | None = None
    ready: bool | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()


def _port(value: Any, container: dict[str, Any]) -> int:
    if isinstance(value, int):
        return value
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    return int(value)


async def run_once(
    probe: dict[str, Any], container: dict[str, Any], env: dict[str, str], host: str
) -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        async with asyncio.timeout(timeout):
            if "exec" in probe:
                argv = [str(a) for a in (probe["exec"] or {}).get("command") or []]
                if not argv:
                    return False
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
                try:
                    return await proc.wait() == 0
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
            if "httpGet" in probe:
                get = probe["httpGet"] or {}
                scheme = str(get.get("scheme", "HTTP")).lower()
                target = get.get("host") or host
                url = (
                    f"{scheme}://{target}:{_port(get.get('port'), container)}{get.get('path', '/')}"
                )
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                insecure = ssl.create_default_context()
                insecure.check_hostname = False
                insecure.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe TLS
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url, headers=headers, ssl=insecure, allow_redirects=True) as resp,
                ):
                    return 200 <= resp.status < 400
            if "tcpSocket" in probe:
                sock = probe["tcpSocket"] or {}
                port = _port(sock.get("port"), container)
                _, writer = await asyncio.open_connection(sock.get("host") or host, port)
                writer.close()
                return True
    except (TimeoutError, OSError, aiohttp.ClientError, ValueError):
        return False
    return False


async def _loop(
    probe: dict[str, Any],
    check: Callable[[], Awaitable[bool]],
    clock: Clock,
    on_result: Callable[[int, int], bool],
) -> None:
    """Run a probe every periodSeconds; stop when ``on_result`` says so."""
    await clock.sleep(float(probe.get("initialDelaySeconds", 0)))
    period = float(probe.get("periodSeconds", 10))
    successes = failures = 0
    while True:
        if await check():
            successes, failures = successes + 1, 0
        else:
            successes, failures = 0, failures + 1
        if on_result(successes, failures):
            return
        await clock.sleep(period)


def start(
    container: dict[str, Any],
    *,
    env: dict[str, str],
    host: str,
    clock: Clock,
    changed: Callable[[], None],
    kill: Callable[[str], None],
) -> ProbeState:
    """Start the container's probes; ``changed`` after each verdict change, ``kill`` on failure."""
    state = ProbeState()
    startup = container.get("startupProbe")
    readiness = container.get("readinessProbe")
    liveness = container.get("livenessProbe")

    def checker(probe: dict[str, Any]) -> Callable[[], Awaitable[bool]]:
        return lambda: run_once(probe, container, env, host)

    def begin_running_probes() -> None:
        if readiness:

            def ready_result(ok: int, bad: int) -> bool:
                before = state.ready
                if ok >= int(readiness.get("successThreshold", 1)):
                    state.ready = True
                elif bad >= int(readiness.get("failureThreshold", 3)):
                    state.ready = False
                if state.ready != before:
                    changed()
                return False

            state.tasks.append(
                asyncio.create_task(_loop(readiness, checker(readiness), clock, ready_result))
            )
        if liveness:

            def live_result(_ok: int, bad: int) -> bool:
                if bad >= int(liveness.get("failureThreshold", 3)):
                    kill("liveness")
                    return True
                return False

            state.tasks.append(
                asyncio.create_task(_loop(liveness, checker(liveness), clock, live_result))
            )

    if readiness:
        state.ready = False
    if startup:
        state.started = False

        def startup_result(ok: int, bad: int) -> bool:
            if ok >= 1:
                state.started = True
                changed()
                begin_running_probes()
                return True
            if bad >= int(startup.get("failureThreshold", 3)):
                kill("startup")
                return True
            return False

        state.tasks.append(
            asyncio.create_task(_loop(startup, checker(startup), clock, startup_result))
        )
    else:
        begin_running_probes()
    return state
