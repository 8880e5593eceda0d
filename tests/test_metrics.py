"""vnode's Prometheus metrics: the registry, the instrumented paths, the HTTP endpoint,
and a whole `vnode run --provider gce` scraped after it ran a pod on a sandbox VM."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.api_core import exceptions as gexc
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningKubeAPI
from tests.sandbox.compute_harness import PROJECT, RunningCompute, running_compute
from tests.waiting import async_wait_for, wait_for
from vnode import metrics
from vnode.clock import FakeClock
from vnode.errors import QuotaExceeded
from vnode.metrics import Metrics, MetricsServer
from vnode.node.queue import KeyedQueue
from vnode.sandbox.vm import Timings, vm_factory

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = shutil.which("kubectl")

EVERY_METRIC = (
    "vnode_pods",
    "vnode_vm_creates",
    "vnode_vm_create_duration_seconds",
    "vnode_vm_deletes",
    "vnode_vm_delete_duration_seconds",
    "vnode_compute_api_calls",
    "vnode_lease_renew_duration_seconds",
    "vnode_lease_last_success_timestamp_seconds",
    "vnode_kubelet_poll_duration_seconds",
    "vnode_workqueue_depth",
    "vnode_workqueue_retries",
)


@pytest.fixture
def fresh() -> Iterator[Metrics]:
    with metrics.installed(Metrics()) as m:
        yield m


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


# -- the registry and the instrumented calls ----------------------------------------------


def test_every_metric_is_described_with_the_vnode_prefix(fresh: Metrics) -> None:
    found = families(fresh.exposition().decode())
    for name in EVERY_METRIC:
        assert name in found, name
    ours = [n for n in found if not n.startswith(("process_", "python_"))]
    assert all(n.startswith("vnode_") for n in ours), ours


def test_registries_are_private() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.queue_retries.inc()
    assert a.value("vnode_workqueue_retries_total") == 1
    assert b.value("vnode_workqueue_retries_total") == 0


def test_pods_by_phase_come_from_the_source_when_scraped(fresh: Metrics) -> None:
    pods: list[dict[str, Any]] = [
        {"status": {"phase": "Running"}},
        {"status": {"phase": "Running"}},
        {"status": {"phase": "Succeeded"}},
        {},  # not reported yet: Pending, as the API server defaults it
    ]
    fresh.count_pods_from(lambda: pods)
    assert fresh.value("vnode_pods", {"phase": "Running"}) == 2
    assert fresh.value("vnode_pods", {"phase": "Pending"}) == 1
    assert fresh.value("vnode_pods", {"phase": "Failed"}) == 0
    pods.append({"status": {"phase": "Failed"}})
    assert fresh.value("vnode_pods", {"phase": "Failed"}) == 1


async def test_timed_records_duration_and_result_but_not_cancellation(fresh: Metrics) -> None:
    @metrics.timed("vm_create_seconds", "vm_creates")
    async def create(outcome: str) -> str:
        if outcome == "quota":
            raise QuotaExceeded("no room")
        if outcome == "hang":
            await asyncio.Event().wait()
        return outcome

    assert await create("ok") == "ok"
    with pytest.raises(QuotaExceeded):
        await create("quota")
    task = asyncio.create_task(create("hang"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fresh.value("vnode_vm_creates_total", {"result": "ok"}) == 1
    assert fresh.value("vnode_vm_creates_total", {"result": "quota_exceeded"}) == 1
    assert fresh.value("vnode_vm_create_duration_seconds_count", {"result": "ok"}) == 1
    total = sum(
        s.value
        for f in text_string_to_metric_families(fresh.exposition().decode())
        if f.name == "vnode_vm_creates"
        for s in f.samples
        if s.name.endswith("_total")
    )
    assert total == 2  # the cancelled call is not an outcome


def test_compute_calls_are_counted_by_method_and_result(fresh: Metrics) -> None:
    def fail(err: Exception) -> Any:
        def call() -> Any:
            raise err

        return call

    assert metrics.counted_call("instances.insert", lambda: "op")() == "op"
    for err in (gexc.TooManyRequests("slow down"), ConnectionResetError("reset")):
        with pytest.raises(type(err)):
            metrics.counted_call("instances.insert", fail(err))()
    with pytest.raises(gexc.NotFound):
        metrics.counted_call("instances.delete", fail(gexc.NotFound("gone")))()

    def calls(method: str, result: str) -> float | None:
        return fresh.value("vnode_compute_api_calls_total", {"method": method, "result": result})

    assert calls("instances.insert", "ok") == 1
    assert calls("instances.insert", "429") == 1
    assert calls("instances.insert", "connection_error") == 1
    assert calls("instances.delete", "404") == 1


async def test_queue_depth_and_retries(fresh: Metrics) -> None:
    queue = KeyedQueue(FakeClock(), base=1.0)
    queue.add("default/a")
    queue.add("default/b")
    assert fresh.value("vnode_workqueue_depth") == 2
    key = await queue.get()
    assert fresh.value("vnode_workqueue_depth") == 1
    queue.add_rate_limited(key)
    queue.done(key)
    assert fresh.value("vnode_workqueue_retries_total") == 1
    queue.shutdown()


# -- the endpoint -------------------------------------------------------------------------


async def test_the_server_answers_metrics_and_healthz(fresh: Metrics) -> None:
    fresh.vm_deletes.labels("ok").inc()
    server = MetricsServer("127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            async with session.get(f"{base}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                text = await resp.text()
            async with session.get(f"{base}/healthz") as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
            async with session.get(f"{base}/other") as resp:
                assert resp.status == 404
    finally:
        await server.stop()
    found = families(text)
    assert found["vnode_vm_deletes"].samples[0].labels == {"result": "ok"}
    assert "process_resident_memory_bytes" in found


async def test_a_taken_port_is_retried_not_fatal(
    fresh: Metrics, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "BIND_RETRY", (0.05, 0.1))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    server = MetricsServer("127.0.0.1", port)
    task = asyncio.create_task(server.serve())

    async def logged() -> bool:
        return any("cannot listen" in r.getMessage() for r in caplog.records)

    async def healthy() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await async_wait_for(logged, timeout=10, what="the bind failure to be logged")
        assert not task.done()
        blocker.close()
        await async_wait_for(healthy, timeout=10, what="the server to listen once free")
    finally:
        blocker.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- a whole vnode, scraped ---------------------------------------------------------------


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    factory = vm_factory(tmp_path / "vms", timings=Timings().scaled(0.2))
    with running_compute(tmp_path / "compute", vm_factory=factory) as rc:
        yield rc


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return families(resp.read().decode())


def sample(found: dict[str, Any], name: str, **labels: str) -> float:
    family = found[name.removesuffix("_total").removesuffix("_count")]
    return sum(
        s.value
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.timeout(180)
def test_vnode_run_exposes_every_metric_and_logs_json_lines_about_pods(
    kubeapi: RunningKubeAPI, compute: RunningCompute, tmp_path: Path
) -> None:
    log = tmp_path / "vnode.log"
    env = dict(kubeapi.env)
    env.update(
        VNODE_CLIENT_CA_FILE=str(kubeapi.state_dir / "pki" / "ca.crt"),
        VNODE_COMPUTE_ENDPOINT=compute.endpoint,
        VNODE_PROJECT=PROJECT,
        VNODE_ZONE="us-central1-a",
    )
    argv = [
        sys.executable, "-m", "vnode.cli", "run", "--provider", "gce", "--node-name", "metered",
        "--kubelet-address", "127.0.0.1", "--kubelet-port", "0", "--machine-family", "e2",
        "--gce-ca-dir", str(tmp_path / "ca"), "--delete-delay", "0.5",
        "--vm-status-period", "0.5", "--status-period", "1", "--lease-renew-interval", "1",
        "--metrics-address", "127.0.0.1", "--metrics-port", "0",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # stderr is a file, not a terminal: every line is JSON, the Node on each.
        def metrics_port() -> int:
            assert proc.poll() is None, log.read_text()
            for entry in log_lines(log):
                if entry["message"].startswith("metrics on http://127.0.0.1:"):
                    return int(entry["message"].rsplit(":", 1)[1].split("/")[0])
            return 0

        port = wait_for(metrics_port, timeout=30, what="the metrics server")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "counted"},
            "spec": {
                "restartPolicy": "Never",
                "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi"]}
                ],
            },
        }
        assert KUBECTL is not None
        claimed = json.loads(json.dumps(pod))
        claimed["metadata"]["name"] = "claimed"
        claimed["spec"]["volumes"] = [{"name": "data",
                                       "persistentVolumeClaim": {"claimName": "data"}}]  # fmt: skip
        for obj in (pod, claimed):
            subprocess.run([KUBECTL, "apply", "-f", "-"], env=kubeapi.env, input=json.dumps(obj),
                           text=True, check=True, capture_output=True, timeout=60)  # fmt: skip

        def finished_and_cleaned() -> dict[str, Any] | None:
            assert proc.poll() is None, log.read_text()
            found = scrape(port)
            done = sample(found, "vnode_pods", phase="Succeeded") == 1
            done = done and sample(found, "vnode_pods", phase="Failed") == 1
            deleted = sample(found, "vnode_vm_deletes_total", result="ok") >= 1
            return found if done and deleted else None

        found = wait_for(finished_and_cleaned, timeout=90, what="the pod to finish, VM deleted")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    for name in EVERY_METRIC:
        assert name in found, name
    assert sample(found, "vnode_vm_creates_total", result="ok") == 1
    assert sample(found, "vnode_vm_create_duration_seconds_count", result="ok") == 1
    assert sample(found, "vnode_vm_delete_duration_seconds_count", result="ok") >= 1
    for method in ("instances.insert", "instances.aggregatedList", "machineTypes.list",
                   "instances.delete"):  # fmt: skip
        assert sample(found, "vnode_compute_api_calls_total", method=method, result="ok") >= 1
    assert sample(found, "vnode_lease_renew_duration_seconds_count", result="ok") >= 1
    assert sample(found, "vnode_lease_last_success_timestamp_seconds") > 1.7e9
    assert sample(found, "vnode_kubelet_poll_duration_seconds_count", result="ok") >= 1
    assert "vnode_workqueue_depth" in found

    entries = log_lines(log)
    assert entries and all(e["node"] == "metered" for e in entries)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    refused = [e for e in entries if e["message"].startswith("provider refused pod")]
    assert refused, entries
    assert refused[0]["pod"] == "default/claimed"
    assert refused[0]["vm"].startswith("vnode-")
    assert 'volume "data" is a persistentVolumeClaim volume' in refused[0]["message"]
