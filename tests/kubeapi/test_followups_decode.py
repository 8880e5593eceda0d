"""A body whose JSON types do not fit the kind is a 400 decode error, as Go's decoder says.

The expected types come from the official client's models; the first wrong field in
body order is reported, with the Go struct, the JSON path and the Go type.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningKubeAPI, reference

pytestmark = pytest.mark.kubeapi(controllers=False)

PODS_PATH = "/api/v1/namespaces/default/pods"
PREFIX = 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal '


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"nodeSelector": "x"},
            "string into Go struct field PodSpec.spec.nodeSelector of type map[string]string",
        ),
        (
            {"containers": {"name": "main"}},
            "object into Go struct field PodSpec.spec.containers of type []v1.Container",
        ),
        (
            {"containers": [{"name": 5, "image": "busybox"}]},
            "number into Go struct field Container.spec.containers.name of type string",
        ),
        (
            {"hostNetwork": "true"},
            "string into Go struct field PodSpec.spec.hostNetwork of type bool",
        ),
        ({"priority": "1"}, "string into Go struct field PodSpec.spec.priority of type int32"),
        (
            {"tolerations": [{"key": "k", "tolerationSeconds": "3"}]},
            "string into Go struct field Toleration.spec.tolerations.tolerationSeconds "
            "of type int64",
        ),
        # The first mismatch in body order wins.
        (
            {"nodeSelector": [], "hostNetwork": 1},
            "array into Go struct field PodSpec.spec.nodeSelector of type map[string]string",
        ),
    ],
)
def test_wrong_json_type_is_a_400_decode_error(
    kubeapi: RunningKubeAPI, spec: dict[str, Any], message: str
) -> None:
    got = kubeapi.request("POST", PODS_PATH, _pod("bad", **spec))
    assert got.status == 400
    doc = got.json()
    # The same Status shape as the captured strict-decoding 400.
    captured = reference("04-errors/400-strict-unknown-field.json")["response"]["body"]
    assert list(doc) == list(captured)
    assert (doc["reason"], doc["code"]) == ("BadRequest", 400)
    assert doc["message"] == PREFIX + message
    assert kubeapi.request("GET", f"{PODS_PATH}/bad").status == 404


def test_put_is_checked_too_and_labels_must_be_strings(kubeapi: RunningKubeAPI) -> None:
    assert kubeapi.request("POST", PODS_PATH, _pod("ok")).status == 201
    pod = kubeapi.request("GET", f"{PODS_PATH}/ok").json()
    pod["metadata"]["labels"] = {"n": 1}
    got = kubeapi.request("PUT", f"{PODS_PATH}/ok", pod)
    assert got.status == 400
    assert got.json()["message"] == (
        PREFIX + "number into Go struct field ObjectMeta.metadata.labels of type string"
    )


def test_what_the_decoder_accepts_still_passes(kubeapi: RunningKubeAPI) -> None:
    pod = _pod(
        "fine",
        containers=[
            {
                "name": "main",
                "image": "busybox",
                # Quantities may be JSON numbers; IntOrString ports may be either.
                "resources": {"limits": {"cpu": 1, "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"port": 8080}},
                "livenessProbe": {"httpGet": {"port": "http"}},
            }
        ],
        nodeSelector=None,  # null decodes into anything
    )
    got = kubeapi.request("POST", PODS_PATH, pod)
    assert got.status == 201, got.raw
    limits = got.json()["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "64Mi"
    configmap = {"metadata": {"name": "cm"}, "data": {"k": 1}}
    refused = kubeapi.request("POST", "/api/v1/namespaces/default/configmaps", configmap)
    assert refused.status == 400
    assert refused.json()["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
        "number into Go struct field ConfigMap.data of type string"
    )
