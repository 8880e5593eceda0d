"""Authentication and authorization of the sandbox API server, against the reference.

Every answer is compared with what the real v1.33 server said in
``shared/reference/kube-apiserver`` (``04-errors/40x-*`` and
``09-tokenreview-subjectaccessreview``): 401/403 bodies byte for byte, TokenRequest and
TokenReview shapes and error strings, SubjectAccessReview verdicts and reasons. The
requests carry the capture's User-Agent so managedFields name the same manager.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import RawResponse, RunningKubeAPI, reference
from vnode.sandbox.kubeapi import auth, resources
from vnode.sandbox.kubeapi.pki import write_kubeconfig

pytestmark = pytest.mark.kubeapi(controllers=False)

UA = {"User-Agent": "refcapture/1.0 (python http.client)"}
REF = "09-tokenreview-subjectaccessreview/"
NODE = "ref-kubelet-node"
ISSUER = "https://kubernetes.default.svc.cluster.local"


# ---------------------------------------------------------------------------- helpers
def raw_request(
    kubeapi: RunningKubeAPI,
    method: str,
    path: str,
    *,
    token: str | None = None,
    user: str | None = None,
    body: Any = None,
) -> RawResponse:
    """A request with any mix of client certificate (``user``) and bearer token."""
    ctx = ssl.create_default_context(cafile=str(kubeapi.api.pki.ca_file))
    if user is not None:
        cert, key = kubeapi.api.pki.path(user)
        ctx.load_cert_chain(str(cert), str(key))
    parts = urlsplit(kubeapi.url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=30)
    headers = {"Accept": "application/json", **UA}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def post(kubeapi: RunningKubeAPI, path: str, body: Any, user: str = "admin") -> RawResponse:
    return kubeapi.request("POST", path, body, headers=UA, user=user)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def header_of(token: str) -> dict[str, Any]:
    first = token.split(".", maxsplit=1)[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(first + "=="))
    return decoded


def without_time(doc: dict[str, Any]) -> dict[str, Any]:
    """The body with managedFields times blanked (they are the only clock-dependent part)."""
    doc = json.loads(json.dumps(doc))
    for entry in doc.get("metadata", {}).get("managedFields") or []:
        entry["time"] = "T"
    return doc


def same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal including key order (what a byte comparison of the JSON would check)."""
    a, e = without_time(actual), without_time(expected)
    assert a == e
    assert json.dumps(a) == json.dumps(e)


def create(kubeapi: RunningKubeAPI, kind: str, namespace: str, obj: dict[str, Any]) -> Any:
    res = resources.by_kind("", kind)
    return kubeapi.call(lambda: kubeapi.api.store.create(res, namespace, obj))


def delete_now(kubeapi: RunningKubeAPI, kind: str, namespace: str, name: str) -> None:
    res = resources.by_kind("", kind)
    kubeapi.call(lambda: kubeapi.api.store.delete(res, namespace, name, grace_period_seconds=0))


@pytest.fixture
def identities(kubeapi: RunningKubeAPI) -> RunningKubeAPI:
    """``nobody`` (no groups) and the kubelet identity ``system:node:vk-node``."""
    kubeapi.api.pki.issue_client("nobody", "nobody")
    cert, key = kubeapi.api.auth.issue_node_credentials("vk-node")
    assert (cert.name, key.name) == ("node-vk-node.crt", "node-vk-node.key")
    return kubeapi


@pytest.fixture
def sa_token(kubeapi: RunningKubeAPI) -> str:
    """A token for the service account ``default/ref-sa`` (no RBAC bindings)."""
    create(kubeapi, "ServiceAccount", "default", {"metadata": {"name": "ref-sa"}})
    resp = post(
        kubeapi,
        "/api/v1/namespaces/default/serviceaccounts/ref-sa/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [ISSUER], "expirationSeconds": 3600},
        },
    )
    assert resp.status == 201, resp.raw
    token: str = resp.json()["status"]["token"]
    return token


@pytest.fixture
def bound_pod(kubeapi: RunningKubeAPI) -> dict[str, Any]:
    """Pod ``ref-web`` (service account ``default``) bound to a Node."""
    create(kubeapi, "Node", "", {"metadata": {"name": NODE}})
    pod: dict[str, Any] = create(
        kubeapi,
        "Pod",
        "default",
        {
            "metadata": {"name": "ref-web"},
            "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "busybox"}]},
        },
    )
    return pod


# ---------------------------------------------------------------------- authentication
@pytest.mark.parametrize(
    ("capture", "path"),
    [
        ("403-forbidden-nobody-list-pods.json", "/api/v1/namespaces/default/pods"),
        ("403-forbidden-nobody-get-pod.json", "/api/v1/namespaces/default/pods/ref-err"),
        ("403-forbidden-nobody-list-nodes.json", "/api/v1/nodes"),
        ("403-forbidden-nobody-watch-pods.json", "/api/v1/namespaces/default/pods?watch=1"),
        (
            "403-forbidden-nobody-pod-log.json",
            "/api/v1/namespaces/default/pods/ref-web/log?container=main",
        ),
    ],
)
def test_client_certificate_user_without_rights_is_forbidden_like_the_reference(
    identities: RunningKubeAPI, capture: str, path: str
) -> None:
    ref = reference(f"04-errors/{capture}")
    resp = raw_request(identities, "GET", path, user="nobody")
    assert resp.status == 403
    assert resp.header("X-Content-Type-Options") == "nosniff"
    assert resp.json() == ref["response"]["body"]
    assert json.dumps(resp.json()) == json.dumps(ref["response"]["body"])


