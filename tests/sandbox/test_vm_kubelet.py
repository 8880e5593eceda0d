"""The simulated VM's kubelet against the real standalone kubelet v1.33 captures.

Each test boots a VM from a hand-written cloud-config holding the reference manifests
(busybox ``sh -c`` commands, run here by the local ``/bin/sh``) and compares ``/pods``
moment by moment, and ``/containerLogs`` answer by answer, with what the real kubelet
said. Timings are scaled down; only orders and shapes are compared, never durations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.sandbox.vm_harness import (
    NODE,
    REFERENCE,
    Client,
    Pki,
    instance,
    kubelet_config,
    pod_item,
    random_ip,
    reference_json,
    reference_manifest,
    user_data,
    wait_for_capture,
)
from vnode.sandbox.vm import SimulatedVM, Timings

FAST = Timings(
    sync=0.2,
    create=0.05,
    backoff_initial=0.8,
    backoff_max=10.0,
    sandbox_teardown=0.3,
    manifest_poll=0.05,
    log_poll=0.02,
    drain=0.3,
)


@asynccontextmanager
async def booted(
    tmp_path: Path,
    manifests: dict[str, str],
    *,
    config: dict[str, Any] | None = None,
    anonymous_client: bool = False,
    **vm_options: Any,
) -> AsyncIterator[tuple[SimulatedVM, Client]]:
    ip = random_ip()
    pki = Pki.create(ip, NODE)
    text = user_data(pki, config=config, manifests=manifests)
    meta = vm_options.pop("metadata", {})
    timings = vm_options.pop("timings", FAST)
    vm = SimulatedVM(
        instance("vm-under-test", ip, text, **meta), tmp_path / "vms", timings=timings, **vm_options
    )
    await vm.start()
    assert vm.boot_error is None, vm.boot_error
    try:
        cert = None if anonymous_client else pki.client
        async with Client(vm.kubelet_url, pki, tmp_path, cert=cert) as client:
            client.pki = pki
            yield vm, client
    finally:
        await vm.stop()


def manifests(*names: str) -> dict[str, str]:
    return {f"cap-{n}": reference_manifest(n) for n in names}


def exchange(file: str, label: str) -> dict[str, Any]:
    data = reference_json(f"logs/{file}")
    return next(e for e in data["exchanges"] if e["label"] == label)


def _headers_like(got: dict[str, str], want: dict[str, str]) -> None:
    """Same header names (Date aside) and values (lengths aside) as the real kubelet's."""
    names = {k.lower() for k in got} - {"date"}
    want_names = {k.lower() for k in want} - {"date"}
    assert names == want_names, (got, want)
    for k, v in want.items():
        if k.lower() not in ("date", "content-length"):
            assert got[k] == v


async def _check_log(client: Client, pod: str, file: str, label: str, path: str) -> None:
    e = exchange(file, label)
    status, headers, body = await client.get(f"/containerLogs/default/{pod}/{path}")
    assert status == e["response"]["status"], (label, body)
    assert body.decode() == e["response"]["body"], label
    _headers_like(headers, e["response"]["headers"])


