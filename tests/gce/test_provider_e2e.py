"""`vnode run --provider gce` end to end, as a user runs it, entirely on loopback.

The sandbox API server (``kubeapi`` fixture), the Compute emulator whose RUNNING
instances boot simulated COS VMs, and vnode as a subprocess with the GCE flags. Users'
objects go in with kubectl and the official client; what comes out is checked where a
user would look: pod phases and reasons, ``kubectl logs``, and the VMs in Compute.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from kubernetes import client as k8s_client

from tests.conftest import RunningKubeAPI
from tests.sandbox.compute_harness import PROJECT, RunningCompute, running_compute
from tests.waiting import wait_for
from vnode.gce import naming
from vnode.gce.machines import choose_machine
from vnode.sandbox.compute.catalogue import to_resource, zone_shapes
from vnode.sandbox.runner import Sandbox
from vnode.sandbox.vm import Timings, vm_factory
from vnode.settings import GCESettings

ROOT = Path(__file__).resolve().parents[2]
NODE = "vnode-gce"
ZONE = "us-central1-a"
ZONE_B = "us-central1-b"
DELETE_DELAY = 1.0
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.timeout(180)

TOLERATION = {
    "key": "virtual-kubelet.io/provider",
    "operator": "Equal",
    "value": "gce",
    "effect": "NoSchedule",
}


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    factory = vm_factory(tmp_path / "vms", timings=Timings().scaled(0.2))
    with running_compute(tmp_path / "compute", vm_factory=factory) as rc:
        yield rc


class Vnode:
    """A `vnode run --provider gce` subprocess, its output kept in a file."""

    def __init__(self, kubeapi: RunningKubeAPI, compute: RunningCompute, tmp: Path) -> None:
        self.log = tmp / f"vnode-{len(list(tmp.glob('vnode-*.log')))}.log"
        env = dict(kubeapi.env)
        env["VNODE_CLIENT_CA_FILE"] = str(kubeapi.state_dir / "pki" / "ca.crt")
        env["VNODE_COMPUTE_ENDPOINT"] = compute.endpoint
        env["VNODE_PROJECT"] = PROJECT
        env["VNODE_ZONE"] = f"{ZONE},{ZONE_B}"
        argv = [
            sys.executable, "-m", "vnode.cli", "run", "--provider", "gce",
            "--node-name", NODE, "--kubelet-address", "127.0.0.1", "--kubelet-port", "0",
            "--machine-family", "e2", "--gce-ca-dir", str(tmp / "gce-ca"),
            "--delete-delay", str(DELETE_DELAY), "--vm-status-period", "0.5",
            "--status-period", "1", "--lease-renew-interval", "1",
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"vnode exited:\n{self.output()}"


@pytest.fixture
def start(kubeapi: RunningKubeAPI, compute: RunningCompute, tmp_path: Path) -> Iterator[Any]:
    started: list[Vnode] = []

    def run() -> Vnode:
        vnode = Vnode(kubeapi, compute, tmp_path)
        started.append(vnode)
        return vnode

    yield run
    for vnode in started:
        if vnode.proc.poll() is None:
            vnode.proc.send_signal(signal.SIGTERM)
            try:
                vnode.proc.wait(30)
            except subprocess.TimeoutExpired:
                vnode.proc.kill()
                vnode.proc.wait(10)


def kubectl(kubeapi: RunningKubeAPI, *args: str, stdin: str | None = None) -> str:
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, *args], env=kubeapi.env, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def core(k8s: Any) -> k8s_client.CoreV1Api:
    return k8s_client.CoreV1Api(k8s)


def pod_of(k8s: Any, name: str, namespace: str = "default") -> dict[str, Any]:
    raw: dict[str, Any] = k8s.sanitize_for_serialization(
        core(k8s).read_namespaced_pod(name, namespace)
    )
    return raw


def wait_node(k8s: Any, vnode: Vnode) -> None:
    def ready() -> bool:
        vnode.alive()
        node = k8s.sanitize_for_serialization(core(k8s).read_node(NODE))
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"].get("conditions") or [])  # fmt: skip

    wait_for(ready, timeout=30, what="the vnode Node to be Ready")


def pod_manifest(name: str, command: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "tolerations": [TOLERATION],
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", command],
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
            }
        ],
    }
    annotations = extra.pop("annotations", None)
    spec.update(extra)
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def create(kubeapi: RunningKubeAPI, obj: dict[str, Any]) -> None:
    kubectl(kubeapi, "apply", "-f", "-", stdin=json.dumps(obj))


def vms_of(compute: RunningCompute) -> list[dict[str, Any]]:
    return [i for i in compute.emulator.instances if i.get("labels", {}).get("vnode-node") == NODE]


def test_job_runs_on_a_right_sized_vm_logs_and_the_vm_goes_away(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute
) -> None:
    vnode = start()
    wait_node(k8s, vnode)
    job = textwrap.dedent(
        """\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: crunch}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              tolerations:
              - {key: virtual-kubelet.io/provider, operator: Equal, value: gce, effect: NoSchedule}
              containers:
              - name: main
                image: busybox
                command: [sh, -c, "echo hello from the vm; sleep 3; echo done"]
                resources: {requests: {cpu: "2", memory: 3Gi}}
        """
    )
    kubectl(kubeapi, "apply", "-f", "-", stdin=job)

    def job_pod() -> dict[str, Any]:
        vnode.alive()
        pods = core(k8s).list_namespaced_pod("default", label_selector="job-name=crunch").items
        assert pods, "no pod yet"
        raw: dict[str, Any] = k8s.sanitize_for_serialization(pods[0])
        return raw

    phases: list[str] = []

    def phase_is(want: str) -> dict[str, Any] | None:
        pod = job_pod()
        phase = pod.get("status", {}).get("phase", "")
        if not phases or phases[-1] != phase:
            phases.append(phase)
        return pod if phase == want else None

    running = wait_for(lambda: phase_is("Running"), timeout=60, what="the Job pod to run")
    # A VM of the size vnode's own rules pick for this pod, from the zone's catalogue.
    [inst] = vms_of(compute)
    assert inst["name"] == naming.vm_name(running["metadata"]["uid"])
    catalogue = [to_resource(s, ZONE, "https://x", PROJECT) for s in zone_shapes(ZONE)]
    settings = GCESettings(project=PROJECT, zones=(ZONE,), machine_families=("e2",))
    expected = choose_machine(running, catalogue, settings, zone=ZONE).machine_type
    assert inst["machineType"].endswith("/" + expected)
    assert running["status"]["podIP"] == inst["networkInterfaces"][0]["networkIP"]
    pod = wait_for(lambda: phase_is("Succeeded"), timeout=60, what="the Job pod to succeed")
    assert phases[-2:] == ["Running", "Succeeded"], phases
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    logs = kubectl(kubeapi, "logs", pod["metadata"]["name"])
    assert logs == "hello from the vm\ndone\n"
    # After the deletion delay the VM is gone; the pod stays Succeeded.
    wait_for(lambda: not vms_of(compute), timeout=30, what="the finished pod's VM to go")
    assert pod_of(k8s, pod["metadata"]["name"])["status"]["phase"] == "Succeeded"
    created = [o for o in compute.emulator.operations if o["operationType"] == "insert"]
    assert len(created) == 1
    events = kubectl(kubeapi, "get", "events", "--field-selector", "reason=VMCreated")
    assert expected in events, events


def test_pods_that_cannot_run_fail_with_a_reason(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute
) -> None:
    vnode = start()
    wait_node(k8s, vnode)
    pvc = pod_manifest(
        "with-pvc",
        "true",
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    pvc["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    create(kubeapi, pvc)
    big = pod_manifest("huge", "true")
    big["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100", "memory": "8Gi"}}
    # The scheduler must let it through: the Node's capacity is large.
    create(kubeapi, big)

    def failed(name: str) -> dict[str, Any] | None:
        vnode.alive()
        status = pod_of(k8s, name).get("status", {})
        return status if status.get("phase") == "Failed" else None

    s = wait_for(lambda: failed("with-pvc"), timeout=30, what="the PVC pod to fail")
    assert "data" in s["message"] and "persistentVolumeClaim" in s["message"], s
    s = wait_for(lambda: failed("huge"), timeout=30, what="the 100-CPU pod to fail")
    assert s["reason"] == "PodTooLarge"
    assert "100" in s["message"], s
    assert vms_of(compute) == []


def test_injected_503s_and_429s_are_survived(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute
) -> None:
    faults = compute.emulator.faults
    vnode = start()
    wait_node(k8s, vnode)
    faults.fail_next("instances.insert", 2, code=503)
    faults.fail_next("instances.insert", 1, code=429, retry_after=1)
    faults.fail_next("instances.aggregatedList", 2, code=503)
    faults.fail_next("zoneOperations.wait", 1, code=503)
    create(kubeapi, pod_manifest("flaky", "echo survived"))

    def succeeded() -> bool:
        vnode.alive()
        return pod_of(k8s, "flaky").get("status", {}).get("phase") == "Succeeded"

    wait_for(succeeded, timeout=60, what="the pod to succeed despite the faults")
    assert kubectl(kubeapi, "logs", "flaky") == "survived\n"
    assert faults.call_count("instances.insert") >= 4
    assert len([o for o in compute.emulator.operations if o["operationType"] == "insert"]) == 1


def test_spot_preemption_ends_the_pod_failed_preempted(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute
) -> None:
    vnode = start()
    wait_node(k8s, vnode)
    spot = pod_manifest(
        "spot", "echo up; sleep 120", annotations={"vnode.dev/provisioning-model": "spot"}
    )
    create(kubeapi, spot)

    def running() -> dict[str, Any] | None:
        vnode.alive()
        pod = pod_of(k8s, "spot")
        return pod if pod.get("status", {}).get("phase") == "Running" else None

    pod = wait_for(running, timeout=60, what="the Spot pod to run")
    name = naming.vm_name(pod["metadata"]["uid"])
    [inst] = vms_of(compute)
    assert inst["scheduling"]["provisioningModel"] == "SPOT"
    compute.emulator.faults.preempt(name)

    def failed() -> dict[str, Any] | None:
        vnode.alive()
        status = pod_of(k8s, "spot").get("status", {})
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, timeout=60, what="the preempted pod to fail")
    assert status["reason"] == "Preempted", status


def test_kill_and_restart_leaves_one_vm_per_pod(
    start: Any, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute
) -> None:
    vnode = start()
    wait_node(k8s, vnode)
    for i in range(3):
        create(kubeapi, pod_manifest(f"steady-{i}", "echo start; sleep 6; echo end"))

    def all_vms() -> bool:
        vnode.alive()
        return len(vms_of(compute)) == 3

    wait_for(all_vms, timeout=60, what="three VMs")
    vnode.proc.send_signal(signal.SIGKILL)
    vnode.proc.wait(10)
    again = start()

    def all_done() -> bool:
        again.alive()
        assert len(vms_of(compute)) <= 3
        phases = {pod_of(k8s, f"steady-{i}").get("status", {}).get("phase") for i in range(3)}
        return phases == {"Succeeded"}

    wait_for(all_done, timeout=90, what="every pod to succeed after the restart")
    inserted = {
        o["targetLink"] for o in compute.emulator.operations if o["operationType"] == "insert"
    }
    assert len(inserted) == 3
    assert kubectl(kubeapi, "logs", "steady-0") == "start\nend\n"


async def test_sandbox_without_kube_serves_compute_and_vms(tmp_path: Path) -> None:
    """``vnode sandbox --no-kube``: only the cloud side, described in sandbox.env."""
    sandbox = Sandbox(tmp_path / "sb", kube=False)
    env = await sandbox.start()
    try:
        written = dict(
            line.split("=", 1) for line in (tmp_path / "sb" / "sandbox.env").read_text().split()
        )
        assert written == env
        assert "KUBECONFIG" not in env
        assert env["VNODE_PROJECT"] and env["VNODE_ZONE"] in sandbox.compute.zones
        assert env["VNODE_GCE_CA_DIR"].startswith(str(tmp_path))
        client = compute_v1.MachineTypesClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=env["VNODE_COMPUTE_ENDPOINT"]),
        )
        request = compute_v1.ListMachineTypesRequest(
            project=env["VNODE_PROJECT"], zone=env["VNODE_ZONE"], max_results=5
        )
        page = await asyncio.to_thread(lambda: next(iter(client.list(request=request).pages)))
        assert page.items
    finally:
        await sandbox.stop()
