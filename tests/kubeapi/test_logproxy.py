"""``pods/log`` through the sandbox API server to a kubelet, checked against the reference.

A fake kubelet (``fake_kubelet.py``) stands behind a Node whose InternalIP and kubelet
port point at it, as in the reference capture (``03-pods-log-kubelet``). The tests check
what the kubelet receives byte for byte, that a follow stream is forwarded as it is
written, every way a kubelet failure comes back, the API server's own checks (where the
kubelet is never contacted), and ``kubectl logs`` end to end.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningKubeAPI, reference
from tests.kubeapi.fake_kubelet import FakeKubelet, node_manifest
from tests.waiting import wait_for
from vnode.sandbox.kubeapi import resources

KUBECTL = shutil.which("kubectl")
NODE = "ref-kubelet-node"
POD_LOG = "/api/v1/namespaces/default/pods/{}/log"
APISERVER_CLIENT = [
    ("organizationName", "system:masters"),
    ("commonName", "kube-apiserver-kubelet-client"),
]
CURRENT = [f"current: line {i} from container main of default/ref-web" for i in range(1, 7)]
SIDE = [f"current: line {i} from container side of default/ref-web" for i in range(1, 7)]
PREVIOUS = [f"previous: line {i} from container main of default/ref-web" for i in range(1, 7)]
FOLLOW = [f"follow: streamed line {i}" for i in range(1, 5)]

pytestmark = pytest.mark.kubeapi(controllers=False)


def _pod(name: str, containers: list[str], node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _create(kubeapi: RunningKubeAPI, kind: str, namespace: str, obj: dict[str, Any]) -> None:
    res = resources.by_kind("", kind)
    kubeapi.call(lambda: kubeapi.api.store.create(res, namespace, obj))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def kubelet(kubeapi: RunningKubeAPI) -> Iterator[FakeKubelet]:
    with FakeKubelet(kubeapi.api.pki.ca_file) as k:
        k.set_logs("default", "ref-web", "main", CURRENT)
        k.set_logs("default", "ref-web", "side", SIDE)
        k.set_logs("default", "ref-web", "main", PREVIOUS, previous=True)
        k.set_logs(
            "default",
            "ref-done",
            "main",
            [f"current: line {i} from container main of default/ref-done" for i in range(1, 7)],
        )
        yield k


@pytest.fixture
def cluster(kubeapi: RunningKubeAPI, kubelet: FakeKubelet) -> RunningKubeAPI:
    """The reference's objects: a Node at the fake kubelet and pods in several states."""
    _create(kubeapi, "Node", "", node_manifest(NODE, kubelet.port))
    _create(kubeapi, "Pod", "default", _pod("ref-web", ["main", "side"], NODE))
    _create(kubeapi, "Pod", "default", _pod("ref-done", ["main"], NODE))
    _create(kubeapi, "Pod", "default", _pod("ref-pending", ["main"], None))
    _create(kubeapi, "Pod", "default", _pod("ref-ghost", ["main"], "ghost-node"))
    return kubeapi


def _move_kubelet(kubeapi: RunningKubeAPI, port: int) -> None:
    """Point the Node's kubelet endpoint somewhere else (nothing listening, say)."""
    res = resources.by_kind("", "Node")

    def edit(node: dict[str, Any]) -> None:
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = port

    kubeapi.call(lambda: kubeapi.api.store.mutate(res, "", NODE, edit, subresource="status"))