def test_anonymous_may_read_version_and_health_only(kubeapi: RunningKubeAPI) -> None:
    for path in ("/version", "/readyz", "/healthz", "/livez"):
        assert raw_request(kubeapi, "GET", path).status == 200, path
    ref = reference("04-errors/403-anonymous-list-pods.json")
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/default/pods")
    assert (resp.status, resp.json()) == (403, ref["response"]["body"])
    resp = raw_request(kubeapi, "GET", "/api")
    assert resp.status == 403
    assert resp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'forbidden: User "system:anonymous" cannot get path "/api"',
        "reason": "Forbidden",
        "details": {},
        "code": 403,
    }


def test_any_authenticated_user_may_discover(identities: RunningKubeAPI) -> None:
    for path in ("/api", "/apis", "/version", "/api/v1"):
        assert raw_request(identities, "GET", path, user="nobody").status == 200, path


def test_invalid_bearer_token_is_401(kubeapi: RunningKubeAPI) -> None:
    ref = reference("04-errors/401-invalid-bearer-token.json")
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/default/pods", token="not-a-token")
    assert resp.status == 401
    assert resp.json() == ref["response"]["body"]
    assert resp.raw == json.dumps(ref["response"]["body"], separators=(",", ":")).encode() + b"\n"


def test_service_account_token_authenticates_and_has_no_rights(
    kubeapi: RunningKubeAPI, sa_token: str
) -> None:
    ref = reference(REF + "18-sa-token-list-pods-403.json")
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/default/pods", token=sa_token)
    assert (resp.status, resp.json()) == (403, ref["response"]["body"])


def test_client_certificate_wins_over_bearer_token(
    identities: RunningKubeAPI, sa_token: str
) -> None:
    # An admin certificate with a junk token: the certificate decides.
    resp = raw_request(
        identities, "GET", "/api/v1/namespaces/default/pods", user="admin", token="not-a-token"
    )
    assert resp.status == 200
    # nobody's certificate with a valid token: still nobody.
    resp = raw_request(
        identities, "GET", "/api/v1/namespaces/default/pods", user="nobody", token=sa_token
    )
    assert resp.status == 403
    assert 'User "nobody"' in resp.json()["message"]


def test_bound_rbac_rules_grant_a_service_account(kubeapi: RunningKubeAPI, sa_token: str) -> None:
    kubeapi.api.auth.bind(
        auth.Binding(
            "pod-reader",
            "pod-reader",
            (auth.PolicyRule(("get", "list"), ("",), ("pods",)),),
            (auth.Subject("ServiceAccount", "ref-sa", "default"),),
            namespace="default",
            role_kind="Role",
        )
    )
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/default/pods", token=sa_token)
    assert resp.status == 200
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/kube-system/pods", token=sa_token)
    assert resp.status == 403


# ------------------------------------------------------------ TokenRequest / TokenReview
def test_token_request_answers_like_the_reference(kubeapi: RunningKubeAPI) -> None:
    ref = reference(REF + "02-tokenrequest.json")
    sa = create(kubeapi, "ServiceAccount", "default", {"metadata": {"name": "ref-sa"}})
    resp = post(kubeapi, ref["request"]["url"], ref["request"]["body"])
    assert resp.status == 201
    body, expected = resp.json(), ref["response"]["body"]
    token = body["status"]["token"]
    expected = json.loads(json.dumps(expected))
    created = body["metadata"]["creationTimestamp"]
    expected["metadata"]["creationTimestamp"] = created
    expected["status"] = {
        "token": token,
        "expirationTimestamp": body["status"]["expirationTimestamp"],
    }
    same(body, expected)
    header, claims = header_of(token), claims_of(token)
    assert header == {"alg": "RS256", "kid": kubeapi.api.auth.key_id}
    assert list(claims) == list(ref["jwt_claims_decoded"])
    assert list(claims["kubernetes.io"]) == list(ref["jwt_claims_decoded"]["kubernetes.io"])
    assert claims["kubernetes.io"]["serviceaccount"] == {
        "name": "ref-sa",
        "uid": sa["metadata"]["uid"],
    }
    assert claims["sub"] == "system:serviceaccount:default:ref-sa"
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]
    assert body["status"]["expirationTimestamp"] == _plus(created, 3600)


def _plus(rfc3339: str, seconds: int) -> str:
    t = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _review(
    kubeapi: RunningKubeAPI, token: str, audiences: list[str] | None = None, user: str = "admin"
) -> RawResponse:
    spec: dict[str, Any] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    return post(
        kubeapi,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        user=user,
    )


@pytest.mark.parametrize(
    ("capture", "audiences"),
    [
        ("10-tokenreview-valid.json", [ISSUER]),
        ("11-tokenreview-valid-no-audiences.json", None),
    ],
)
def test_token_review_of_a_valid_token(
    kubeapi: RunningKubeAPI, sa_token: str, capture: str, audiences: list[str] | None
) -> None:
    ref = reference(REF + capture)
    resp = _review(kubeapi, sa_token, audiences)
    assert resp.status == 201
    body = resp.json()
    sa = kubeapi.call(
        lambda: kubeapi.api.store.get(resources.by_kind("", "ServiceAccount"), "default", "ref-sa")
    )
    expected = json.loads(json.dumps(ref["response"]["body"]))
    expected["spec"]["token"] = sa_token
    user = expected["status"]["user"]
    user["uid"] = sa["metadata"]["uid"]
    user["extra"]["authentication.kubernetes.io/credential-id"] = [
        f"JTI={claims_of(sa_token)['jti']}"
    ]
    same(body, expected)


