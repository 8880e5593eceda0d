"""The VM-kubelet client: PodList parsing, mirror pod mapping, mTLS and log streaming.

A small TLS server on loopback stands in for a VM kubelet, configured the way the
bootstrap configures the real one: a serving certificate for the VM's name from vnode's
serving CA, client certificates required from vnode's client CA.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.refdata import REFERENCE
from vnode.errors import NotFound
from vnode.gce.kubelets import KubeletClient, KubeletRefused, find_mirror, log_query, parse_pod_list
from vnode.gce.pki import VnodePKI
from vnode.provider import LogOptions

REF = REFERENCE / "kubelet/pods"
VM = "vnode-0b5c6b52"


def test_empty_pod_list_has_null_items() -> None:
    assert parse_pod_list((REF / "empty.10250.json").read_bytes()) == []


def test_mirror_pod_is_found_by_uid_then_by_name() -> None:
    item = json.loads((REF / "a-echo-never.3-running.10250.json").read_text())["items"][0]
    pod = {"metadata": {"name": "echo-never", "namespace": "default", "uid": "api-uid"}}
    # The real capture's node is "standalone-node": by name under that node.
    assert find_mirror([item], pod, "standalone-node") == item
    assert find_mirror([item], pod, VM) is None
    by_uid = {**item, "metadata": {**item["metadata"], "name": "other", "uid": "api-uid"}}
    assert find_mirror([item, by_uid], pod, VM) == by_uid


def test_log_query() -> None:
    opts = LogOptions("c", follow=True, tail_lines=3, timestamps=True, limit_bytes=7)
    assert log_query(opts) == {
        "follow": "true", "timestamps": "true", "tailLines": "3", "limitBytes": "7",
    }  # fmt: skip


@pytest.fixture
async def kubelet(tmp_path: Path) -> AsyncIterator[tuple[VnodePKI, str]]:
    pki = VnodePKI.load_or_create(tmp_path / "ca")
    pair = pki.serving_pair(VM)
    cert, key = pair.write(tmp_path / "vm", "kubelet")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cadata=pki.client_ca_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED

    body = (REF / "a-echo-never.3-running.10250.json").read_bytes()

    async def pods(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def logs(request: web.Request) -> web.StreamResponse:
        if request.match_info["container"] == "nosuch":
            return web.Response(status=404, text='container "nosuch" not found in pod "x"')
        if request.match_info["container"] == "waiting":
            return web.Response(status=400, text="is waiting to start: ContainerCreating")
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(f"q={request.query_string}\n".encode())
        await resp.write(b"hello\n")
        return resp

    app = web.Application()
    app.router.add_get("/pods", pods)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", logs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield pki, str(port)
    await runner.cleanup()


async def test_pods_over_mtls(kubelet: tuple[VnodePKI, str]) -> None:
    pki, port = kubelet
    client = KubeletClient(pki.ssl_context(), timeout=2.0, port=int(port))
    try:
        items = await client.pods(VM, "127.0.0.1")
        assert items[0]["metadata"]["name"] == "echo-never-standalone-node"
        # A VM that does not answer is None; the others still answer.
        polled = await client.poll({VM: "127.0.0.1", "vnode-dead": "127.0.0.254"})
        assert polled[VM] == items and polled["vnode-dead"] is None
        # The certificate must name the VM asked for.
        with pytest.raises(Exception, match=r"certificate|hostname"):
            await client.pods("vnode-other", "127.0.0.1")
    finally:
        await client.close()


async def test_client_without_vnode_certificate_is_refused(
    kubelet: tuple[VnodePKI, str], tmp_path: Path
) -> None:
    pki, port = kubelet
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.load_verify_locations(cadata=pki.serving_ca.cert_pem.decode())
    client = KubeletClient(ctx, timeout=2.0, port=int(port))
    try:
        assert (await client.poll({VM: "127.0.0.1"}))[VM] is None
    finally:
        await client.close()


async def test_container_logs_stream_and_errors(kubelet: tuple[VnodePKI, str]) -> None:
    pki, port = kubelet
    client = KubeletClient(pki.ssl_context(), timeout=2.0, port=int(port))
    try:
        chunks: list[bytes] = []
        async for chunk in client.container_logs(
            VM, "127.0.0.1", "default", "echo-vm", LogOptions("c", tail_lines=1)
        ):
            chunks.append(chunk)
        assert b"".join(chunks) == b"q=tailLines=1\nhello\n"
        with pytest.raises(NotFound, match="nosuch"):
            async for _ in client.container_logs(
                VM, "127.0.0.1", "default", "echo-vm", LogOptions("nosuch")
            ):
                pass
        with pytest.raises(KubeletRefused) as refused:
            async for _ in client.container_logs(
                VM, "127.0.0.1", "default", "echo-vm", LogOptions("waiting")
            ):
                pass
        assert refused.value.http_status == 400
    finally:
        await client.close()


def test_pki_is_kept_across_restarts(tmp_path: Path) -> None:
    first = VnodePKI.load_or_create(tmp_path)
    second = VnodePKI.load_or_create(tmp_path)
    assert first.client_ca_pem == second.client_ca_pem
    assert first.serving_ca.cert_pem == second.serving_ca.cert_pem
    assert (tmp_path / "client-ca.key").stat().st_mode & 0o077 == 0
    data: Any = second.client_cert.read_bytes()
    assert b"BEGIN CERTIFICATE" in data