# ------------------------------------------------------------------ the kubelet request
def test_kubelet_request_is_exactly_what_the_real_api_server_sends(
    cluster: RunningKubeAPI, kubelet: FakeKubelet
) -> None:
    ref = reference("03-pods-log-kubelet/raw-02-log-all-options.json")
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == 200
    assert resp.header("Content-Type") == "text/plain"
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.header("Content-Length") is None
    # A long-running request: API Priority and Fairness never sees it (fact A10).
    assert [h for h, _ in resp.header_list if h.startswith("X-Kubernetes-Pf")] == []
    [seen] = kubelet.seen()
    expected = ref["kubelet_requests_seen_by_fake_kubelet"][0]
    assert seen.method == "GET"
    assert seen.path_and_query == expected["raw_path"]
    assert [name for name, _ in seen.headers] == [n for n, _ in expected["headers"]]
    assert dict(seen.headers) == {
        "Host": f"127.0.0.1:{kubelet.port}",
        "User-Agent": "Go-http-client/1.1",
        "Accept-Encoding": "gzip",
    }
    assert seen.client_cert_subject == APISERVER_CLIENT
    # tailLines=3 of six lines with timestamps, cut at 100 bytes by the kubelet.
    body = resp.raw.decode()
    assert len(resp.raw) == 100
    assert body.split(" ", 1)[1].startswith("current: line 4 from container main")


def test_since_time_is_forwarded_in_rfc3339(cluster: RunningKubeAPI, kubelet: FakeKubelet) -> None:
    ref = reference("03-pods-log-kubelet/raw-03-log-sinceTime.json")
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == 200
    [seen] = kubelet.seen()
    assert seen.path_and_query == ref["kubelet_requests_seen_by_fake_kubelet"][0]["raw_path"]
    assert resp.raw.decode().splitlines()[0].endswith(SIDE[0])


@pytest.mark.parametrize(
    ("query", "kubelet_path"),
    [
        ("?container=main", "/containerLogs/default/ref-web/main"),
        (
            "?container=main&follow=false&previous=0&timestamps=FALSE",
            "/containerLogs/default/ref-web/main",
        ),
        ("?container=main&previous=true", "/containerLogs/default/ref-web/main?previous=true"),
        ("?container=main&tailLines=1", "/containerLogs/default/ref-web/main?tailLines=1"),
        (
            "?container=main&limitBytes=5&sinceSeconds=7200",
            "/containerLogs/default/ref-web/main?limitBytes=5&sinceSeconds=7200",
        ),
    ],
)
def test_query_is_sorted_with_defaults_left_out(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, query: str, kubelet_path: str
) -> None:
    resp = cluster.request("GET", POD_LOG.format("ref-web") + query)
    assert resp.status == 200, resp.raw
    assert [r.path_and_query for r in kubelet.seen()] == [kubelet_path]


def test_single_container_pod_needs_no_container_parameter(
    cluster: RunningKubeAPI, kubelet: FakeKubelet
) -> None:
    ref = reference("03-pods-log-kubelet/raw-09-log-single-container-no-param.json")
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == 200
    assert resp.raw.decode().startswith(ref["response"]["body"])
    assert [r.path_and_query for r in kubelet.seen()] == ["/containerLogs/default/ref-done/main"]


def test_previous_reads_the_terminated_run(cluster: RunningKubeAPI, kubelet: FakeKubelet) -> None:
    resp = cluster.request("GET", POD_LOG.format("ref-web") + "?container=main&previous=true")
    assert resp.status == 200
    assert resp.raw.decode().splitlines() == PREVIOUS


# ------------------------------------------------------------------------ streaming
async def _read_until(content: aiohttp.StreamReader, wanted: bytes, got: bytearray) -> None:
    while wanted not in got:
        chunk = await content.readany()
        if not chunk:
            raise AssertionError(f"stream ended before {wanted!r}; got {bytes(got)!r}")
        got.extend(chunk)


