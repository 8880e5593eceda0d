"""`kubectl logs` on a vnode GCE pod, before and after its VM is gone, end to end.

The sandbox API server, the Compute emulator whose VMs ship their container lines to
the Cloud Logging emulator, and `vnode run --provider gce` as a subprocess reading them
back from there (``VNODE_LOGGING_ENDPOINT``). Each command is run while the VM runs
(answered live by the VM's kubelet) and again once the VM is deleted (answered from
Cloud Logging): the output must be the same bytes. Containers are gated on marker files
the test creates, so "while it runs" and "as lines are written" need no sleeps.

Tailing a 100 000-line log without reading it all is a unit test of the reader
(tests/gce/test_logs_reader.py).
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI
from tests.gce.test_provider_e2e import (  # noqa: F401 - `start` is a fixture
    KUBECTL,
    PROJECT,
    ZONE,
    Vnode,
    create,
    kubectl,
    pod_manifest,
    pod_of,
    start,
    vms_of,
    wait_node,
)
from tests.sandbox.compute_harness import RunningCompute, running_compute
from tests.waiting import wait_for
from vnode.gce import naming
from vnode.sandbox.logging import LoggingEmulator
from vnode.sandbox.vm import Timings, vm_factory

pytestmark = pytest.mark.timeout(240)

STOP_GRACE = 60.0
"""Seconds a container gets when its VM is deleted: long enough for a container that
ignores SIGTERM to finish its steps while the VM goes."""
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


@pytest.fixture
def cloud_logging() -> LoggingEmulator:
    """The Cloud Logging emulator (started with Compute, on its loop)."""
    return LoggingEmulator()


@pytest.fixture
def compute(
    tmp_path: Path, kubeapi: RunningKubeAPI, cloud_logging: LoggingEmulator
) -> Iterator[RunningCompute]:
    """Compute whose VMs ship container lines to ``cloud_logging`` (on the same loop)."""
    factory = vm_factory(
        tmp_path / "vms",
        timings=Timings().scaled(0.2),
        log_sink=cloud_logging.vm_sink(),
        stop_grace=STOP_GRACE,
    )
    with running_compute(tmp_path / "compute", vm_factory=factory) as rc:
        rc.call(cloud_logging.start())
        kubeapi.env["VNODE_LOGGING_ENDPOINT"] = cloud_logging.endpoint
        try:
            yield rc
        finally:
            rc.call(cloud_logging.stop())


def run_kubectl(kubeapi: RunningKubeAPI, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, *args], env=kubeapi.env, capture_output=True,
                          timeout=60, check=False)  # fmt: skip


def logs(kubeapi: RunningKubeAPI, *args: str) -> bytes:
    done = run_kubectl(kubeapi, "logs", *args)
    assert done.returncode == 0, f"kubectl logs {' '.join(args)}: {done.stderr!r}"
    return done.stdout


def gate(path: Path) -> str:
    """Shell that waits until ``path`` exists."""
    return f"while [ ! -e {path} ]; do sleep 0.05; done"


def phase_of(k8s: Any, vnode: Vnode, name: str) -> str:
    vnode.alive()
    return str(pod_of(k8s, name).get("status", {}).get("phase", ""))


def vm_gone(compute: RunningCompute, k8s: Any, name: str) -> bool:
    uid = pod_of(k8s, name)["metadata"]["uid"]
    return all(i["name"] != naming.vm_name(uid) for i in vms_of(compute))


class Follow:
    """`kubectl logs -f` in the background; its output collected line by line."""

    def __init__(self, kubeapi: RunningKubeAPI, *args: str) -> None:
        assert KUBECTL is not None
        self.proc = subprocess.Popen([KUBECTL, "logs", "-f", *args], env=kubeapi.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw)

    def saw(self, line: bytes) -> bool:
        assert self.proc.poll() is None or line in self.lines, self.failure()
        return line in self.lines

    def failure(self) -> str:
        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
        return f"kubectl logs -f ended ({self.proc.returncode}): {err}; got {self.lines}"

    def finish(self, timeout: float) -> bytes:
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        assert rc == 0, self.failure()
        return b"".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def follow(kubeapi: RunningKubeAPI) -> Iterator[Any]:
    """Start `kubectl logs -f ARGS...`; whatever still runs is killed afterwards."""
    started: list[Follow] = []

    def run(*args: str) -> Follow:
        started.append(Follow(kubeapi, *args))
        return started[-1]

    yield run
    for f in started:
        f.stop()


@pytest.fixture
def vnode(start: Any, k8s: Any) -> Vnode:  # noqa: F811 - the fixture imported above
    """`vnode run --provider gce` reading archived logs from ``cloud_logging``, Ready."""
    running: Vnode = start()
    wait_node(k8s, running)
    return running


def test_the_same_commands_give_the_same_output_before_and_after_the_vm_goes(
    vnode: Vnode, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    manifest = pod_manifest(
        "steady", f"for i in 1 2 3 4 5 6 7 8; do echo line $i; done; {gate(done)}"
    )
    side = dict(manifest["spec"]["containers"][0], name="side")
    side["command"] = ["sh", "-c", f"echo side one; echo side two; {gate(done)}"]
    manifest["spec"]["containers"].append(side)
    create(kubeapi, manifest)
    wait_for(lambda: phase_of(k8s, vnode, "steady") == "Running", timeout=90,
             what="the pod to run")  # fmt: skip
    everything = b"".join(b"line %d\n" % i for i in range(1, 9))
    wait_for(lambda: logs(kubeapi, "steady", "-c", "main") == everything, timeout=30,
             what="every line of main")  # fmt: skip
    wait_for(lambda: logs(kubeapi, "steady", "-c", "side") == b"side one\nside two\n",
             timeout=30, what="every line of side")  # fmt: skip
    commands = [
        ("-c", "main"),
        ("-c", "main", "--tail=3"),
        ("-c", "main", "--since=1h"),
        ("-c", "main", "--timestamps"),
        ("-c", "main", "--limit-bytes=20"),
        ("-c", "main", "--tail=2", "--timestamps"),
        ("-c", "side"),
        ("-c", "side", "--tail=1"),
    ]
    live = {args: logs(kubeapi, "steady", *args) for args in commands}
    assert live[("-c", "main", "--tail=3")] == b"line 6\nline 7\nline 8\n"
    assert live[("-c", "main", "--since=1h")] == everything
    stamped = live[("-c", "main", "--timestamps")].splitlines(keepends=True)
    assert [STAMP.sub(b"", x) for x in stamped] == everything.splitlines(keepends=True)
    assert all(STAMP.match(x) for x in stamped), stamped
    assert live[("-c", "main", "--limit-bytes=20")] == everything[:20]
    assert live[("-c", "main", "--tail=2", "--timestamps")] == b"".join(stamped[-2:])
    assert live[("-c", "side", "--tail=1")] == b"side two\n"

    done.touch()
    wait_for(lambda: phase_of(k8s, vnode, "steady") == "Succeeded", timeout=60,
             what="the pod to succeed")  # fmt: skip
    wait_for(lambda: vm_gone(compute, k8s, "steady"), timeout=60, what="its VM to go")
    archived = {args: logs(kubeapi, "steady", *args) for args in commands}
    assert archived == live


def test_previous_shows_the_run_before_a_restart_before_and_after_the_vm_goes(
    vnode: Vnode, k8s: Any, kubeapi: RunningKubeAPI, compute: RunningCompute, tmp_path: Path
) -> None:
    marker, done = tmp_path / "ran-once", tmp_path / "done"
    script = (
        f"if [ -e {marker} ]; then echo second run; {gate(done)}; "
        f"else touch {marker}; echo first run; exit 1; fi"
    )
    create(kubeapi, pod_manifest("again", script, restartPolicy="OnFailure"))

    def restarted_and_running() -> bool:
        vnode.alive()
        status = pod_of(k8s, "again").get("status", {})
        [c] = status.get("containerStatuses") or [{}]
        return c.get("restartCount") == 1 and "running" in (c.get("state") or {})

    wait_for(restarted_and_running, timeout=90, what="the container to run a second time")
    wait_for(lambda: logs(kubeapi, "again") == b"second run\n", timeout=30,
             what="the second run's line")  # fmt: skip
    commands = [("--previous",), (), ("--previous", "--timestamps"), ("--previous", "--tail=1")]
    live = {args: logs(kubeapi, "again", *args) for args in commands}
    assert live[("--previous",)] == b"first run\n"
    assert live[("--previous", "--tail=1")] == b"first run\n"
    assert STAMP.sub(b"", live[("--previous", "--timestamps")]) == b"first run\n"

    done.touch()
    wait_for(lambda: phase_of(k8s, vnode, "again") == "Succeeded", timeout=60,
             what="the pod to succeed")  # fmt: skip
    wait_for(lambda: vm_gone(compute, k8s, "again"), timeout=60, what="its VM to go")
    archived = {args: logs(kubeapi, "again", *args) for args in commands}
    assert archived == live


def test_follow_prints_lines_as_written_and_returns_when_the_container_exits(
    vnode: Vnode, k8s: Any, kubeapi: RunningKubeAPI, tmp_path: Path, follow: Any
) -> None:
    go1, go2 = tmp_path / "go1", tmp_path / "go2"
    script = f"echo step 1; {gate(go1)}; echo step 2; {gate(go2)}; echo step 3"
    create(kubeapi, pod_manifest("stepper", script))
    wait_for(lambda: phase_of(k8s, vnode, "stepper") == "Running", timeout=90,
             what="the pod to run")  # fmt: skip
    follower = follow("stepper")
    # Each step is written only after the test saw the one before: the follow shows
    # lines as they are written, not when the container ends.
    wait_for(lambda: follower.saw(b"step 1\n"), timeout=30, what="step 1")
    go1.touch()
    wait_for(lambda: follower.saw(b"step 2\n"), timeout=30, what="step 2")
    assert follower.proc.poll() is None  # the container is still running: so is the follow
    go2.touch()
    assert follower.finish(timeout=60) == b"step 1\nstep 2\nstep 3\n"


def test_a_follow_goes_on_from_cloud_logging_when_the_vm_is_deleted(  # noqa: PLR0917
    vnode: Vnode,
    k8s: Any,
    kubeapi: RunningKubeAPI,
    compute: RunningCompute,
    tmp_path: Path,
    follow: Any,
) -> None:
    go1, go2 = tmp_path / "go1", tmp_path / "go2"
    # The container outlives its VM's deletion for a while (it ignores SIGTERM, and the
    # VM gives it STOP_GRACE seconds), so it writes lines after its VM stopped running.
    script = (
        f"trap '' TERM; echo step 1; echo step 1b; {gate(go1)}; echo step 2; "
        f"{gate(go2)}; echo step 3"
    )
    create(kubeapi, pod_manifest("outlives", script))
    wait_for(lambda: phase_of(k8s, vnode, "outlives") == "Running", timeout=90,
             what="the pod to run")  # fmt: skip
    follower = follow("outlives", "--timestamps")
    wait_for(lambda: any(x.endswith(b" step 1b\n") for x in follower.lines), timeout=30,
             what="the first lines, live")  # fmt: skip
    uid = pod_of(k8s, "outlives")["metadata"]["uid"]
    compute.instances().delete(project=PROJECT, zone=ZONE, instance=naming.vm_name(uid))
    handed_over = "going on from Cloud Logging"
    wait_for(lambda: handed_over in vnode.output(), timeout=30,
             what="the live stream to hand over to Cloud Logging")  # fmt: skip
    go1.touch()
    wait_for(lambda: any(x.endswith(b" step 2\n") for x in follower.lines), timeout=60,
             what="step 2, from Cloud Logging")  # fmt: skip
    go2.touch()
    out = follower.finish(timeout=120)
    lines = out.splitlines(keepends=True)
    assert all(STAMP.match(x) for x in lines), lines
    assert [STAMP.sub(b"", x) for x in lines] == [b"step 1\n", b"step 1b\n", b"step 2\n",
                                                  b"step 3\n"]  # fmt: skip
    # Once the VM is gone the same command reads it all back from Cloud Logging.
    wait_for(lambda: vm_gone(compute, k8s, "outlives"), timeout=60, what="the VM to go")
    assert logs(kubeapi, "outlives", "--timestamps") == out


def test_a_container_that_never_started_gets_the_kubelets_error(
    vnode: Vnode, k8s: Any, kubeapi: RunningKubeAPI
) -> None:
    manifest = pod_manifest("nocmd", "true")
    del manifest["spec"]["containers"][0]["command"]  # the VM cannot make its config

    def waiting() -> bool:
        vnode.alive()
        status = pod_of(k8s, "nocmd").get("status", {})
        [c] = status.get("containerStatuses") or [{}]
        reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
        return reason == "CreateContainerConfigError"

    create(kubeapi, manifest)
    wait_for(waiting, timeout=90, what="the container to wait with its config error")
    failed = run_kubectl(kubeapi, "logs", "nocmd")
    assert failed.returncode == 1
    assert failed.stderr.decode().strip() == (
        'Error from server (BadRequest): container "main" in pod "nocmd" is waiting to '
        "start: CreateContainerConfigError"
    )
