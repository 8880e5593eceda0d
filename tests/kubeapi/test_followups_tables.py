"""Table and partial-metadata answers over HTTP, against ``02-kubectl/table-variants``.

A single-object Table carries the object's resourceVersion, each watch event's Table
carries its object's, a v1beta1-only Accept is answered in v1beta1, and
``as=PartialObjectMetadataList`` answers in the captured shape.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.conftest import RunningKubeAPI, reference
from tests.kubeapi.test_watch import WatchReader, cm

pytestmark = pytest.mark.kubeapi(controllers=False)

KUBECTL_TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def _variant(name: str) -> dict[str, Any]:
    body: dict[str, Any] = reference(f"02-kubectl/table-variants/{name}")["response"]["body"]
    return body


def test_single_get_table_carries_the_objects_resource_version(
    kubeapi: RunningKubeAPI, k8s: Any
) -> None:
    captured = _variant("pod-single-get-table.json")
    assert captured["metadata"] == {
        "resourceVersion": captured["rows"][0]["object"]["metadata"]["resourceVersion"]
    }
    v1 = client.CoreV1Api(k8s)
    made = v1.create_namespaced_config_map("default", cm("one"))
    v1.create_namespaced_config_map("default", cm("later"))  # moves the cluster RV on
    got = kubeapi.request(
        "GET",
        "/api/v1/namespaces/default/configmaps/one",
        headers={"Accept": KUBECTL_TABLE_ACCEPT},
    ).json()
    assert got["kind"] == "Table" and got["apiVersion"] == captured["apiVersion"]
    assert got["metadata"] == {"resourceVersion": made.metadata.resource_version}
    assert list(got) == list(captured)


def test_v1beta1_only_accept_gets_a_v1beta1_table(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    captured = reference("02-kubectl/table-variants/pods-table-v1beta1-only.json")
    client.CoreV1Api(k8s).create_namespaced_config_map("default", cm("beta"))
    accept = captured["request"]["headers"]["Accept"]
    listed = kubeapi.request(
        "GET", "/api/v1/namespaces/default/configmaps", headers={"Accept": accept}
    ).json()
    single = kubeapi.request(
        "GET", "/api/v1/namespaces/default/configmaps/beta", headers={"Accept": accept}
    ).json()
    want = captured["response"]["body"]["apiVersion"]
    assert want == "meta.k8s.io/v1beta1"
    assert listed["apiVersion"] == want and single["apiVersion"] == want
    assert listed["rows"][0]["object"]["apiVersion"] == want


def test_watch_table_events_carry_each_objects_resource_version(
    kubeapi: RunningKubeAPI, k8s: Any
) -> None:
    captured = reference("02-kubectl/11-get-pod-w.json")
    watch_call = next(h for h in captured["http"] if "watch=true" in h["url"])
    assert '"metadata":{"resourceVersion":"' in watch_call["response_chunks"][1]["data"]
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map("default", cm("tw"))
    reader = WatchReader(
        kubeapi,
        "/api/v1/namespaces/default/configmaps?fieldSelector="
        "metadata.name%3Dtw&resourceVersion=0&timeoutSeconds=2&watch=true",
        accept=KUBECTL_TABLE_ACCEPT,
    )
    patched = v1.patch_namespaced_config_map("tw", "default", {"data": {"k": "2"}})
    events = reader.read(5).events()
    reader.close()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    for event in events:
        table = event["object"]
        row_rv = table["rows"][0]["object"]["metadata"]["resourceVersion"]
        assert table["metadata"] == {"resourceVersion": row_rv}
    assert events[1]["object"]["metadata"]["resourceVersion"] == patched.metadata.resource_version
    assert events[1]["object"]["columnDefinitions"] is None


def test_v1beta1_watch_tables(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    client.CoreV1Api(k8s).create_namespaced_config_map("default", cm("bw"))
    reader = WatchReader(
        kubeapi,
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dbw"
        "&resourceVersion=0&timeoutSeconds=1&watch=true",
        accept="application/json;as=Table;v=v1beta1;g=meta.k8s.io",
    )
    events = reader.read(5).events()
    reader.close()
    assert [e["object"]["apiVersion"] for e in events] == ["meta.k8s.io/v1beta1"]


def test_partial_object_metadata_list_matches_the_capture(
    kubeapi: RunningKubeAPI, k8s: Any
) -> None:
    captured = reference("02-kubectl/table-variants/partialobjectmetadata-list.json")
    client.CoreV1Api(k8s).create_namespaced_config_map("default", cm("pm", {"a": "b"}))
    got = kubeapi.request(
        "GET",
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dpm",
        headers={"Accept": captured["request"]["headers"]["Accept"]},
    )
    want = captured["response"]["body"]
    doc = got.json()
    assert got.header("Content-Type") == "application/json"
    assert list(doc) == list(want)
    assert (doc["kind"], doc["apiVersion"]) == (want["kind"], want["apiVersion"])
    assert list(doc["metadata"]) == ["resourceVersion"]
    [item] = doc["items"]
    assert list(item) == list(want["items"][0])
    assert item["kind"] == "PartialObjectMetadata" and item["metadata"]["name"] == "pm"
    single = kubeapi.request(
        "GET",
        "/api/v1/namespaces/default/configmaps/pm",
        headers={"Accept": "application/json;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io"},
    ).json()
    assert single["kind"] == "PartialObjectMetadata"
    assert single["apiVersion"] == "meta.k8s.io/v1beta1"
    assert single["metadata"]["labels"] == {"a": "b"}
