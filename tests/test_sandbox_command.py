"""``vnode sandbox`` as a newcomer uses it: start it, wait for ``ready``, use kubectl, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: [echo, hello]
"""


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"vnode sandbox exited with {proc.returncode} before ready:\n{out}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def _kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def test_sandbox_serves_kubectl_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vnode.cli", "sandbox", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_file(state / "ready", proc)
        env_lines = (state / "sandbox.env").read_text().splitlines()
        values = dict(line.split("=", 1) for line in env_lines if line)
        assert Path(values["KUBECONFIG"]) == state / "kubeconfig"
        assert Path(values["VNODE_CLIENT_CA_FILE"]).is_file()

        env = {**os.environ, "KUBECONFIG": values["KUBECONFIG"]}
        env["KUBECACHEDIR"] = str(tmp_path / "kubecache")
        namespaces = _kubectl(env, "get", "ns", "-o", "name")
        for ns in ("default", "kube-system", "kube-node-lease"):
            assert f"namespace/{ns}" in namespaces.split()

        assert "pod/hello created" in _kubectl(env, "apply", "-f", "-", stdin=POD)
        assert "pod/hello unchanged" in _kubectl(env, "apply", "-f", "-", stdin=POD)
        assert _kubectl(env, "get", "pod", "hello", "-o", "jsonpath={.metadata.name}") == "hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("vnode sandbox did not stop within 20 s of SIGTERM")
    assert code == 0
    assert not (state / "ready").exists()
