"""The chart's vnode pod, run for real on the sandbox: what the chart renders works.

The container's arguments and environment come from the rendered Deployment, the VM
CAs from the rendered Secret, and the pod that `helm test` creates from the rendered test
hook. Only what a cluster would provide is stood in: the mounted files live in a
temporary directory, the downward API's pod IP is 127.0.0.1, and the Compute endpoint and
the kubelet API's loopback address point at the emulators (tests stay on loopback).
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from kubernetes import client as k8s_client

from tests.chart.test_chart import CHART, NAMESPACE, container, one, render
from tests.conftest import RunningKubeAPI
from tests.sandbox.compute_harness import PROJECT, ZONE, RunningCompute, running_compute
from tests.waiting import wait_for
from vnode.sandbox.vm import Timings, vm_factory

ROOT = Path(__file__).resolve().parents[2]
NODE = "chart-node"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    factory = vm_factory(tmp_path / "vms", timings=Timings().scaled(0.2))
    with running_compute(tmp_path / "compute", vm_factory=factory) as rc:
        yield rc


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if not path.endswith(".txt"):
            out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def mount(root: Path, path: str) -> Path:
    """Where a file the pod would see at ``path`` stands in this test."""
    return root / path.lstrip("/")


@pytest.fixture
def chart_vnode(
    kubeapi: RunningKubeAPI, compute: RunningCompute, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], list[dict[str, Any]], Path]]:
    values = {
        "node": {"name": NODE},
        # The VM outlives the pod long enough for its logs to be read live from it.
        "gce": {"project": PROJECT, "zones": [ZONE], "deleteDelaySeconds": 120},
    }
    objs = rendered(values)
    c = container(objs)
    root = tmp_path / "pod"
    # The volumes, as the kubelet would mount them.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    pki_dir = mount(root, mounts["vm-pki"])
    pki_dir.mkdir(parents=True)
    for name, data in one(objs, "Secret")["data"].items():
        (pki_dir / name).write_bytes(base64.b64decode(data))
    ca_dir = mount(root, mounts["client-ca"])
    ca_dir.mkdir(parents=True)
    (ca_dir / "ca.crt").write_bytes((kubeapi.state_dir / "pki" / "ca.crt").read_bytes())
    args = [a.replace("=/", f"={root}/") if "=/etc/" in a or "=/var/" in a else a
            for a in c["args"]]  # fmt: skip
    # Loopback only: the kubelet API and the metrics server on 127.0.0.1, any free port
    # (the last flag wins).
    args += ["--kubelet-address=127.0.0.1", "--kubelet-port=0", "--vm-status-period=0.5",
             "--metrics-address=127.0.0.1", "--metrics-port=0"]  # fmt: skip
    env = dict(kubeapi.env)
    env["VNODE_POD_IP"] = "127.0.0.1"  # what the downward API gives the pod
    env["VNODE_COMPUTE_ENDPOINT"] = compute.endpoint
    # Nothing listens there: archived logs, never needed here, could not leave loopback.
    env["VNODE_LOGGING_ENDPOINT"] = "127.0.0.1:9"
    log = tmp_path / "vnode.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vnode.cli", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield proc, objs, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_helm_test_pod_succeeds_on_the_charts_vnode(
    chart_vnode: tuple[subprocess.Popen[bytes], list[dict[str, Any]], Path],
    k8s: Any,
    compute: RunningCompute,
) -> None:
    proc, objs, log = chart_vnode
    core = k8s_client.CoreV1Api(k8s)

    def alive() -> None:
        assert proc.poll() is None, f"vnode exited:\n{log.read_text(errors='replace')}"

    def node_ready() -> bool:
        alive()
        node = k8s.sanitize_for_serialization(core.read_node(NODE))
        taints = node["spec"].get("taints") or []
        assert [(t["key"], t.get("value"), t["effect"]) for t in taints] == [
            ("virtual-kubelet.io/provider", "gce", "NoSchedule")
        ]
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"].get("conditions") or [])  # fmt: skip

    wait_for(node_ready, timeout=30, what="the chart's Node to be Ready")

    test_pod = one(objs, "Pod", hook=True)
    namespace = test_pod["metadata"]["namespace"]
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_pod(namespace, test_pod)
    name = test_pod["metadata"]["name"]

    def finished() -> str | None:
        alive()
        pod = k8s.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
        phase = pod["status"].get("phase")
        assert phase in ("Succeeded", "Failed"), (phase, pod["status"].get("conditions"))
        return str(phase)

    phase = wait_for(finished, timeout=120, interval=0.2, what="the helm test pod to finish")
    assert phase == "Succeeded", log.read_text(errors="replace")[-4000:]
    assert core.read_namespaced_pod(name, namespace).spec.node_name == NODE
    logs = core.read_namespaced_pod_log(name, namespace)
    assert "vnode ran this pod on" in logs


def test_upgrade_keeps_the_vm_cas_in_the_cluster(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    """A render against the cluster (what `helm upgrade` does) reuses the Secret it finds."""
    core = k8s_client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    first = one(rendered({}), "Secret")
    core.create_namespaced_secret(NAMESPACE, first)
    config = helm.Config(kubeconfig_path=kubeapi.kubeconfig, namespace=NAMESPACE)
    try:
        out = config.render(helm.Chart.load(CHART), {}, name="vnode", namespace=NAMESPACE,
                            is_upgrade=True)  # fmt: skip
    finally:
        config.close()
    again = yaml.safe_load(out["vnode/templates/vm-pki-secret.yaml"])
    assert again["data"] == first["data"]
    # Offline, there is nothing to look up: every render makes new CAs (hence the
    # values.yaml advice to give an existing Secret to `helm template` users).
    assert one(rendered({}), "Secret")["data"] != first["data"]
