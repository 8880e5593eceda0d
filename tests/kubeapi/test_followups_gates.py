"""Scheduling gates: a gated pod says why it waits, and its gates can only be removed.

On create the pod strategy adds ``PodScheduled=False`` / ``SchedulingGated``; an update
may delete gates (the scheduler then binds the pod) but adding one is 422.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI
from tests.kubeapi.test_scheduler import add_node, add_pod, env, eventually, get_pod, scheduled
from vnode.clock import rfc3339
from vnode.sandbox.kubeapi import resources

__all__ = ["env"]  # the Store + scheduler fixture, shared with the scheduler tests

PODS = resources.by_kind("", "Pod")
PODS_PATH = "/api/v1/namespaces/default/pods"


def _gated(name: str, *gates: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "main", "image": "busybox:1.36"}],
            "schedulingGates": [{"name": g} for g in gates],
        },
    }


@pytest.mark.kubeapi(controllers=False)
def test_gated_pod_is_created_with_the_scheduling_gated_condition(
    kubeapi: RunningKubeAPI,
) -> None:
    created = kubeapi.request("POST", PODS_PATH, _gated("g", "example.com/a")).json()
    assert created["status"] == {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": created["metadata"]["creationTimestamp"],
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }
        ],
        "qosClass": "BestEffort",
    }
    plain = kubeapi.request("POST", PODS_PATH, _gated("plain")).json()
    assert "conditions" not in plain["status"]


@pytest.mark.kubeapi(controllers=False)
def test_gates_can_be_removed_but_not_added(kubeapi: RunningKubeAPI) -> None:
    kubeapi.request("POST", PODS_PATH, _gated("g", "example.com/a", "example.com/b"))
    pod = kubeapi.request("GET", f"{PODS_PATH}/g").json()
    pod["spec"]["schedulingGates"] = [{"name": "example.com/b"}]
    put = kubeapi.request("PUT", f"{PODS_PATH}/g", pod)
    assert put.status == 200, put.raw
    assert put.json()["spec"]["schedulingGates"] == [{"name": "example.com/b"}]

    added = put.json()
    added["spec"]["schedulingGates"].append({"name": "example.com/new"})
    refused = kubeapi.request("PUT", f"{PODS_PATH}/g", added)
    assert refused.status == 422
    doc = refused.json()
    assert doc["message"] == (
        'Pod "g" is invalid: spec.schedulingGates[1].name: Forbidden: only deletion is '
        "allowed, but found new scheduling gate 'example.com/new'"
    )
    assert doc["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: only deletion is allowed, but found new scheduling gate "
            "'example.com/new'",
            "field": "spec.schedulingGates[1].name",
        }
    ]

    last = kubeapi.request(
        "PATCH",
        f"{PODS_PATH}/g",
        [{"op": "remove", "path": "/spec/schedulingGates"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert last.status == 200, last.raw
    assert "schedulingGates" not in last.json()["spec"]


async def test_removing_the_last_gate_lets_the_scheduler_bind(env: SimpleNamespace) -> None:
    add_node(env.store, "n1")
    pod = add_pod(env.store, "held", schedulingGates=[{"name": "example.com/quota"}])
    assert scheduled(env.store, "held") == {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": rfc3339(env.clock.now()),
        "reason": "SchedulingGated",
        "message": "Scheduling is blocked due to non-empty scheduling gates",
    }
    pod["spec"].pop("schedulingGates")
    env.store.update(PODS, "default", "held", pod)
    await eventually(lambda: get_pod(env.store, "held")["spec"].get("nodeName") == "n1")
    cond = scheduled(env.store, "held")
    assert cond is not None and cond["status"] == "True"
