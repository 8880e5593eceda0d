"""Response headers: no ``Server`` header ever, and no APF headers on a 401.

Authentication runs before API Priority and Fairness in the real server, so a request
it turns away carries no ``X-Kubernetes-Pf-*`` headers (``04-errors/401-*``).
"""

from __future__ import annotations

import pytest

from tests.conftest import RunningKubeAPI, reference
from tests.kubeapi.test_auth import raw_request

pytestmark = pytest.mark.kubeapi(controllers=False)


def test_401_has_the_captured_headers_and_no_apf(kubeapi: RunningKubeAPI) -> None:
    captured = reference("04-errors/401-invalid-bearer-token.json")["response"]["headers"]
    resp = raw_request(kubeapi, "GET", "/api/v1/namespaces/default/pods", token="not-a-token")
    assert resp.status == 401
    assert sorted(h for h, _ in resp.header_list) == sorted(h for h, _ in captured)
    assert not [h for h, _ in resp.header_list if h.lower().startswith("x-kubernetes-pf-")]


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/api/v1/namespaces/default/pods", None),  # the admin certificate
        ("/version", None),
        ("/apis", None),
        ("/openapi/v3", None),
        ("/apis/nosuchgroup/v1/things", None),  # the plain-text 404
        ("/api/v1/namespaces/default/pods", "not-a-token"),
    ],
)
def test_no_server_header(kubeapi: RunningKubeAPI, path: str, token: str | None) -> None:
    resp = raw_request(kubeapi, "GET", path, token=token, user=None if token else "admin")
    assert resp.status in (200, 401, 404)
    assert resp.header("Server") is None


def test_authenticated_answers_keep_the_apf_headers(kubeapi: RunningKubeAPI) -> None:
    ok = kubeapi.request("GET", "/api/v1/namespaces/default/pods")
    missing = kubeapi.request("GET", "/api/v1/namespaces/default/pods/nope")
    for resp in (ok, missing):
        assert resp.header("X-Kubernetes-Pf-Flowschema-Uid")
        assert resp.header("X-Kubernetes-Pf-Prioritylevel-Uid")