async def test_echo_never_moments_logs_and_errors(tmp_path: Path) -> None:
    pod = "echo-never-standalone-node"
    async with booted(tmp_path, manifests("echo-never.yaml")) as (vm, client):
        await wait_for_capture(client, "a-echo-never.3-running.10255.json", pod)
        item = await pod_item(client, pod)
        assert item is not None
        want = reference_json("pods/a-echo-never.3-running.10255.json")["items"][0]
        assert json.dumps(item["spec"]) == json.dumps(want["spec"])
        assert list(item) == list(want) and list(item["metadata"]) == list(want["metadata"])
        await wait_for_capture(client, "a-echo-never.5-succeeded.10255.json", pod)

        for label, query in [
            ("no-params", ""),
            ("tailLines-1", "?tailLines=1"),
            ("tailLines-2", "?tailLines=2"),
            ("limitBytes-7", "?limitBytes=7"),
            ("limitBytes-10", "?limitBytes=10"),
            ("sinceSeconds-60", "?sinceSeconds=60"),
            ("follow-true-terminated", "?follow=true"),
            ("previous-true-no-previous", "?previous=true"),
        ]:
            await _check_log(client, pod, "a-echo-never.json", label, "echo" + query)
        status, _, body = await client.get(f"/containerLogs/default/{pod}/echo?timestamps=true")
        assert status == 200
        assert re.fullmatch(rb"\S+\.\d{9}Z hello\n\S+\.\d{9}Z bye\n", body)
        for label in ("no-such-container", "bad-tailLines", "negative-tailLines", "no-such-pod"):
            e = exchange("errors.json", label)
            url = e["request"]["url"].split("10250", 1)[1]
            status, headers, body = await client.get(url)
            assert (status, body.decode()) == (e["response"]["status"], e["response"]["body"])
            _headers_like(headers, e["response"]["headers"])

        # The CRI layout: <ns>_<pod>_<uid>/<container>/<restart>.log plus the symlink.
        uid = item["metadata"]["uid"]
        log_dir = vm.root / "var/log/pods" / f"default_{pod}_{uid}"
        log_file = log_dir / "echo" / "0.log"
        assert oct(log_file.stat().st_mode & 0o777) == "0o640"
        assert oct(log_dir.stat().st_mode & 0o777) == "0o755"
        lines = log_file.read_bytes().splitlines()
        assert [ln.split(b" ", 1)[1] for ln in lines] == [b"stdout F hello", b"stdout F bye"]
        links = list((vm.root / "var/log/containers").iterdir())
        assert [ln.name.split("-", 3)[:2] for ln in links] == [["echo", "never"]]
        assert links[0].resolve() == log_file.resolve()

        # Manifest gone: the pod leaves /pods at once and the list is null, not [].
        (vm.root / "etc/kubernetes/manifests/cap-echo-never.yaml").unlink()
        empty = reference_json("pods/empty.10250.json")

        async def gone() -> bool:
            _, headers, body = await client.get("/pods")
            return json.loads(body) == empty and headers.get("Content-Length") == "64"

        await _until(gone)


async def _until(predicate: Any, limit: float = 20.0) -> Any:
    async with asyncio.timeout(limit):
        while True:
            got = await predicate()
            if got:
                return got
            await asyncio.sleep(0.02)


async def test_crash_loop_restarts_then_backs_off_doubling(tmp_path: Path) -> None:
    pod = "crashloop-standalone-node"
    async with booted(tmp_path, manifests("crashloop.yaml")) as (vm, client):
        states: list[tuple[str, str, int, str]] = []
        messages: list[str] = []

        async def restarted_twice_into_backoff() -> bool:
            item = await pod_item(client, pod)
            assert item is not None
            cs = item["status"]["containerStatuses"][0]
            assert item["status"]["phase"] in ("Pending", "Running")
            kind = next(iter(cs["state"]))
            reason = cs["state"][kind].get("reason", "")
            key = (kind, reason, cs["restartCount"], next(iter(cs["lastState"]), "-"))
            if not states or states[-1] != key:
                states.append(key)
                if reason == "CrashLoopBackOff":
                    messages.append(cs["state"]["waiting"]["message"])
            return key == ("waiting", "CrashLoopBackOff", 2, "terminated")

        await _until(restarted_twice_into_backoff, 30)
        # Polling may miss a short-lived state, never reorder them: the real sequence.
        sequence = [
            ("waiting", "ContainerCreating", 0, "-"),
            ("running", "", 0, "-"),
            ("terminated", "Error", 0, "-"),
            ("running", "", 1, "terminated"),
            ("terminated", "Error", 1, "terminated"),
            ("waiting", "CrashLoopBackOff", 1, "terminated"),
            ("running", "", 2, "terminated"),
            ("terminated", "Error", 2, "terminated"),
            ("waiting", "CrashLoopBackOff", 2, "terminated"),
        ]
        positions = [sequence.index(s) for s in states]
        assert positions == sorted(positions), states
        assert ("waiting", "CrashLoopBackOff", 1, "terminated") in states
        await wait_for_capture(client, "c-crashloop.5-crashloop-restart2.10255.json", pod)
        uid = (await pod_item(client, pod) or {})["metadata"]["uid"]
        assert messages == [
            f"back-off 800ms restarting failed container=crash pod={pod}_default({uid})",
            f"back-off 1.6s restarting failed container=crash pod={pod}_default({uid})",
        ]
        # In back-off, a plain request and previous=true both read the last exited run.
        for query in ("", "?previous=true"):
            status, _, body = await client.get(f"/containerLogs/default/{pod}/crash{query}")
            assert status == 200
            assert re.fullmatch(rb"attempt started at \d\d:\d\d:\d\d\nexiting 1\n", body)
        logs = sorted(p.name for p in (vm.root / "var/log/pods").glob("*/crash/*.log"))
        assert logs == ["1.log", "2.log"]


