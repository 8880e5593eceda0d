"""vnode's kubelet API: the HTTPS endpoint the API server calls for ``kubectl logs``.

The API server reaches a Node's kubelet at ``https://<InternalIP>:<kubelet port>`` with its
kubelet-client certificate, and monitoring agents come with bearer tokens. This module is
the routes only; who may call is :mod:`vnode.node.auth`, query decoding is
:mod:`vnode.node.logopts`, and the logs themselves come from the provider. Answers follow a
real v1.33 kubelet (``shared/reference/kubelet``):

- ``/healthz``: ``ok``; ``/pods``: a ``PodList`` of the pods this Node runs (``items`` is
  ``null`` when there are none);
- ``/containerLogs/{namespace}/{pod}/{container}``: the provider's stream, each chunk
  written as it arrives (so ``follow=true`` is live), ending when the provider's stream
  ends or the client goes away (the provider's iterator is then closed). As on the
  kubelet, the status line goes out with the first chunk, so a provider error raised
  before any data still gets its own status; the kubelet's exact 400/404/422 bodies for
  bad queries and unknown pods or containers;
- ``/stats/summary`` and ``/metrics/resource`` when the provider offers them
  (:class:`vnode.provider.SupportsStats`), else 501;
- ``/exec``, ``/attach``, ``/portForward`` and ``/run`` (every method and path form):
  501 naming the operation, since no provider runs commands in its pods yet.

Errors are :mod:`vnode.errors` classes, turned into a status and a plain-text body in one
place (:meth:`KubeletAPI._middleware`) from their ``http_status``.

Two differences from the kubelet are forced by aiohttp: a streamed log answer carries
``Content-Type: text/plain`` (the kubelet sends none; the API server labels it
``text/plain`` anyway), and a 400 from the provider comes with a ``Content-Length``
instead of chunked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from vnode.certs import KeyPair, self_signed_server
from vnode.errors import ConfigError, NotFound, Unsupported, VnodeError
from vnode.node.auth import KubeletAuth
from vnode.node.logopts import parse_query
from vnode.provider import Pod, Provider, SupportsStats
from vnode.settings import KubeletAPISettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Operations a kubelet offers that need a shell in the pod; no provider has one yet.
STREAMING_OPERATIONS = ("exec", "attach", "portForward", "run")
# Bounded shutdown: handlers other than log streams (cancelled first) finish quickly.
SHUTDOWN_TIMEOUT = 5.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"


class PodLookup(Protocol):
    """Where the kubelet API finds the pods of this Node (the pod controller's cache)."""

    def get_pod(self, namespace: str, name: str) -> Pod | None: ...

    def pods(self) -> list[Pod]: ...


def _text(status: int, body: str, **headers: str) -> web.Response:
    # Go's http.Error/WriteErrorString: text/plain; charset=utf-8 with a Content-Length.
    return web.Response(
        status=status, text=body, content_type="text/plain", charset="utf-8", headers=headers
    )


def _json_body(obj: Any) -> bytes:
    # Go's json.Encoder: compact, one trailing newline.
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _containers(pod: Pod) -> set[str]:
    spec = pod.get("spec") or {}
    return {
        str(c.get("name", ""))
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    }


def _pod_key(pod: Pod) -> tuple[str, str]:
    meta = pod["metadata"]
    return meta.get("namespace", ""), meta.get("name", "")


def cpu_and_memory(summary: dict[str, Any]) -> dict[str, Any]:
    """``/stats/summary?only_cpu_and_memory=true``: the same tree with only CPU and memory."""

    def keep(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {k: obj[k] for k in keys if k in obj}

    def container(c: dict[str, Any]) -> dict[str, Any]:
        return keep(c, "name", "startTime", "cpu", "memory")

    node = dict(summary.get("node") or {})
    out_node = keep(node, "nodeName", "startTime", "cpu", "memory")
    if "systemContainers" in node:
        out_node["systemContainers"] = [container(c) for c in node["systemContainers"] or []]
    pods = [
        {
            **keep(p, "podRef", "startTime", "cpu", "memory"),
            "containers": [container(c) for c in p.get("containers") or []],
        }
        for p in summary.get("pods") or []
    ]
    return {"node": out_node, "pods": pods}


class KubeletAPI:
    """The HTTPS kubelet API of one virtual Node. See the module docstring.

    ``addresses`` are the Node's ``status.addresses`` (``{"type", "address"}``); a
    generated serving certificate names each of them and the Node name.
    """

    def __init__(  # noqa: PLR0917 - the agreed constructor of the node package
        self,
        settings: KubeletAPISettings,
        provider: Provider,
        pods: PodLookup,
        auth: KubeletAuth,
        node_name: str,
        addresses: Sequence[Mapping[str, str]] = (),
    ) -> None:
        if (settings.cert_file is None) != (settings.key_file is None):
            raise ConfigError("the kubelet API needs both a certificate and a key file, or neither")
        self.settings = settings
        self.provider = provider
        self.pods = pods
        self.auth = auth
        self.node_name = node_name
        self.addresses = [dict(a) for a in addresses]
        self.serving_cert_pem = b""  # the certificate (chain) it serves, once started
        self._port = settings.port
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The port it listens on (the real one once started, even when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        host = self.settings.address
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"https://{host}:{self._port}"

    # ----------------------------------------------------------------------- TLS
    def _serving_pair(self) -> KeyPair:
        if self.settings.cert_file is not None and self.settings.key_file is not None:
            try:
                return KeyPair(
                    self.settings.cert_file.read_bytes(), self.settings.key_file.read_bytes()
                )
            except OSError as e:
                raise ConfigError(f"cannot read the kubelet API certificate: {e}") from e
        names = [self.node_name]
        for a in self.addresses:
            if a.get("address") and a["address"] not in names:
                names.append(a["address"])
        return self_signed_server(self.node_name, names)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS only; a client certificate is requested and must chain to the client CA."""
        pair = self._serving_pair()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: hand it a private copy that is gone at once.
        with tempfile.TemporaryDirectory(prefix="vnode-kubelet-") as tmp:
            cert, key = pair.write(Path(tmp), "serving")
            try:
                ctx.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as e:
                raise ConfigError(f"unusable kubelet API certificate or key: {e}") from e
        ca = self.settings.client_ca_file
        if ca is not None:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (ssl.SSLError, OSError) as e:
                raise ConfigError(f"unusable client CA file {ca}: {e}") from e
            ctx.verify_mode = ssl.CERT_OPTIONAL
        self.serving_cert_pem = pair.cert_pem
        return ctx

    # ------------------------------------------------------------------ lifecycle
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/pods", self._pods)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        app.router.add_get("/stats/summary", self._stats_summary)
        app.router.add_get("/metrics/resource", self._metrics_resource)
        for op in STREAMING_OPERATIONS:
            app.router.add_route("*", f"/{op}/{{rest:.+}}", self._unsupported)
        return app

    async def start(self) -> None:
        """Listen (TLS) on the configured address and port; port 0 picks a free one."""
        ctx = self.ssl_context()
        runner = web.AppRunner(
            self.app(),
            handler_cancellation=True,  # a client that hangs up ends its log stream
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.address, self.settings.port, ssl_context=ctx)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise ConfigError(
                f"the kubelet API cannot listen on {self.settings.address}:"
                f"{self.settings.port}: {e.strerror or e}"
            ) from e
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("kubelet API listening on %s:%d", self.settings.address, self._port)

    async def stop(self) -> None:
        """Stop listening; open log streams are cut (as when a kubelet stops)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        streams = list(self._streams)
        for task in streams:
            task.cancel()
        for task in streams:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runner.cleanup()

    # ----------------------------------------------------------------- middleware
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, authorize, then route; every error answered here, once."""
        try:
            user = await self.auth.authenticate(request)
            await self.auth.authorize(user, request)
            return await handler(request)
        except VnodeError as e:
            return _text(e.http_status, e.message)
        except web.HTTPNotFound:
            return _text(404, "404: Page Not Found")
        except web.HTTPMethodNotAllowed as e:
            return _text(405, "405: Method Not Allowed", Allow=", ".join(sorted(e.allowed_methods)))
        except web.HTTPException:
            raise
        except Exception as e:  # a provider bug must not take the server down
            log.exception("kubelet API: %s %s failed", request.method, request.path)
            return _text(500, f"{type(e).__name__}: {e}")

    # --------------------------------------------------------------------- routes
    async def _healthz(self, request: web.Request) -> web.Response:
        return _text(200, "ok", **{"X-Content-Type-Options": "nosniff"})

    async def _pods(self, request: web.Request) -> web.Response:
        pods = sorted(self.pods.pods(), key=_pod_key)
        body: dict[str, Any] = {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": pods or None,
        }
        return web.Response(body=_json_body(body), content_type="application/json")

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        # The kubelet's order: decode (400), validate (422), pod (404), container (404).
        query = parse_query(request.query.items())
        namespace = request.match_info["namespace"]
        name = request.match_info["pod"]
        container = request.match_info["container"]
        pod = self.pods.get_pod(namespace, name)
        if pod is None:
            raise NotFound(f'pod "{name}" does not exist')
        if container not in _containers(pod):
            raise NotFound(f'container "{container}" not found in pod "{name}"')
        options = query.options(container)
        stream = self.provider.container_logs(pod, options)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            return await self._send_stream(request, stream, options.limit_bytes)
        finally:
            if task is not None:
                self._streams.discard(task)
            await _close(stream)

    async def _send_stream(
        self, request: web.Request, stream: AsyncIterator[bytes], limit: int | None
    ) -> web.StreamResponse:
        """Write each chunk as it comes; the status goes out with the first one."""
        chunks = aiter(stream)
        try:
            first: bytes | None = await anext(chunks)
        except StopAsyncIteration:
            first = None
        response = web.StreamResponse(status=200)
        response.content_type = "text/plain"
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
        except ConnectionError:
            return response  # the client went away before the first byte
        budget = limit  # enforced here too, whatever the provider does with it
        chunk = first
        try:
            while chunk is not None:
                if budget is not None:
                    chunk = chunk[:budget]
                    budget -= len(chunk)
                if chunk and not await _write(response, chunk):
                    return response  # the client went away
                if budget is not None and budget <= 0:
                    break
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    chunk = None
        except Exception as e:  # the provider failed mid-stream
            # Too late for a status: like the kubelet, the error text ends the body.
            if isinstance(e, VnodeError):
                text = e.message
                log.warning("log stream of %s failed: %s", request.path, text)
            else:
                text = f"{type(e).__name__}: {e}"
                log.exception("log stream of %s failed", request.path)
            if not await _write(response, text.encode()):
                return response
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _stats_summary(self, request: web.Request) -> web.Response:
        if not isinstance(self.provider, SupportsStats):
            raise Unsupported(f'stats are not supported by this provider ("{self.provider.name}")')
        summary = await self.provider.stats_summary()
        if request.query.getall("only_cpu_and_memory", []) == ["true"]:
            summary = cpu_and_memory(summary)
        return web.Response(body=_json_body(summary), content_type="application/json")

    async def _metrics_resource(self, request: web.Request) -> web.Response:
        if not isinstance(self.provider, SupportsStats):
            raise Unsupported(
                f'metrics are not supported by this provider ("{self.provider.name}")'
            )
        text = await self.provider.metrics_resource()
        return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_TEXT})

    async def _unsupported(self, request: web.Request) -> web.Response:
        op = request.path.split("/")[1]
        raise Unsupported(f'{op} is not supported by this provider ("{self.provider.name}")')


async def _write(response: web.StreamResponse, data: bytes) -> bool:
    """Send ``data`` now; False when the client has gone away."""
    try:
        await response.write(data)
    except ConnectionError:
        return False
    return True


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close the provider's iterator (an async generator's ``finally`` runs now)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