def test_token_review_of_bad_tokens(kubeapi: RunningKubeAPI, sa_token: str) -> None:
    ref = reference(REF + "14-tokenreview-invalid-token.json")
    resp = _review(kubeapi, "not-a-valid-token")
    assert resp.status == 201
    same(resp.json(), ref["response"]["body"])

    forged = sa_token.rsplit(".", 1)[0] + ".AAAA"
    resp = _review(kubeapi, forged)
    assert resp.status == 201
    assert (
        resp.json()["status"]
        == reference(REF + "15-tokenreview-bad-signature.json")["response"]["body"]["status"]
    )

    resp = _review(kubeapi, sa_token, ["vnode"])
    assert resp.json()["status"] == {
        "user": {},
        "error": (
            f'[invalid bearer token, token audiences ["{ISSUER}"] is invalid for the target '
            'audiences ["vnode"]]'
        ),
    }


def test_token_of_a_deleted_service_account_stops_working(
    kubeapi: RunningKubeAPI, sa_token: str
) -> None:
    assert _review(kubeapi, sa_token).json()["status"]["authenticated"] is True
    delete_now(kubeapi, "ServiceAccount", "default", "ref-sa")
    assert _review(kubeapi, sa_token).json()["status"] == {
        "user": {},
        "error": '[invalid bearer token, serviceaccounts "ref-sa" not found]',
    }
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/default/pods", token=sa_token)
    assert resp.status == 401
    # A new account with the same name is another account (another uid).
    create(kubeapi, "ServiceAccount", "default", {"metadata": {"name": "ref-sa"}})
    assert "does not match claim" in _review(kubeapi, sa_token).json()["status"]["error"]


def test_pod_bound_token_round_trip(kubeapi: RunningKubeAPI, bound_pod: dict[str, Any]) -> None:
    ref = reference(REF + "03-tokenrequest-pod-bound.json")
    body = json.loads(json.dumps(ref["request"]["body"]))
    body["spec"]["boundObjectRef"]["uid"] = bound_pod["metadata"]["uid"]
    resp = post(kubeapi, ref["request"]["url"], body)
    assert resp.status == 201, resp.raw
    out = resp.json()
    assert out["spec"] == body["spec"]
    assert list(out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]) == list(
        ref["response"]["body"]["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    )
    assert out["metadata"]["managedFields"] == [
        {
            **ref["response"]["body"]["metadata"]["managedFields"][0],
            "time": out["metadata"]["managedFields"][0]["time"],
        }
    ]
    token = out["status"]["token"]
    node = kubeapi.call(lambda: kubeapi.api.store.get(resources.by_kind("", "Node"), "", NODE))
    private = claims_of(token)["kubernetes.io"]
    assert list(private) == ["namespace", "node", "pod", "serviceaccount"]
    assert private["node"] == {"name": NODE, "uid": node["metadata"]["uid"]}
    assert private["pod"] == {"name": "ref-web", "uid": bound_pod["metadata"]["uid"]}

    review = _review(kubeapi, token, ["vnode"]).json()["status"]
    assert review["authenticated"] is True
    assert review["audiences"] == ["vnode"]
    assert review["user"]["extra"] == {
        "authentication.kubernetes.io/credential-id": [f"JTI={claims_of(token)['jti']}"],
        "authentication.kubernetes.io/node-name": [NODE],
        "authentication.kubernetes.io/node-uid": [node["metadata"]["uid"]],
        "authentication.kubernetes.io/pod-name": ["ref-web"],
        "authentication.kubernetes.io/pod-uid": [bound_pod["metadata"]["uid"]],
    }
    wrong = reference(REF + "13-tokenreview-wrong-audience.json")
    assert _review(kubeapi, token).json()["status"] == wrong["response"]["body"]["status"]

    delete_now(kubeapi, "Pod", "default", "ref-web")
    assert _review(kubeapi, token, ["vnode"]).json()["status"] == {
        "user": {},
        "error": "[invalid bearer token, service account token has been invalidated]",
    }


def test_token_request_errors(kubeapi: RunningKubeAPI, bound_pod: dict[str, Any]) -> None:
    create(kubeapi, "ServiceAccount", "default", {"metadata": {"name": "ref-sa"}})
    for capture in (
        "03b-tokenrequest-too-short-expiration.json",
        "03c-tokenrequest-pod-bound-wrong-sa-400.json",
    ):
        ref = reference(REF + capture)
        resp = post(kubeapi, ref["request"]["url"], ref["request"]["body"])
        assert (resp.status, resp.json()) == (ref["response"]["status"], ref["response"]["body"]), (
            capture
        )
    resp = post(kubeapi, "/api/v1/namespaces/default/serviceaccounts/nosa/token", {})
    assert (resp.status, resp.json()["message"]) == (404, 'serviceaccounts "nosa" not found')
    stale = {
        "spec": {
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": "ref-web",
                "uid": "00000000-0000-0000-0000-000000000000",
            }
        }
    }
    resp = post(kubeapi, "/api/v1/namespaces/default/serviceaccounts/default/token", stale)
    assert (resp.status, resp.json()["reason"]) == (409, "Conflict")


def test_kubelet_length_token_is_extended_with_warnafter(
    kubeapi: RunningKubeAPI, bound_pod: dict[str, Any]
) -> None:
    body = {
        "spec": {
            "expirationSeconds": 3607,
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": "ref-web",
                "uid": bound_pod["metadata"]["uid"],
            },
        }
    }
    resp = post(kubeapi, "/api/v1/namespaces/default/serviceaccounts/default/token", body)
    assert resp.status == 201
    out = resp.json()
    claims = claims_of(out["status"]["token"])
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] == claims["iat"] + 3607
    assert out["spec"]["audiences"] == [ISSUER]
    assert out["status"]["expirationTimestamp"] == _plus(out["metadata"]["creationTimestamp"], 3607)


