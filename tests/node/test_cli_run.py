"""`vnode run` end to end, as a user starts it: a subprocess against the sandbox API server.

The Node registers and turns Ready with its taint, the sandbox's lifecycle controller
drops the ``not-ready`` taint, the Lease renews, the scheduler honours the taint,
SIGTERM stops vnode cleanly, and a restart updates the same Node instead of replacing it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from tests.conftest import RunningKubeAPI
from tests.waiting import wait_for
from vnode.clock import parse_time

ROOT = Path(__file__).resolve().parents[2]
NODE = "vnode-e2e"
DEFAULT_TAINT = {"key": "virtual-kubelet.io/provider", "value": "gce", "effect": "NoSchedule"}
STOP_BOUND = 30.0  # generous: the point is that it ends by itself with 0, not how fast


class Vnode:
    """A `vnode run` subprocess with its output kept in a file."""

    def __init__(self, kubeapi: RunningKubeAPI, tmp: Path, *extra: str) -> None:
        self.log = tmp / f"vnode-{len(list(tmp.glob('vnode-*.log')))}.log"
        # What `set -a; . DIR/sandbox.env; set +a` would give, plus the fake provider's state.
        env = dict(kubeapi.env)
        env["VNODE_CLIENT_CA_FILE"] = str(kubeapi.state_dir / "pki" / "ca.crt")
        env["VNODE_FAKE_PROVIDER_STATE"] = str(tmp / "fake-provider.json")
        env["VNODE_LEASE_RENEW_INTERVAL"] = "0.5"
        argv = [
            sys.executable, "-m", "vnode.cli", "run",
            "--provider", "tests.providers:FakeProvider", "--node-name", NODE,
            "--kubelet-address", "127.0.0.1", "--kubelet-port", "0", *extra,
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM, then the exit code (killed and failed if it does not stop by itself)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"vnode did not stop on SIGTERM:\n{self.output()}")


@pytest.fixture
def start(kubeapi: RunningKubeAPI, tmp_path: Path) -> Iterator[Any]:
    started: list[Vnode] = []

    def run(*extra: str) -> Vnode:
        vnode = Vnode(kubeapi, tmp_path, *extra)
        started.append(vnode)
        return vnode

    yield run
    for vnode in started:
        if vnode.proc.poll() is None:
            vnode.proc.kill()
            vnode.proc.wait(10)


def core(k8s: Any) -> k8s_client.CoreV1Api:
    return k8s_client.CoreV1Api(k8s)


def node_dict(k8s: Any) -> dict[str, Any]:
    raw: dict[str, Any] = k8s.sanitize_for_serialization(core(k8s).read_node(NODE))
    return raw


def ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions") or [])  # fmt: skip


def renew_time(k8s: Any) -> str:
    lease = k8s_client.CoordinationV1Api(k8s).read_namespaced_lease(NODE, "kube-node-lease")
    raw: dict[str, Any] = k8s.sanitize_for_serialization(lease)
    return str(raw["spec"]["renewTime"])


def wait_ready(k8s: Any, vnode: Vnode) -> dict[str, Any]:
    def registered_and_ready() -> dict[str, Any] | None:
        assert vnode.proc.poll() is None, f"vnode exited:\n{vnode.output()}"
        node = node_dict(k8s)
        return node if ready(node) else None

    return wait_for(registered_and_ready, timeout=30, what="the Node to be Ready")


def test_node_ready_tainted_leased_and_stopped_by_sigterm(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI
) -> None:
    vnode = start()
    node = wait_ready(k8s, vnode)
    assert DEFAULT_TAINT in node["spec"]["taints"]
    assert node["metadata"]["labels"]["type"] == "virtual-kubelet"
    assert node["metadata"]["labels"]["vnode.dev/provider"] == "fake"
    assert node["spec"]["providerID"] == f"vnode://fake/{NODE}"
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert port > 0  # --kubelet-port 0: the port really bound is what the Node says
    socket.create_connection(("127.0.0.1", port), timeout=10).close()
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]

    # The sandbox's lifecycle controller lifts the admission's not-ready taint once Ready.
    def untainted() -> bool:
        taints = node_dict(k8s)["spec"].get("taints") or []
        return all(t["key"] != "node.kubernetes.io/not-ready" for t in taints)

    wait_for(untainted, timeout=30, what="the not-ready taint to be removed")
    assert DEFAULT_TAINT in node_dict(k8s)["spec"]["taints"]

    def read_lease() -> dict[str, Any]:
        lease = k8s_client.CoordinationV1Api(k8s).read_namespaced_lease(NODE, "kube-node-lease")
        raw: dict[str, Any] = k8s.sanitize_for_serialization(lease)
        return raw

    # The Lease follows the Node's registration (it needs the Node's uid).
    lease = wait_for(read_lease, timeout=30, what="the Lease")
    assert lease["spec"]["holderIdentity"] == NODE
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": node["metadata"]["uid"]}
    ]
    first = renew_time(k8s)
    wait_for(lambda: parse_time(renew_time(k8s)) > parse_time(first), timeout=30,
             what="the Lease to be renewed")  # fmt: skip

    assert vnode.terminate() == 0, vnode.output()
    out = vnode.output()
    assert "vnode stopped" in out
    assert "Traceback" not in out
    # Stopped, not deleted: the Node and its Lease stay for the next start.
    assert node_dict(k8s)["metadata"]["uid"] == node["metadata"]["uid"]
    assert renew_time(k8s)


def test_restart_updates_the_same_node(start: Any, k8s: Any) -> None:
    vnode = start("--label", "team=burst")
    node = wait_ready(k8s, vnode)
    uid = node["metadata"]["uid"]
    # An admin labels and taints the Node while vnode runs.
    core(k8s).patch_node(NODE, {
        "metadata": {"labels": {"owner": "platform"}},
        "spec": {"taints": [*node["spec"]["taints"],
                            {"key": "example.com/maintenance", "effect": "NoSchedule"}]},
    })  # fmt: skip
    assert vnode.terminate() == 0, vnode.output()

    # Restarted without the extra label: vnode drops its own old label, keeps the admin's.
    again = start()
    wait_for(lambda: "team" not in node_dict(k8s)["metadata"]["labels"], timeout=30,
             what="the restarted vnode to update the Node")  # fmt: skip
    node = wait_ready(k8s, again)
    assert node["metadata"]["uid"] == uid
    labels = node["metadata"]["labels"]
    assert labels["owner"] == "platform"
    assert "team" not in labels
    keys = [t["key"] for t in node["spec"]["taints"]]
    assert "example.com/maintenance" in keys
    assert keys.count("virtual-kubelet.io/provider") == 1
    assert again.terminate() == 0, again.output()


def test_scheduler_places_only_tolerating_pods(start: Any, k8s: Any) -> None:
    vnode = start()
    wait_ready(k8s, vnode)
    api = core(k8s)

    def pod(name: str, tolerate: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
            "restartPolicy": "Never",
        }
        if tolerate:
            spec["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Equal",
                                    "value": "gce", "effect": "NoSchedule"}]  # fmt: skip
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}

    api.create_namespaced_pod("default", pod("tolerates", True))
    api.create_namespaced_pod("default", pod("does-not", False))

    def bound() -> bool:
        return api.read_namespaced_pod("tolerates", "default").spec.node_name == NODE

    wait_for(bound, timeout=30, what="the tolerating pod to be bound to the Node")

    def unschedulable() -> Any:
        status = api.read_namespaced_pod("does-not", "default").status
        for c in status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False":
                return c
        return None

    condition = wait_for(unschedulable, timeout=30, what="PodScheduled=False")
    assert condition.reason == "Unschedulable"
    assert "untolerated taint {virtual-kubelet.io/provider: gce}" in condition.message
    assert api.read_namespaced_pod("does-not", "default").spec.node_name is None
    assert vnode.terminate() == 0, vnode.output()


def test_environment_only_configuration(kubeapi: RunningKubeAPI, tmp_path: Path,
                                        k8s: Any) -> None:  # fmt: skip
    """`set -a; . sandbox.env; set +a` plus VNODE_* variables, and no flags at all."""
    env = dict(kubeapi.env)
    env.update({
        "VNODE_PROVIDER": "tests.providers:FakeProvider", "VNODE_NODE_NAME": NODE,
        "VNODE_KUBELET_ADDRESS": "127.0.0.1", "VNODE_KUBELET_PORT": "0",
        "VNODE_TAINT": "", "VNODE_LABEL": "from=env",
        "VNODE_CLIENT_CA_FILE": str(kubeapi.state_dir / "pki" / "ca.crt"),
        "VNODE_FAKE_PROVIDER_STATE": str(tmp_path / "fake.json"),
    })  # fmt: skip
    env.pop("VNODE_LEASE_RENEW_INTERVAL", None)
    log = tmp_path / "env.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vnode.cli", "run"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:

        def registered() -> dict[str, Any] | None:
            assert proc.poll() is None, log.read_text()
            node = node_dict(k8s)
            return node if ready(node) else None

        node = wait_for(registered, timeout=30, what="the Node")
        assert node["metadata"]["labels"]["from"] == "env"
        # No vnode taint; at most the lifecycle controller's not-ready one, briefly.
        assert all(t["key"] != "virtual-kubelet.io/provider"
                   for t in node["spec"].get("taints") or [])  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_BOUND) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_pod_runs_logs_and_is_deleted_through_kubectl(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI
) -> None:
    """The user's path: apply, watch it run and finish, read its logs, delete it."""
    vnode = start("--status-period", "0.5")  # the fake provider does not push status
    wait_ready(k8s, vnode)

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["kubectl", *args], env=kubeapi.env, input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    manifest = """
apiVersion: v1
kind: Pod
metadata:
  name: hello
  annotations:
    test.vnode.dev/script: "pending=0.2,run=0.5,exit=0,lines=3"
spec:
  restartPolicy: Never
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
    effect: NoSchedule
  containers:
  - name: main
    image: busybox
    command: ["echo", "hello"]
"""
    kubectl("apply", "-f", "-", stdin=manifest)
    api = core(k8s)

    def phase() -> str:
        return str(api.read_namespaced_pod("hello", "default").status.phase)

    wait_for(lambda: phase() == "Succeeded", timeout=30, what="the pod to succeed")
    assert api.read_namespaced_pod("hello", "default").spec.node_name == NODE
    assert kubectl("logs", "hello").splitlines() == ["line 1", "line 2", "line 3"]
    kubectl("delete", "pod", "hello", "--wait=true", "--timeout=30s")
    assert "hello" not in kubectl("get", "pods", "-o", "name")
    assert vnode.terminate() == 0, vnode.output()


