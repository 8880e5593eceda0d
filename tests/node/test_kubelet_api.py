"""The kubelet API's routes over real TLS: bodies, headers and log streaming as a kubelet.

Authentication and authorization have their own tests (``test_kubelet_auth.py``); here a
permissive stand-in lets every caller through, so each test is about one route.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from tests.node.kubelet_helpers import Pods, pod, session, started
from tests.providers import FakeProvider
from tests.refdata import REFERENCE
from vnode.certs import CertificateAuthority
from vnode.clock import FakeClock
from vnode.errors import ConfigError, InvalidPod
from vnode.node.auth import User
from vnode.node.kubelet_api import KubeletAPI, cpu_and_memory
from vnode.provider import LogOptions, Pod
from vnode.settings import KubeletAPISettings

KUBELET = REFERENCE / "kubelet"
SETTINGS = KubeletAPISettings(address="127.0.0.1", port=0)
ADDRESSES = [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "vn"}]


class AllowAll:
    """Authentication and authorization that let everyone in (routes are tested here)."""

    async def authenticate(self, request: Any) -> User:
        return User("tester", ("system:masters", "system:authenticated"))

    async def authorize(self, user: User, request: Any) -> None:
        return None


class TrackingProvider(FakeProvider):
    """A FakeProvider that counts log streams opened and closed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opened = 0
        self.closed = 0

    def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        inner = super().container_logs(pod, options)
        self.opened += 1

        async def tracked() -> AsyncIterator[bytes]:
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                self.closed += 1

        return tracked()


class NoStatsProvider:
    """The bare Provider surface: no stats, logs that ignore limitBytes."""

    name = "bare"

    def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        async def lines() -> AsyncIterator[bytes]:
            for i in range(1, 6):
                yield f"line {i}\n".encode()

        return lines()


class FailingProvider(NoStatsProvider):
    """Raises a vnode error before any data, or after the first line."""

    def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        async def lines() -> AsyncIterator[bytes]:
            if options.previous:
                raise InvalidPod("no previous instance here")
            yield b"first\n"
            if options.timestamps:
                raise ConnectionResetError("the VM's kubelet hung up")
            raise InvalidPod("the machine went away")

        return lines()


def make_api(provider: Any, pods: Pods, settings: KubeletAPISettings = SETTINGS) -> KubeletAPI:
    return KubeletAPI(settings, provider, pods, AllowAll(), "vn", ADDRESSES)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 11, 23, 20, 0, 0, tzinfo=dt.UTC))


@pytest.fixture
def provider(clock: FakeClock) -> TrackingProvider:
    return TrackingProvider(clock=clock, pending=0.0, run=float("inf"))


@pytest.fixture
def pods() -> Pods:
    return Pods()


@pytest.fixture
async def api(provider: TrackingProvider, pods: Pods) -> AsyncIterator[KubeletAPI]:
    async for running in started(make_api(provider, pods)):
        yield running


async def add_pod(provider: FakeProvider, pods: Pods, p: Pod) -> Pod:
    await provider.create_pod(p)
    pods.add(p)
    return p


async def get(api: KubeletAPI, path: str) -> tuple[int, dict[str, str], bytes]:
    async with session() as s, s.get(api.url + path) as r:
        return r.status, dict(r.headers), await r.read()


# ----------------------------------------------------------------------------- basics


async def test_listens_on_a_free_port_with_tls_only(api: KubeletAPI) -> None:
    assert api.port > 0
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await reader.read(100)  # a plain-HTTP client gets no HTTP answer
    writer.close()
    assert not answer.startswith(b"HTTP/")