# --------------------------------------------------------------- SubjectAccessReview
def _sar_capture(name: str) -> dict[str, Any]:
    captures: dict[str, Any] = reference(REF + "20-39-sar-nodes-subresources.json")["captures"]
    return captures[name]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "name",
    [
        "21-sar-admin-nodes-proxy",
        "25-sar-kubelet-client-nodes-proxy",
        "29-sar-nobody-nodes-proxy",
        "33-sar-sa-nodes-proxy",
        "37-sar-node-vk-nodes-proxy",
    ],
)
def test_sar_for_kubelet_attributes(kubeapi: RunningKubeAPI, name: str) -> None:
    ref = _sar_capture(name)
    resp = post(kubeapi, ref["request"]["url"], ref["request"]["body"])
    assert resp.status == 201
    same(resp.json(), ref["response"]["body"])


def test_sar_summary_for_every_node_subresource(kubeapi: RunningKubeAPI) -> None:
    summary = reference(REF + "20-39-sar-nodes-subresources.json")["summary"]
    subjects = {
        "admin": ("admin", ["system:masters", "system:authenticated"]),
        "kubelet-client": (
            "kube-apiserver-kubelet-client",
            ["system:masters", "system:authenticated"],
        ),
        "nobody": ("nobody", ["system:authenticated"]),
        "sa": (
            "system:serviceaccount:default:ref-sa",
            ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"],
        ),
        "node-vk": ("system:node:vk-node", ["system:nodes", "system:authenticated"]),
    }
    for key, expected in summary.items():
        who, sub = key.removeprefix("sar-").rsplit("-nodes-", 1)
        user, groups = subjects[who]
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "verb": "get",
                    "version": "v1",
                    "resource": "nodes",
                    "subresource": sub,
                    "name": NODE,
                },
            },
        }
        resp = post(kubeapi, "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        assert resp.json()["status"] == expected, key


@pytest.mark.parametrize(
    "capture",
    [
        "40-sar-nobody-nonresource-healthz.json",
        "41-sar-nobody-list-pods.json",
        "42-sar-node-get-pod-not-on-node.json",
    ],
)
def test_sar_reasons(kubeapi: RunningKubeAPI, capture: str) -> None:
    ref = reference(REF + capture)
    resp = post(kubeapi, ref["request"]["url"], ref["request"]["body"])
    assert resp.status == 201
    same(resp.json(), ref["response"]["body"])


def test_sar_validation(kubeapi: RunningKubeAPI) -> None:
    ref = reference(REF + "45-sar-missing-attributes-422.json")
    resp = post(kubeapi, ref["request"]["url"], ref["request"]["body"])
    assert (resp.status, resp.json()) == (422, ref["response"]["body"])


@pytest.mark.parametrize(
    "capture", ["17-tokenreview-as-nobody-403.json", "43-sar-as-nobody-403.json"]
)
def test_reviews_are_forbidden_to_nobody(identities: RunningKubeAPI, capture: str) -> None:
    ref = reference(REF + capture)
    resp = post(identities, ref["request"]["url"], ref["request"]["body"], user="nobody")
    assert (resp.status, resp.json()) == (403, ref["response"]["body"])


def test_node_identity_may_review_tokens_and_access(
    identities: RunningKubeAPI, sa_token: str
) -> None:
    ref = reference(REF + "44-sar-as-node-identity.json")
    resp = post(identities, ref["request"]["url"], ref["request"]["body"], user="node-vk-node")
    assert resp.status == 201
    same(resp.json(), ref["response"]["body"])
    resp = _review(identities, sa_token, user="node-vk-node")
    assert resp.status == 201
    assert resp.json()["status"]["authenticated"] is True


def test_self_subject_access_review(identities: RunningKubeAPI) -> None:
    ref = reference(REF + "46-selfsubjectaccessreview-nobody.json")
    resp = post(identities, ref["request"]["url"], ref["request"]["body"], user="nobody")
    assert resp.status == 201
    same(resp.json(), ref["response"]["body"])
    resp = post(identities, ref["request"]["url"], ref["request"]["body"], user="admin")
    assert resp.json()["status"] == {"allowed": True}


# ------------------------------------------------------------------ the node identity
def test_node_identity_reads_only_what_is_related_to_it(
    identities: RunningKubeAPI, bound_pod: dict[str, Any]
) -> None:
    kubeapi = identities
    create(kubeapi, "Node", "", {"metadata": {"name": "vk-node"}})
    create(
        kubeapi,
        "Pod",
        "default",
        {
            "metadata": {"name": "mine"},
            "spec": {
                "nodeName": "vk-node",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "env": [
                            {
                                "name": "A",
                                "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}},
                            }
                        ],
                    }
                ],
            },
        },
    )
    create(kubeapi, "ConfigMap", "default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    create(kubeapi, "ConfigMap", "default", {"metadata": {"name": "other"}})

    def get(path: str) -> RawResponse:
        return raw_request(kubeapi, "GET", path, user="node-vk-node")

    assert get("/api/v1/nodes/vk-node").status == 200
    assert get("/api/v1/namespaces/default/pods/mine").status == 200
    assert get("/api/v1/namespaces/default/configmaps/cfg").status == 200
    assert get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").status == 200
    resp = get("/api/v1/namespaces/default/pods/ref-web")
    assert resp.status == 403
    assert resp.json()["message"] == (
        'pods "ref-web" is forbidden: User "system:node:vk-node" cannot get resource "pods" '
        'in API group "" in the namespace "default": no relationship found between node '
        "'vk-node' and this object"
    )
    assert get("/api/v1/namespaces/default/configmaps/other").status == 403
    resp = get(f"/api/v1/nodes/{NODE}")
    assert resp.json()["message"].endswith(
        f"node 'vk-node' cannot read '{NODE}', only its own Node object"
    )
    resp = get("/api/v1/nodes")
    assert resp.json()["message"].endswith(
        "node 'vk-node' cannot read all nodes, only its own Node object"
    )


def test_node_identity_writes_its_own_objects_only(
    identities: RunningKubeAPI, bound_pod: dict[str, Any]
) -> None:
    kubeapi = identities
    create(kubeapi, "Node", "", {"metadata": {"name": "vk-node"}})
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "vk-node"},
        "spec": {"holderIdentity": "vk-node", "leaseDurationSeconds": 40},
    }
    resp = raw_request(
        kubeapi,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        user="node-vk-node",
        body=lease,
    )
    assert resp.status == 201, resp.raw
    resp = raw_request(
        kubeapi,
        "GET",
        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}",
        user="node-vk-node",
    )
    assert resp.json()["message"].endswith(
        "can only access node lease with the same name as the requesting node"
    )
    resp = raw_request(
        kubeapi, "DELETE", "/api/v1/namespaces/default/pods/ref-web", user="node-vk-node"
    )
    assert resp.status == 403
    assert resp.json()["message"] == (
        'pods "ref-web" is forbidden: node "vk-node" can only delete pods with spec.nodeName '
        "set to itself"
    )
    resp = raw_request(
        kubeapi,
        "PUT",
        f"/api/v1/nodes/{NODE}/status",
        user="node-vk-node",
        body={"metadata": {"name": NODE}},
    )
    assert resp.json()["message"] == (
        f'nodes "{NODE}" is forbidden: node "vk-node" is not allowed to modify node "{NODE}"'
    )
    event = {
        "metadata": {"name": "vk-node.1"},
        "involvedObject": {"kind": "Node", "name": "vk-node"},
        "reason": "Starting",
        "message": "Starting vnode.",
        "type": "Normal",
    }
    resp = raw_request(
        kubeapi, "POST", "/api/v1/namespaces/default/events", user="node-vk-node", body=event
    )
    assert resp.status == 201, resp.raw


