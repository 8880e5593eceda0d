"""The runner: loading providers, supervising tasks, stopping in stages."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI
from tests.providers import FakeProvider
from tests.waiting import async_wait_for, wait_for
from vnode.errors import ConfigError
from vnode.node import runner
from vnode.settings import KubeletAPISettings, KubeSettings, NodeSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
MADE: list[FakeProvider] = []


def make_provider() -> FakeProvider:
    provider = FakeProvider()
    MADE.append(provider)
    return provider


async def make_provider_async() -> FakeProvider:
    return make_provider()


INSTANCE = FakeProvider()


def built_in(settings: Settings) -> FakeProvider:
    provider = make_provider()
    provider.settings_seen = settings  # type: ignore[attr-defined]
    return provider


# -- loading providers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "tests.providers:FakeProvider",  # a class
        "tests.node.test_runner:make_provider",  # a factory
        "tests.node.test_runner:make_provider_async",  # an async factory
        "tests.node.test_runner:INSTANCE",  # a ready instance
    ],
)
async def test_load_provider_forms(spec: str) -> None:
    provider = await runner.load_provider(Settings(provider=spec))
    assert isinstance(provider, FakeProvider)
    assert provider.name == "fake"


async def test_builtin_provider_gets_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runner.BUILTIN_PROVIDERS, "gce", "tests.node.test_runner:built_in")
    settings = Settings(provider="gce")
    provider = await runner.load_provider(settings)
    assert provider.settings_seen is settings  # type: ignore[attr-defined]


async def test_missing_builtin_provider_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runner.BUILTIN_PROVIDERS, "gce", "vnode.gce.not_there:from_settings")
    with pytest.raises(ConfigError, match="the gce provider is not available in this build"):
        await runner.load_provider(Settings(provider="gce"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_pkg.mod:X", "cannot import provider module 'no_such_pkg.mod'"),
        ("tests.providers:Missing", "has no 'Missing'"),
        ("tests.providers:read_state", "creating the provider"),
        ("tests.providers:Script", "does not implement the Provider protocol"),
        ("tests.providers", "expected gce or package.module:attribute"),
    ],
)
async def test_load_provider_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await runner.load_provider(Settings(provider=spec))


# -- supervision --------------------------------------------------------------------------


async def test_a_crash_is_logged_and_flagged(caplog: pytest.LogCaptureFixture) -> None:
    sup = runner.Supervisor()

    async def boom() -> None:
        raise RuntimeError("boom")

    sup.spawn("pods", boom)
    await asyncio.wait_for(sup.crashed.wait(), 10)
    assert sup.crash == "pods"
    crash = next(r for r in caplog.records if "task pods crashed" in r.getMessage())
    assert crash.levelno == logging.ERROR
    assert crash.exc_info is not None and "boom" in str(crash.exc_info[1])


async def test_a_task_that_returns_counts_as_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    sup = runner.Supervisor()

    async def quits() -> None:
        return None

    sup.spawn("watcher", quits)
    await asyncio.wait_for(sup.crashed.wait(), 10)
    assert sup.crash == "watcher"
    assert any("ended although it should run" in r.getMessage() for r in caplog.records)


async def test_restartable_tasks_are_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "RESTART_DELAY", 0.0)
    sup = runner.Supervisor()
    runs = 0
    steady = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"failure {runs}")
        steady.set()
        await asyncio.Event().wait()

    sup.spawn("lease", flaky, restart=True)
    await asyncio.wait_for(steady.wait(), 10)
    assert sup.restarts["lease"] == 2
    assert not sup.crashed.is_set()
    assert await sup.stop("lease", timeout=5)
    assert "lease" not in sup.tasks


async def test_stop_reports_a_task_that_ignores_cancellation() -> None:
    sup = runner.Supervisor()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # refuses to stop until released

    sup.spawn("stubborn", stubborn)
    await asyncio.sleep(0)
    assert not await sup.stop("stubborn", timeout=0.1)
    release.set()


# -- a whole run, in process --------------------------------------------------------------


def settings_for(kubeapi: RunningKubeAPI, provider: str) -> Settings:
    return Settings(
        provider=provider,
        node=NodeSettings(name="runner-node"),
        kubelet_api=KubeletAPISettings(address="127.0.0.1", port=0),
        kube=KubeSettings(kubeconfig=kubeapi.kubeconfig),
        shutdown_timeout=10,
    )


async def test_a_crashed_pod_controller_stops_vnode_with_exit_1(
    kubeapi: RunningKubeAPI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vnode")
    seen: dict[str, Any] = {}

    class CrashingPods(runner.PodController):
        async def run(self) -> None:
            seen["pods_api"] = self._api
            raise RuntimeError("the watch fell over")

    class WatchedLease(runner.LeaseKeeper):
        async def run(self) -> None:
            seen["heartbeat_api"] = self.api
            await super().run()

    class WatchedNode(runner.NodeKeeper):
        async def register(self) -> dict[str, Any]:
            seen["node_api"] = self.api
            return await super().register()

    monkeypatch.setattr(runner, "PodController", CrashingPods)
    monkeypatch.setattr(runner, "LeaseKeeper", WatchedLease)
    monkeypatch.setattr(runner, "NodeKeeper", WatchedNode)
    MADE.clear()
    code = await runner.run(settings_for(kubeapi, "tests.node.test_runner:make_provider"))
    assert code == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "task pods crashed" in messages
    assert "stopping vnode because task pods ended" in messages
    assert messages[-1] == "vnode stopped"
    # Shut down in stages all the same: the provider was started and then stopped.
    assert MADE[-1].started and MADE[-1].stopped
    # The heartbeats have their own API client (own connection pool), never the pods' one.
    assert seen["heartbeat_api"] is not seen["pods_api"]
    assert seen["heartbeat_api"].rest_client is not seen["pods_api"].rest_client
    assert seen["node_api"] is seen["heartbeat_api"]
    assert await leftover_tasks() == []


async def leftover_tasks() -> list[str]:
    """Tasks other than the test's own still alive shortly after a run returned."""

    async def settled() -> bool:
        return all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    with contextlib.suppress(AssertionError):
        await async_wait_for(settled, timeout=3)
    me = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())