async def test_generated_certificate_names_the_node_and_its_addresses(api: KubeletAPI) -> None:
    cert = x509.load_pem_x509_certificate(api.serving_cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "vn" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # It is the certificate actually served.
    loop = asyncio.get_running_loop()
    served = await loop.run_in_executor(
        None, lambda: ssl.get_server_certificate(("127.0.0.1", api.port))
    )
    assert x509.load_pem_x509_certificate(served.encode()) == cert


async def test_certificate_from_files(tmp_path: Path, pods: Pods) -> None:
    ca = CertificateAuthority.create("test-ca")
    cert, key = ca.issue("given", server_names=["127.0.0.1"], server=True).write(tmp_path, "k")
    settings = KubeletAPISettings(address="127.0.0.1", port=0, cert_file=cert, key_file=key)
    async for api in started(make_api(NoStatsProvider(), pods, settings)):
        ctx = ssl.create_default_context(cafile=None)
        ctx.load_verify_locations(cadata=ca.cert_pem.decode())
        ctx.check_hostname = False
        async with session(ctx) as s, s.get(api.url + "/healthz") as r:
            assert r.status == 200  # verified against the given certificate's CA


def test_half_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    settings = KubeletAPISettings(cert_file=tmp_path / "x.crt")
    with pytest.raises(ConfigError):
        make_api(NoStatsProvider(), Pods(), settings)


async def test_a_busy_port_is_a_config_error(api: KubeletAPI, pods: Pods) -> None:
    other = make_api(NoStatsProvider(), pods, KubeletAPISettings("127.0.0.1", api.port))
    with pytest.raises(ConfigError, match="cannot listen"):
        await other.start()


async def test_healthz(api: KubeletAPI) -> None:
    status, headers, body = await get(api, "/healthz")
    assert (status, body) == (200, b"ok")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_empty_pod_list_is_the_kubelets_bytes(api: KubeletAPI) -> None:
    status, headers, body = await get(api, "/pods")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    captured = KUBELET / "auth.json"
    if captured.exists():
        exchanges = json.loads(captured.read_text())["exchanges"]
        expected = next(e for e in exchanges if e["label"] == "anonymous-enabled.10250.pods")
        assert body == expected["response"]["body"].encode()
    assert body == b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}\n'


async def test_pod_list_holds_the_nodes_pods(
    api: KubeletAPI, provider: FakeProvider, pods: Pods
) -> None:
    await add_pod(provider, pods, pod("b"))
    await add_pod(provider, pods, pod("a", namespace="other"))
    status, _, body = await get(api, "/pods")
    listed = json.loads(body)
    assert status == 200
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed["items"]] == [
        ("default", "b"),
        ("other", "a"),
    ]


async def test_unknown_path_is_404(api: KubeletAPI) -> None:
    status, _, body = await get(api, "/nothing/here")
    assert (status, body) == (404, b"404: Page Not Found")


async def test_post_to_a_read_only_route_is_405(api: KubeletAPI) -> None:
    async with session() as s, s.post(api.url + "/pods") as r:
        assert r.status == 405
        assert "GET" in r.headers["Allow"]


# ------------------------------------------------------------------------- containerLogs


async def test_whole_log_streams_as_text(
    api: KubeletAPI, provider: FakeProvider, pods: Pods
) -> None:
    await add_pod(provider, pods, pod("web", annotations={"test.vnode.dev/logs": "hello\nbye"}))
    status, headers, body = await get(api, "/containerLogs/default/web/main")
    assert (status, body) == (200, b"hello\nbye\n")
    assert headers["Transfer-Encoding"] == "chunked"
    assert headers["Content-Type"] == "text/plain"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tailLines=1", b"bye\n"),
        ("tailLines=2", b"hello\nbye\n"),
        ("limitBytes=7", b"hello\nb"),
        ("limitBytes=10", b"hello\nbye\n"),
        ("timestamps=true", b"2026-11-23T20:00:00.000000000Z hello\n"),
        ("tail=1", b"bye\n"),
    ],
)
async def test_log_options_reach_the_provider(
    api: KubeletAPI, provider: FakeProvider, pods: Pods, query: str, expected: bytes
) -> None:
    await add_pod(provider, pods, pod("web", annotations={"test.vnode.dev/logs": "hello\nbye"}))
    status, _, body = await get(api, f"/containerLogs/default/web/main?{query}")
    assert status == 200
    assert body.startswith(expected)


async def test_limit_bytes_holds_even_when_the_provider_ignores_it(pods: Pods) -> None:
    provider = NoStatsProvider()
    pods.add(pod("web"))
    async for api in started(make_api(provider, pods)):
        status, _, body = await get(api, "/containerLogs/default/web/main?limitBytes=10")
        assert (status, body) == (200, b"line 1\nlin")


