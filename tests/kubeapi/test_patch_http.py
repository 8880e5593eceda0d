"""Every patch type through HTTP, on pods and on pods/status (reference ``06-…/11-21``).

Strategic merge merges conditions by ``type`` and container statuses by ``name``; a JSON
merge patch replaces lists; JSON patch works op by op; ``spec`` in a status patch and
``status`` in a main-resource patch are dropped; a resourceVersion in the body is a
precondition.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RawResponse, RunningKubeAPI, reference

pytestmark = pytest.mark.kubeapi(controllers=False)

CAPTURES = "06-create-metadata-defaulting-status-patches-delete"
BASE = "/api/v1/namespaces/default/pods"


def _patch(kubeapi: RunningKubeAPI, path: str, content_type: str, body: Any) -> RawResponse:
    return kubeapi.request("PATCH", path, body, headers={"Content-Type": content_type})


def _replay(kubeapi: RunningKubeAPI, capture: str) -> tuple[RawResponse, dict[str, Any]]:
    ref = reference(f"{CAPTURES}/{capture}")
    req = ref["request"]
    got = _patch(kubeapi, req["url"], req["headers"]["Content-Type"], req["body"])
    return got, ref["response"]


@pytest.fixture
def ref_status(kubeapi: RunningKubeAPI) -> RunningKubeAPI:
    """The bound two-container pod the status captures patch, created as they created it."""
    ref = reference(f"{CAPTURES}/10-create-bound-pod.json")
    assert kubeapi.request("POST", BASE, ref["request"]["body"]).status == 201
    return kubeapi


def test_status_patch_sequence_matches_the_reference(ref_status: RunningKubeAPI) -> None:
    """The captured sequence 11 -> 16 gives the captured statuses, step by step."""
    for capture in (
        "11-status-smp-initial.json",
        "12-status-smp-merge-conditions-by-type.json",
        "13-status-merge-patch-replaces-conditions.json",
        "14-status-json-patch.json",
        "15-status-smp-delete-directive.json",
        "16-status-patch-spec-ignored.json",
    ):
        got, want = _replay(ref_status, capture)
        assert got.status == want["status"], (capture, got.raw)
        body = got.json()
        assert body["status"] == want["body"]["status"], capture
        assert body["metadata"].get("labels") == want["body"]["metadata"].get("labels"), capture
        assert body["spec"].get("activeDeadlineSeconds") is None


def test_main_resource_patch_drops_status(ref_status: RunningKubeAPI) -> None:
    got = _patch(
        ref_status,
        f"{BASE}/ref-status",
        "application/merge-patch+json",
        {"status": {"phase": "Failed"}, "metadata": {"labels": {"via": "main"}}},
    )
    assert got.status == 200
    assert got.json()["status"]["phase"] == "Pending"
    assert got.json()["metadata"]["labels"] == {"via": "main"}


def test_resource_version_in_a_patch_is_a_precondition(ref_status: RunningKubeAPI) -> None:
    got, want = _replay(ref_status, "20-status-patch-stale-rv-409.json")
    assert got.status == 409
    assert got.json() == want["body"]


def test_terminal_phase_may_go_back_to_running(ref_status: RunningKubeAPI) -> None:
    path = f"{BASE}/ref-status/status"
    assert (
        _patch(
            ref_status, path, "application/merge-patch+json", {"status": {"phase": "Succeeded"}}
        ).status
        == 200
    )
    back = _patch(
        ref_status, path, "application/merge-patch+json", {"status": {"phase": "Running"}}
    )
    assert back.status == 200 and back.json()["status"]["phase"] == "Running"


def test_json_patch_errors_are_422(ref_status: RunningKubeAPI) -> None:
    for capture in ("422-json-patch-bad-path.json", "422-json-patch-test-failed.json"):
        ref = reference(f"04-errors/{capture}")
        got = _patch(
            ref_status, f"{BASE}/ref-status", "application/json-patch+json", ref["request"]["body"]
        )
        assert got.status == 422
        assert got.json() == ref["response"]["body"]


def test_patch_with_plain_json_is_415(ref_status: RunningKubeAPI) -> None:
    ref = reference("04-errors/415-patch-with-application-json.json")
    got = _patch(ref_status, f"{BASE}/ref-status", "application/json", ref["request"]["body"])
    assert got.status == 415
    assert got.json() == ref["response"]["body"]


def test_patch_of_a_missing_object_is_404(kubeapi: RunningKubeAPI) -> None:
    ref = reference("04-errors/404-patch-missing.json")
    got = _patch(
        kubeapi, ref["request"]["url"], "application/merge-patch+json", ref["request"]["body"]
    )
    assert got.status == 404
    assert got.json() == ref["response"]["body"]


def test_strategic_merge_on_the_main_resource(kubeapi: RunningKubeAPI) -> None:
    kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}},
            "data": {"x": "1"},
        },
    )
    got = _patch(
        kubeapi,
        "/api/v1/namespaces/default/configmaps/c",
        "application/strategic-merge-patch+json",
        {"metadata": {"labels": {"b": "2"}}, "data": {"y": "2"}},
    )
    assert got.status == 200
    assert got.json()["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert got.json()["data"] == {"x": "1", "y": "2"}


def test_no_op_patch_keeps_the_resource_version(kubeapi: RunningKubeAPI) -> None:
    made = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "data": {"x": "1"}},
    ).json()
    got = _patch(
        kubeapi,
        "/api/v1/namespaces/default/configmaps/n",
        "application/merge-patch+json",
        {"data": {"x": "1"}},
    )
    assert got.json()["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


def test_apply_patch_creates_then_updates(kubeapi: RunningKubeAPI) -> None:
    path = "/api/v1/namespaces/default/configmaps/ssa?fieldManager=kubectl&force=false"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa"},
        "data": {"a": "1"},
    }
    first = _patch(kubeapi, path, "application/apply-patch+yaml", body)
    assert first.status == 201
    entry = first.json()["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    body["data"] = {"a": "2"}
    second = _patch(kubeapi, path, "application/apply-patch+yaml", body)
    assert second.status == 200
    assert second.json()["data"] == {"a": "2"}


def test_patches_through_the_official_client(k8s: Any) -> None:
    from kubernetes import client

    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "oc"},
            "spec": {
                "nodeName": "n1",
                "containers": [
                    {"name": "main", "image": "busybox:1.36"},
                    {"name": "side", "image": "busybox:1.36"},
                ],
            },
        },
    )
    v1.patch_namespaced_pod_status(
        "oc",
        "default",
        {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "Initialized", "status": "True"},
                ],
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": False,
                        "restartCount": 0,
                        "image": "busybox:1.36",
                        "imageID": "",
                    },
                    {
                        "name": "side",
                        "ready": False,
                        "restartCount": 0,
                        "image": "busybox:1.36",
                        "imageID": "",
                    },
                ],
            }
        },
    )
    after = v1.patch_namespaced_pod_status(
        "oc",
        "default",
        {
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "side",
                        "ready": True,
                        "restartCount": 0,
                        "image": "busybox:1.36",
                        "imageID": "",
                    }
                ],
            }
        },
    )
    conditions = {c.type: c.status for c in after.status.conditions}
    assert conditions == {"Ready": "True", "Initialized": "True"}
    # containerStatuses has no merge key in v1.33: the list is replaced (capture 12 shows
    # this, although the recordings' README says "merged by name").
    ready = {c.name: c.ready for c in after.status.container_statuses}
    assert ready == {"side": True}
    labelled = v1.patch_namespaced_pod(
        "oc", "default", [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]
    )
    assert labelled.metadata.labels == {"x": "y"}
