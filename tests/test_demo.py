"""``vnode demo`` as a newcomer runs it: one command, a Job start to finish, exit 0.

The demo runs as a subprocess (``python -m vnode.cli demo``), the way the README tells
people to run it, and the tests read what it prints: the pods table, the pod's log lines,
the final message. A failing step must say which one; ``--keep`` must leave a working
cluster behind, usable with kubectl, and stop cleanly on a signal, leaving no process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.refdata import KUBE_APISERVER
from tests.waiting import wait_for
from vnode.demo import FAREWELL, GREETING, format_table, job_manifest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(150)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)  # the demo's temporary state directory goes here
    env["KUBECACHEDIR"] = str(tmp_path / "kubecache")
    env.pop("KUBECONFIG", None)
    return env


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vnode.cli", "demo", *args],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _leftovers(session: int, state_dir: Path) -> list[str]:
    """Processes still in the demo's session or working inside its state directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            sid = int(stat.rsplit(")", 1)[1].split()[3])
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if sid == session or cwd.startswith(str(state_dir)):
            found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()!r}")
    return found


@pytest.mark.parametrize(
    ("recording", "wide"),
    [("01-get-pods.cold-cache.json", False), ("02-get-pods-o-wide.json", True)],
)
def test_the_pods_table_prints_as_kubectl_does(recording: str, wide: bool) -> None:
    # The real kubectl's output for the real server's Table, byte for byte.
    captured = json.loads((KUBE_APISERVER / "02-kubectl" / recording).read_text())
    table = captured["http"][-1]["response_body"]
    assert table["kind"] == "Table"
    assert format_table(table, wide=wide) + "\n" == captured["stdout"]


def test_demo_runs_a_job_to_the_end_and_cleans_up(tmp_path: Path) -> None:
    done = _demo(tmp_path)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout
    # The kubectl-style wide table, from the server's Table.
    header = next(line for line in out.splitlines() if line.startswith("NAME "))
    assert header.split()[:6] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"]
    assert "NOMINATED NODE" in header and "READINESS GATES" in header
    row = out.splitlines()[out.splitlines().index(header) + 1]
    assert row.startswith("hello-vnode-") and "Completed" in row and " vnode " in row
    # The container's own lines, read back through pods/log.
    assert GREETING in out and FAREWELL in out
    assert "I am hello-vnode-" in out and "scheduled to Node vnode." in out
    assert "no VM left in Compute Engine" in out
    assert "vnode demo: done in" in out
    # Quiet: the log lines went to the file, not the terminal.
    assert done.stderr == ""
    # The temporary state directory is removed after a successful run.
    assert not list(tmp_path.glob("vnode-demo-*"))


def test_a_failed_step_is_named_and_exits_non_zero(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # No machine type holds 500 CPUs: vnode fails the pod, and the demo says so.
    done = _demo(tmp_path, "--state-dir", str(state), "--cpu", "500")
    assert done.returncode == 1, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "vnode demo failed at step 'run the Job's pod'" in done.stderr
    assert "expected the pod to run to Succeeded" in done.stderr
    assert "PodTooLarge" in done.stderr
    log_file = state / "demo.log"
    assert str(log_file) in done.stderr
    assert "vnode is running" in log_file.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_keep_leaves_a_cluster_for_kubectl_and_stops_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    state = tmp_path / "state"
    env = _env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vnode.cli", "demo", "--keep", "--state-dir", str(state)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own session, to find anything it leaves behind
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for text in stdout:
            lines.put(text)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def kubeconfig_line() -> str:
        while not lines.empty():
            seen.append(lines.get())
        assert proc.poll() is None, "".join(seen)
        return next((s.strip() for s in seen if s.startswith("KUBECONFIG=")), "")

    try:
        line = wait_for(kubeconfig_line, timeout=90, what="the KUBECONFIG line")
        kubeconfig = line.split("=", 1)[1]
        assert Path(kubeconfig) == state / "kubeconfig"
        assert any(f"export KUBECONFIG={kubeconfig}" in s for s in seen)
        env["KUBECONFIG"] = kubeconfig

        def kubectl(*args: str, stdin: str | None = None) -> str:
            done = subprocess.run(["kubectl", *args], env=env, input=stdin, capture_output=True,
                                  text=True, timeout=60, check=False)  # fmt: skip
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "Ready" in kubectl("get", "node", "vnode")
        # A pod still running when the signal comes: its VM and process must go too.
        pod = job_manifest("100m", "64Mi")["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"}, **pod}
        pod["spec"]["containers"][0]["command"] = ["sh", "-c", "echo up; sleep 300"]
        kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        wait_for(
            lambda: kubectl("get", "pod", "sleeper", "-o", "jsonpath={.status.phase}") == "Running",
            timeout=60,
            what="the pod started by hand to run",
        )
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("vnode demo --keep did not stop within 30 s of the signal")
    reader.join(5)
    while not lines.empty():
        seen.append(lines.get())
    assert code == 0, "".join(seen)
    assert "vnode demo: stopping." in "".join(seen)

    # Nothing left running: not in the demo's session, not in its VMs' directories.
    def nothing_left() -> bool:
        left = _leftovers(proc.pid, state)
        assert left == [], left
        return True

    # A process killed at exit may take a moment to be reaped.
    wait_for(nothing_left, timeout=5, what="no process left behind")