async def test_init_containers_then_app_containers_as_captured(tmp_path: Path) -> None:
    pod = "multi-standalone-node"
    async with booted(tmp_path, manifests("multi.yaml")) as (_vm, client):
        await wait_for_capture(client, "d-multi.1-init-running.10255.json", pod)
        await _check_log(client, pod, "d-multi.json", "main-while-PodInitializing", "main")
        await _check_log(client, pod, "d-multi.json", "init-while-running", "init")
        await wait_for_capture(client, "d-multi.2-init-done-containers-starting.10255.json", pod)
        await wait_for_capture(client, "d-multi.3-both-running.10255.json", pod)
        await wait_for_capture(client, "d-multi.4-side-exited.10255.json", pod)
        await wait_for_capture(client, "d-multi.5-side-crashloop.10255.json", pod, limit=30)
        await _check_log(client, pod, "d-multi.json", "init-after-done", "init")
        await _check_log(client, pod, "d-multi.json", "main-running", "main")


async def test_failures_exit_codes_and_start_errors(tmp_path: Path) -> None:
    names = ("exit3.yaml", "badcmd.yaml", "badcmd-never.yaml")
    async with booted(tmp_path, manifests(*names)) as (_vm, client):
        await wait_for_capture(client, "b-exit3.2-failed.10255.json", "exit3-standalone-node")
        await _check_log(client, "exit3-standalone-node", "b-exit3.json", "no-params", "fail")
        await wait_for_capture(
            client, "e2-badcmd-never.2-failed.10255.json", "badcmd-never-standalone-node"
        )
        await wait_for_capture(
            client, "e-badcmd.2-runcontainererror.10255.json", "badcmd-standalone-node"
        )
        await wait_for_capture(client, "e-badcmd.3-crashloop.10255.json", "badcmd-standalone-node")
        for label, path in [
            ("e-badcmd.no-params", "bad"),
            ("e-badcmd.previous-true", "bad?previous=true"),
        ]:
            await _check_log(client, "badcmd-standalone-node", "e-badcmd.json", label, path)
        await _check_log(
            client,
            "badcmd-never-standalone-node",
            "e-badcmd.json",
            "e2-badcmd-never.no-params",
            "bad",
        )


async def test_what_a_standalone_kubelet_cannot_run(tmp_path: Path) -> None:
    names = ("cmvol.yaml", "secretvol.yaml", "sa.yaml", "projtoken.yaml", "cmenv.yaml")
    async with booted(tmp_path, manifests(*names)) as (_vm, client):
        for n in names:
            pod = f"{n[:-5]}-standalone-node"
            await wait_for_capture(client, "f-unsupported.2-after-25s.10255.json", pod)
            if n != "sa.yaml":
                await _check_log(client, pod, "f-unsupported.json", f"f-{n[:-5]}.no-params", "c")
        status, _, body = await client.get("/containerLogs/default/sa-standalone-node/c")
        assert status == 200 and body.startswith(b"sa pod; token dir:\n")


async def test_a_container_without_command_is_reported_unsupported(tmp_path: Path) -> None:
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: img}\nspec:\n  hostNetwork: true\n"
        "  containers: [{name: app, image: nginx:1.27}]\n"
    )
    async with booted(tmp_path, {"img.yaml": manifest}) as (_vm, client):

        async def config_error() -> dict[str, Any] | None:
            item = await pod_item(client, "img-standalone-node")
            st = item["status"]["containerStatuses"][0]["state"] if item else {}
            return st.get("waiting") if "message" in st.get("waiting", {}) else None

        waiting = await _until(config_error)
        assert waiting["reason"] == "CreateContainerConfigError"
        assert "does not pull images" in waiting["message"]
        status, _, body = await client.get("/containerLogs/default/img-standalone-node/app")
        assert (status, body) == (
            400,
            b'container "app" in pod "img-standalone-node" is waiting to start: '
            b"CreateContainerConfigError",
        )


