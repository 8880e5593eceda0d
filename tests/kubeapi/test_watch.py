"""Watches as a real v1.33 server streams them (reference captures ``05-watch`` and ``04-errors``).

Resume from a resourceVersion, synthetic ADDED for RV 0, bookmarks only after the
resourceVersion moved, 410 as an ERROR event, timeoutSeconds ending the stream with the
zero-length chunk, selectors that stop or start matching, and one event per chunk.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client, watch

from tests.conftest import RunningKubeAPI, reference
from tests.waiting import wait_for
from vnode.sandbox.kubeapi import resources

pytestmark = pytest.mark.kubeapi(controllers=False)


@dataclass
class RawWatch:
    """A watch read straight off the socket, chunk by chunk."""

    status_line: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    body: bytes = b""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(c) for c in self.chunks]


class WatchReader:
    def __init__(self, kubeapi: RunningKubeAPI, path: str, accept: str = "application/json"):
        parts = urlsplit(kubeapi.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 443
        sock = socket.create_connection((host, port), timeout=10)
        self.sock = kubeapi.ssl_context().wrap_socket(sock, server_hostname=host)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n"
            f"User-Agent: vnode-tests/1.0\r\n\r\n".encode()
        )
        self.buf = b""
        self.result = RawWatch()
        self._read_headers()

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data
        return True

    def _read_headers(self) -> None:
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError("no response headers within 10 s")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.result.status_line = lines[0]
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.result.headers[k.strip().lower()] = v.strip()
        if "content-length" in self.result.headers:
            n = int(self.result.headers["content-length"])
            while len(self.buf) < n:
                self._fill(time.monotonic() + 10)
            self.result.body = self.buf[:n]
            self.result.ended = True

    def read(self, seconds: float, stop_after: int | None = None) -> RawWatch:
        """Collect chunks for up to ``seconds`` (or until ``stop_after`` chunks or the end)."""
        deadline = time.monotonic() + seconds
        while not self.result.ended and time.monotonic() < deadline:
            if stop_after is not None and len(self.result.chunks) >= stop_after:
                break
            if b"\r\n" in self.buf:
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line, 16)
                if len(rest) >= size + 2:
                    self.buf = rest[size + 2 :]
                    if size == 0:
                        self.result.ended = True
                    else:
                        self.result.chunks.append(rest[:size])
                    continue
            self._fill(deadline)
        return self.result

    def close(self) -> None:
        self.sock.close()


def cm(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}}


def test_watch_resumes_from_a_resource_version(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", cm("w"))
    v1.patch_namespaced_config_map("w", "default", {"data": {"k": "w"}})
    v1.delete_namespaced_config_map("w", "default")
    seen = []
    for ev in watch.Watch().stream(
        v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
    ):
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
    assert seen == [
        ("ADDED", "w", {"k": "v"}),
        ("MODIFIED", "w", {"k": "w"}),
        ("DELETED", "w", {"k": "w"}),
    ]


def test_watch_from_zero_lists_current_objects_first(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    for name in ("b", "a"):
        v1.create_namespaced_config_map("default", cm(name, {"w": "1"}))
    for rv in ("0", None):
        query = "watch=1&labelSelector=w%3D1&timeoutSeconds=1"
        if rv is not None:
            query += f"&resourceVersion={rv}"
        reader = WatchReader(kubeapi, f"/api/v1/namespaces/default/configmaps?{query}")
        got = reader.read(5)
        reader.close()
        assert got.ended
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in got.events()] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]


def test_watch_framing_one_event_per_chunk(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    reader = WatchReader(
        kubeapi,
        f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2",
    )
    # Headers arrive before any event exists.
    assert reader.result.status_line == "HTTP/1.1 200 OK"
    headers = reader.result.headers
    assert headers["content-type"] == "application/json"
    assert headers["transfer-encoding"] == "chunked"
    for h in (
        "audit-id",
        "cache-control",
        "x-kubernetes-pf-flowschema-uid",
        "x-kubernetes-pf-prioritylevel-uid",
        "date",
    ):
        assert h in headers
    v1.create_namespaced_config_map("default", cm("f1"))
    v1.create_namespaced_config_map("default", cm("f2"))
    got = reader.read(5)
    reader.close()
    assert got.ended
    assert len(got.chunks) == 2
    for chunk in got.chunks:
        assert chunk.endswith(b"\n") and chunk.count(b"\n") == 1
        event = json.loads(chunk)
        assert event["object"]["kind"] == "ConfigMap"
        assert event["object"]["apiVersion"] == "v1"


def test_timeout_seconds_ends_the_stream_without_events(kubeapi: RunningKubeAPI) -> None:
    rv = kubeapi.api.store.resource_version
    reader = WatchReader(
        kubeapi,
        f"/api/v1/namespaces/default/pods?watch=1"
        f"&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}",
    )
    got = reader.read(5)
    reader.close()
    assert got.ended and got.chunks == []  # nothing changed: not even a bookmark


def test_bookmarks_only_after_the_resource_version_moved(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    kubeapi.api.bookmark_interval = 0.3
    v1 = client.CoreV1Api(k8s)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    reader = WatchReader(
        kubeapi,
        f"/api/v1/namespaces/default/configmaps?watch=1"
        f"&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion={rv}",
    )
    quiet = reader.read(0.8)
    assert quiet.chunks == []
    made = v1.create_namespaced_config_map("default", cm("bm"))
    got = reader.read(5)
    reader.close()
    events = got.events()
    assert events[0]["type"] == "ADDED"
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, events
    assert bookmarks[0]["object"] == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": made.metadata.resource_version, "creationTimestamp": None},
    }
    assert got.ended


def test_pod_bookmark_shape_matches_the_reference(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    ref = reference("05-watch/02b-watch-timeoutSeconds-5-with-bookmarks-one-change.json")
    ref_bookmark = json.loads(ref["response"]["chunks"][1]["data"])
    kubeapi.api.bookmark_interval = 0.2
    v1 = client.CoreV1Api(k8s)
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    reader = WatchReader(
        kubeapi,
        f"/api/v1/namespaces/default/pods?watch=1"
        f"&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion={rv}",
    )
    made = v1.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "p"},
            "spec": {"schedulerName": "none", "containers": [{"name": "m", "image": "busybox"}]},
        },
    )
    got = reader.read(5)
    reader.close()
    bookmark = next(e for e in got.events() if e["type"] == "BOOKMARK")
    ref_bookmark["object"]["metadata"]["resourceVersion"] = made.metadata.resource_version
    assert bookmark == ref_bookmark


@pytest.mark.kubeapi(controllers=False, window=3)
def test_too_old_resource_version_is_an_error_event(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    ref = reference("04-errors/410-watch-rv-1-ERROR-event.json")
    v1 = client.CoreV1Api(k8s)
    start = v1.list_namespaced_config_map("default").metadata.resource_version
    for i in range(6):
        v1.create_namespaced_config_map("default", cm(f"old{i}"))
    oldest = kubeapi.call(
        lambda: kubeapi.api.store.oldest_resource_version(
            __import__("vnode.sandbox.kubeapi.resources", fromlist=["x"]).by_kind("", "ConfigMap")
        )
    )
    reader = WatchReader(
        kubeapi, f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={start}"
    )
    got = reader.read(5)
    reader.close()
    assert got.status_line == "HTTP/1.1 200 OK"
    assert got.ended
    expected = json.loads(ref["response"]["chunks"][0]["data"])
    expected["object"]["message"] = f"too old resource version: {start} ({oldest})"
    assert got.events() == [expected]
    # The official client surfaces it as 410 to its caller.
    with pytest.raises(client.ApiException) as e:
        for _ in watch.Watch().stream(
            v1.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=1
        ):
            pass
    assert e.value.status == 410


def test_resource_version_in_the_future_waits(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    now = int(v1.list_namespaced_config_map("default").metadata.resource_version)
    reader = WatchReader(
        kubeapi,
        f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={now + 2}&timeoutSeconds=2",
    )
    v1.create_namespaced_config_map("default", cm("f1"))  # now + 1
    v1.create_namespaced_config_map("default", cm("f2"))  # now + 2
    v1.create_namespaced_config_map("default", cm("f3"))  # now + 3: the first one sent
    got = reader.read(5)
    reader.close()
    assert [e["object"]["metadata"]["name"] for e in got.events()] == ["f3"]


def test_selector_that_stops_matching_sends_deleted(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map("default", cm("sel", {"app": "x"}))
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    reader = WatchReader(
        kubeapi,
        f"/api/v1/namespaces/default/configmaps?watch=1"
        f"&labelSelector=app%3Dx&resourceVersion={rv}&timeoutSeconds=2",
    )
    moved = v1.patch_namespaced_config_map("sel", "default", {"metadata": {"labels": {"app": "y"}}})
    back = v1.patch_namespaced_config_map("sel", "default", {"metadata": {"labels": {"app": "x"}}})
    got = reader.read(5)
    reader.close()
    events = got.events()
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]
    # DELETED carries the object as it last matched, with the change's resourceVersion.
    assert events[0]["object"]["metadata"]["labels"] == {"app": "x"}
    assert events[0]["object"]["metadata"]["resourceVersion"] == moved.metadata.resource_version
    assert events[1]["object"]["metadata"]["resourceVersion"] == back.metadata.resource_version


def test_field_selector_watch_kubectl_style(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map("default", cm("one"))
    v1.create_namespaced_config_map("default", cm("two"))
    reader = WatchReader(
        kubeapi,
        "/api/v1/namespaces/default/configmaps?allowWatchBookmarks=true"
        "&fieldSelector=metadata.name%3Dtwo&resourceVersion=0"
        "&timeoutSeconds=2&watch=true",
    )
    v1.patch_namespaced_config_map("one", "default", {"data": {"k": "1"}})
    v1.patch_namespaced_config_map("two", "default", {"data": {"k": "2"}})
    got = reader.read(5)
    reader.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got.events()] == [
        ("ADDED", "two"),
        ("MODIFIED", "two"),
    ]


@pytest.mark.parametrize(
    "capture",
    [
        "04a-watch-sendInitialEvents-422-WatchList-off.json",
        "04b-watch-sendInitialEvents-without-bookmarks-422.json",
    ],
)
def test_send_initial_events_is_refused(kubeapi: RunningKubeAPI, capture: str) -> None:
    ref = reference(f"05-watch/{capture}")
    path = ref["request"]["raw"].split(" ")[1]
    got = kubeapi.request("GET", path)
    assert got.status == 422
    assert got.raw == ref["response"]["raw_body_bytes_as_received"].encode()


def test_watch_errors_before_streaming_are_plain_http(kubeapi: RunningKubeAPI) -> None:
    ref = reference("04-errors/400-watch-bad-labelSelector-http-level.json")
    got = kubeapi.request("GET", "/api/v1/namespaces/default/pods?watch=1&labelSelector=a%20in%20(")
    assert got.status == 400
    assert got.raw == ref["response"]["raw_body_bytes_as_received"].encode()


async def test_aio_watch(kubeapi: RunningKubeAPI) -> None:
    from kubernetes.aio import client as aclient
    from kubernetes.aio import config as aconfig
    from kubernetes.aio import watch as awatch

    api = await aconfig.new_client_from_config(str(kubeapi.kubeconfig))
    try:
        v1 = aclient.CoreV1Api(api)
        listed = await v1.list_namespaced_config_map("default")
        await v1.create_namespaced_config_map("default", cm("aw"))
        await v1.delete_namespaced_config_map("aw", "default")
        seen = []
        w = awatch.Watch()
        async for ev in w.stream(
            v1.list_namespaced_config_map,
            "default",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        ):
            seen.append((ev["type"], ev["object"].metadata.name))
        assert seen == [("ADDED", "aw"), ("DELETED", "aw")]
    finally:
        await api.close()


def test_store_watch_iterator_and_listeners(kubeapi: RunningKubeAPI) -> None:
    store = kubeapi.api.store
    res = resources.by_kind("", "ConfigMap")
    heard: list[tuple[str, str]] = []
    kubeapi.call(
        lambda: store.add_listener(
            lambda kind, r, new, old: heard.append((kind, new["metadata"]["name"]))
        )
    )

    async def first_two() -> list[str]:
        it = store.watch(res, "default", resource_version=str(store.resource_version))
        store.create(res, "default", cm("it1"))
        store.delete(res, "default", "it1")
        out = [(await anext(it))["type"], (await anext(it))["type"]]
        await it.aclose()
        return out

    assert kubeapi.call(first_two()) == ["ADDED", "DELETED"]
    wait_for(lambda: ("DELETED", "it1") in heard)
    assert ("ADDED", "it1") in heard


def test_table_watch_like_kubectl_get_w(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map("default", cm("tw"))
    table_accept = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    reader = WatchReader(
        kubeapi,
        "/api/v1/namespaces/default/configmaps?fieldSelector="
        "metadata.name%3Dtw&resourceVersion=0&timeoutSeconds=2&watch=true",
        accept=table_accept,
    )
    v1.patch_namespaced_config_map("tw", "default", {"data": {"k": "2"}})
    events = reader.read(5).events()
    reader.close()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    first, second = (e["object"] for e in events)
    assert first["kind"] == "Table" and first["columnDefinitions"]
    assert second["columnDefinitions"] is None
    assert [len(t["rows"]) for t in (first, second)] == [1, 1]
    assert second["rows"][0]["cells"][0] == "tw"


def test_legacy_watch_path(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    reader = WatchReader(
        kubeapi,
        f"/api/v1/watch/namespaces/default/configmaps?resourceVersion={rv}&timeoutSeconds=1",
    )
    v1.create_namespaced_config_map("default", cm("legacy"))
    events = reader.read(5).events()
    reader.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "legacy")]


def test_stopping_the_server_ends_open_watches(kubeapi: RunningKubeAPI) -> None:
    reader = WatchReader(
        kubeapi,
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=600",
    )
    first = reader.read(5, stop_after=1)
    assert first.events()[0]["type"] == "ADDED"

    def close_all() -> None:
        for w in list(kubeapi.api.store._watches):
            w.close()

    kubeapi.call(close_all)
    got = reader.read(5)
    reader.close()
    assert got.ended
