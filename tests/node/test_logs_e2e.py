"""``kubectl logs`` end to end: kubectl -> API server pods/log -> vnode's kubelet API -> provider.

Nothing is short-circuited: the Node is registered by vnode's NodeKeeper with its
InternalIP and kubelet port, the sandbox API server proxies ``pods/log`` to that endpoint
over TLS with its kubelet-client certificate (trusted through ``--client-ca-file``, the
sandbox CA), vnode authorizes the API server with a SubjectAccessReview, and the lines
come from the FakeProvider.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI
from tests.node.kubelet_helpers import Pods, started
from tests.providers import FakeProvider
from vnode.clock import SystemClock
from vnode.node import kube
from vnode.node.auth import KubeletAuth
from vnode.node.kubelet_api import KubeletAPI
from vnode.node.nodestatus import NodeKeeper, node_addresses
from vnode.settings import KubeletAPISettings, KubeSettings, NodeSettings, Settings

NODE = "vn-logs"
KUBECTL = shutil.which("kubectl")
TIMESTAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)")
DEADLINE = 30.0

pytestmark = pytest.mark.kubeapi(controllers=False)


class Vnode:
    """The parts of vnode the log path uses, wired as the runner wires them."""

    def __init__(self, kubeapi: RunningKubeAPI, api_client: Any, kubelet: KubeletAPI) -> None:
        self.kubeapi = kubeapi
        self.api_client = api_client
        self.kubelet = kubelet
        self.provider: FakeProvider = kubelet.provider  # type: ignore[assignment]
        self.pods: Pods = kubelet.pods  # type: ignore[assignment]

    async def run_pod(self, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        """Create a pod bound to the Node and hand it to the provider, as the controller would."""
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "busybox"}]},
        }
        pod = await kube.request(
            self.api_client, "POST", kube.path("v1", "pods", namespace="default"), body=body
        )
        await self.provider.create_pod(pod)
        self.pods.add(pod)
        return pod


@pytest.fixture
async def vnode(kubeapi: RunningKubeAPI) -> AsyncIterator[Vnode]:
    settings = Settings(
        node=NodeSettings(name=NODE, internal_ip="127.0.0.1"),
        kubelet_api=KubeletAPISettings("127.0.0.1", 0, client_ca_file=kubeapi.api.pki.ca_file),
        kube=KubeSettings(kubeconfig=kubeapi.kubeconfig),
    )
    api_client = await kube.connect(settings.kube, purpose="test")
    provider = FakeProvider(pending=0.0, run=float("inf"))
    addresses = node_addresses(settings)
    auth = KubeletAuth(api_client, settings.kubelet_api.client_ca_file, NODE)
    kubelet = KubeletAPI(settings.kubelet_api, provider, Pods(), auth, NODE, addresses)
    try:
        async for running in started(kubelet):
            keeper = NodeKeeper(
                api_client, settings, provider, SystemClock(), running.port, addresses
            )
            node = await keeper.register()
            assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == running.port
            yield Vnode(kubeapi, api_client, running)
    finally:
        await api_client.close()


async def kubectl(kubeapi: RunningKubeAPI, *args: str) -> tuple[int, str, str]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        *args,
        env=kubeapi.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


LINES = {"test.vnode.dev/logs": "first line\nsecond line\nthird line"}


async def test_kubectl_logs(vnode: Vnode) -> None:
    await vnode.run_pod("web", LINES)
    code, out, err = await kubectl(vnode.kubeapi, "logs", "web")
    assert (code, out, err) == (0, "first line\nsecond line\nthird line\n", "")


async def test_kubectl_logs_tail(vnode: Vnode) -> None:
    await vnode.run_pod("web", LINES)
    code, out, _ = await kubectl(vnode.kubeapi, "logs", "web", "--tail=2")
    assert (code, out) == (0, "second line\nthird line\n")


async def test_kubectl_logs_timestamps(vnode: Vnode) -> None:
    pod = await vnode.run_pod("web", LINES)
    code, out, _ = await kubectl(vnode.kubeapi, "logs", "web", "--timestamps")
    assert code == 0
    matches = [TIMESTAMPED.fullmatch(line) for line in out.splitlines()]
    assert all(matches), out
    assert [m.group(1) for m in matches if m] == ["first line", "second line", "third line"]
    stamp = dt.datetime.fromisoformat(out[:26] + "+00:00")
    created = dt.datetime.fromisoformat(pod["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert stamp >= created - dt.timedelta(seconds=1)


async def test_kubectl_logs_limit_bytes_and_since(vnode: Vnode) -> None:
    await vnode.run_pod("web", LINES)
    code, out, _ = await kubectl(vnode.kubeapi, "logs", "web", "--limit-bytes=8")
    assert (code, out) == (0, "first li")
    code, out, _ = await kubectl(vnode.kubeapi, "logs", "web", "--since=1h")
    assert (code, out) == (0, "first line\nsecond line\nthird line\n")


async def test_kubectl_logs_errors_come_from_the_kubelet(vnode: Vnode) -> None:
    await vnode.run_pod("web", LINES)
    code, _, err = await kubectl(vnode.kubeapi, "logs", "web", "--previous")
    assert code == 1
    assert err.strip() == (
        'Error from server (BadRequest): previous terminated container "main" in pod "web" '
        "not found"
    )


async def test_kubectl_logs_follow_streams_until_the_container_ends(vnode: Vnode) -> None:
    # Lines keep coming while the container runs; it runs until the provider drops it.
    pod = await vnode.run_pod(
        "ticker", {"test.vnode.dev/script": "pending=0,run=forever,lines=50,every=0.2"}
    )
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "logs",
        "-f",
        "ticker",
        env=vnode.kubeapi.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        seen = []
        for _ in range(3):  # each arrives while the container is still running
            seen.append(await asyncio.wait_for(proc.stdout.readline(), DEADLINE))
        assert seen == [b"line 1\n", b"line 2\n", b"line 3\n"]
        assert proc.returncode is None  # still following
        await vnode.provider.delete_pod(pod)  # the container is gone: the stream ends
        rest, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
        assert proc.returncode == 0, err
        assert all(line.startswith(b"line ") for line in rest.splitlines())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
