"""``pods/log``: proxied to the pod's Node kubelet, the way the real API server does it.

``kubectl logs`` never talks to a kubelet itself: the API server checks the request,
finds the Node the pod is bound to, and opens
``GET https://<InternalIP>:<kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>``
with its kubelet-client certificate, then streams the body back chunk by chunk. vnode
serves that kubelet endpoint, so this proxy is what drives vnode's log path end to end
in the sandbox. Everything here follows ``shared/reference/kube-apiserver`` fact B:
the API server's own checks and their order, the exact kubelet request (sorted query,
defaults left out, only ``Host``, ``User-Agent`` and ``Accept-Encoding`` headers), and
how each kubelet failure comes back to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.status import StatusError, method_not_allowed

Obj = dict[str, Any]

# --kubelet-preferred-address-types of the reference cluster.
PREFERRED_ADDRESS_TYPES = ("InternalIP",)
DEFAULT_KUBELET_PORT = 10250
# The real response checker reads at most this much of a kubelet's error body.
_MAX_ERROR_BODY = 50000
# How often a quiet follow stream checks that its client is still there.
_CLIENT_CHECK_SECONDS = 1.0
_DIAL_TIMEOUT_SECONDS = 30.0
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class LogOptions:
    """``PodLogOptions`` as decoded from the query string."""

    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: dt.datetime | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None
    stream: str | None = None

    def kubelet_query(self) -> str:
        """The kubelet's query string: defaults left out, keys sorted (``url.Values``)."""
        params: dict[str, str] = {}
        if self.follow:
            params["follow"] = "true"
        if self.previous:
            params["previous"] = "true"
        if self.timestamps:
            params["timestamps"] = "true"
        if self.since_seconds is not None:
            params["sinceSeconds"] = str(self.since_seconds)
        if self.since_time is not None:
            params["sinceTime"] = _rfc3339(self.since_time)
        if self.tail_lines is not None:
            params["tailLines"] = str(self.tail_lines)
        if self.limit_bytes is not None:
            params["limitBytes"] = str(self.limit_bytes)
        return urlencode(sorted(params.items()), quote_via=quote)


def _rfc3339(t: dt.datetime) -> str:
    # Go's time.RFC3339 layout: whole seconds, "Z" for UTC.
    text = t.astimezone(dt.UTC).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _go_bool(values: list[str]) -> bool:
    # apimachinery's query conversion: only "0" and "false" (any case) are false.
    return bool(values) and not (values[0] == "0" or values[0].lower() == "false")