async def test_the_lease_survives_a_crash_of_its_loop(
    kubeapi: RunningKubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "RESTART_DELAY", 0.0)
    attempts = 0

    class CrashOnce(runner.LeaseKeeper):
        async def run(self) -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise RuntimeError("a bug in one renewal")
            await super().run()

    monkeypatch.setattr(runner, "LeaseKeeper", CrashOnce)
    task = asyncio.create_task(runner.run(settings_for(kubeapi, "tests.providers:FakeProvider")))

    async def lease_exists() -> bool:
        def get() -> bool:
            store = kubeapi.api.store
            from vnode.sandbox.kubeapi import resources

            res = resources.lookup("coordination.k8s.io", "v1", "leases")
            assert res is not None
            return bool(store.get(res, "kube-node-lease", "runner-node"))

        return bool(await asyncio.to_thread(kubeapi.call, get))

    try:
        await async_wait_for(lease_exists, timeout=30, what="the Lease after the restart")
        assert attempts == 2
        assert not task.done()
    finally:
        if not task.done():  # only then is the runner's handler installed
            signal.raise_signal(signal.SIGTERM)
        assert await asyncio.wait_for(task, 30) == 0
    assert await leftover_tasks() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_startup_exits_0(
    tmp_path: Path, kubeapi: RunningKubeAPI, sig: signal.Signals
) -> None:
    """The API server is unreachable: registration retries until a signal ends it cleanly."""
    text = kubeapi.kubeconfig.read_text()
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(text.replace(kubeapi.url, "https://127.0.0.1:9"))
    log = tmp_path / "vnode.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vnode.cli", "run", "--provider",
             "tests.providers:FakeProvider", "--kubeconfig", str(unreachable),
             "--kubelet-address", "127.0.0.1", "--kubelet-port", "0"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: "registering Node vnode failed" in log.read_text(), timeout=30,
                 what="a failed registration attempt")  # fmt: skip
        proc.send_signal(sig)
        assert proc.wait(30) == 0, log.read_text()
        assert "stop requested during startup" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class RefusingProvider(FakeProvider):
    async def start(self, context: Any) -> None:
        raise RuntimeError("the backend is unreachable")