def test_node_identity_watches_only_its_own_pods_and_node(
    identities: RunningKubeAPI, bound_pod: dict[str, Any]
) -> None:
    def get(path: str) -> RawResponse:
        return raw_request(identities, "GET", path, user="node-vk-node")

    assert get("/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node").status == 200
    assert get("/api/v1/nodes?fieldSelector=metadata.name%3Dvk-node").status == 200
    resp = get("/api/v1/pods?fieldSelector=spec.nodeName%3Dother")
    assert resp.status == 403
    assert resp.json()["message"].endswith(
        "can only list/watch pods with spec.nodeName field selector"
    )
    resp = get("/api/v1/nodes?fieldSelector=metadata.name%3Dother")
    assert resp.json()["message"] == (
        'nodes "other" is forbidden: User "system:node:vk-node" cannot list resource "nodes" '
        "in API group \"\" at the cluster scope: node 'vk-node' cannot read 'other', only its "
        "own Node object"
    )


def test_node_identity_lists_pods_by_node_name(
    identities: RunningKubeAPI, bound_pod: dict[str, Any]
) -> None:
    # The Node authorizer's selector rule, asked directly (the request info carries it).
    a = identities.api.auth
    node = auth.User("system:node:vk-node", ("system:nodes", "system:authenticated"))
    pods = resources.by_kind("", "Pod")
    a.authorize(
        node, "watch", pods, "", "", "", "/api/v1/pods", field_selector="spec.nodeName=vk-node"
    )
    with pytest.raises(auth.StatusError) as err:
        a.authorize(node, "list", pods, "", "", "", "/api/v1/pods")
    assert err.value.message == (
        'pods is forbidden: User "system:node:vk-node" cannot list resource "pods" in API '
        'group "" at the cluster scope: can only list/watch pods with spec.nodeName field '
        "selector"
    )
    nodes = resources.by_kind("", "Node")
    a.authorize(
        node, "watch", nodes, "", "", "", "/api/v1/nodes", field_selector="metadata.name=vk-node"
    )