async def test_a_pod_network_needs_a_cni_config(tmp_path: Path) -> None:
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: net}\nspec:\n  containers:\n"
        "  - {name: c, image: busybox, command: [/bin/sh, -c, 'echo up; sleep 600']}\n"
    )
    async with booted(tmp_path, {"net.yaml": manifest}) as (vm, client):
        item = await _until(lambda: pod_item(client, "net-standalone-node"))
        assert item["status"]["phase"] == "Pending"
        cs = item["status"]["containerStatuses"][0]
        assert cs["state"] == {"waiting": {"reason": "ContainerCreating"}}
        assert item["status"]["conditions"][0]["status"] == "False"
        # The bootstrap's bridge config (written here after boot) lets the pod start.
        cni = vm.root / "etc/cni/net.d"
        cni.mkdir(parents=True)
        (cni / "10-kubelet0.conflist").write_text('{"cniVersion": "1.0.0", "name": "kubelet0"}')

        async def running() -> bool:
            item = await pod_item(client, "net-standalone-node")
            return bool(item) and item["status"]["phase"] == "Running"

        await _until(running)


async def test_partial_lines_logs_and_log_shipping(tmp_path: Path) -> None:
    pod = "partial-standalone-node"
    shipped: list[dict[str, Any]] = []

    async def sink(entry: dict[str, Any]) -> None:
        shipped.append(entry)

    async with booted(
        tmp_path,
        manifests("partial.yaml"),
        log_sink=sink,
        metadata={"google-logging-enabled": "true"},
    ) as (vm, client):
        await wait_for_capture(client, "h-partial.1-done.10255.json", pod)
        raw = next((vm.root / "var/log/pods").glob("*/p/0.log")).read_bytes().splitlines()
        pieces = [tuple(ln.split(b" ", 3)[1:]) for ln in raw]
        x = b"x" * 16384
        stdout = [(b"F", b"to-stdout"), (b"P", x), (b"F", b"-tail-after-16KiB"), (b"F", b"short")]
        assert [p[1:] for p in pieces if p[0] == b"stdout"] == [*stdout, (b"P", b"abc")]
        assert [p[1:] for p in pieces if p[0] == b"stderr"] == [(b"F", b"to-stderr")]
        # stdout and stderr are read separately, so where the stderr line lands in the file
        # varies, on the real runtime too; the answers follow the file either way.
        joined = [p[2] + (b"" if p[1] == b"P" else b"\n") for p in pieces]
        answers = {
            "no-params": ("", b"".join(joined)),
            "limitBytes-10": ("?limitBytes=10", b"".join(joined)[:10]),
            "tailLines-2": ("?tailLines=2", b"".join(joined[-2:])),
        }
        same_order_as_capture = pieces[4] == (b"stderr", b"F", b"to-stderr")
        for label, (query, expected) in answers.items():
            status, headers, body = await client.get(f"/containerLogs/default/{pod}/p{query}")
            assert (status, body) == (200, expected), label
            e = exchange("h-partial.json", label)["response"]
            _headers_like(headers, e["headers"])
            if same_order_as_capture or label == "no-params":
                assert len(body) == e.get("bodyLength", len(body))
            if same_order_as_capture:
                text = body.decode().replace("x" * 16384, "<16384 x chars>")
                assert text == e.get("body", e.get("bodyWithXRunElided")), label
        await _until(_async(lambda: len(shipped) == 5))
    by_log = {e["log"][:9]: e for e in shipped}
    assert set(by_log) == {"to-stdout", "to-stderr", "xxxxxxxxx", "short", "abc"}
    long = by_log["xxxxxxxxx"]
    assert long["log"] == "x" * 16384 + "-tail-after-16KiB"
    assert by_log["to-stderr"]["stream"] == "stderr"
    assert long["pod_name"] == pod and long["namespace"] == "default"
    assert long["container_name"] == "p" and long["restart_count"] == 0
    assert long["instance_name"] == "vm-under-test" and long["zone"] == "us-central1-a"
    assert long["project"] == "vnode-test"
    assert long["instance_labels"] == {"vnode-pod-uid": "pod-uid-1"}
    assert re.fullmatch(r"\S+T\S+\.\d{9}Z", long["timestamp"])


def _async(fn: Any) -> Any:
    async def call() -> Any:
        return fn()

    return call


