"""Shared pieces for the kubelet API tests: a pod lookup, TLS clients, and a started server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from vnode.node.kubelet_api import KubeletAPI
from vnode.provider import Pod


class Pods:
    """A PodLookup over a dict, standing in for the pod controller's cache."""

    def __init__(self, *pods: Pod) -> None:
        self.by_key: dict[tuple[str, str], Pod] = {}
        for p in pods:
            self.add(p)

    def add(self, pod: Pod) -> None:
        meta = pod["metadata"]
        self.by_key[(meta["namespace"], meta["name"])] = pod

    def get_pod(self, namespace: str, name: str) -> Pod | None:
        return self.by_key.get((namespace, name))

    def pods(self) -> list[Pod]:
        return list(self.by_key.values())


def pod(
    name: str,
    containers: tuple[str, ...] = ("main",),
    *,
    namespace: str = "default",
    uid: str | None = None,
    annotations: dict[str, str] | None = None,
    node: str = "",
) -> Any:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if node:
        spec["nodeName"] = node
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def client_ssl(cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A TLS client that does not check the kubelet's certificate (neither does the API server)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def session(ctx: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx or client_ssl(), force_close=True),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def leftover_tasks(grace: float = 3.0) -> list[asyncio.Task[Any]]:
    """Tasks still running on this loop (after giving them ``grace`` seconds to finish)."""
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.02)


async def started(api: KubeletAPI) -> AsyncIterator[KubeletAPI]:
    """Start ``api``, yield it, and stop it, failing if it left tasks behind."""
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
        left = await leftover_tasks()
        assert not left, f"the kubelet API left tasks running: {left}"