def test_review_kinds_are_create_only(kubeapi: RunningKubeAPI) -> None:
    for path in (
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "/api/v1/namespaces/default/serviceaccounts/default/token",
    ):
        resp = kubeapi.request("GET", path)
        assert (resp.status, resp.json()["reason"]) == (405, "MethodNotAllowed"), path


# ------------------------------------------------------------------ kubectl's typed clients
# kubectl posts these kinds as protobuf; the bodies below are what kubectl 1.37 sent.
KUBECTL_SSAR = (
    b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12=\n\x10\n"
    b'\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x1f\n\x1d\n\x07default\x12\x04list'
    b'\x1a\x00"\x00*\x04pods2\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00'
)
KUBECTL_TOKEN_REQUEST = (
    b"k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\n\x10\n\x00\x12"
    b'\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x04\n\x00\x12\x00\x1a\x00"\x00'
)


def test_protobuf_bodies_decode_to_their_json_shape() -> None:
    from vnode.sandbox.kubeapi import protobuf

    assert protobuf.decode(KUBECTL_SSAR, "SelfSubjectAccessReview") == {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}
        },
    }
    assert protobuf.decode(KUBECTL_TOKEN_REQUEST, "TokenRequest") == {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "spec": {},
    }
    with pytest.raises(protobuf.DecodeError):
        protobuf.decode(KUBECTL_SSAR, "TokenReview")


