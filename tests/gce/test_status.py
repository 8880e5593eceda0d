"""Pod status from the VM state and the VM kubelet: every row of DESIGN.md section 4.

The kubelet answers used here are the real standalone kubelet's captures
(shared/reference/kubelet/pods), so the copy is checked against what a COS VM sends.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.refdata import REFERENCE
from vnode.gce.status import VMState, pod_status

REF = REFERENCE / "kubelet/pods"
SINCE = dt.datetime(2026, 11, 23, 20, 0, 0, tzinfo=dt.UTC)
NOW = SINCE + dt.timedelta(minutes=5)
VM = "vnode-0b5c6b52"


def api_pod(policy: str = "Never", inits: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": policy,
        "containers": [{"name": "echo", "image": "realk8s.local/busybox:1"}],
    }
    if inits:
        spec["initContainers"] = [{"name": "init", "image": "busybox"}]
    return {
        "metadata": {"name": "echo-never", "namespace": "default", "uid": "u1"},
        "spec": spec,
    }


def captured(name: str) -> dict[str, Any]:
    items = json.loads((REF / name).read_text())["items"]
    assert items, name
    return dict(items[0])


def running(ip: str = "127.1.0.7") -> VMState:
    return VMState(VM, "RUNNING", ip, "us-central1-a")


def status(**kw: Any) -> dict[str, Any] | None:
    args: dict[str, Any] = {"vm": None, "kubelet_pod": None, "since": SINCE, "now": NOW}
    args.update(kw)
    pod = args.pop("pod", api_pod())
    return pod_status(pod, **args)


def waiting(s: dict[str, Any], key: str = "containerStatuses") -> dict[str, Any]:
    return dict(s[key][0]["state"]["waiting"])


def test_insert_requested_is_pending_container_creating() -> None:
    s = status(requested=True)
    assert s is not None and s["phase"] == "Pending"
    assert waiting(s) == {"reason": "ContainerCreating", "message": "VM requested"}
    assert [c["type"] for c in s["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled",
    ]  # fmt: skip
    assert s["conditions"][2]["message"] == "containers with unready status: [echo]"


def test_nothing_known_is_none() -> None:
    assert status() is None


@pytest.mark.parametrize("state", ["PROVISIONING", "STAGING"])
def test_booting_vm_names_its_state(state: str) -> None:
    s = status(vm=VMState(VM, state, "", "us-central1-a"))
    assert s is not None and s["phase"] == "Pending"
    assert waiting(s) == {
        "reason": "ContainerCreating",
        "message": f"VM {VM} is {state} in us-central1-a",
    }


def test_running_vm_without_kubelet_answer_is_booting() -> None:
    s = status(vm=running())
    assert s is not None and s["phase"] == "Pending"
    assert waiting(s)["message"] == "VM booting"
    assert s["hostIP"] == "127.1.0.7"
    assert "podIP" not in s


def test_synthesised_status_is_stable() -> None:
    # The same facts later give the same status: no API write per poll.
    first = status(vm=running())
    later = pod_status(api_pod(), vm=running(), kubelet_pod=None, since=SINCE,
                       now=NOW + dt.timedelta(hours=1))  # fmt: skip
    assert first == later


def test_init_containers_wait_for_the_vm_and_apps_initialise() -> None:
    s = status(vm=running(), pod=api_pod(inits=True))
    assert s is not None
    assert waiting(s, "initContainerStatuses")["reason"] == "ContainerCreating"
    assert waiting(s)["reason"] == "PodInitializing"
    assert s["conditions"][1]["reason"] == "ContainersNotInitialized"


def test_kubelet_status_is_copied_with_the_vm_addresses() -> None:
    mirror = captured("a-echo-never.3-running.10250.json")
    s = status(vm=running(), kubelet_pod=mirror)
    assert s is not None
    source = mirror["status"]
    assert s["phase"] == "Running"
    assert s["containerStatuses"] == source["containerStatuses"]
    assert s["conditions"] == source["conditions"]
    assert s["podIP"] == s["hostIP"] == "127.1.0.7"
    assert s["podIPs"] == s["hostIPs"] == [{"ip": "127.1.0.7"}]
    assert "qosClass" not in s  # the API server's, immutable


def test_pod_ip_is_left_to_the_cni_without_host_networking() -> None:
    mirror = captured("a-echo-never.3-running.10250.json")
    s = status(vm=running(), kubelet_pod=mirror, host_network=False)
    assert s is not None and s["hostIP"] == "127.1.0.7" and "podIP" not in s


def test_start_time_never_moves() -> None:
    mirror = captured("a-echo-never.3-running.10250.json")
    s = status(vm=running(), kubelet_pod=mirror, previous={"phase": "Pending",
               "startTime": "2026-11-23T19:00:00Z"})  # fmt: skip
    assert s is not None and s["startTime"] == "2026-11-23T19:00:00Z"


def test_succeeded_and_failed_from_the_kubelet() -> None:
    ok = status(vm=running(), kubelet_pod=captured("a-echo-never.5-succeeded.10250.json"))
    assert ok is not None and ok["phase"] == "Succeeded"
    bad = status(vm=running(), kubelet_pod=captured("b-exit3.2-failed.10255.json"))
    assert bad is not None and bad["phase"] == "Failed"
    assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_exit_codes_decide_before_the_kubelet_catches_up() -> None:
    mirror = captured("a-echo-never.5-succeeded.10250.json")
    mirror["status"]["phase"] = "Running"  # the kubelet's phase lags its container states
    s = status(vm=running(), kubelet_pod=mirror)
    assert s is not None and s["phase"] == "Succeeded"
    failing = captured("b-exit3.2-failed.10255.json")
    failing["status"]["phase"] = "Running"
    on_failure = status(vm=running(), kubelet_pod=failing, pod=api_pod("OnFailure"))
    assert on_failure is not None and on_failure["phase"] == "Running"  # it restarts
    always = status(vm=running(), kubelet_pod=mirror, pod=api_pod("Always"))
    assert always is not None and always["phase"] == "Running"


def test_finished_pod_whose_vm_is_gone_keeps_its_exit_codes() -> None:
    last = captured("a-echo-never.5-succeeded.10250.json")
    last["status"]["phase"] = "Running"
    s = status(vm=None, lost=True, last_kubelet=last)
    assert s is not None and s["phase"] == "Succeeded"


def test_spot_preemption_fails_the_pod() -> None:
    last = captured("a-echo-never.3-running.10250.json")
    s = status(vm=VMState(VM, "STOPPING", "127.1.0.7"), preempted=True, last_kubelet=last)
    assert s is not None
    assert (s["phase"], s["reason"]) == ("Failed", "Preempted")
    assert VM in s["message"] and "preempted" in s["message"]
    term = s["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "ContainerStatusUnknown"
    assert (
        term["startedAt"] == last["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    )


def test_vanished_vm_is_vm_lost() -> None:
    s = status(vm=None, lost=True, last_kubelet=captured("a-echo-never.3-running.10250.json"))
    assert s is not None and (s["phase"], s["reason"]) == ("Failed", "VMLost")
    assert "vnode did not stop it" in s["message"]
    stopped = status(vm=VMState(VM, "TERMINATED"), lost=True)
    assert stopped is not None and stopped["reason"] == "VMLost"
    assert "TERMINATED" in stopped["message"]


def test_vm_deleted_by_vnode_reports_nothing() -> None:
    assert status(vm=VMState(VM, "STOPPING"), deleting=True) is None
    assert status(vm=None, deleting=True) is None


def test_terminal_phase_never_regresses() -> None:
    done = {"phase": "Succeeded", "containerStatuses": []}
    again = status(vm=running(), kubelet_pod=captured("a-echo-never.3-running.10250.json"),
                   previous=done)  # fmt: skip
    assert again == done
    assert status(vm=None, lost=True, previous=done) == done
    assert status(preempted=True, previous={"phase": "Failed", "reason": "X"}) == {
        "phase": "Failed",
        "reason": "X",
    }