def _go_int64(values: list[str]) -> int | None:
    if not values:
        return None
    text = values[0]
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise StatusError(400, "BadRequest", f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise StatusError(
            400, "BadRequest", f'strconv.ParseInt: parsing "{text}": value out of range'
        )
    return value


def _go_time(values: list[str]) -> dt.datetime:
    text = values[0] if values else ""
    if text in ("", "null"):
        return dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    try:
        if "T" not in text or not (text.endswith("Z") or text[-6] in "+-"):
            raise ValueError(text)
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise StatusError(
            400,
            "BadRequest",
            f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse "{text}" as '
            '"2006"',
        ) from exc


def parse_options(query: Any) -> LogOptions:
    """Decode the query string; a malformed number is 400 with Go's ``strconv`` message."""

    def values(key: str) -> list[str]:
        return list(query.getall(key, []))

    since_time = _go_time(values("sinceTime")) if "sinceTime" in query else None
    stream = values("stream")[0] if "stream" in query else None
    return LogOptions(
        container=(values("container") or [""])[0],
        follow=_go_bool(values("follow")),
        previous=_go_bool(values("previous")),
        timestamps=_go_bool(values("timestamps")),
        since_seconds=_go_int64(values("sinceSeconds")),
        since_time=since_time,
        tail_lines=_go_int64(values("tailLines")),
        limit_bytes=_go_int64(values("limitBytes")),
        stream=stream,
    )


def validate_options(opts: LogOptions, name: str) -> None:
    """``ValidatePodLogOptions``: 422 ``PodLogOptions "<pod>" is invalid``."""
    causes: list[tuple[str, str, str]] = []
    if opts.tail_lines is not None and opts.tail_lines < 0:
        causes.append(
            (
                "FieldValueInvalid",
                f"Invalid value: {opts.tail_lines}: must be greater than or equal to 0",
                "tailLines",
            )
        )
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        causes.append(
            (
                "FieldValueInvalid",
                f"Invalid value: {opts.limit_bytes}: must be greater than 0",
                "limitBytes",
            )
        )
    if opts.since_seconds is not None and opts.since_time is not None:
        causes.append(
            (
                "FieldValueForbidden",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
                "[]",
            )
        )
    elif opts.since_seconds is not None and opts.since_seconds < 1:
        causes.append(
            (
                "FieldValueInvalid",
                f"Invalid value: {opts.since_seconds}: must be greater than 0",
                "sinceSeconds",
            )
        )
    if opts.stream is not None:
        # PodLogsQuerySplitStreams is off in v1.33.
        causes.append(("FieldValueForbidden", "Forbidden: may not be specified", "stream"))
    if not causes:
        return
    parts = [f"{f}: {m}" for _, m, f in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    raise StatusError(
        422,
        "Invalid",
        f'PodLogOptions "{name}" is invalid: {summary}',
        details={
            "name": name,
            "kind": "PodLogOptions",
            "causes": [{"reason": r, "message": m, "field": f} for r, m, f in causes],
        },
    )


def pick_container(pod: Obj, requested: str) -> str:
    """The container to read, as ``validateContainer`` decides (400 otherwise)."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    every = [
        c.get("name", "")
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]
    if requested:
        if requested not in every:
            raise StatusError(
                400, "BadRequest", f"container {requested} is not valid for pod {name}"
            )
        return requested
    regular = spec.get("containers") or []
    if len(regular) == 1:
        return str(regular[0].get("name", ""))
    if not regular:
        raise StatusError(400, "BadRequest", f"a container name must be specified for pod {name}")
    raise StatusError(
        400,
        "BadRequest",
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(every)}]",
    )


def kubelet_endpoint(node: Obj) -> tuple[str, int]:
    """(address, port) of a Node's kubelet: the preferred address type, the daemon port."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    for kind in PREFERRED_ADDRESS_TYPES:
        for addr in addresses:
            if addr.get("type") == kind and addr.get("address"):
                port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get(
                    "Port"
                ) or 0
                return str(addr["address"]), int(port) if int(port) > 0 else DEFAULT_KUBELET_PORT
    known = " ".join(f"{{{a.get('type', '')} {a.get('address', '')}}}" for a in addresses)
    # Not a Status error in the real server either: 500 with no reason.
    raise StatusError(500, None, f"no preferred addresses found; known addresses: [{known}]")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def kubelet_error(code: int, body: bytes, name: str) -> StatusError:
    """A kubelet's non-2xx answer as the API server reports it (fact B2)."""
    text = body.decode("utf-8", errors="replace")
    if code == 500:
        return StatusError(
            500,
            "InternalError",
            f"Internal error occurred: {text}",
            details={"causes": [{"message": text}]},
        )
    if code == 400:
        return StatusError(400, "BadRequest", text)
    reasons = {
        409: ("Conflict", "the server reported a conflict"),
        404: ("NotFound", "the server could not find the requested resource"),
        401: ("Unauthorized", "the server has asked for the client to provide credentials"),
        403: ("Forbidden", text),
        405: (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
        406: (
            "NotAcceptable",
            text
            if text and text != "unknown"
            else "the server was unable to respond with a content type that the client supports",
        ),
        415: ("UnsupportedMediaType", text),
        422: ("Invalid", "the server rejected our request due to an error in our request"),
        429: (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
        504: (
            "Timeout",
            "the server was unable to return a response in the time allotted, but "
            "may still be processing the request",
        ),
    }
    reason: str | None
    if code in reasons:
        reason, message = reasons[code]
    elif code >= 500:
        reason = "InternalError"
        message = (
            f"an error on the server ({_go_quote(text)}) has prevented the request from succeeding"
        )
    else:
        reason = None
        message = (
            f"the server responded with the status code {code} but did not return more information"
        )
    return StatusError(
        code, reason, f"{message} ( pods/log {name})", details={"name": name, "kind": "pods/log"}
    )


def _go_quote(text: str) -> str:
    return json.dumps(text)


def _dial_error(url: str, host_port: str, exc: BaseException) -> StatusError:
    """A failed connection as Go's ``http.Client`` words it; 500 with no reason."""
    cause = getattr(exc, "os_error", None) or exc.__cause__ or exc
    if isinstance(
        exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError
    ) or isinstance(cause, ssl.SSLError):
        why = f"remote error: tls: {getattr(cause, 'reason', None) or 'handshake failure'}"
        why = why.lower().replace("_", " ")
    elif isinstance(cause, ConnectionRefusedError):
        why = f"dial tcp {host_port}: connect: connection refused"
    elif isinstance(exc, TimeoutError | aiohttp.ConnectionTimeoutError):
        why = f"dial tcp {host_port}: i/o timeout"
    elif isinstance(cause, OSError) and cause.strerror:
        why = f"dial tcp {host_port}: connect: {cause.strerror.lower()}"
    else:
        why = str(exc) or type(exc).__name__
    return StatusError(500, None, f'Get "{url}": {why}')


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def handle_pod_log(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: Any
) -> web.StreamResponse:
    """GET pods/<name>/log: the API server's checks, then the kubelet's stream."""
    if request.method != "GET":
        raise method_not_allowed()
    opts = parse_options(request.query)
    validate_options(opts, name)
    pod = api.store.get(res, namespace, name)
    container = pick_container(pod, opts.container)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        # Nothing to read yet: 204 with no body (kubectl prints nothing).
        return web.Response(status=204)
    try:
        node = api.store.get(resources.by_kind("", "Node"), "", node_name)
    except StatusError as exc:
        if exc.code != 404:
            raise
        # The real node lookup words its NotFound with the pods resource (sic).
        raise StatusError(
            404,
            "NotFound",
            f'pods "{node_name}" not found',
            details={"name": node_name, "kind": "pods"},
        ) from exc
    host, port = kubelet_endpoint(node)
    host_port = _host_port(host, port)
    query = opts.kubelet_query()
    url = f"https://{host_port}/containerLogs/{namespace}/{name}/{container}"
    if query:
        url = f"{url}?{query}"
    return await _proxy(api, request, url, host_port, name)


async def _proxy(
    api: Any, request: web.Request, url: str, host_port: str, name: str
) -> web.StreamResponse:
    ssl_ctx = api.pki.kubelet_client_ssl_context()
    connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=1)
    timeout = aiohttp.ClientTimeout(total=None, connect=_DIAL_TIMEOUT_SECONDS)
    # Only the headers Go's client sends: Host, User-Agent, Accept-Encoding.
    headers = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("Accept",)
    ) as session:
        try:
            upstream = await session.get(
                URL(url, encoded=True), headers=headers, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _dial_error(url, host_port, exc) from exc
        async with upstream:
            if 300 <= upstream.status < 400:
                raise StatusError(500, None, f'Get "{url}": redirects forbidden')
            if not 200 <= upstream.status <= 206:
                raise kubelet_error(upstream.status, await _error_body(upstream), name)
            return await _stream(request, upstream)


async def _error_body(upstream: aiohttp.ClientResponse) -> bytes:
    """The start of a kubelet's error body (io.LimitReader over it, as the real checker)."""
    body = bytearray()
    with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        while len(body) < _MAX_ERROR_BODY:
            chunk = await upstream.content.read(_MAX_ERROR_BODY - len(body))
            if not chunk:
                break
            body.extend(chunk)
    return bytes(body)


async def _stream(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Forward each kubelet chunk as it arrives until the kubelet or the client stops."""
    out = web.StreamResponse(status=200)
    out.headers["Content-Type"] = "text/plain"
    out.enable_chunked_encoding()
    await out.prepare(request)
    read: asyncio.Future[bytes] | None = None
    try:
        while True:
            read = asyncio.ensure_future(upstream.content.readany())
            while True:
                done, _ = await asyncio.wait({read}, timeout=_CLIENT_CHECK_SECONDS)
                if done or _client_gone(request):
                    break
            if not done:
                return out  # the client went away while the kubelet was quiet
            data = read.result()
            read = None
            if not data:
                break
            await out.write(data)
        with contextlib.suppress(ConnectionError):
            await out.write_eof()
    except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        # Either side hung up mid-stream: nothing more can be sent to the client.
        pass
    finally:
        if read is not None:
            read.cancel()  # closing the session below ends the kubelet connection
    return out
