"""The mTLS client of the VM kubelets: ``/pods`` for status, ``/containerLogs`` for logs.

Each VM's kubelet serves TLS on its internal IP:10250 with a certificate vnode issued
for the VM's name, and accepts only client certificates from vnode's own CA (see
:mod:`vnode.gce.pki`). One aiohttp session holds one connection pool for all VMs; polls
run with bounded concurrency and a short timeout each, so one slow or dead VM costs
one timeout in parallel with the others and never delays the rest.

The kubelet reports the static pod as ``<pod>-<node name>`` (the node name is the VM
name); :func:`find_mirror` maps it back to the API pod by uid (the manifest keeps the
API pod's uid) and falls back to that name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from vnode import metrics
from vnode.errors import NotFound, Retryable, VnodeError
from vnode.gce import naming
from vnode.provider import LogOptions

log = logging.getLogger(__name__)

KUBELET_PORT = 10250
UID_ANNOTATION = "vnode.dev/pod-uid"


class KubeletRefused(VnodeError):
    """The VM kubelet refused a request; answered to our caller with the same code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


def parse_pod_list(body: bytes | str) -> list[dict[str, Any]]:
    """The items of a kubelet ``PodList`` (``items`` is null when there are none)."""
    data = json.loads(body)
    if not isinstance(data, Mapping):
        raise ValueError("the kubelet's /pods answer is not a JSON object")
    items = data.get("items") or []
    return [i for i in items if isinstance(i, dict)]


def find_mirror(
    items: Iterable[Mapping[str, Any]], pod: Mapping[str, Any], vm_name: str
) -> dict[str, Any] | None:
    """The VM kubelet's static pod for the API ``pod`` (by uid, else ``<pod>-<vm>``)."""
    meta = pod.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    mirror = naming.mirror_name(str(meta.get("name") or ""), vm_name)
    namespace = str(meta.get("namespace") or "default")
    by_name: dict[str, Any] | None = None
    for item in items:
        m = item.get("metadata") or {}
        annotations = m.get("annotations") or {}
        if uid and (m.get("uid") == uid or annotations.get(UID_ANNOTATION) == uid):
            return dict(item)
        if m.get("name") == mirror and (m.get("namespace") or "default") == namespace:
            by_name = dict(item)
    return by_name


def log_query(options: LogOptions) -> dict[str, str]:
    """The kubelet's ``/containerLogs`` query for ``options``."""
    q: dict[str, str] = {}
    if options.follow:
        q["follow"] = "true"
    if options.previous:
        q["previous"] = "true"
    if options.timestamps:
        q["timestamps"] = "true"
    if options.tail_lines is not None:
        q["tailLines"] = str(options.tail_lines)
    if options.limit_bytes is not None:
        q["limitBytes"] = str(options.limit_bytes)
    if options.since_seconds is not None:
        q["sinceSeconds"] = str(options.since_seconds)
    elif options.since_time is not None:
        q["sinceTime"] = options.since_time.isoformat().replace("+00:00", "Z")
    return q


class KubeletClient:
    """One connection pool to every VM kubelet."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        timeout: float = 5.0,
        concurrency: int = 32,
        port: int = KUBELET_PORT,
    ) -> None:
        self._ssl = ssl_context
        self._timeout = timeout
        self._port = port
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._concurrency = max(1, concurrency)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=self._concurrency * 2, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, ip: str, path: str) -> str:
        host = f"[{ip}]" if ":" in ip else ip
        return f"https://{host}:{self._port}{path}"

    @metrics.timed("kubelet_poll_seconds")
    async def pods(self, vm_name: str, ip: str) -> list[dict[str, Any]]:
        """The static pods the kubelet of ``vm_name`` reports; raises on any failure."""
        async with self._limit:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with self._client().get(
                self._url(ip, "/pods"), server_hostname=vm_name, timeout=timeout
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise KubeletRefused(resp.status, body.decode(errors="replace")[:200])
        return parse_pod_list(body)

    async def poll(self, targets: Mapping[str, str]) -> dict[str, list[dict[str, Any]] | None]:
        """``/pods`` of every VM (name -> IP) at once; None for a VM that did not answer."""

        async def one(name: str, ip: str) -> tuple[str, list[dict[str, Any]] | None]:
            try:
                return name, await self.pods(name, ip)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # booting, gone, slow: the status says "VM booting"
                log.debug("kubelet of VM %s (%s) did not answer: %r", name, ip, e)
                return name, None

        results = await asyncio.gather(*(one(n, ip) for n, ip in targets.items() if ip))
        return dict(results)

    async def container_logs(
        self,
        vm_name: str,
        ip: str,
        namespace: str,
        mirror: str,
        options: LogOptions,
    ) -> AsyncIterator[bytes]:
        """Stream ``/containerLogs`` of the static pod; the kubelet's 4xx become errors
        with the same code and body, so the caller answers as the kubelet did."""
        path = "/containerLogs/" + "/".join(
            quote(p, safe="") for p in (namespace, mirror, options.container)
        )
        # Following has no end in time; only connecting is bounded.
        timeout = aiohttp.ClientTimeout(
            total=None if options.follow else 60.0, sock_connect=self._timeout
        )
        try:
            resp = await self._client().get(
                self._url(ip, path),
                params=log_query(options),
                server_hostname=vm_name,
                timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise Retryable(f"cannot reach the kubelet of VM {vm_name}: {e!r}") from e
        try:
            if resp.status != 200:
                text = (await resp.read()).decode(errors="replace")
                if resp.status == 404:
                    raise NotFound(text)
                raise KubeletRefused(resp.status, text)
            async for chunk in resp.content.iter_any():
                yield chunk
        finally:
            resp.release()