def _captured(name: str, label: str) -> dict[str, Any]:
    path = KUBELET / "logs" / name
    exchanges = json.loads(path.read_text())["exchanges"]
    response: dict[str, Any] = next(e for e in exchanges if e["label"] == label)["response"]
    return response


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/containerLogs/default/{pod}/nosuch", "no-such-container"),
        ("/containerLogs/default/nosuchpod-standalone-node/echo", "no-such-pod"),
        ("/containerLogs/default/{pod}/echo?tailLines=abc", "bad-tailLines"),
        ("/containerLogs/default/{pod}/echo?tailLines=-1", "negative-tailLines"),
    ],
)
async def test_errors_match_the_captured_kubelet(
    api: KubeletAPI, provider: FakeProvider, pods: Pods, path: str, label: str
) -> None:
    name = "echo-never-standalone-node"
    await add_pod(provider, pods, pod(name, ("echo",)))
    want = _captured("errors.json", label)
    status, headers, body = await get(api, path.format(pod=name))
    assert (status, body.decode()) == (want["status"], want["body"])
    for key in ("Content-Type", "Content-Length"):
        assert headers[key] == want["headers"][key]


async def test_query_is_checked_before_the_pod(api: KubeletAPI) -> None:
    status, _, body = await get(api, "/containerLogs/default/nosuch/c?tailLines=-1")
    assert (status, body) == (422, b'{"message": "Invalid request."}')


async def test_split_stream_refused_once_the_pod_is_found(
    api: KubeletAPI, provider: FakeProvider, pods: Pods
) -> None:
    status, _, _ = await get(api, "/containerLogs/default/web/main?stream=Stderr")
    assert status == 404  # no such pod yet: the lookup comes first
    await add_pod(provider, pods, pod("web"))
    status, _, body = await get(api, "/containerLogs/default/web/main?stream=Stderr")
    assert status == 400
    assert b"PodLogsQuerySplitStreams" in body