def test_protobuf_posted_review_is_answered_in_json(identities: RunningKubeAPI) -> None:
    headers = {
        **UA,
        "Content-Type": "application/vnd.kubernetes.protobuf",
        "Accept": "application/vnd.kubernetes.protobuf,application/json",
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    resp = identities.request("POST", path, KUBECTL_SSAR, headers=headers)
    assert resp.status == 201
    assert resp.header("Content-Type") == "application/json"
    assert resp.json()["status"] == {"allowed": True}
    resp = identities.request("POST", path, KUBECTL_SSAR, headers=headers, user="nobody")
    assert resp.json()["status"] == {"allowed": False}


def _kubectl(kubeapi: RunningKubeAPI, kubeconfig: Path, *args: str) -> Any:
    return subprocess.run(
        ["kubectl", "--cache-dir", str(kubeapi.state_dir / "kubectl-cache"), *args],
        env={**kubeapi.env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubectl_auth_can_i(identities: RunningKubeAPI) -> None:
    nobody = identities.state_dir / "nobody.kubeconfig"
    write_kubeconfig(nobody, identities.url, identities.api.pki, user="nobody")
    admin = identities.kubeconfig
    for kubeconfig, args, out in [
        (admin, ("list", "pods"), "yes"),
        (nobody, ("list", "pods"), "no"),
        (nobody, ("get", "/healthz"), "yes"),
        (nobody, ("create", "selfsubjectaccessreviews.authorization.k8s.io"), "yes"),
    ]:
        done = _kubectl(identities, kubeconfig, "auth", "can-i", *args)
        assert done.stdout.strip() == out, (kubeconfig.name, args, done.stderr)


def test_kubectl_create_token_is_accepted_by_token_review(kubeapi: RunningKubeAPI) -> None:
    done = _kubectl(
        kubeapi,
        kubeapi.kubeconfig,
        "create",
        "token",
        "default",
        "--audience",
        "vnode",
        "--duration",
        "20m",
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 1200
    review = _review(kubeapi, token, ["vnode"]).json()["status"]
    assert review["user"]["username"] == "system:serviceaccount:default:default"
    done = _kubectl(kubeapi, kubeapi.kubeconfig, "create", "token", "default", "--duration", "1m")
    assert done.returncode == 1
    assert done.stderr == (
        'error: failed to create token: TokenRequest.authentication.k8s.io "" is invalid: '
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 "
        "minutes\n"
    )


def _pb(number: int, value: bytes | int) -> bytes:
    """One protobuf field (length-delimited for bytes, varint for ints)."""
    if isinstance(value, int):
        return bytes([number << 3]) + _varint(value)
    return bytes([number << 3 | 2]) + _varint(len(value)) + value


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_protobuf_eviction_and_binding_bodies() -> None:
    from vnode.sandbox.kubeapi import protobuf

    meta = _pb(1, b"ref-web") + _pb(3, b"default")
    options = _pb(1, 0) + _pb(2, _pb(1, b"u-1")) + _pb(5, b"All")
    eviction = _pb(1, _pb(1, b"policy/v1") + _pb(2, b"Eviction")) + _pb(
        2, _pb(1, meta) + _pb(2, options)
    )
    assert protobuf.decode(b"k8s\x00" + eviction, "Eviction") == {
        "kind": "Eviction",
        "apiVersion": "policy/v1",
        "metadata": {"name": "ref-web", "namespace": "default"},
        "deleteOptions": {
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u-1"},
            "dryRun": ["All"],
        },
    }
    binding = _pb(1, _pb(1, b"v1") + _pb(2, b"Binding")) + _pb(
        2, _pb(1, _pb(1, b"p")) + _pb(2, _pb(1, b"Node") + _pb(3, b"n1"))
    )
    assert protobuf.decode(b"k8s\x00" + binding, "Binding") == {
        "kind": "Binding",
        "apiVersion": "v1",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"},
    }


# ---------------------------------------- kinds served once the resource table lists them
class _Posted:
    """Just what the review handlers read from a request."""

    method = "POST"
    content_type = "application/json"

    def __init__(self, body: Any) -> None:
        self.headers = dict(UA)
        self._raw = json.dumps(body).encode()

    async def read(self) -> bytes:
        return self._raw


def _call(
    kubeapi: RunningKubeAPI,
    handler: Any,
    res: Any,
    body: Any,
    user: auth.User,
    *,
    namespace: str = "",
) -> Any:
    resp = kubeapi.call(handler(kubeapi.api, _Posted(body), res, namespace, "", user))
    return resp.status, json.loads(resp.body)


def test_local_subject_access_review(kubeapi: RunningKubeAPI) -> None:
    res = resources.Resource(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        True,
        ("create",),
        stored=False,
    )
    admin = auth.User("admin", ("system:masters", "system:authenticated"))
    spec = {
        "user": "nobody",
        "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"},
    }
    status, body = _call(
        kubeapi,
        auth.handle_local_subject_access_review,
        res,
        {"spec": spec},
        admin,
        namespace="default",
    )
    assert status == 201
    assert body["kind"] == "LocalSubjectAccessReview"
    assert body["metadata"]["namespace"] == "default"
    assert body["status"] == {"allowed": False}
    with pytest.raises(auth.StatusError) as err:
        _call(
            kubeapi,
            auth.handle_local_subject_access_review,
            res,
            {"spec": spec},
            admin,
            namespace="kube-system",
        )
    assert err.value.message == (
        '.authorization.k8s.io "" is invalid: spec.resourceAttributes.namespace: Invalid '
        'value: "default": must match metadata.namespace'
    )


def test_self_subject_rules_review(kubeapi: RunningKubeAPI) -> None:
    res = resources.Resource(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        False,
        ("create",),
        stored=False,
    )
    body = {"spec": {"namespace": "default"}}
    nobody = auth.User("nobody", ("system:authenticated",))
    _, out = _call(kubeapi, auth.handle_self_subject_rules_review, res, body, nobody)
    status = out["status"]
    assert status["incomplete"] is False
    assert {
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    } in status["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": list(auth._PUBLIC_INFO_URLS)} in status[
        "nonResourceRules"
    ]
    admin = auth.User("admin", ("system:masters", "system:authenticated"))
    _, out = _call(kubeapi, auth.handle_self_subject_rules_review, res, body, admin)
    assert out["status"]["resourceRules"][0] == {
        "verbs": ["*"],
        "apiGroups": ["*"],
        "resources": ["*"],
    }
    node = auth.User("system:node:vk-node", ("system:nodes", "system:authenticated"))
    _, out = _call(kubeapi, auth.handle_self_subject_rules_review, res, body, node)
    assert out["status"]["incomplete"] is True
    assert out["status"]["evaluationError"] == (
        "node authorizer does not support user rule resolution"
    )


def test_self_subject_review_names_the_caller(kubeapi: RunningKubeAPI) -> None:
    res = resources.Resource(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        False,
        ("create",),
        stored=False,
    )
    who = auth.User(
        "nobody", ("system:authenticated",), extra={auth.CREDENTIAL_ID: ["X509SHA256=ab"]}
    )
    status, out = _call(kubeapi, auth.handle_self_subject_review, res, {}, who)
    assert status == 201
    assert out["status"] == {
        "userInfo": {
            "username": "nobody",
            "groups": ["system:authenticated"],
            "extra": {auth.CREDENTIAL_ID: ["X509SHA256=ab"]},
        }
    }


@pytest.mark.parametrize(
    ("capture", "user"),
    [("47-selfsubjectreview-nobody.json", "nobody"), ("48-selfsubjectreview-admin.json", "admin")],
)
def test_self_subject_review_over_http(identities: RunningKubeAPI, capture: str, user: str) -> None:
    ref = reference(REF + capture)
    resp = post(identities, ref["request"]["url"], ref["request"]["body"], user=user)
    assert resp.status == 201
    body, expected = resp.json(), json.loads(json.dumps(ref["response"]["body"]))
    cert, _ = identities.api.pki.path(user)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    expected["metadata"]["creationTimestamp"] = body["metadata"]["creationTimestamp"]
    expected["status"]["userInfo"]["extra"]["authentication.kubernetes.io/credential-id"] = [
        f"X509SHA256={hashlib.sha256(der).hexdigest()}"
    ]
    same(body, expected)


def test_official_client_round_trip(kubeapi: RunningKubeAPI, k8s: Any) -> None:
    from kubernetes import client

    core, authn, authz = (
        client.CoreV1Api(k8s),
        client.AuthenticationV1Api(k8s),
        (client.AuthorizationV1Api(k8s)),
    )
    core.create_namespaced_service_account(
        "default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot"))
    )
    minted = core.create_namespaced_service_account_token(
        "robot",
        "default",
        (
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=["vnode"], expiration_seconds=600)
            )
        ),
    )
    assert minted.status.expiration_timestamp is not None
    review = authn.create_token_review(
        client.V1TokenReview(
            spec=client.V1TokenReviewSpec(token=minted.status.token, audiences=["vnode"])
        )
    )
    assert review.status.authenticated is True
    assert review.status.user.username == "system:serviceaccount:default:robot"
    assert review.status.audiences == ["vnode"]
    sar = authz.create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user="system:serviceaccount:default:robot",
                groups=["system:serviceaccounts", "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    verb="get", resource="nodes", subresource="log", name="n1"
                ),
            )
        )
    )
    assert (sar.status.allowed, sar.status.reason) == (False, None)