async def test_follow_streams_lines_as_the_kubelet_writes_them(
    cluster: RunningKubeAPI, kubelet: FakeKubelet
) -> None:
    kubelet.follow_lines = FOLLOW
    url = cluster.url + POD_LOG.format("ref-web") + "?container=main&follow=true"
    connector = aiohttp.TCPConnector(ssl=cluster.ssl_context())
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain"
        got = bytearray()
        # The lines already written arrive while the kubelet still holds the stream open.
        await asyncio.wait_for(_read_until(resp.content, CURRENT[-1].encode(), got), 30)
        await asyncio.to_thread(wait_for, lambda: kubelet.open_streams == 1, 30)
        assert not resp.content.at_eof()
        kubelet.release()
        rest = await asyncio.wait_for(resp.content.read(), 30)
    body = (bytes(got) + rest).decode()
    assert body.splitlines() == [*CURRENT, *FOLLOW]
    [seen] = kubelet.seen()
    assert seen.path_and_query == "/containerLogs/default/ref-web/main?follow=true"


async def test_client_going_away_closes_the_kubelet_stream(
    cluster: RunningKubeAPI, kubelet: FakeKubelet
) -> None:
    kubelet.follow_lines = FOLLOW
    url = cluster.url + POD_LOG.format("ref-web") + "?container=main&follow=true"
    connector = aiohttp.TCPConnector(ssl=cluster.ssl_context(), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        resp = await session.get(url)
        got = bytearray()
        await asyncio.wait_for(_read_until(resp.content, CURRENT[-1].encode(), got), 30)
        await asyncio.to_thread(wait_for, lambda: kubelet.open_streams == 1, 30)
        resp.close()  # hang up mid-stream
    await asyncio.to_thread(
        wait_for,
        lambda: (kubelet.abandoned_streams, kubelet.open_streams) == (1, 0),
        30,
        what="the kubelet stream to be closed after the client left",
    )


# -------------------------------------------------------------------- kubelet errors
@pytest.mark.parametrize("code", [400, 401, 403, 404, 500])
def test_kubelet_errors_come_back_like_the_reference(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, code: int
) -> None:
    ref = reference(f"03-pods-log-kubelet/raw-kubelet-{code}.json")
    kubelet.error = (code, ref["kubelet_requests_seen_by_fake_kubelet"][0]["response_body"])
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == ref["response"]["status"]
    assert resp.header("Content-Type") == "application/json"
    assert resp.raw.decode() == ref["response"]["body_raw"]
    assert [r.responded for r in kubelet.seen()] == [code]


@pytest.mark.parametrize("code", [409, 429, 502, 503])
def test_other_kubelet_statuses_are_generic_server_responses(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, code: int
) -> None:
    kubelet.error = (code, "nope\n")
    resp = cluster.request("GET", POD_LOG.format("ref-web") + "?container=main")
    assert resp.status == code
    body = resp.json()
    assert body["details"] == {"name": "ref-web", "kind": "pods/log"}
    assert body["message"].endswith(" ( pods/log ref-web)")
    expected = {
        409: "Conflict",
        429: "TooManyRequests",
        502: "InternalError",
        503: "ServiceUnavailable",
    }[code]
    assert body["reason"] == expected


def test_long_kubelet_error_bodies_are_cut_at_50000_bytes(
    cluster: RunningKubeAPI, kubelet: FakeKubelet
) -> None:
    kubelet.error = (400, "x" * 70000)
    resp = cluster.request("GET", POD_LOG.format("ref-web") + "?container=main")
    assert resp.status == 400
    assert resp.json()["message"] == "x" * 50000


def test_kubelet_not_listening_is_a_go_style_dial_error(cluster: RunningKubeAPI) -> None:
    ref = reference("03-pods-log-kubelet/raw-kubelet-connection-refused.json")
    port = _free_port()
    _move_kubelet(cluster, port)
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == 500
    expected = ref["response"]["body_raw"].replace("10350", str(port))
    assert resp.raw.decode() == expected


def test_kubelet_not_listening_keeps_the_query_in_the_message(cluster: RunningKubeAPI) -> None:
    port = _free_port()
    _move_kubelet(cluster, port)
    resp = cluster.request("GET", POD_LOG.format("ref-web") + "?container=main&follow=true")
    assert resp.status == 500
    assert resp.json()["message"] == (
        f'Get "https://127.0.0.1:{port}/containerLogs/default/ref-web/main?follow=true": '
        f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )
    assert "reason" not in resp.json()


# ------------------------------------------------------------ the API server's checks
@pytest.mark.parametrize(
    "capture",
    [
        "raw-05-log-no-container-multi.json",
        "raw-06-log-bad-container.json",
        "raw-08-log-missing-pod.json",
        "raw-11-log-bad-param.json",
        "raw-12-log-negative-tail.json",
        "raw-13-log-both-since.json",
        "raw-14-log-stream-param.json",
        "raw-15-log-pod-on-missing-node.json",
    ],
)
def test_api_server_checks_answer_like_the_reference_without_the_kubelet(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, capture: str
) -> None:
    ref = reference(f"03-pods-log-kubelet/{capture}")
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == ref["response"]["status"]
    assert resp.raw.decode() == ref["response"]["body_raw"]
    # The same headers (order aside): no API Priority and Fairness ones on pods/log.
    # (aiohttp's own Server header is the HTTP layer's business, not this proxy's.)
    assert sorted(h for h, _ in resp.header_list if h != "Server") == sorted(
        h for h, _ in ref["response"]["headers"]
    )
    assert kubelet.seen() == []


def test_unscheduled_pod_is_204_with_no_body(cluster: RunningKubeAPI, kubelet: FakeKubelet) -> None:
    ref = reference("03-pods-log-kubelet/raw-07-log-unscheduled-pod.json")
    resp = cluster.request("GET", ref["request"]["url"])
    assert resp.status == 204
    assert resp.raw == b""
    assert resp.header("Content-Type") is None
    assert kubelet.seen() == []


def test_other_query_errors_use_go_wording(cluster: RunningKubeAPI, kubelet: FakeKubelet) -> None:
    cases = {
        "?container=main&limitBytes=0": (
            422,
            'PodLogOptions "ref-web" is invalid: limitBytes: '
            "Invalid value: 0: must be greater than 0",
        ),
        "?container=main&sinceSeconds=0": (
            422,
            'PodLogOptions "ref-web" is invalid: '
            "sinceSeconds: Invalid value: 0: must be greater "
            "than 0",
        ),
        "?container=main&limitBytes=99999999999999999999": (
            400,
            'strconv.ParseInt: parsing "99999999999999999999": value out of range',
        ),
        "?container=main&sinceSeconds=": (400, 'strconv.ParseInt: parsing "": invalid syntax'),
    }
    for query, (status, message) in cases.items():
        resp = cluster.request("GET", POD_LOG.format("ref-web") + query)
        assert (resp.status, resp.json()["message"]) == (status, message), query
    assert kubelet.seen() == []


def test_node_without_internal_ip_has_no_preferred_address(
    cluster: RunningKubeAPI, kubelet: FakeKubelet
) -> None:
    res = resources.by_kind("", "Node")

    def edit(node: dict[str, Any]) -> None:
        node["status"]["addresses"] = [{"type": "Hostname", "address": NODE}]

    cluster.call(lambda: cluster.api.store.mutate(res, "", NODE, edit, subresource="status"))
    resp = cluster.request("GET", POD_LOG.format("ref-web") + "?container=main")
    assert resp.status == 500
    assert resp.json()["message"] == (
        f"no preferred addresses found; known addresses: [{{Hostname {NODE}}}]"
    )
    assert kubelet.seen() == []


# --------------------------------------------------------------------------- kubectl


def _kubectl(kubeapi: RunningKubeAPI, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--cache-dir", str(cache), *args],
        env=kubeapi.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubectl_logs_defaults_to_the_first_container(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    ref = reference("02-kubectl/09a-logs.json")
    done = _kubectl(cluster, tmp_path, "logs", "ref-web")
    assert (done.returncode, done.stdout, done.stderr) == (0, ref["stdout"], ref["stderr"])
    [seen] = kubelet.seen()
    assert seen.path_and_query == "/containerLogs/default/ref-web/main"
    assert seen.client_cert_subject == APISERVER_CLIENT


def test_kubectl_logs_with_every_option(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    ref = reference("02-kubectl/09c-logs-tail-ts-since-limit-c.json")
    done = _kubectl(
        cluster,
        tmp_path,
        "logs",
        "ref-web",
        "--tail=3",
        "--timestamps",
        "--since=5m",
        "--limit-bytes=100",
        "-c",
        "main",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.encode()) == 100
    assert done.stdout.split(" ", 1)[1].startswith("current: line 4 from container main")
    [seen] = kubelet.seen()
    assert seen.path_and_query == ref["kubelet_requests_seen_by_fake_kubelet"][0]["raw_path"]


def test_kubectl_logs_previous(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    ref = reference("02-kubectl/09d-logs-previous.json")
    done = _kubectl(cluster, tmp_path, "logs", "ref-web", "--previous")
    assert (done.returncode, done.stdout, done.stderr) == (0, ref["stdout"], ref["stderr"])
    assert [r.path_and_query for r in kubelet.seen()] == [
        "/containerLogs/default/ref-web/main?previous=true"
    ]


def test_kubectl_logs_follow_prints_lines_as_they_come(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    ref = reference("02-kubectl/09b-logs-f.json")
    kubelet.follow_lines = FOLLOW
    assert KUBECTL is not None
    proc = subprocess.Popen(
        [KUBECTL, "--cache-dir", str(tmp_path), "logs", "-f", "ref-web"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(ln) for ln in proc.stdout or []], daemon=True
    )
    reader.start()
    try:
        printed = [lines.get(timeout=30) for _ in CURRENT]
        assert printed == [f"{ln}\n" for ln in CURRENT]
        assert proc.poll() is None  # still following
        kubelet.release()
        proc.wait(timeout=30)
        reader.join(30)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not lines.empty():
        printed.append(lines.get())
    assert proc.returncode == 0
    assert "".join(printed) == "".join(f"{ln}\n" for ln in [*CURRENT, *FOLLOW])
    assert stderr == ref["stderr"]


def test_kubectl_logs_unscheduled_pod_prints_nothing(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    ref = reference("03-pods-log-kubelet/kubectl-logs-unscheduled-pod.json")
    done = _kubectl(cluster, tmp_path, "logs", "ref-pending")
    assert (done.returncode, done.stdout, done.stderr) == (
        ref["exit_code"],
        ref["stdout"],
        ref["stderr"],
    )
    assert kubelet.seen() == []


@pytest.mark.parametrize("code", [400, 401, 403, 404, 500])
def test_kubectl_prints_kubelet_errors_like_the_reference(
    cluster: RunningKubeAPI, kubelet: FakeKubelet, tmp_path: Path, code: int
) -> None:
    ref = reference(f"03-pods-log-kubelet/kubectl-logs-kubelet-{code}.json")
    raw = reference(f"03-pods-log-kubelet/raw-kubelet-{code}.json")
    kubelet.error = (code, raw["kubelet_requests_seen_by_fake_kubelet"][0]["response_body"])
    done = _kubectl(cluster, tmp_path, "logs", "ref-web", "-c", "main")
    assert (done.returncode, done.stdout, done.stderr) == (
        ref["exit_code"],
        ref["stdout"],
        ref["stderr"],
    )


def test_kubectl_logs_when_the_kubelet_is_down(cluster: RunningKubeAPI, tmp_path: Path) -> None:
    ref = reference("03-pods-log-kubelet/kubectl-logs-kubelet-connection-refused.json")
    port = _free_port()
    _move_kubelet(cluster, port)
    done = _kubectl(cluster, tmp_path, "logs", "ref-web", "-c", "main")
    assert done.returncode == ref["exit_code"]
    assert done.stderr == ref["stderr"].replace("10350", str(port))