async def test_init_and_ephemeral_containers_are_known(
    api: KubeletAPI, provider: FakeProvider, pods: Pods
) -> None:
    p = pod("web")
    p["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    pods.add(p)  # the provider does not run it: its own NotFound comes back
    status, _, body = await get(api, "/containerLogs/default/web/setup")
    assert (status, body) == (404, b'pod "web" does not exist')


async def test_provider_errors_keep_the_kubelets_words(
    api: KubeletAPI, provider: FakeProvider, pods: Pods
) -> None:
    name = "echo-never-standalone-node"
    await add_pod(provider, pods, pod(name, ("echo",)))
    want = _captured("a-echo-never.json", "previous-true-no-previous")
    status, _, body = await get(api, f"/containerLogs/default/{name}/echo?previous=true")
    assert (status, body.decode()) == (want["status"], want["body"])


async def test_waiting_container_is_400(
    api: KubeletAPI, provider: FakeProvider, pods: Pods, clock: FakeClock
) -> None:
    p = pod("multi", annotations={"test.vnode.dev/script": "pending=60,run=forever"})
    await add_pod(provider, pods, p)
    status, _, body = await get(api, "/containerLogs/default/multi/main")
    assert status == 400
    assert body == b'container "main" in pod "multi" is waiting to start: ContainerCreating'


async def test_error_after_the_first_chunk_ends_the_body(pods: Pods) -> None:
    pods.add(pod("web"))
    async for api in started(make_api(FailingProvider(), pods)):
        status, _, body = await get(api, "/containerLogs/default/web/main")
        assert (status, body) == (200, b"first\nthe machine went away")
        status, _, body = await get(api, "/containerLogs/default/web/main?timestamps=true")
        assert (status, body) == (200, b"first\nConnectionResetError: the VM's kubelet hung up")
        status, _, body = await get(api, "/containerLogs/default/web/main?previous=true")
        assert (status, body) == (400, b"no previous instance here")


async def test_follow_flushes_each_line_as_it_is_written(
    api: KubeletAPI, provider: TrackingProvider, pods: Pods, clock: FakeClock
) -> None:
    script = "pending=0,run=3.5,lines=3,every=1"
    await add_pod(provider, pods, pod("tick", annotations={"test.vnode.dev/script": script}))
    async with session() as s, s.get(api.url + "/containerLogs/default/tick/main?follow=true") as r:
        assert r.status == 200
        assert await asyncio.wait_for(r.content.readline(), 10) == b"line 1\n"
        # Nothing more until the container writes it.
        await clock.advance(1)
        assert await asyncio.wait_for(r.content.readline(), 10) == b"line 2\n"
        await clock.advance(1)
        assert await asyncio.wait_for(r.content.readline(), 10) == b"line 3\n"
        # The container ends: the server ends the stream (chunked terminator).
        await clock.advance(2)
        assert await asyncio.wait_for(r.content.read(), 10) == b""
    assert provider.closed == provider.opened == 1


async def _wait(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_client_going_away_closes_the_providers_stream(
    api: KubeletAPI, provider: TrackingProvider, pods: Pods
) -> None:
    await add_pod(provider, pods, pod("forever"))
    async with session() as s:
        r = await s.get(api.url + "/containerLogs/default/forever/main?follow=true")
        assert await asyncio.wait_for(r.content.readline(), 10) == b"line 1\n"
        r.close()  # hang up while the provider waits for more
    await _wait(lambda: provider.closed == 1, "the provider's stream to be closed")


async def test_stop_cuts_open_streams(provider: TrackingProvider, pods: Pods) -> None:
    await add_pod(provider, pods, pod("forever"))
    api = make_api(provider, pods)
    async for running in started(api):
        async with session() as s:
            r = await s.get(running.url + "/containerLogs/default/forever/main?follow=true")
            assert await asyncio.wait_for(r.content.readline(), 10) == b"line 1\n"
            await asyncio.wait_for(running.stop(), 10)
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(r.content.read(), 10)
    assert provider.closed == 1


# -------------------------------------------------------------------------- stats


async def test_stats_from_the_provider(api: KubeletAPI, provider: FakeProvider, pods: Pods) -> None:
    await add_pod(provider, pods, pod("web"))
    status, headers, body = await get(api, "/stats/summary")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    summary = json.loads(body)
    assert summary["pods"][0]["podRef"] == {"name": "web", "namespace": "default", "uid": "uid-web"}
    status, _, body = await get(api, "/stats/summary?only_cpu_and_memory=true")
    assert json.loads(body) == cpu_and_memory(summary)
    status, headers, body = await get(api, "/metrics/resource")
    assert status == 200
    assert headers["Content-Type"] == (
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
    )
    assert b"resource_scrape_error 0" in body


def test_cpu_and_memory_keeps_only_those() -> None:
    full = {
        "node": {"nodeName": "n", "cpu": {"a": 1}, "memory": {"b": 2}, "network": {}, "fs": {}},
        "pods": [
            {
                "podRef": {"name": "p"},
                "cpu": {},
                "volume": [],
                "containers": [{"name": "c", "cpu": {}, "memory": {}, "rootfs": {}, "logs": {}}],
            }
        ],
    }
    assert cpu_and_memory(full) == {
        "node": {"nodeName": "n", "cpu": {"a": 1}, "memory": {"b": 2}},
        "pods": [
            {
                "podRef": {"name": "p"},
                "cpu": {},
                "containers": [{"name": "c", "cpu": {}, "memory": {}}],
            }
        ],
    }


async def test_stats_without_provider_support_are_501(pods: Pods) -> None:
    async for api in started(make_api(NoStatsProvider(), pods)):
        for path in ("/stats/summary", "/metrics/resource"):
            status, _, body = await get(api, path)
            assert status == 501
            assert b"not supported by this provider" in body


# ----------------------------------------------------------- exec, attach, portForward, run


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "path",
    [
        "/exec/default/web/main",
        "/exec/default/web/uid-web/main",
        "/attach/default/web/main",
        "/attach/default/web/uid-web/main",
        "/portForward/default/web",
        "/portForward/default/web/uid-web",
        "/run/default/web/main",
        "/run/default/web/uid-web/main",
    ],
)
async def test_streaming_operations_are_not_implemented(
    api: KubeletAPI, method: str, path: str
) -> None:
    async with session() as s, s.request(method, api.url + path + "?command=ls") as r:
        body = await r.text()
    op = path.split("/")[1]
    assert r.status == 501
    assert body == f'{op} is not supported by this provider ("fake")'
