"""PATCH semantics against what a v1.33 server did with the same bodies.

The pod-status cases replay the captured pods/status patch sequence (reference captures
``06-create-metadata-defaulting-status-patches-delete/11-15``), the apply cases replay
kubectl's own bodies (``02-kubectl/06c``, ``07c``, ``07d``), and the error cases compare
the Status bodies of ``04-errors``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from vnode.sandbox.kubeapi.patches import (
    PATCH_TYPES,
    apply_patch,
    bad_json_body,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from vnode.sandbox.kubeapi.status import StatusError

T = "2026-11-23T20:21:43Z"


def _cond(ctype: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"type": ctype, "status": status, "lastTransitionTime": T, **extra}


def _status_pod() -> dict[str, Any]:
    """The pod of capture 11 after its first status patch."""
    unready = {
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [main side]",
    }
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "ref-status", "namespace": "default"},
        "spec": {"containers": [{"name": "main"}, {"name": "side"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                _cond("Initialized", "True"),
                _cond("Ready", "False", **unready),
                _cond("ContainersReady", "False", **unready),
                _cond("PodScheduled", "True"),
            ],
            "hostIP": "127.0.0.1",
            "podIP": "10.88.0.50",
            "podIPs": [{"ip": "10.88.0.50"}],
            "containerStatuses": [
                {"name": "main", "ready": False, "state": {"running": {"startedAt": T}}},
                {"name": "side", "ready": False, "state": {"waiting": {"reason": "X"}}},
            ],
            "qosClass": "BestEffort",
        },
    }


def _smp(target: dict[str, Any], patch: dict[str, Any], kind: str = "Pod") -> dict[str, Any]:
    return apply_patch(
        target, "application/strategic-merge-patch+json", json.dumps(patch).encode(), kind
    )


# --- strategic merge patch: the captured pods/status sequence ---------------------------


def test_smp_merges_conditions_by_type_in_the_captured_order() -> None:
    pod = _status_pod()
    patch = {
        "status": {
            "conditions": [_cond("Ready", "True"), _cond("example.com/Custom", "True")],
            "containerStatuses": [
                {"name": "side", "ready": True, "state": {"running": {"startedAt": T}}}
            ],
        }
    }
    out = _smp(pod, patch)
    conditions = out["status"]["conditions"]
    assert [c["type"] for c in conditions] == [
        "Initialized",
        "Ready",
        "example.com/Custom",
        "ContainersReady",
        "PodScheduled",
    ]
    # The element is merged: the old reason and message stay.
    assert conditions[1] == _cond(
        "Ready",
        "True",
        reason="ContainersNotReady",
        message="containers with unready status: [main side]",
    )
    # containerStatuses has no merge strategy: the real server replaced the list.
    assert [c["name"] for c in out["status"]["containerStatuses"]] == ["side"]
    assert pod["status"]["conditions"][1]["status"] == "False", "input must not change"


def test_merge_patch_replaces_conditions() -> None:
    patch = {"status": {"conditions": [_cond("Ready", "True"), _cond("PodScheduled", "True")]}}
    out = apply_patch(
        _status_pod(), "application/merge-patch+json", json.dumps(patch).encode(), "Pod"
    )
    assert out["status"]["conditions"] == [_cond("Ready", "True"), _cond("PodScheduled", "True")]
    assert out["status"]["phase"] == "Running"


def test_json_patch_of_capture_14() -> None:
    pod = _status_pod()
    pod["status"]["conditions"] = [_cond("Ready", "True"), _cond("PodScheduled", "True")]
    ops = [
        {"op": "add", "path": "/status/conditions/-", "value": _cond("ContainersReady", "True")},
        {"op": "replace", "path": "/status/conditions/0/status", "value": "False"},
        {"op": "add", "path": "/status/message", "value": "patched by json patch"},
    ]
    out = apply_patch(pod, "application/json-patch+json", json.dumps(ops).encode(), "Pod")
    assert out["status"]["conditions"] == [
        _cond("Ready", "False"),
        _cond("PodScheduled", "True"),
        _cond("ContainersReady", "True"),
    ]
    assert out["status"]["message"] == "patched by json patch"


def test_smp_delete_directive_removes_the_element() -> None:
    out = _smp(
        _status_pod(), {"status": {"conditions": [{"type": "ContainersReady", "$patch": "delete"}]}}
    )
    assert [c["type"] for c in out["status"]["conditions"]] == [
        "Initialized",
        "Ready",
        "PodScheduled",
    ]


def test_apply_patch_merges_a_condition_like_capture_21() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ref-status", "namespace": "default"},
        "status": {"conditions": [{"type": "example.com/SSA", "status": "True"}]},
    }
    out = apply_patch(
        _status_pod(), "application/apply-patch+yaml", json.dumps(body).encode(), "Pod"
    )
    assert out["status"]["conditions"][-1] == {"type": "example.com/SSA", "status": "True"}
    assert len(out["status"]["conditions"]) == 5


# --- strategic merge patch: kubectl apply ----------------------------------------------


def test_kubectl_client_side_apply_body_of_capture_06c() -> None:
    live = {
        "metadata": {
            "name": "ref-apply",
            "labels": {"app": "ref-apply"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{old}"},
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "sleep 3600"],
                    "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run"}],
                }
            ],
            "nodeName": "ref-kubelet-node",
        },
    }
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{new}"},
            "labels": {"tier": "web"},
        },
        "spec": {
            "$setElementOrder/containers": [{"name": "main"}],
            "containers": [{"image": "busybox:1.37", "name": "main"}],
        },
    }
    out = _smp(live, patch)
    assert out["metadata"]["labels"] == {"app": "ref-apply", "tier": "web"}
    assert out["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": "{new}"
    }
    assert out["spec"]["containers"] == [
        {
            "name": "main",
            "image": "busybox:1.37",
            "command": ["sh", "-c", "sleep 3600"],
            "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run"}],
        }
    ]
    assert "$setElementOrder/containers" not in out["spec"]


def test_kubectl_apply_configmap_null_deletes_a_key() -> None:
    live = {"metadata": {"name": "ref-apply-cm"}, "data": {"a": "1", "keep": "yes"}}
    patch = {
        "data": {"a": "2", "b": "new", "keep": None},
        "metadata": {"labels": {"changed": "true"}},
    }
    out = _smp(live, patch, "ConfigMap")
    assert out["data"] == {"a": "2", "b": "new"}
    assert out["metadata"]["labels"] == {"changed": "true"}


def test_server_side_apply_accepts_json_and_yaml() -> None:
    live = {"metadata": {"name": "ref-ssa-cm", "namespace": "default"}, "data": {"x": "0"}}
    as_json = (
        b'{"apiVersion":"v1","data":{"x":"1"},"kind":"ConfigMap","metadata":{"name":"ref-ssa-cm"}}'
    )
    out = apply_patch(live, "application/apply-patch+yaml", as_json, "ConfigMap")
    assert out["data"] == {"x": "1"}
    as_yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ref-ssa-cm\ndata:\n  y: '2'\n"
    out = apply_patch(out, "application/apply-patch+yaml", as_yaml, "ConfigMap")
    assert out["data"] == {"x": "1", "y": "2"}


def test_set_element_order_reorders_and_keeps_server_only_items() -> None:
    live = {"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x"}],
        }
    }
    out = _smp(live, patch)
    # Listed items take the given order; "b" keeps its live place before "c".
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "c", "a"]
    assert out["spec"]["containers"][2] == {"name": "a", "image": "x"}


def test_set_element_order_must_list_the_patch_items() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "z", "image": "x"}],
        }
    }
    with pytest.raises(StatusError) as info:
        _smp({"spec": {"containers": [{"name": "a"}]}}, patch)
    assert info.value.code == 400
    assert info.value.message == "invalid patch format of setElementOrder list"


# --- strategic merge patch: per-field strategies ---------------------------------------


def test_container_lists_merge_by_their_keys() -> None:
    live = {
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "volumeMounts": [{"name": "v", "mountPath": "/data"}],
                },
                {"name": "side"},
            ]
        }
    }
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 443}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                }
            ]
        }
    }
    main = _smp(live, patch)["spec"]["containers"][0]
    assert main["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    # A patch item the live list lacks goes first: upstream interleaves server-only
    # items by their live position, and a new item has none.
    assert main["ports"] == [{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}]
    assert main["volumeMounts"] == [{"name": "v", "mountPath": "/data", "readOnly": True}]


def test_lists_without_strategy_are_replaced() -> None:
    live = {
        "spec": {
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "containers": [{"name": "m", "args": ["1", "2"]}],
        }
    }
    patch = {
        "spec": {
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "containers": [{"name": "m", "args": ["3"]}],
        }
    }
    out = _smp(live, patch)
    assert out["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert out["spec"]["containers"] == [{"name": "m", "args": ["3"]}]


def test_node_status_merges_conditions_and_addresses_but_replaces_taints() -> None:
    node = {
        "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "MemoryPressure", "status": "False"},
            ],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "Hostname", "address": "n"},
            ],
        },
    }
    patch = {
        "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "Unknown"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
        },
    }
    out = _smp(node, patch, "Node")
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "Unknown"},
        {"type": "MemoryPressure", "status": "False"},
    ]
    assert out["status"]["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.2"},
        {"type": "Hostname", "address": "n"},
    ]


def test_job_and_namespace_conditions_merge_by_type() -> None:
    job = {"status": {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}}
    out = _smp(job, {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Job")
    assert [c["type"] for c in out["status"]["conditions"]] == ["Complete", "SuccessCriteriaMet"]
    ns = {"status": {"phase": "Terminating", "conditions": [{"type": "A", "status": "True"}]}}
    out = _smp(ns, {"status": {"conditions": [{"type": "A", "status": "False"}]}}, "Namespace")
    assert out["status"]["conditions"] == [{"type": "A", "status": "False"}]


def test_job_template_containers_merge_by_name() -> None:
    job = {
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}}
    }
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}}
    out = _smp(job, patch, "Job")
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "y"},
        {"name": "b"},
    ]


def test_metadata_finalizers_merge_as_a_set_and_owner_references_by_uid() -> None:
    obj = {
        "metadata": {
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}],
        }
    }
    patch = {
        "metadata": {
            "finalizers": ["c", "a"],
            "ownerReferences": [{"uid": "2", "name": "z"}],
        }
    }
    out = _smp(obj, patch, "ConfigMap")
    assert out["metadata"]["finalizers"] == ["c", "a", "b"]
    assert out["metadata"]["ownerReferences"] == [
        {"uid": "1", "name": "x"},
        {"uid": "2", "name": "z"},
    ]
    removed = _smp(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "c"]}}, "Pod")
    assert removed["metadata"]["finalizers"] == ["b"]


def test_replace_directives_for_lists_and_maps() -> None:
    live = {
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "status": {
            "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]
        },
    }
    patch = {
        "metadata": {"labels": {"$patch": "replace", "c": "3"}},
        "status": {"conditions": [{"$patch": "replace"}, {"type": "C", "status": "False"}]},
    }
    out = _smp(live, patch)
    assert out["metadata"]["labels"] == {"c": "3"}
    assert out["status"]["conditions"] == [{"type": "C", "status": "False"}]
    gone = _smp(live, {"metadata": {"labels": {"$patch": "delete"}}})
    assert gone["metadata"]["labels"] == {}


def test_retain_keys_clears_other_volume_sources() -> None:
    live = {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}
    patch = {
        "spec": {
            "volumes": [
                {"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}
            ]
        }
    }
    out = _smp(live, patch)
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]
    bad = {
        "spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {"path": "/x"}}]}
    }
    with pytest.raises(StatusError) as info:
        _smp(live, bad)
    assert (info.value.code, info.value.message) == (400, "invalid patch format of retainKeys")


def test_merge_directive_and_missing_merge_key_fail_like_upstream() -> None:
    with pytest.raises(StatusError) as info:
        _smp(_status_pod(), {"status": {"conditions": [{"$patch": "merge"}]}})
    assert info.value.message == "merging lists cannot yet be specified in the patch"
    with pytest.raises(StatusError) as info:
        _smp(_status_pod(), {"status": {"conditions": [{"status": "True"}]}})
    assert info.value.code == 500
    assert info.value.message == "map: map[status:True] does not contain declared merge key: type"


def test_nulls_in_new_values_are_dropped() -> None:
    out = _smp({"metadata": {}}, {"metadata": {"labels": {"a": "1", "b": None}}, "spec": None})
    assert out == {"metadata": {"labels": {"a": "1"}}}


def test_unknown_kinds_merge_metadata_and_replace_lists() -> None:
    live = {"metadata": {"finalizers": ["x"]}, "spec": {"items": [1, 2]}}
    out = strategic_merge_patch(
        live, {"metadata": {"finalizers": ["y"]}, "spec": {"items": [3]}}, "Lease"
    )
    assert out == {"metadata": {"finalizers": ["y", "x"]}, "spec": {"items": [3]}}


# --- JSON merge patch ------------------------------------------------------------------


def test_json_merge_patch_rfc7386_examples() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3], "new": {"x": None, "y": 1}}
    assert json_merge_patch(target, patch) == {
        "a": "z",
        "c": {"d": "e"},
        "list": [3],
        "new": {"y": 1},
    }
    assert target["c"] == {"d": "e", "f": "g"}, "input must not change"


# --- JSON patch ------------------------------------------------------------------------

_REJECTED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server rejected our request due to an error in our request",
    "reason": "Invalid",
    "details": {},
    "code": 422,
}


def _json_patch_error(ops: list[Any]) -> StatusError:
    target = {"metadata": {"name": "ref-err", "labels": {"a": "b"}}, "spec": {"list": [1]}}
    with pytest.raises(StatusError) as info:
        json_patch(target, ops)
    return info.value


def test_json_patch_bad_path_is_the_captured_422() -> None:
    err = _json_patch_error([{"op": "replace", "path": "/metadata/nosuch/x", "value": "v"}])
    assert err.body() == _REJECTED


def test_json_patch_failed_test_is_the_captured_422() -> None:
    err = _json_patch_error([{"op": "test", "path": "/metadata/name", "value": "wrong"}])
    assert err.body() == _REJECTED


@pytest.mark.parametrize(
    "op",
    [
        {"op": "remove", "path": "/metadata/nosuch"},
        {"op": "replace", "path": "/metadata/nosuch", "value": 1},
        {"op": "add", "path": "/spec/list/5", "value": 1},
        {"op": "add", "path": "/metadata/name/x", "value": 1},
        {"op": "move", "from": "/metadata", "path": "/metadata/labels/m"},
        {"op": "bogus", "path": "/metadata"},
        {"op": "add", "path": "/spec/list/01", "value": 1},
    ],
)
def test_json_patch_failures_are_422(op: dict[str, Any]) -> None:
    assert _json_patch_error([op]).code == 422


def test_json_patch_operations() -> None:
    doc = {"metadata": {"name": "x", "labels": {"a/b": "1"}}, "spec": {"list": [1, 2]}}
    ops = [
        {"op": "add", "path": "/spec/list/0", "value": 0},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/metadata/labels/a~1b"},
        {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
        {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/moved", "value": [0, 1, 2, 3]},
        {"op": "test", "path": "/metadata/missing", "value": None},
        {"op": "replace", "path": "/metadata/name", "value": "y"},
    ]
    out = json_patch(doc, ops)
    assert out == {
        "metadata": {"name": "y", "labels": {}},
        "spec": {"list": [0, 1, 2, 3], "moved": [0, 1, 2, 3]},
    }
    assert doc["spec"]["list"] == [1, 2], "input must not change"


# --- dispatch --------------------------------------------------------------------------


def test_application_json_is_the_captured_415() -> None:
    with pytest.raises(StatusError) as info:
        apply_patch({}, "application/json", b'{"metadata":{"labels":{"a":"b"}}}', "Pod")
    assert info.value.body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "415: Unsupported Media Type",
        "reason": "UnsupportedMediaType",
        "details": {},
        "code": 415,
    }


def test_content_type_parameters_are_ignored() -> None:
    out = apply_patch(
        {"a": 1}, "application/merge-patch+json; charset=utf-8", b'{"b":2}', "ConfigMap"
    )
    assert out == {"a": 1, "b": 2}
    assert set(PATCH_TYPES) == {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"metadata":', "unexpected end of JSON input"),
        (b"{'a': 1}", "invalid character '\\'' looking for beginning of object key string"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a": 1 "b": 2}', "invalid character '\"' after object key:value pair"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"nope", "invalid character 'o' in literal"),
    ],
)
def test_bad_json_is_400(body: bytes, message: str) -> None:
    for content_type in PATCH_TYPES:
        if content_type == "application/apply-patch+yaml":
            continue
        with pytest.raises(StatusError) as info:
            apply_patch({}, content_type, body, "Pod")
        assert info.value.code == 400
        assert info.value.reason == "BadRequest"
        if body != b"nope":
            assert info.value.message == message


def test_wrong_json_shapes_are_400() -> None:
    for content_type, body in [
        ("application/json-patch+json", b'{"op": "add"}'),
        ("application/merge-patch+json", b"[1]"),
        ("application/strategic-merge-patch+json", b"[1]"),
        ("application/apply-patch+yaml", b"- 1\n"),
        ("application/apply-patch+yaml", b"a: [\n"),
    ]:
        with pytest.raises(StatusError) as info:
            apply_patch({}, content_type, body, "Pod")
        assert info.value.code == 400


def test_bad_create_body_is_the_captured_message() -> None:
    err = bad_json_body("Pod", b'{"apiVersion":"v1","kind":"Pod",')
    assert err is not None
    assert err.body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            "the object provided is unrecognized (must be of type Pod): couldn't get "
            'version/kind; json parse error: unexpected end of JSON input ({"apiVersion":'
            '"v1","kind":"Pod ...)'
        ),
        "reason": "BadRequest",
        "code": 400,
    }
    assert bad_json_body("Pod", b"{}") is None