async def test_follow_streams_lines_and_ends_when_the_container_exits(tmp_path: Path) -> None:
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ticker}\nspec:\n  restartPolicy: Never\n"
        "  hostNetwork: true\n"
        "  containers:\n  - name: tick\n    image: busybox\n    command: [/bin/sh, -c, "
        "'for i in 1 2 3 4; do echo \"tick $i\"; sleep 0.4; done']\n"
    )
    async with booted(tmp_path, {"ticker.yaml": manifest}) as (_vm, client):

        async def running() -> bool:
            item = await pod_item(client, "ticker-standalone-node")
            return bool(item) and item["status"]["phase"] == "Running"

        await _until(running)
        assert client._session is not None
        url = client.base + "/containerLogs/default/ticker-standalone-node/tick?follow=true"
        chunks: list[bytes] = []
        async with asyncio.timeout(20), client._session.get(url) as resp:
            assert resp.status == 200
            assert "Content-Type" not in resp.headers
            async for line in resp.content:
                chunks.append(line)
        assert b"".join(chunks) == b"tick 1\ntick 2\ntick 3\ntick 4\n"
        item = await pod_item(client, "ticker-standalone-node")
        assert item is not None


async def test_authentication_and_the_read_only_port(tmp_path: Path) -> None:
    config = kubelet_config(readOnlyPort=10255)
    async with booted(tmp_path, manifests("sleeper.yaml"), config=config) as (vm, client):
        # The certificate from the client CA is allowed.
        assert (await client.get("/healthz"))[:1] == (200,)
        # Anonymous is off: 401 with the kubelet's exact body everywhere, bearer tokens too.
        auth = {e["label"]: e for e in reference_json("auth.json")["exchanges"]}
        async with Client(vm.kubelet_url, client.pki, tmp_path) as anon:
            for label, path in [
                ("anonymous-disabled.10250.pods", "/pods"),
                ("anonymous-disabled.10250.healthz", "/healthz"),
                ("anonymous-disabled.10250.containerLogs", "/containerLogs/default/x/y"),
            ]:
                status, headers, body = await anon.get(path)
                want = auth[label]["response"]
                assert (status, body.decode()) == (want["status"], want["body"])
                _headers_like(headers, want["headers"])
            assert anon._session is not None
            async with anon._session.get(
                vm.kubelet_url + "/pods", headers={"Authorization": "Bearer abc"}
            ) as resp:
                assert resp.status == 401
        # A certificate from another CA is refused (during the TLS handshake here).
        other = type(client.pki).create(vm.internal_ip, NODE)
        async with Client(vm.kubelet_url, client.pki, tmp_path, cert=other.client) as stranger:
            with pytest.raises(aiohttp.ClientError):
                await stranger.get("/pods")
        # The read-only port: plain HTTP, no auth, debug endpoints disabled.
        ro = f"http://{vm.internal_ip}:{vm.read_only_port}"
        async with aiohttp.ClientSession() as plain:
            async with plain.get(ro + "/pods") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            e = exchange("i-sleeper.json", "readonly-port-10255")["response"]
            async with plain.get(ro + "/containerLogs/default/sleeper-standalone-node/sleep") as r:
                assert (r.status, await r.text()) == (e["status"], e["body"])
                _headers_like(dict(r.headers), e["headers"])
            health = reference_json("healthz.json")["exchanges"][0]["response"]
            async with plain.get(ro + "/healthz") as r:
                assert (r.status, await r.text()) == (200, "ok")
                _headers_like(dict(r.headers), health["headers"])


async def test_anonymous_enabled_with_always_allow_has_full_access(tmp_path: Path) -> None:
    config = kubelet_config()
    config["authentication"]["anonymous"] = {"enabled": True}
    async with booted(tmp_path, {}, config=config, anonymous_client=True) as (_vm, client):
        status, headers, body = await client.get("/pods")
        assert (status, body) == (
            200,
            b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}\n',
        )
        assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == "64"


async def test_stats_and_manifest_removal_while_running(tmp_path: Path) -> None:
    pod = "sleeper-standalone-node"
    async with booted(tmp_path, manifests("sleeper.yaml")) as (vm, client):
        await wait_for_capture(client, "i-sleeper.1-running.10255.json", pod)
        status, headers, body = await client.get("/stats/summary")
        assert status == 200 and headers["Content-Type"] == "application/json"
        got = json.loads(body)
        want = reference_json("stats/stats-summary.10250.json")
        assert _shape(got) == _shape(want)
        status, _, body = await client.get("/stats/summary?only_cpu_and_memory=true")
        assert _shape(json.loads(body)) == _shape(
            reference_json("stats/stats-summary.only_cpu_and_memory-true.10250.json")
        )
        status, headers, body = await client.get("/metrics/resource")
        assert headers["Content-Type"] == (
            "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
        )
        assert _series(body.decode()) == _series(METRICS.read_text())
        status, _, body = await client.get("/runningpods/")
        running = json.loads(body)["items"]
        assert [p["metadata"]["name"] for p in running] == [pod]
        assert running[0]["status"] == {}

        worker = vm.kubelet.pod("default", pod) if vm.kubelet else None
        assert worker is not None
        pid = worker.app_views[0].state[1].pid
        (vm.root / "etc/kubernetes/manifests/cap-sleeper.yaml").unlink()
        await _until(_async_absent(client, pod))

        async def killed() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        await _until(killed)