async def test_a_failed_start_exits_1_and_cleans_up(
    kubeapi: RunningKubeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    code = await runner.run(settings_for(kubeapi, "tests.node.test_runner:RefusingProvider"))
    assert code == 1
    failed = next(r for r in caplog.records if r.getMessage() == "starting vnode failed")
    assert failed.exc_info is not None and "unreachable" in str(failed.exc_info[1])
    assert await leftover_tasks() == []


async def test_a_port_in_use_is_a_config_error(kubeapi: RunningKubeAPI) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = settings_for(kubeapi, "tests.providers:FakeProvider")
        settings = dataclasses.replace(
            settings,
            kubelet_api=dataclasses.replace(settings.kubelet_api, port=busy.getsockname()[1]),
        )
        with pytest.raises(ConfigError, match=r"the kubelet API cannot listen on 127\.0\.0\.1"):
            await runner.run(settings)
    assert await leftover_tasks() == []


class SlowStop(FakeProvider):
    """A provider whose stop() takes far longer than anyone wants to wait."""

    async def stop(self) -> None:
        logging.getLogger("tests.slowstop").warning("slow provider stop begins")
        await asyncio.sleep(3600)


def test_a_second_signal_cuts_the_shutdown_short(tmp_path: Path, kubeapi: RunningKubeAPI) -> None:
    log = tmp_path / "vnode.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vnode.cli", "run", "--provider",
             "tests.node.test_runner:SlowStop", "--kubeconfig", str(kubeapi.kubeconfig),
             "--node-name", "slow", "--kubelet-address", "127.0.0.1", "--kubelet-port", "0",
             "--shutdown-timeout", "600"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: "vnode is running" in log.read_text(), timeout=30, what="vnode up")
        first = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # The same signal delivered twice (process, then group): not a hurry. (The kernel
        # may also merge the two into one; either way the shutdown must go on.)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "slow provider stop begins" in log.read_text(), timeout=30,
                 what="the shutdown to reach the provider")  # fmt: skip
        assert proc.poll() is None
        # A person pressing Ctrl-C again, later than the repeat window.
        wait_for(lambda: time.monotonic() - first >= runner.SIGNAL_REPEAT_WINDOW + 0.2,
                 timeout=10, what="the repeat window to pass")  # fmt: skip
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        text = log.read_text()
        assert "second SIGINT: stopping without waiting for the rest" in text
        assert "vnode stopped without finishing its shutdown" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_a_signal_delivered_twice_is_one_request(
    kubeapi: RunningKubeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vnode")
    task = asyncio.create_task(runner.run(settings_for(kubeapi, "tests.providers:FakeProvider")))

    async def running() -> bool:
        assert not task.done()
        return any("vnode is running" in r.getMessage() for r in caplog.records)

    await async_wait_for(running, timeout=30, what="vnode to run")
    signal.raise_signal(signal.SIGTERM)  # as `timeout` does: to the process...
    signal.raise_signal(signal.SIGTERM)  # ...and again to its process group
    assert await asyncio.wait_for(task, 30) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "SIGTERM again at once: taken as the same request to stop" in messages
    assert "vnode stopped" in messages
    assert "vnode stopped without finishing its shutdown" not in messages
    assert await leftover_tasks() == []
