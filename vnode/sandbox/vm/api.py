"""The simulated kubelet's HTTP API: the secure port and the optional read-only port.

Answers as the real kubelet v1.33 does, byte for byte where the captures show the bytes:
``/pods`` as Go's JSON encoder writes it (``Content-Length`` below 2 KiB, chunked above,
like Go's ``net/http``), ``/containerLogs`` chunked with no ``Content-Type``, the error
texts and their odd JSON-in-text bodies, ``/healthz``, ``/stats/summary``,
``/metrics/resource`` and ``/runningpods/``.

Authentication on the secure port: a client certificate verified against
``authentication.x509.clientCAFile``, else anonymous when enabled, else 401
``Unauthorized``. Bearer tokens authenticate nobody (webhook token review needs an API
server). One difference from Go: Python's TLS stack verifies client certificates during
the handshake, so a certificate from another CA ends the connection there, where the
real kubelet would complete the handshake and answer 401.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

from vnode.certs import peer_identity
from vnode.sandbox.vm import stats
from vnode.sandbox.vm.bootconfig import KubeletSetup
from vnode.sandbox.vm.kubelet import Kubelet
from vnode.sandbox.vm.logs import QueryError, parse_query, stream_log
from vnode.sandbox.vm.pods import PodWorker
from vnode.sandbox.vm.podspec import go_json
from vnode.sandbox.vm.runtime import Instance

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
_CHUNK_FROM = 2048  # Go's net/http sends Content-Length only for smaller unflushed bodies
_DEBUG_PATHS = ("/containerLogs/", "/run/", "/exec/", "/attach/", "/portForward/", "/logs/",
                "/runningpods/", "/cri/", "/debug/", "/checkpoint/")  # fmt: skip


class _GoStream(web.StreamResponse):
    """A response without aiohttp's own Server and default Content-Type headers."""

    async def _prepare_headers(self) -> None:
        explicit = hdrs.CONTENT_TYPE in self._headers
        await super()._prepare_headers()
        self._headers.pop(hdrs.SERVER, None)
        if not explicit:
            self._headers.pop(hdrs.CONTENT_TYPE, None)


class _GoResponse(web.Response):
    async def _prepare_headers(self) -> None:
        explicit = hdrs.CONTENT_TYPE in self._headers
        await super()._prepare_headers()
        self._headers.pop(hdrs.SERVER, None)
        if not explicit:
            self._headers.pop(hdrs.CONTENT_TYPE, None)


def text(status: int, body: str, *, nosniff: bool = False) -> web.StreamResponse:
    """Go's http.Error (nosniff, newline added by the caller) or go-restful's WriteError."""
    headers: dict[str, str] = {hdrs.CONTENT_TYPE: TEXT}
    if nosniff:
        headers["X-Content-Type-Options"] = "nosniff"
    return _GoResponse(status=status, body=body.encode(), headers=headers)