def _async_absent(client: Client, pod: str) -> Any:
    async def absent() -> bool:
        return await pod_item(client, pod) is None

    return absent


METRICS = REFERENCE / "stats/metrics-resource.10250.txt"


def _series(text: str) -> set[str]:
    return {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln[:1] != "#"}


def _shape(obj: Any) -> Any:
    """Keys and nesting without values (lists reduced to their first element's shape)."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items() if k != "interfaces"}
    if isinstance(obj, list):
        return [_shape(obj[0])] if obj else []
    return type(obj).__name__ if not isinstance(obj, int | float) else "number"


async def test_a_vm_whose_kubelet_would_not_start_serves_nothing(tmp_path: Path) -> None:
    ip = random_ip()
    pki = Pki.create(ip, NODE)
    config = kubelet_config()
    config["authorization"] = {"mode": "Webhook"}
    vm = SimulatedVM(instance("broken", ip, user_data(pki, config=config)), tmp_path, timings=FAST)
    await vm.start()
    try:
        assert vm.boot_error == "no client provided, cannot use webhook authorization"
        assert (tmp_path / "broken/etc/kubernetes/kubelet-config.yaml").is_file()
        with pytest.raises(OSError):
            _r, w = await asyncio.open_connection(ip, 10250)
            w.close()
    finally:
        await vm.stop()


async def test_webhook_config_comes_up_only_when_allowed(tmp_path: Path) -> None:
    config = kubelet_config()
    config["authentication"]["webhook"] = {"enabled": True}
    config["authorization"] = {"mode": "Webhook"}
    async with booted(tmp_path, {}, config=config, allow_webhook=True) as (vm, client):
        assert (await client.get("/pods"))[0] == 200
        async with Client(vm.kubelet_url, client.pki, tmp_path) as anon:
            assert (await anon.get("/pods"))[0] == 401


async def test_without_a_serving_certificate_the_kubelet_signs_its_own(tmp_path: Path) -> None:
    config = kubelet_config()
    del config["tlsCertFile"], config["tlsPrivateKeyFile"]
    ip = random_ip()
    pki = Pki.create(ip, NODE)
    vm = SimulatedVM(instance("self", ip, user_data(pki, config=config)), tmp_path, timings=FAST)
    await vm.start()
    try:
        assert vm.boot_error is None
        cert = tmp_path / "self/var/lib/kubelet/pki/kubelet.crt"
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        c, k = pki.client.write(tmp_path, "client")
        ctx.load_cert_chain(str(c), str(k))
        connector = aiohttp.TCPConnector(ssl=ctx)
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.get(vm.kubelet_url + "/healthz") as resp,
        ):
            assert (resp.status, await resp.text()) == (200, "ok")
    finally:
        await vm.stop()


async def test_active_deadline_fails_the_pod_and_kills_it(tmp_path: Path) -> None:
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec:\n  hostNetwork: true\n"
        "  activeDeadlineSeconds: 1\n  containers:\n"
        "  - {name: c, image: busybox, command: [/bin/sh, -c, 'echo up; sleep 600']}\n"
    )
    async with booted(tmp_path, {"late.yaml": manifest}) as (_vm, client):

        async def failed() -> dict[str, Any] | None:
            item = await pod_item(client, "late-standalone-node")
            done = item and item["status"]["phase"] == "Failed"
            return item["status"] if done else None

        status = await _until(failed)
        assert list(status)[:4] == ["phase", "conditions", "message", "reason"]
        assert status["reason"] == "DeadlineExceeded"
        assert status["message"] == "Pod was active on the node longer than the specified deadline"
        term = status["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (143, "Error")
        assert [c["reason"] for c in status["conditions"] if c["type"] == "Ready"] == ["PodFailed"]


async def test_probes_hold_started_and_ready_and_liveness_restarts(tmp_path: Path) -> None:
    flag = tmp_path / "ready-flag"
    manifest = f"""apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [/bin/sh, -c, 'sleep 1; touch {flag}; sleep 600']
    startupProbe: {{exec: {{command: [/bin/true]}}, periodSeconds: 1}}
    readinessProbe: {{exec: {{command: [test, -f, '{flag}']}}, periodSeconds: 1}}
  - name: doomed
    image: busybox
    command: [/bin/sh, -c, 'sleep 600']
    livenessProbe: {{tcpSocket: {{port: 1}}, periodSeconds: 1, failureThreshold: 1}}
