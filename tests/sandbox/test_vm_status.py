"""The kubelet's phase and condition rules for the simulated VM, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from vnode.sandbox.vm.status import conditions, phase, qos_class


def _s(name: str, state: str, *, code: int = 0, last: bool = False, ready: bool = False) -> dict:
    states: dict[str, Any] = {
        "waiting": {"waiting": {"reason": "X"}},
        "running": {"running": {}},
        "terminated": {"terminated": {"exitCode": code}},
    }
    return {
        "name": name,
        "state": states[state],
        "lastState": {"terminated": {"exitCode": code}} if last else {},
        "ready": ready,
    }


@pytest.mark.parametrize(
    ("policy", "init", "app", "want"),
    [
        ("Always", [], [_s("a", "waiting")], "Pending"),
        ("Always", [], [_s("a", "running")], "Running"),
        ("Never", [], [_s("a", "terminated", code=0)], "Succeeded"),
        ("Never", [], [_s("a", "terminated", code=3)], "Failed"),
        ("OnFailure", [], [_s("a", "terminated", code=1)], "Running"),
        ("OnFailure", [], [_s("a", "terminated", code=0)], "Succeeded"),
        ("Always", [], [_s("a", "terminated", code=0)], "Running"),
        ("Always", [], [_s("a", "waiting", code=128, last=True)], "Running"),
        ("Never", [], [_s("a", "running"), _s("b", "terminated")], "Running"),
        ("Never", [_s("i", "terminated", code=1)], [_s("a", "waiting")], "Failed"),
        ("Always", [_s("i", "running")], [_s("a", "waiting")], "Pending"),
        ("Always", [_s("i", "waiting", code=1, last=True)], [_s("a", "waiting")], "Pending"),
    ],
)
def test_phase_follows_get_phase(policy: str, init: list, app: list, want: str) -> None:
    assert phase({"restartPolicy": policy}, init, app) == want


def test_conditions_reasons_and_messages() -> None:
    init_running = conditions(
        pod_phase="Pending",
        sandbox_ready=True,
        init=[_s("init", "running")],
        app=[_s("main", "waiting"), _s("side", "waiting")],
    )
    assert init_running[1] == (
        "Initialized",
        "False",
        "ContainersNotInitialized",
        "containers with incomplete status: [init]",
    )
    assert init_running[2] == (
        "Ready",
        "False",
        "ContainersNotReady",
        "containers with unready status: [main side]",
    )
    done = conditions(
        pod_phase="Succeeded", sandbox_ready=False, init=[], app=[_s("a", "terminated")]
    )
    assert [c[:3] for c in done] == [
        ("PodReadyToStartContainers", "False", None),
        ("Initialized", "True", "PodCompleted"),
        ("Ready", "False", "PodCompleted"),
        ("ContainersReady", "False", "PodCompleted"),
        ("PodScheduled", "True", None),
    ]
    failed = conditions(
        pod_phase="Failed", sandbox_ready=True, init=[], app=[_s("a", "terminated")]
    )
    assert [c[:3] for c in failed][1:4] == [
        ("Initialized", "True", None),
        ("Ready", "False", "PodFailed"),
        ("ContainersReady", "False", "PodFailed"),
    ]


def test_qos_classes() -> None:
    def spec(**res: Any) -> dict:
        return {"containers": [{"name": "c", "resources": res}]}

    assert qos_class(spec()) == "BestEffort"
    assert qos_class(spec(requests={"cpu": "100m"})) == "Burstable"
    both = {"cpu": "1", "memory": "1Gi"}
    assert qos_class(spec(limits=both, requests=both)) == "Guaranteed"
    assert qos_class(spec(limits=both, requests={"cpu": "500m", "memory": "1Gi"})) == "Burstable"
