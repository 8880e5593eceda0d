"""A small HTTPS kubelet for testing the API server's ``pods/log`` proxy.

It behaves like the fake kubelet the reference captures were made against
(``shared/reference/kube-apiserver/03-pods-log-kubelet``): a self-signed serving
certificate, a client certificate required and verified against the cluster CA, and
``GET /containerLogs/<ns>/<pod>/<container>`` answering configured lines. It records
every request exactly as received (path, raw query, header list in order, the client
certificate's subject), can hold a ``follow`` stream open until the test releases it
(so a test can see lines arrive before the stream ends), and can answer any error
status with a text body. It runs on its own loop in its own thread, so synchronous
tests (kubectl) and asyncio tests can use it alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from vnode.certs import self_signed_server

_SUBJECT_NAMES = {NameOID.ORGANIZATION_NAME: "organizationName", NameOID.COMMON_NAME: "commonName"}


@dataclass
class KubeletRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    client_cert_subject: list[tuple[str, str]]
    responded: int = 0

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass
class LogLine:
    time: dt.datetime
    text: str


@dataclass
class FakeKubelet:
    """Serve ``/containerLogs`` on 127.0.0.1; configure it, then read ``requests``."""

    ca_file: Path
    # (namespace, pod, container) -> lines; "previous" holds the last terminated run's.
    current: dict[tuple[str, str, str], list[LogLine]] = field(default_factory=dict)
    previous: dict[tuple[str, str, str], list[LogLine]] = field(default_factory=dict)
    # Lines a follow stream sends after the current ones, once the test releases it.
    follow_lines: list[str] = field(default_factory=list)
    # Seconds between follow lines (a slowly writing container); 0 sends them at once.
    follow_interval: float = 0.0
    # Answer every request with (status, text body) instead of logs.
    error: tuple[int, str] | None = None
    requests: list[KubeletRequest] = field(default_factory=list)
    # Follow streams currently open / ended because the peer went away.
    open_streams: int = 0
    abandoned_streams: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="fake-kubelet-")

    # ---------------------------------------------------------------- configuration
    def set_logs(
        self,
        namespace: str,
        pod: str,
        container: str,
        lines: list[str],
        *,
        previous: bool = False,
        start: dt.datetime | None = None,
    ) -> None:
        """Lines a container has written (one second apart, ending now by default)."""
        now = start or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=len(lines))
        stamped = [
            LogLine(now + dt.timedelta(seconds=i, microseconds=123), text)
            for i, text in enumerate(lines)
        ]
        (self.previous if previous else self.current)[(namespace, pod, container)] = stamped

    def release(self) -> None:
        """Let held follow streams send their remaining lines and end."""
        loop, event = self._loop, self._release
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    def seen(self) -> list[KubeletRequest]:
        with self._lock:
            return list(self.requests)

    # ---------------------------------------------------------------------- lifecycle
    def start(self) -> FakeKubelet:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # reported to start()'s caller
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-kubelet", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fake kubelet did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self.release()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._dir.cleanup()

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ssl_context(self) -> ssl.SSLContext:
        pair = self_signed_server("fake-kubelet", ["127.0.0.1", "localhost"])
        cert, key = pair.write(Path(self._dir.name), "serving")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_file))
        ctx.load_cert_chain(str(cert), str(key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context())
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ----------------------------------------------------------------------- handlers
    def _record(self, request: web.Request) -> KubeletRequest:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        subject: list[tuple[str, str]] = []
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            for attr in x509.load_der_x509_certificate(der).subject:
                subject.append(
                    (_SUBJECT_NAMES.get(attr.oid, attr.oid.dotted_string), str(attr.value))
                )
        headers = [(k.decode(), v.decode()) for k, v in request.raw_headers]
        path, _, query = request.raw_path.partition("?")
        seen = KubeletRequest(request.method, path, query, headers, subject)
        with self._lock:
            self.requests.append(seen)
        return seen

    async def _other(self, request: web.Request) -> web.Response:
        seen = self._record(request)
        seen.responded = 404
        return web.Response(status=404, text="404 page not found\n")

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        seen = self._record(request)
        if self.error is not None:
            status, body = self.error
            seen.responded = status
            return web.Response(status=status, text=body)
        key = (
            request.match_info["namespace"],
            request.match_info["pod"],
            request.match_info["container"],
        )
        q = request.query
        source = self.previous if q.get("previous") == "true" else self.current
        if key not in source:
            seen.responded = 400
            return web.Response(
                status=400, text=f'container "{key[2]}" in pod "{key[1]}" is not available\n'
            )
        lines = list(source[key])
        if "sinceSeconds" in q:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(q["sinceSeconds"]))
            lines = [ln for ln in lines if ln.time >= cutoff]
        if "sinceTime" in q:
            cutoff = dt.datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
            lines = [ln for ln in lines if ln.time >= cutoff]
        if "tailLines" in q:
            n = int(q["tailLines"])
            lines = lines[-n:] if n else []
        timestamps = q.get("timestamps") == "true"
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        seen.responded = 200
        sent = 0

        async def send(line: LogLine) -> bool:
            nonlocal sent
            data = (_stamp(line.time) + " " if timestamps else "") + line.text + "\n"
            raw = data.encode()
            if limit is not None:
                raw = raw[: max(0, limit - sent)]
            if raw:
                await resp.write(raw)
                sent += len(raw)
            return limit is None or sent < limit

        for line in lines:
            if not await send(line):
                await resp.write_eof()
                return resp
        if q.get("follow") == "true":
            self.open_streams += 1
            try:
                if not await self._held(request):
                    self.abandoned_streams += 1
                    return resp
                for text in self.follow_lines:
                    if self.follow_interval:
                        await asyncio.sleep(self.follow_interval)
                    if not await send(LogLine(dt.datetime.now(dt.UTC), text)):
                        break
            except ConnectionError:
                self.abandoned_streams += 1
                return resp
            finally:
                self.open_streams -= 1
        await resp.write_eof()
        return resp

    async def _held(self, request: web.Request) -> bool:
        """Wait for release(); False when the peer hung up first."""
        assert self._release is not None
        while not self._release.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return False
            try:
                await asyncio.wait_for(self._release.wait(), 0.05)
            except TimeoutError:
                continue
        return True


def _stamp(t: dt.datetime) -> str:
    # RFC 3339 with nanoseconds, as the kubelet prints CRI timestamps.
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def node_manifest(name: str, port: int, address: str = "127.0.0.1") -> dict[str, Any]:
    """A Ready Node whose kubelet endpoint is ``address:port`` (InternalIP)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
        },
    }
