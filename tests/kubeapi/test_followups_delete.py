"""DELETE options become garbage-collector finalizers, as in the real registry.

Orphan (or ``orphanDependents: true``) adds ``orphan``, Foreground adds
``foregroundDeletion``, Background adds neither. batch/v1 Jobs default to Orphan and
the server warns about it; ``kubectl delete`` sends Background (``02-kubectl/08``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningKubeAPI, reference
from tests.waiting import wait_for
from vnode.sandbox.kubeapi import resources

JOBS_PATH = "/apis/batch/v1/namespaces/default/jobs"
JOBS = resources.by_kind("batch", "Job")
WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set '
    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to "
    'suppress this warning"'
)


def _job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                }
            }
        },
    }


def _make(kubeapi: RunningKubeAPI, name: str) -> None:
    assert kubeapi.request("POST", JOBS_PATH, _job(name)).status == 201


def _finalizers(kubeapi: RunningKubeAPI, name: str) -> list[str] | None:
    got = kubeapi.request("GET", f"{JOBS_PATH}/{name}")
    if got.status == 404:
        return None
    meta = got.json()["metadata"]
    assert meta.get("deletionTimestamp") or not meta.get("finalizers")
    finalizers: list[str] = meta.get("finalizers") or []
    return finalizers


@pytest.mark.kubeapi(controllers=False)
@pytest.mark.parametrize(
    ("options", "query", "finalizers", "warned"),
    [
        (None, "", ["orphan"], True),
        ({"propagationPolicy": "Orphan"}, "", ["orphan"], False),
        ({"orphanDependents": True}, "", ["orphan"], False),
        ({"propagationPolicy": "Foreground"}, "", ["foregroundDeletion"], False),
        ({"propagationPolicy": "Background"}, "", None, False),
        ({"orphanDependents": False}, "", None, False),
        (None, "?propagationPolicy=Foreground", ["foregroundDeletion"], False),
    ],
)
def test_job_delete_options_become_finalizers(
    kubeapi: RunningKubeAPI,
    options: dict[str, Any] | None,
    query: str,
    finalizers: list[str] | None,
    warned: bool,
) -> None:
    _make(kubeapi, "j")
    body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
    answer = kubeapi.request("DELETE", f"{JOBS_PATH}/j{query}", body)
    assert answer.status == 200
    assert answer.headers("Warning") == ([WARNING] if warned else [])
    # None: no finalizer held it, so the Job is gone at once.
    assert _finalizers(kubeapi, "j") == finalizers


@pytest.mark.kubeapi(controllers=False)
def test_pods_default_to_background_and_a_later_delete_changes_the_policy(
    kubeapi: RunningKubeAPI,
) -> None:
    pod = {
        "metadata": {"name": "p", "finalizers": ["example.com/keep"]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    assert kubeapi.request("POST", "/api/v1/namespaces/default/pods", pod).status == 201
    first = kubeapi.request("DELETE", "/api/v1/namespaces/default/pods/p")
    assert first.headers("Warning") == []
    assert first.json()["metadata"]["finalizers"] == ["example.com/keep"]
    second = kubeapi.request(
        "DELETE", "/api/v1/namespaces/default/pods/p", {"propagationPolicy": "Orphan"}
    ).json()
    assert second["metadata"]["finalizers"] == ["example.com/keep", "orphan"]
    # Background takes the orphan finalizer away again; other finalizers stay.
    third = kubeapi.request(
        "DELETE", "/api/v1/namespaces/default/pods/p", {"propagationPolicy": "Background"}
    ).json()
    assert third["metadata"]["finalizers"] == ["example.com/keep"]


@pytest.mark.kubeapi(controllers=False)
def test_unknown_propagation_policy_is_422(kubeapi: RunningKubeAPI) -> None:
    _make(kubeapi, "bad")
    got = kubeapi.request("DELETE", f"{JOBS_PATH}/bad", {"propagationPolicy": "Sideways"})
    assert got.status == 422
    doc = got.json()
    assert doc["message"] == (
        'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
        '"Sideways": supported values: "Foreground", "Background", "Orphan"'
    )
    assert _finalizers(kubeapi, "bad") == []


@pytest.mark.kubeapi(controllers=False)
def test_delete_collection_of_jobs_warns_and_orphans(kubeapi: RunningKubeAPI) -> None:
    _make(kubeapi, "c1")
    got = kubeapi.request("DELETE", JOBS_PATH)
    assert got.status == 200 and got.headers("Warning") == [WARNING]
    assert _finalizers(kubeapi, "c1") == ["orphan"]


def test_orphaned_job_pods_outlive_the_job(kubeapi: RunningKubeAPI) -> None:
    """With the Job controller running, the default delete releases the pods."""
    _make(kubeapi, "keep")
    pods = "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dkeep"
    wait_for(lambda: kubeapi.request("GET", pods).json()["items"])
    assert kubeapi.request("DELETE", f"{JOBS_PATH}/keep").status == 200
    wait_for(lambda: kubeapi.request("GET", f"{JOBS_PATH}/keep").status == 404)
    (left,) = kubeapi.request("GET", pods).json()["items"]
    assert "ownerReferences" not in left["metadata"]


def test_kubectl_delete_job_sends_background(kubeapi: RunningKubeAPI, tmp_path: Path) -> None:
    capture = reference("02-kubectl/08-delete-pod.json")
    sent = [h for h in capture["http"] if h["method"] == "DELETE"]
    assert [h["request_body"] for h in sent] == [{"propagationPolicy": "Background"}]
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    _make(kubeapi, "bg")
    pods = "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dbg"
    wait_for(lambda: kubeapi.request("GET", pods).json()["items"])
    done = subprocess.run(
        [kubectl, "--cache-dir", str(tmp_path / "cache"), "delete", "job", "bg"],
        env=kubeapi.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('job.batch "bg" deleted')
    assert "preserved" not in done.stderr
    wait_for(lambda: not kubeapi.request("GET", pods).json()["items"])