"""
    async with booted(tmp_path, {"probed.yaml": manifest}) as (_vm, client):
        seen: list[tuple[bool, bool]] = []

        async def app_ready_and_doomed_restarted() -> bool:
            item = await pod_item(client, "probed-standalone-node")
            if not item or "containerStatuses" not in item["status"]:
                return False
            by = {c["name"]: c for c in item["status"]["containerStatuses"]}
            app = by["app"]
            if "running" in app["state"]:
                pair = (app["started"], app["ready"])
                if not seen or seen[-1] != pair:
                    seen.append(pair)
            doomed = by["doomed"]
            return app["ready"] and doomed["restartCount"] >= 1

        await _until(app_ready_and_doomed_restarted, 30)
        assert seen[-1] == (True, True)
        assert (True, False) in seen  # running and started, not yet ready
        item = await pod_item(client, "probed-standalone-node")
        doomed = next(c for c in item["status"]["containerStatuses"] if c["name"] == "doomed")
        last = doomed["lastState"]["terminated"]
        assert (last["exitCode"], last["reason"]) == (143, "Error")


async def test_a_sidecar_runs_beside_the_job_and_stops_with_it(tmp_path: Path) -> None:
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: withsidecar}\nspec:\n"
        "  hostNetwork: true\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 2\n"
        "  initContainers:\n"
        "  - {name: proxy, image: busybox, restartPolicy: Always,"
        " command: [/bin/sh, -c, 'echo proxy up; sleep 600']}\n"
        "  containers:\n"
        "  - {name: job, image: busybox, command: [/bin/sh, -c, 'sleep 1; echo job done']}\n"
    )
    async with booted(tmp_path, {"s.yaml": manifest}) as (_vm, client):
        phases: list[tuple[str, str, str]] = []

        async def succeeded() -> dict[str, Any] | None:
            item = await pod_item(client, "withsidecar-standalone-node")
            if not item or "initContainerStatuses" not in item["status"]:
                return None
            st = item["status"]
            key = (
                st["phase"],
                next(iter(st["initContainerStatuses"][0]["state"])),
                next(iter(st["containerStatuses"][0]["state"])),
            )
            if not phases or phases[-1] != key:
                phases.append(key)
            done = st["phase"] == "Succeeded" and key[1] == "terminated"
            return st if done else None

        status = await _until(succeeded)
        assert ("Running", "running", "running") in phases
        sidecar = status["initContainerStatuses"][0]
        assert "terminated" in sidecar["state"]
        assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        init_cond = next(c for c in status["conditions"] if c["type"] == "Initialized")
        assert (init_cond["status"], init_cond.get("reason")) == ("True", "PodCompleted")


async def test_container_logs_rotate_at_the_configured_size(tmp_path: Path) -> None:
    config = kubelet_config(containerLogMaxSize="2Ki", containerLogMaxFiles=2)
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: chatty}\nspec:\n  hostNetwork: true\n"
        "  containers:\n  - name: c\n    image: busybox\n    command: [/bin/sh, -c, "
        "'i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); done; sleep 600']\n"
    )
    timings = dataclasses.replace(FAST, log_monitor=0.1)
    async with booted(tmp_path, {"chatty.yaml": manifest}, config=config, timings=timings) as (
        vm,
        client,
    ):
        log_dir = vm.root / "var/log/pods"

        def files() -> list[str]:
            return sorted(p.name for p in log_dir.glob("*/c/*"))

        await _until(_async(lambda: len(files()) == 2))
        assert files()[0] == "0.log" and files()[1].startswith("0.log.")
        status, _, body = await client.get("/containerLogs/default/chatty-standalone-node/c")
        # The kubelet serves the current file only: the head went with the rotation.
        assert status == 200 and b"line 0\n" not in body
