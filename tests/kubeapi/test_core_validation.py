"""Bad requests get the real server's Status, byte for byte where the reference has it.

422 validation (names, containers, ports, restart policy, pod update restrictions,
events.k8s.io eventTime), 400 decode errors (bad JSON, kind/name/namespace mismatch,
strict unknown fields, MicroTime formats), the unknown-field Warning header, paths the
server does not serve (404 text vs Status), 405, 406 and the headers on every answer.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningKubeAPI, reference
from vnode.sandbox.kubeapi import admission

pytestmark = pytest.mark.kubeapi(controllers=False)


def replay(kubeapi: RunningKubeAPI, relative: str) -> tuple[Any, dict[str, Any]]:
    ref = reference(relative)
    req = ref["request"]
    headers = {
        k: v for k, v in (req.get("headers") or {}).items() if k in ("Accept", "Content-Type")
    }
    body = req.get("body")
    if isinstance(body, str):
        body = body.encode()
    got = kubeapi.request(req["method"], req["url"], body, headers=headers)
    return got, ref["response"]


@pytest.mark.parametrize(
    "capture",
    [
        "422-create-pod-bad-name.json",
        "422-create-pod-many-errors.json",
        "422-create-pod-missing-containers.json",
        "400-bad-json-body.json",
        "400-kind-mismatch.json",
        "400-namespace-mismatch.json",
        "400-strict-unknown-field.json",
        "400-bad-fieldSelector.json",
        "400-bad-labelSelector.json",
        "400-bad-labelSelector-2.json",
        "404-get-missing-pod.json",
        "404-unknown-resource.json",
        "405-post-to-named-pod.json",
        "406-accept-xml.json",
    ],
)
def test_error_bodies_match_the_reference(kubeapi: RunningKubeAPI, capture: str) -> None:
    if capture in ("405-post-to-named-pod.json", "406-accept-xml.json"):
        kubeapi.request(
            "POST",
            "/api/v1/namespaces/default/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "ref-err"},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
            },
        )
    got, want = replay(kubeapi, f"04-errors/{capture}")
    assert got.status == want["status"]
    assert got.json() == want["body"]
    assert got.raw.endswith(b"}\n")


def test_unknown_group_is_a_plain_text_404(kubeapi: RunningKubeAPI) -> None:
    got, want = replay(kubeapi, "04-errors/404-unknown-group.json")
    assert got.status == 404
    assert got.raw.decode() == want["body"]
    assert got.header("Content-Type") == "text/plain; charset=utf-8"


def _existing_ref_err(kubeapi: RunningKubeAPI) -> dict[str, Any]:
    made: dict[str, Any] = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ref-err"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        },
    ).json()
    return made


def test_put_with_another_name_is_400(kubeapi: RunningKubeAPI) -> None:
    ref = reference("04-errors/400-name-mismatch-put.json")
    made = _existing_ref_err(kubeapi)
    made["metadata"]["name"] = "other"
    got = kubeapi.request("PUT", "/api/v1/namespaces/default/pods/ref-err", made)
    assert got.status == 400
    assert got.json() == ref["response"]["body"]


def test_forbidden_pod_spec_update_is_422(kubeapi: RunningKubeAPI) -> None:
    ref = reference("04-errors/422-update-pod-forbidden-spec-change.json")
    want = ref["response"]["body"]
    made = _existing_ref_err(kubeapi)
    made["spec"]["containers"][0]["name"] = "renamed"
    made["spec"]["restartPolicy"] = "Never"
    got = kubeapi.request("PUT", "/api/v1/namespaces/default/pods/ref-err", made)
    assert got.status == 422
    body = got.json()
    assert body["reason"] == want["reason"]
    assert body["details"]["name"] == "ref-err" and body["details"]["kind"] == "Pod"
    cause = body["details"]["causes"][0]
    want_cause = want["details"]["causes"][0]
    assert (cause["reason"], cause["field"]) == (want_cause["reason"], want_cause["field"])
    first_sentence = want_cause["message"].split("\n")[0]
    assert cause["message"].split("\n")[0] == first_sentence
    assert body["message"].startswith(f'Pod "ref-err" is invalid: spec: {first_sentence}')


def test_node_name_change_through_update_is_422(kubeapi: RunningKubeAPI) -> None:
    ref = reference("07-scheduler/04f-set-nodeName-by-update-422.json")
    kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ref-s-cpu"},
            "spec": {
                "schedulerName": "none",
                "containers": [{"name": "main", "image": "busybox:1.36"}],
            },
        },
    )
    got = kubeapi.request(
        "PATCH",
        ref["request"]["url"],
        ref["request"]["body"],
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert got.status == 422
    want = ref["response"]["body"]
    assert got.json()["message"].split("\n")[0] == want["message"].split("\n")[0]
    assert "NodeName" in got.json()["message"]


def test_image_change_is_allowed(kubeapi: RunningKubeAPI) -> None:
    made = _existing_ref_err(kubeapi)
    made["spec"]["containers"][0]["image"] = "busybox:1.37"
    got = kubeapi.request("PUT", "/api/v1/namespaces/default/pods/ref-err", made)
    assert got.status == 200


def test_unknown_field_warns_by_default(kubeapi: RunningKubeAPI) -> None:
    got, want = replay(kubeapi, "04-errors/201-default-warn-unknown-field.json")
    assert got.status == 201
    want_warning = dict(want["headers"])["Warning"]
    assert got.headers("Warning") == [want_warning]
    assert "foo" not in got.json()["spec"]


def test_unknown_fields_paths() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", "labels": {"a": "b"}},
        "spec": {
            "foo": 1,
            "containers": [
                {"name": "m", "image": "i", "bogus": True, "resources": {"limits": {"cpu": "1"}}}
            ],
        },
    }
    assert admission.unknown_fields("V1Pod", body) == ["spec.foo", "spec.containers[0].bogus"]
    assert admission.known_fields("V1PodSpec")["containers"] == "List[V1Container]"


@pytest.mark.parametrize(
    "capture",
    [
        "02-lease-renewTime-format-bad.json",
        "02-lease-renewTime-format-millis-offset.json",
        "02-lease-renewTime-format-nanoseconds.json",
        "02-lease-renewTime-format-seconds-only.json",
    ],
)
def test_micro_time_formats(kubeapi: RunningKubeAPI, capture: str) -> None:
    got, want = replay(kubeapi, f"08-leases-node-lifecycle/{capture}")
    assert got.status == 400
    assert got.json() == want["body"]


def test_micro_time_with_six_digits_is_accepted(kubeapi: RunningKubeAPI) -> None:
    got = kubeapi.request(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "ok"},
            "spec": {
                "holderIdentity": "x",
                "leaseDurationSeconds": 40,
                "renewTime": "2026-11-23T20:24:15.311891Z",
            },
        },
    )
    assert got.status == 201
    assert got.json()["spec"]["renewTime"] == "2026-11-23T20:24:15.311891Z"


def test_events_v1_requires_event_time(kubeapi: RunningKubeAPI) -> None:
    got, want = replay(kubeapi, "10-events/07-eventsv1-create-invalid-422.json")
    assert got.status == 422
    assert got.json() == want["body"]


def test_missing_service_account_is_403(kubeapi: RunningKubeAPI) -> None:
    got, want = replay(kubeapi, "04-errors/403-serviceaccount-missing.json")
    assert got.status == 403
    assert got.json() == want["body"]


def test_every_answer_carries_the_common_headers(kubeapi: RunningKubeAPI) -> None:
    for method, path in (
        ("GET", "/api/v1/namespaces/default/pods"),
        ("GET", "/api/v1/namespaces/default/pods/nosuch"),
        ("GET", "/version"),
    ):
        got = kubeapi.request(method, path)
        for name in (
            "Audit-Id",
            "Cache-Control",
            "Content-Type",
            "X-Kubernetes-Pf-Flowschema-Uid",
            "X-Kubernetes-Pf-Prioritylevel-Uid",
            "Date",
        ):
            assert got.header(name), (path, name)
        assert got.header("Cache-Control") == "no-cache, private"
        assert got.raw.endswith(b"\n")
    a = kubeapi.request("GET", "/api/v1/namespaces").header("Audit-Id")
    b = kubeapi.request("GET", "/api/v1/namespaces").header("Audit-Id")
    assert a != b


def test_tables_and_partial_metadata(kubeapi: RunningKubeAPI) -> None:
    _existing_ref_err(kubeapi)
    table = kubeapi.request(
        "GET",
        "/api/v1/namespaces/default/pods?limit=500",
        headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,"
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        },
    )
    assert table.status == 200
    doc = table.json()
    assert doc["kind"] == "Table" and doc["apiVersion"] == "meta.k8s.io/v1"
    assert doc["rows"][0]["cells"][0] == "ref-err"
    assert doc["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    meta = kubeapi.request(
        "GET",
        "/api/v1/namespaces/default/pods",
        headers={
            "Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,"
            "application/json"
        },
    ).json()
    assert meta["kind"] == "PartialObjectMetadataList"
    assert meta["items"][0]["metadata"]["name"] == "ref-err"


def test_unexpected_errors_become_500_internal_error(
    kubeapi: RunningKubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(kubeapi.api.store, "get", broken)
    got = kubeapi.request("GET", "/api/v1/namespaces/default/configmaps/x")
    assert got.status == 500
    assert got.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: disk on fire",
        "reason": "InternalError",
        "code": 500,
    }


def test_namespace_status_subresource(kubeapi: RunningKubeAPI) -> None:
    got = kubeapi.request("GET", "/api/v1/namespaces/default/status")
    assert got.status == 200
    assert got.json()["status"]["phase"] == "Active"


def _pod_error(kubeapi: RunningKubeAPI, spec: dict[str, Any], labels: Any = None) -> Any:
    meta: dict[str, Any] = {"name": "v"}
    if labels is not None:
        meta["labels"] = labels
    got = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/pods",
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
    )
    assert got.status == 422, got.raw
    return [(c["reason"], c["field"], c["message"]) for c in got.json()["details"]["causes"]]


def test_pod_spec_rules_a_real_server_enforces(kubeapi: RunningKubeAPI) -> None:
    causes = _pod_error(
        kubeapi,
        {
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "data", "emptyDir": {}},
                {"name": "none"},
            ],
            "containers": [
                {
                    "name": "m",
                    "image": "i",
                    "volumeMounts": [{"name": "missing", "mountPath": "/x"}],
                    "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                }
            ],
        },
    )
    assert causes == [
        ("FieldValueDuplicate", "spec.volumes[1].name", 'Duplicate value: "data"'),
        ("FieldValueRequired", "spec.volumes[2]", "Required value: must specify a volume type"),
        ("FieldValueNotFound", "spec.containers[0].volumeMounts[0].name", 'Not found: "missing"'),
        (
            "FieldValueInvalid",
            "spec.containers[0].resources.requests[cpu]",
            'Invalid value: "2": must be less than or equal to cpu limit of 1',
        ),
    ]


def test_labels_must_be_valid(kubeapi: RunningKubeAPI) -> None:
    causes = _pod_error(
        kubeapi, {"containers": [{"name": "m", "image": "i"}]}, labels={"ok": "bad value!"}
    )
    assert causes[0][:2] == ("FieldValueInvalid", "metadata.labels")
    assert causes[0][2].startswith('Invalid value: "bad value!": a valid label must be')


def test_pod_status_rules(kubeapi: RunningKubeAPI) -> None:
    base = "/api/v1/namespaces/default/pods"
    kubeapi.request(
        "POST",
        base,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "s"},
            "spec": {
                "nodeName": "n",
                "restartPolicy": "Never",
                "containers": [{"name": "m", "image": "i"}],
            },
        },
    )
    merge = {"Content-Type": "application/merge-patch+json"}
    ok = kubeapi.request(
        "PATCH", f"{base}/s/status", {"status": {"podIP": "10.88.0.5"}}, headers=merge
    ).json()
    assert ok["status"]["podIPs"] == [{"ip": "10.88.0.5"}]
    bad_ip = kubeapi.request(
        "PATCH", f"{base}/s/status", {"status": {"podIP": "nope"}}, headers=merge
    )
    assert bad_ip.status == 422
    assert bad_ip.json()["details"]["causes"][0]["field"] == "status.podIPs[0].ip"
    done = {
        "name": "m",
        "ready": False,
        "restartCount": 0,
        "image": "i",
        "imageID": "",
        "state": {"terminated": {"exitCode": 0}},
    }
    assert (
        kubeapi.request(
            "PATCH", f"{base}/s/status", {"status": {"containerStatuses": [done]}}, headers=merge
        ).status
        == 200
    )
    again = {**done, "state": {"running": {}}}
    back = kubeapi.request(
        "PATCH", f"{base}/s/status", {"status": {"containerStatuses": [again]}}, headers=merge
    )
    assert back.status == 422
    assert back.json()["details"]["causes"][0]["message"] == (
        "Forbidden: may not be transitioned to non-terminated state"
    )


def test_event_create_rules(kubeapi: RunningKubeAPI) -> None:
    base = "/apis/events.k8s.io/v1/namespaces/default/events"
    got = kubeapi.request(
        "POST",
        base,
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e"},
            "eventTime": "2026-11-23T20:13:06.001057Z",
            "reportingController": "vnode",
            "reportingInstance": "i",
            "reason": "R",
            "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        },
    )
    assert got.status == 422
    assert got.json()["message"] == 'Event "e" is invalid: action: Required value'
    core = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/events",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "c"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"},
        },
    )
    assert core.status == 422
    assert core.json()["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "involvedObject.namespace",
            "message": 'Invalid value: "other": does not match event.namespace',
        }
    ]


def test_tolerations_taints_and_provider_id(kubeapi: RunningKubeAPI) -> None:
    causes = _pod_error(
        kubeapi,
        {
            "containers": [{"name": "m", "image": "i"}],
            "tolerations": [
                {"key": "virtual-kubelet.io/provider", "operator": "Exists", "value": "gce"},
                {
                    "key": "a",
                    "operator": "Equal",
                    "value": "b",
                    "effect": "NoSchedule",
                    "tolerationSeconds": 5,
                },
                {"key": "a", "operator": "Equal", "value": "b", "effect": "Sometimes"},
            ],
        },
    )
    assert [c[1] for c in causes] == [
        "spec.tolerations[0].operator",
        "spec.tolerations[1].effect",
        "spec.tolerations[2].effect",
    ]
    bad = kubeapi.request(
        "POST",
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n"},
            "spec": {"taints": [{"key": "k", "effect": "Never"}]},
        },
    )
    assert bad.status == 422
    assert bad.json()["details"]["causes"][0]["field"] == "spec.taints[0].effect"
    made = kubeapi.request(
        "POST",
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n"},
            "spec": {"providerID": "vnode://gce/p/z/n"},
        },
    ).json()
    made["spec"]["providerID"] = "gce://p/z/n"
    moved = kubeapi.request("PUT", "/api/v1/nodes/n", made)
    assert moved.status == 422
    assert moved.json()["details"]["causes"][0]["field"] == "spec.providerID"


def test_config_keys_are_checked(kubeapi: RunningKubeAPI) -> None:
    got = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "k"},
            "data": {"bad key": "v"},
        },
    )
    assert got.status == 422
    assert got.json()["details"]["causes"][0]["field"] == "data[bad key]"


def test_table_in_v1beta1_when_only_that_is_asked_for(kubeapi: RunningKubeAPI) -> None:
    ref = reference("02-kubectl/table-variants/pods-table-v1beta1-only.json")
    _existing_ref_err(kubeapi)
    got = kubeapi.request(
        "GET",
        "/api/v1/namespaces/default/pods",
        headers={"Accept": ref["request"]["headers"]["Accept"]},
    )
    assert got.status == 200
    assert got.json()["apiVersion"] == ref["response"]["body"]["apiVersion"]


def test_micro_time_is_checked_in_patches_too(kubeapi: RunningKubeAPI) -> None:
    base = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    kubeapi.request(
        "POST",
        base,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "p"},
            "spec": {"holderIdentity": "x"},
        },
    )
    got = kubeapi.request(
        "PATCH",
        f"{base}/p",
        {"spec": {"renewTime": "2026-11-23T20:00:00Z"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert got.status == 400
    assert got.json()["message"].endswith('cannot parse "Z" as ".000000"')


def test_strict_patch_rejects_unknown_fields(kubeapi: RunningKubeAPI) -> None:
    _existing_ref_err(kubeapi)
    path = "/api/v1/namespaces/default/pods/ref-err"
    merge = {"Content-Type": "application/merge-patch+json"}
    strict = kubeapi.request(
        "PATCH", f"{path}?fieldValidation=Strict", {"spec": {"foo": 1}}, headers=merge
    )
    assert strict.status == 400
    assert strict.json()["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: '
        'strict decoding error: unknown field "spec.foo"'
    )
    lenient = kubeapi.request("PATCH", path, {"spec": {"foo": 1}}, headers=merge)
    assert lenient.status == 200 and "foo" not in lenient.json()["spec"]