def test_vnode_run_against_vnode_sandbox(tmp_path: Path) -> None:
    """Exactly the README's steps: `vnode sandbox`, then source sandbox.env and `vnode run`."""
    state = tmp_path / "state"
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VNODE_", "KUBE"))}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    env["KUBECACHEDIR"] = str(tmp_path / "kubecache")
    env["VNODE_FAKE_PROVIDER_STATE"] = str(tmp_path / "fake.json")
    sandbox = subprocess.Popen(
        [str(bin_dir / "vnode"), "sandbox", "--state-dir", str(state)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [sandbox]
    try:
        wait_for((state / "ready").exists, timeout=60, what="the sandbox")
        log = tmp_path / "run.log"
        script = (
            f"set -a; . {state / 'sandbox.env'}; set +a; exec vnode run "
            f"--provider tests.providers:FakeProvider --node-name n1 --kubelet-port 0"
        )
        with log.open("wb") as out:
            run = subprocess.Popen(
                ["bash", "-c", script], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        procs.append(run)
        kube_env = {**env, "KUBECONFIG": str(state / "kubeconfig")}

        def node_ready() -> bool:
            assert run.poll() is None, log.read_text()
            done = subprocess.run(
                [
                    "kubectl",
                    "get",
                    "node",
                    "n1",
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                ],
                env=kube_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return done.stdout == "True"

        wait_for(node_ready, timeout=60, interval=0.3, what="Node n1 Ready")
        # sandbox.env keeps the kubelet API on loopback, like everything in the sandbox.
        assert "kubelet API on 127.0.0.1:" in log.read_text()
        run.send_signal(signal.SIGTERM)
        assert run.wait(STOP_BOUND) == 0, log.read_text()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_BOUND)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def test_a_deleted_node_is_registered_again(start: Any, k8s: Any) -> None:
    vnode = start("--node-check-period", "0.5")
    old = wait_ready(k8s, vnode)["metadata"]["uid"]
    core(k8s).delete_node(NODE)

    def back_with_new_uid() -> dict[str, Any] | None:
        node = node_dict(k8s)
        return node if node["metadata"]["uid"] != old and ready(node) else None

    node = wait_for(back_with_new_uid, timeout=30, what="the Node to be registered again")
    assert DEFAULT_TAINT in node["spec"]["taints"]

    # The Lease went with the old Node (owner reference); vnode's Lease follows the new one.
    def lease_owned_by_new_node() -> bool:
        lease = k8s.sanitize_for_serialization(
            k8s_client.CoordinationV1Api(k8s).read_namespaced_lease(NODE, "kube-node-lease")
        )
        refs = lease["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs] == [node["metadata"]["uid"]]

    wait_for(lease_owned_by_new_node, timeout=30, what="the Lease to follow the new Node")
    assert vnode.terminate() == 0, vnode.output()
