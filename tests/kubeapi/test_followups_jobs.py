"""Job defaulting: podReplacementPolicy follows podFailurePolicy, as the batch/v1 defaults do."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.kubeapi(controllers=False)

FAILURE_POLICY = {
    "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
}


def _job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "m", "image": "busybox"}],
                }
            },
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({}, "TerminatingOrFailed"),
        ({"podFailurePolicy": FAILURE_POLICY}, "Failed"),
        (
            {"podFailurePolicy": FAILURE_POLICY, "podReplacementPolicy": "TerminatingOrFailed"},
            "TerminatingOrFailed",
        ),
        ({"podReplacementPolicy": "Failed"}, "Failed"),
    ],
)
def test_pod_replacement_policy_default(k8s: Any, spec: dict[str, Any], want: str) -> None:
    job = client.BatchV1Api(k8s).create_namespaced_job("default", _job("j", **spec))
    assert job.spec.pod_replacement_policy == want