# ------------------------------------------- NodeRestriction checks that need the object
KUBELET = auth.User("system:node:vk-node", ("system:nodes", "system:authenticated"))


def _denied(kubeapi: RunningKubeAPI, kind: str, group: str = "", **kwargs: Any) -> str:
    res = resources.by_kind(group, kind)
    with pytest.raises(auth.StatusError) as err:
        kubeapi.call(lambda: kubeapi.api.auth.admit(KUBELET, res, **kwargs))
    assert err.value.code == 403
    return err.value.message


def test_node_restriction_on_nodes(kubeapi: RunningKubeAPI) -> None:
    res = resources.by_kind("", "Node")
    mine = {
        "metadata": {
            "name": "vk-node",
            "labels": {
                "kubernetes.io/hostname": "vk-node",
                "type": "virtual-kubelet",
                "node.kubernetes.io/exclude-from-external-load-balancers": "true",
            },
        },
        "spec": {
            "taints": [
                {"key": "virtual-kubelet.io/provider", "value": "gce", "effect": "NoSchedule"}
            ]
        },
    }
    kubeapi.api.auth.admit(KUBELET, res, subresource="", operation="create", obj=mine)
    assert _denied(
        kubeapi, "Node", subresource="", operation="create", obj={"metadata": {"name": "other"}}
    ) == ('nodes "other" is forbidden: node "vk-node" is not allowed to modify node "other"')
    role = {"metadata": {"name": "vk-node", "labels": {"kubernetes.io/role": "agent"}}}
    assert _denied(kubeapi, "Node", subresource="", operation="create", obj=role) == (
        'nodes "vk-node" is forbidden: node "vk-node" is not allowed to set the following '
        "labels: kubernetes.io/role"
    )
    untainted = {"metadata": mine["metadata"], "spec": {}}
    assert _denied(
        kubeapi, "Node", subresource="", operation="update", obj=untainted, old=mine
    ) == ('nodes "vk-node" is forbidden: node "vk-node" is not allowed to modify taints')
    kubeapi.api.auth.admit(
        KUBELET, res, subresource="status", operation="update", obj=mine, old=mine
    )
    # Anyone but a kubelet is not restricted.
    admin = auth.User("admin", ("system:masters", "system:authenticated"))
    kubeapi.api.auth.admit(admin, res, subresource="", operation="create", obj=role)


def test_node_restriction_on_leases_and_pods(kubeapi: RunningKubeAPI) -> None:
    assert _denied(
        kubeapi,
        "Lease",
        "coordination.k8s.io",
        subresource="",
        operation="create",
        obj={"metadata": {"name": "other"}},
    ) == (
        'leases.coordination.k8s.io "other" is forbidden: can only access node lease with the '
        "same name as the requesting node"
    )
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "vk-node", "containers": []}}
    assert _denied(kubeapi, "Pod", subresource="", operation="create", obj=pod) == (
        'pods "p" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, '
        'node "vk-node" can only create mirror pods'
    )
    old = {"metadata": {"name": "p", "labels": {"a": "1"}}}
    new = {"metadata": {"name": "p", "labels": {"a": "2"}}}
    assert _denied(kubeapi, "Pod", subresource="status", operation="update", obj=new, old=old) == (
        'pods "p" is forbidden: node "vk-node" cannot update labels through pod status'
    )


def test_node_restriction_through_the_api(identities: RunningKubeAPI) -> None:
    def call(method: str, path: str, body: Any, content_type: str = "") -> RawResponse:
        if not content_type:
            return raw_request(identities, method, path, user="node-vk-node", body=body)
        return identities.request(
            method,
            path,
            json.dumps(body).encode(),
            headers={**UA, "Content-Type": content_type},
            user="node-vk-node",
        )

    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "vk-node", "labels": {"kubernetes.io/role": "agent"}},
    }
    resp = call("POST", "/api/v1/nodes", node)
    assert resp.status == 403
    assert resp.json()["message"].endswith(
        "not allowed to set the following labels: kubernetes.io/role"
    )
    node["metadata"]["labels"] = {"type": "virtual-kubelet"}
    node["spec"] = {
        "taints": [{"key": "virtual-kubelet.io/provider", "value": "gce", "effect": "NoSchedule"}]
    }
    assert call("POST", "/api/v1/nodes", node).status == 201
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    resp = call(
        "PATCH", "/api/v1/nodes/vk-node/status", ready, "application/strategic-merge-patch+json"
    )
    assert resp.status == 200, resp.raw
    resp = call(
        "PATCH", "/api/v1/nodes/vk-node", {"spec": {"taints": None}}, "application/merge-patch+json"
    )
    assert resp.status == 403
    assert resp.json()["message"] == (
        'nodes "vk-node" is forbidden: node "vk-node" is not allowed to modify taints'
    )
    assert (
        raw_request(identities, "GET", "/api/v1/nodes/vk-node", user="admin").json()["spec"][
            "taints"
        ][0]["key"]
        == "virtual-kubelet.io/provider"
    )
