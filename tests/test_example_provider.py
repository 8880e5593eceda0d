"""The README's example provider (examples/echo_provider.py) works as the README says.

It satisfies the Provider protocol, follows its rules through a create / status / logs /
delete cycle, and runs under `vnode run --provider examples.echo_provider:EchoProvider`
started from the repository root, with kubectl, as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.echo_provider import EchoProvider
from tests.conftest import RunningKubeAPI
from tests.waiting import wait_for
from vnode.errors import InvalidPod, NotFound
from vnode.provider import LogOptions, Pod, PodRef, Provider, ProviderContext

ROOT = Path(__file__).resolve().parents[1]
NODE = "echo"


def _pod(name: str = "p", uid: str = "u-1", **container: Any) -> Pod:
    spec = {"containers": [{"name": "main", "image": "busybox", **container}]}
    return {"metadata": {"name": name, "namespace": "default", "uid": uid}, "spec": spec}


class _NoCluster:
    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def request_token(self, namespace: str, service_account: str, **_: Any) -> str:
        raise AssertionError("the echo provider asks for no tokens")


async def _read(provider: EchoProvider, pod: Pod, **options: Any) -> bytes:
    return b"".join([c async for c in provider.container_logs(pod, LogOptions("main", **options))])


def test_it_is_a_provider() -> None:
    assert isinstance(EchoProvider(), Provider)


async def test_create_status_logs_delete_cycle() -> None:
    provider = EchoProvider()
    await provider.start(ProviderContext(NODE, _NoCluster(), lambda *_: None))
    pod = _pod(command=["echo"], args=["hello", "world"])
    assert await provider.pod_status(pod) is None  # nothing known before create

    await provider.create_pod(pod)
    await provider.create_pod(pod)  # a repeated create is success and changes nothing
    status = await provider.pod_status(pod)
    assert status is not None and status["phase"] == "Succeeded"
    [container] = status["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 0
    assert await provider.list_pods() == [PodRef("default", "p", "u-1")]

    assert await _read(provider, pod) == b"echo hello world\n"
    assert await _read(provider, pod, tail_lines=0) == b""
    assert await _read(provider, pod, limit_bytes=4) == b"echo"
    stamped = (await _read(provider, pod, timestamps=True)).decode()
    stamp, _, text = stamped.partition(" ")
    assert text == "echo hello world\n" and stamp.endswith("Z") and len(stamp) == 30
    with pytest.raises(NotFound):
        [c async for c in provider.container_logs(pod, LogOptions("other"))]

    await provider.delete_pod(pod)
    await provider.delete_pod(pod)  # deleting a missing pod is success
    assert await provider.pod_status(pod) is None
    assert await provider.list_pods() == []
    await provider.stop()


async def test_a_pod_it_cannot_run_is_refused() -> None:
    provider = EchoProvider()
    with pytest.raises(InvalidPod, match="no command or args"):
        await provider.create_pod(_pod())
    assert await provider.list_pods() == []


def test_vnode_run_with_the_example_provider(kubeapi: RunningKubeAPI, tmp_path: Path) -> None:
    """The README's command, from the repository root, against the sandbox API server."""
    env = dict(kubeapi.env)
    env["VNODE_CLIENT_CA_FILE"] = str(kubeapi.state_dir / "pki" / "ca.crt")
    log = tmp_path / "vnode.log"
    argv = [
        sys.executable, "-m", "vnode.cli", "run",
        "--provider", "examples.echo_provider:EchoProvider", "--node-name", NODE,
        "--kubelet-address", "127.0.0.1", "--kubelet-port", "0", "--metrics-port", "-1",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def kubectl(*args: str, stdin: str | None = None) -> str:
        assert proc.poll() is None, f"vnode exited:\n{log.read_text()}"
        done = subprocess.run(
            ["kubectl", *args],
            check=False,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "echo-test"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "tolerations": [
                {"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [{"name": "main", "image": "busybox", "command": ["echo", "hi"]}],
        },
    }
    try:
        wait_for(
            lambda: "vnode.dev/provider=echo" in kubectl("get", "node", NODE, "--show-labels"),
            timeout=30,
            what="the echo Node",
        )
        kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        wait_for(
            lambda: (
                kubectl("get", "pod", "echo-test", "-o", "jsonpath={.status.phase}") == "Succeeded"
            ),
            timeout=30,
            what="the pod to succeed",
        )
        assert kubectl("logs", "echo-test") == "echo hi\n"
        kubectl("delete", "pod", "echo-test", "--wait=true", "--timeout=30s")
    finally:
        proc.terminate()
        proc.wait(30)