async def _body(
    request: web.Request, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> web.StreamResponse:
    headers = {hdrs.CONTENT_TYPE: content_type, **(extra or {})}
    if len(body) < _CHUNK_FROM:
        return _GoResponse(status=200, body=body, headers=headers)
    resp = _GoStream(status=200, headers=headers)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(body)
    await resp.write_eof()
    return resp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class KubeletAPI:
    def __init__(self, kubelet: Kubelet, setup: KubeletSetup, *, allow_webhook: bool) -> None:
        self.kubelet = kubelet
        self.setup = setup
        self.allow_webhook = allow_webhook
        self.process_start = int(kubelet.host.clock.now().timestamp())

    # -- apps ---------------------------------------------------------------------------

    def secure_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        self._routes(app, debug=True)
        return app

    def read_only_app(self) -> web.Application:
        app = web.Application()
        self._routes(app, debug=False)
        return app

    def _routes(self, app: web.Application, *, debug: bool) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/pods", self.pods)
        app.router.add_get("/pods/", self.pods)
        app.router.add_get("/stats/summary", self.stats_summary)
        app.router.add_get("/metrics/resource", self.metrics_resource)
        if debug:
            app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
            app.router.add_get("/runningpods/", self.running_pods)
        else:
            for prefix in _DEBUG_PATHS:
                app.router.add_route("*", prefix + "{tail:.*}", self.debug_disabled)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        identity = peer_identity(transport.get_extra_info("ssl_object") if transport else None)
        if identity is None and not self.setup.anonymous:
            return text(401, "Unauthorized")
        user = identity[0] if identity else "system:anonymous"
        if self.setup.authorization_mode != "AlwaysAllow" and identity is None:
            # Webhook authorization, allowed only by ``allow_webhook``: callers without a
            # certificate get what a denying webhook would give them.
            return text(
                403,
                f"Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)",
            )
        return await handler(request)

    # -- handlers -------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return text(200, "ok", nosniff=True)

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return text(404, "404 page not found\n", nosniff=True)

    async def debug_disabled(self, request: web.Request) -> web.StreamResponse:
        return text(405, "Debug endpoints are disabled.\n", nosniff=True)

    async def pods(self, request: web.Request) -> web.StreamResponse:
        items = [self.kubelet.pod_json(w) for w in self.kubelet.pods()]
        body: dict[str, Any] = {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": items or None,
        }
        return await _body(request, go_json(body), "application/json")

    async def running_pods(self, request: web.Request) -> web.StreamResponse:
        items: list[dict[str, Any]] = []
        for w in self.kubelet.pods():
            running = [v for v in [*w.init_views, *w.app_views] if v.state[0] == "running"]
            if not running:
                continue
            meta = w.pod["metadata"]
            items.append(
                {
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "uid": meta["uid"],
                        "creationTimestamp": None,
                    },
                    "spec": {
                        "containers": [
                            {"name": v.name, "image": stats.image_ref(v.spec), "resources": {}}
                            for v in running
                        ]
                    },
                    "status": {},
                }
            )
        body: dict[str, Any] = {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": items or None,
        }
        return await _body(request, go_json(body), "application/json")

    async def stats_summary(self, request: web.Request) -> web.StreamResponse:
        only = request.query.get("only_cpu_and_memory") == "true"
        body = stats.summary(self.kubelet, only_cpu_and_memory=only)
        return await _body(request, go_json(body), "application/json")

    async def metrics_resource(self, request: web.Request) -> web.StreamResponse:
        body = stats.metrics_resource(self.kubelet).encode()
        return await _body(
            request,
            body,
            "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
            {"Process-Start-Time-Unix": str(self.process_start)},
        )

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["namespace"]
        pod_name = request.match_info["pod"]
        container = request.match_info["container"]
        query = {k: request.query.getone(k) for k in request.query}
        try:
            opts = parse_query(query)
        except QueryError as e:
            return text(e.status, e.body)
        worker = self.kubelet.pod(ns, pod_name)
        if worker is None:
            return text(404, f'pod "{pod_name}" does not exist')
        view = worker.view(container)
        if view is None:
            return text(404, f'container "{container}" not found in pod "{pod_name}"')
        resp = _GoStream(status=200)
        resp.enable_chunked_encoding()
        try:
            inst = select_instance(worker, container, opts.previous)
        except LogStateError as e:
            resp.set_status(400)
            await resp.prepare(request)
            await resp.write(str(e).encode())
            await resp.write_eof()
            return resp
        await resp.prepare(request)
        host = self.kubelet.host
        try:
            await stream_log(
                inst.log_path,
                opts,
                resp.write,
                now_ns=host.now_ns(),
                running=lambda: not inst.done.is_set(),
                poll=host.timings.log_poll,
            )
            await resp.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream (a follow that was abandoned)
        return resp


class LogStateError(Exception):
    """The container's state has no log to show (a 400 from the kubelet)."""


def select_instance(worker: PodWorker, container: str, previous: bool) -> Instance:
    """validateContainerLogStatus: which instance's log a request reads, from the status."""
    statuses = [
        *worker.status.get("containerStatuses", []),
        *worker.status.get("initContainerStatuses", []),
    ]
    status = next((s for s in statuses if s["name"] == container), None)
    pod = worker.name
    if status is None:
        raise LogStateError(f'container "{container}" in pod "{pod}" is not available')
    last = status["lastState"].get("terminated")
    state = status["state"]
    if previous:
        if not last or not last.get("containerID"):
            raise LogStateError(
                f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        cid = last["containerID"]
    elif "running" in state:
        cid = status["containerID"]
    elif "terminated" in state:
        cid = state["terminated"].get("containerID") or (last or {}).get("containerID", "")
        if not cid:
            raise LogStateError(f'container "{container}" in pod "{pod}" is terminated')
    elif last:
        cid = last.get("containerID", "")
        if not cid:
            raise LogStateError(f'container "{container}" in pod "{pod}" is terminated')
    elif "waiting" in state:
        reason = state["waiting"].get("reason", "")
        if reason == "ErrImagePull":
            reason = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            reason = "trying and failing to pull image"
        raise LogStateError(f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
    else:
        raise LogStateError(
            f'container "{container}" in pod "{pod}" is waiting to start - no logs yet'
        )
    view = worker.view(container)
    assert view is not None
    for inst in view.instances:
        if inst.container_id == cid:
            return inst
    raise LogStateError(f'container "{container}" in pod "{pod}" is not available')


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The serving context: the kubelet's certificate and, if configured, the client CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
