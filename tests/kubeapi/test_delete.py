"""Deletion as a real v1.33 server does it (reference ``06-…/30-42``, ``05-watch/01``).

Graceful deletion of bound pods, immediate removal of unbound ones, what watchers see,
preconditions, finalizers, dryRun, Status answers for kinds that do not return the
object, and namespaces taking their contents with them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import RunningKubeAPI, reference
from tests.kubeapi.test_watch import WatchReader

pytestmark = pytest.mark.kubeapi(controllers=False)


def pod(name: str, node: str | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    if node:
        spec["nodeName"] = node
    else:
        spec["schedulerName"] = "no-such-scheduler"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **meta}, "spec": spec}


def test_graceful_delete_of_a_bound_pod(kubeapi: RunningKubeAPI) -> None:
    base = "/api/v1/namespaces/default/pods"
    made = kubeapi.request("POST", base, pod("gr", node="n1")).json()
    start = made["metadata"]["resourceVersion"]
    reader = WatchReader(kubeapi, f"{base}?watch=1&resourceVersion={start}&timeoutSeconds=3")

    first = kubeapi.request("DELETE", f"{base}/gr")
    assert first.status == 200
    obj = first.json()
    meta = obj["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 30
    assert meta["generation"] == 2
    assert (
        kubeapi.request("GET", f"{base}/gr").json()["metadata"]["deletionTimestamp"]
        == meta["deletionTimestamp"]
    )

    longer = kubeapi.request(
        "DELETE",
        f"{base}/gr",
        {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 60},
    ).json()
    assert longer["metadata"]["deletionGracePeriodSeconds"] == 30
    assert longer["metadata"]["resourceVersion"] == meta["resourceVersion"]

    shorter = kubeapi.request(
        "DELETE",
        f"{base}/gr",
        {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 10},
    ).json()
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 10
    assert shorter["metadata"]["deletionTimestamp"] <= meta["deletionTimestamp"]

    final = kubeapi.request(
        "DELETE",
        f"{base}/gr",
        {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": made["metadata"]["uid"]},
        },
    )
    assert final.status == 200
    assert final.json()["metadata"]["deletionGracePeriodSeconds"] == 0
    assert kubeapi.request("GET", f"{base}/gr").status == 404

    events = reader.read(5).events()
    reader.close()
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(set(rvs))  # the DELETED carries a new resourceVersion too
    assert (
        events[-1]["object"]["metadata"]["resourceVersion"]
        == final.json()["metadata"]["resourceVersion"]
    )


def test_unbound_pod_is_removed_at_once_with_modified_then_deleted(kubeapi: RunningKubeAPI) -> None:
    base = "/api/v1/namespaces/default/pods"
    made = kubeapi.request("POST", base, pod("ub")).json()
    reader = WatchReader(
        kubeapi,
        f"{base}?watch=1&resourceVersion={made['metadata']['resourceVersion']}&timeoutSeconds=2",
    )
    gone = kubeapi.request("DELETE", f"{base}/ub").json()
    assert gone["metadata"]["deletionGracePeriodSeconds"] == 0
    assert gone["metadata"]["generation"] == 2
    assert kubeapi.request("GET", f"{base}/ub").status == 404
    events = reader.read(5).events()
    reader.close()
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )


@pytest.mark.parametrize(
    "capture",
    ["409-delete-uid-precondition-mismatch.json", "409-delete-rv-precondition-mismatch.json"],
)
def test_delete_preconditions(kubeapi: RunningKubeAPI, capture: str) -> None:
    ref = reference(f"04-errors/{capture}")
    made = kubeapi.request("POST", "/api/v1/namespaces/default/pods", pod("ref-err")).json()
    got = kubeapi.request(
        "DELETE", "/api/v1/namespaces/default/pods/ref-err", ref["request"]["body"]
    )
    assert got.status == 409
    want = ref["response"]["body"]
    meta = made["metadata"]
    want["message"] = want["message"].replace("96c348f8-242e-42f0-8641-42f99d7d94f6", meta["uid"])
    want["message"] = want["message"].replace("(578)", f"({meta['resourceVersion']})")
    assert got.json() == want


def test_finalizers_keep_the_object_until_the_last_is_removed(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", pod("fin", finalizers=["example.com/hold"]))
    held = v1.delete_namespaced_pod("fin", "default")
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.deletion_grace_period_seconds == 0
    assert v1.read_namespaced_pod("fin", "default").metadata.finalizers == ["example.com/hold"]
    last = v1.patch_namespaced_pod("fin", "default", {"metadata": {"finalizers": None}})
    assert last.metadata.finalizers is None
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("fin", "default")
    assert e.value.status == 404
    # Other kinds: finalizers hold a ConfigMap the same way.
    v1.create_namespaced_config_map("default", {"metadata": {"name": "cf", "finalizers": ["x/y"]}})
    v1.delete_namespaced_config_map("cf", "default")
    assert v1.read_namespaced_config_map("cf", "default").metadata.deletion_timestamp
    v1.patch_namespaced_config_map("cf", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        v1.read_namespaced_config_map("cf", "default")
    assert gone.value.status == 404


def test_dry_run_delete_changes_nothing(kubeapi: RunningKubeAPI) -> None:
    base = "/api/v1/namespaces/default/pods"
    made = kubeapi.request("POST", base, pod("dry", node="n1")).json()
    got = kubeapi.request("DELETE", f"{base}/dry?dryRun=All")
    assert got.status == 200
    answer = got.json()["metadata"]
    assert answer["deletionGracePeriodSeconds"] == 30
    assert answer["resourceVersion"] == made["metadata"]["resourceVersion"]
    after = kubeapi.request("GET", f"{base}/dry").json()
    assert "deletionTimestamp" not in after["metadata"]


def test_delete_of_a_configmap_answers_a_success_status(kubeapi: RunningKubeAPI) -> None:
    made = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "st"}},
    ).json()
    got = kubeapi.request("DELETE", "/api/v1/namespaces/default/configmaps/st")
    assert got.status == 200
    assert got.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "st", "kind": "configmaps", "uid": made["metadata"]["uid"]},
    }


def test_terminal_pod_is_removed_at_once(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", pod("done", node="n1"))
    v1.patch_namespaced_pod_status("done", "default", {"status": {"phase": "Succeeded"}})
    v1.delete_namespaced_pod("done", "default")
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("done", "default")
    assert e.value.status == 404


def test_namespace_deletion_takes_its_contents(k8s: Any, kubeapi: RunningKubeAPI) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespace({"metadata": {"name": "gone"}})
    v1.create_namespaced_pod("gone", pod("p", node="n1"))
    v1.create_namespaced_config_map("gone", {"metadata": {"name": "c"}})
    answer = kubeapi.request("DELETE", "/api/v1/namespaces/gone").json()
    assert answer["status"]["phase"] == "Terminating"
    assert answer["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException):
        v1.read_namespace("gone")
    assert v1.list_namespaced_pod("gone").items == []
    assert v1.list_namespaced_config_map("gone").items == []
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("gone", {"metadata": {"name": "late"}})
    assert e.value.status == 404
    assert json.loads(e.value.body)["message"] == 'namespaces "gone" not found'


def test_delete_collection(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    for i in range(3):
        v1.create_namespaced_config_map(
            "default", {"metadata": {"name": f"dc{i}", "labels": {"dc": "1"}}}
        )
    v1.delete_collection_namespaced_config_map("default", label_selector="dc=1")
    assert v1.list_namespaced_config_map("default", label_selector="dc=1").items == []


def test_delete_missing_is_404(kubeapi: RunningKubeAPI) -> None:
    got = kubeapi.request("DELETE", "/api/v1/namespaces/default/pods/nosuchpod")
    assert got.status == 404
    assert got.json()["message"] == 'pods "nosuchpod" not found'
