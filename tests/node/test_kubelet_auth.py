"""Who may call the kubelet API: certificates, TokenReview, SubjectAccessReview, caches.

The kubelet API trusts the sandbox cluster's CA for client certificates and asks the
sandbox API server (as vnode would ask the real one) to review tokens and access, so
these tests run the whole chain: TLS, the reviews, RBAC, and the kubelet's exact words.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import RunningKubeAPI
from tests.node.kubelet_helpers import Pods, client_ssl, pod, session, started
from tests.providers import FakeProvider
from tests.refdata import REFERENCE
from vnode.certs import CertificateAuthority
from vnode.clock import FakeClock
from vnode.node import kube
from vnode.node.auth import (
    AUTHZ_ALLOWED_TTL,
    AUTHZ_DENIED_TTL,
    KubeletAuth,
    TTLCache,
    User,
    forbidden_message,
    subresources,
    verb_of,
)
from vnode.node.kubelet_api import KubeletAPI
from vnode.sandbox.kubeapi import auth as sandbox_auth
from vnode.sandbox.kubeapi import resources
from vnode.settings import KubeletAPISettings, KubeSettings

NODE = "vn-auth"
KUBELET_AUTH = REFERENCE / "kubelet/auth.json"
SA_USER = "system:serviceaccount:default:watcher"

pytestmark = pytest.mark.kubeapi(controllers=False)


# ------------------------------------------------------------------ the kubelet's mapping


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/pods", ["pods", "proxy"]),
        ("/pods/", ["pods", "proxy"]),
        ("/podsx", ["proxy"]),
        ("/runningpods/", ["pods", "proxy"]),
        ("/healthz", ["healthz", "proxy"]),
        ("/healthz/ping", ["healthz", "proxy"]),
        ("/configz", ["configz", "proxy"]),
        ("/statusz", ["statusz", "proxy"]),
        ("/stats/summary", ["stats"]),
        ("/stats", ["stats"]),
        ("/metrics", ["metrics"]),
        ("/metrics/resource", ["metrics"]),
        ("/logs/syslog", ["log"]),
        ("/checkpoint/default/p/c", ["checkpoint"]),
        ("/containerLogs/default/p/c", ["proxy"]),
        ("/exec/default/p/c", ["proxy"]),
        ("/portForward/default/p", ["proxy"]),
        ("/", ["proxy"]),
    ],
)
def test_path_to_node_subresources(path: str, expected: list[str]) -> None:
    assert subresources(path) == expected


def test_method_to_verb() -> None:
    assert [verb_of(m) for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")] == [
        "get",
        "create",
        "update",
        "patch",
        "delete",
        "",
    ]


def test_forbidden_text_is_the_kubelets() -> None:
    assert forbidden_message(User("u"), "create", ["proxy"]) == (
        "Forbidden (user=u, verb=create, resource=nodes, subresource(s)=[proxy])\n"
    )


async def test_ttl_cache_expires_and_stays_bounded() -> None:
    clock = FakeClock()
    cache: TTLCache[str, int] = TTLCache(clock, size=3)
    cache.put("a", 1, ttl=10)
    await clock.advance(9.9)
    assert cache.get("a") == 1
    await clock.advance(0.2)
    assert cache.get("a") is None
    for i in range(10):
        cache.put(str(i), i, ttl=100)
    assert len(cache) == 3
    assert [cache.get(k) for k in ("6", "7", "8", "9")] == [None, 7, 8, 9]


# ------------------------------------------------------------------------ with the cluster


def _create(kubeapi: RunningKubeAPI, kind: str, namespace: str, obj: dict[str, Any]) -> Any:
    res = resources.by_kind("", kind)
    return kubeapi.call(lambda: kubeapi.api.store.create(res, namespace, obj))


def _grant(kubeapi: RunningKubeAPI, name: str, *node_resources: str) -> None:
    """An RBAC binding giving the test service account ``get`` on nodes/<sub>."""
    kubeapi.api.auth.bind(
        sandbox_auth.Binding(
            name,
            name,
            (sandbox_auth.PolicyRule(("get",), ("",), node_resources),),
            (sandbox_auth.Subject("ServiceAccount", "watcher", "default"),),
        )
    )


@pytest.fixture
def token(kubeapi: RunningKubeAPI) -> str:
    """A token for service account default/watcher, minted through the TokenRequest API."""
    _create(kubeapi, "ServiceAccount", "default", {"metadata": {"name": "watcher"}})
    resp = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/watcher/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    assert resp.status == 201, resp.raw
    minted: str = resp.json()["status"]["token"]
    return minted


@pytest.fixture
async def api_client(kubeapi: RunningKubeAPI) -> AsyncIterator[Any]:
    client = await kube.connect(KubeSettings(kubeconfig=kubeapi.kubeconfig), purpose="test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC))


@pytest.fixture
def kubelet_auth(kubeapi: RunningKubeAPI, api_client: Any, clock: FakeClock) -> KubeletAuth:
    return KubeletAuth(api_client, kubeapi.api.pki.ca_file, NODE, clock=clock)


@pytest.fixture
async def kubelet(kubeapi: RunningKubeAPI, kubelet_auth: KubeletAuth) -> AsyncIterator[KubeletAPI]:
    provider = FakeProvider(pending=0.0, run=float("inf"))
    web = pod("web", annotations={"test.vnode.dev/logs": "hello\nbye"})
    await provider.create_pod(web)
    settings = KubeletAPISettings("127.0.0.1", 0, client_ca_file=kubeapi.api.pki.ca_file)
    api = KubeletAPI(settings, provider, Pods(web), kubelet_auth, NODE)
    async for running in started(api):
        yield running


def _cert(kubeapi: RunningKubeAPI, name: str) -> ssl.SSLContext:
    pki = kubeapi.state_dir / "pki"
    return client_ssl(pki / f"{name}.crt", pki / f"{name}.key")


async def _get(
    kubelet: KubeletAPI,
    path: str,
    *,
    ctx: ssl.SSLContext | None = None,
    token: str | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        session(ctx) as s,
        s.request(method, kubelet.url + path, headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.text()


def _captured(label: str) -> dict[str, Any]:
    exchanges = json.loads(KUBELET_AUTH.read_text())["exchanges"]
    response: dict[str, Any] = next(e for e in exchanges if e["label"] == label)["response"]
    return response


@pytest.mark.parametrize(
    ("path", "label", "bearer"),
    [
        ("/pods", "anonymous-disabled.10250.pods", None),
        ("/healthz", "anonymous-disabled.10250.healthz", None),
        ("/containerLogs/default/x/y", "anonymous-disabled.10250.containerLogs", None),
        ("/pods", "anonymous-disabled.10250.pods.bearer-token", "abc"),
    ],
)
async def test_anonymous_and_bad_tokens_get_the_kubelets_401(
    kubelet: KubeletAPI, path: str, label: str, bearer: str | None
) -> None:
    want = _captured(label)
    status, headers, body = await _get(kubelet, path, token=bearer)
    assert (status, body) == (want["status"], want["body"])
    for key in ("Content-Type", "Content-Length"):
        assert headers[key] == want["headers"][key]


async def test_client_certificate_from_another_ca_is_refused_at_the_handshake(
    kubelet: KubeletAPI, kubelet_auth: KubeletAuth, tmp_path: Path
) -> None:
    stranger = CertificateAuthority.create("someone-else")
    cert, key = stranger.issue(
        "kube-apiserver-kubelet-client", organizations=["system:masters"], client=True
    ).write(tmp_path, "stranger")
    # The real kubelet verifies in its authenticator and answers 401; Python's TLS verifies
    # during the handshake, so the connection is dropped (with TLS 1.3 the client sees it
    # as the server disconnecting once it sends its request).
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(kubelet, "/pods", ctx=client_ssl(cert, key))
    # Nothing got as far as a review: TLS refused the connection itself.
    assert (kubelet_auth.token_reviews, kubelet_auth.access_reviews) == (0, 0)


async def test_api_servers_client_certificate_reads_logs(
    kubeapi: RunningKubeAPI, kubelet: KubeletAPI, kubelet_auth: KubeletAuth
) -> None:
    ctx = _cert(kubeapi, "kubelet-client")
    status, _, body = await _get(kubelet, "/containerLogs/default/web/main", ctx=ctx)
    assert (status, body) == (200, "hello\nbye\n")
    status, _, body = await _get(kubelet, "/pods", ctx=ctx)
    assert status == 200
    assert json.loads(body)["items"][0]["metadata"]["name"] == "web"
    assert kubelet_auth.token_reviews == 0  # a certificate needs no review


@pytest.mark.parametrize(
    ("method", "path", "asked"),
    [
        ("GET", "/pods", "verb=get, resource=nodes, subresource(s)=[pods proxy]"),
        ("GET", "/healthz", "verb=get, resource=nodes, subresource(s)=[healthz proxy]"),
        (
            "GET",
            "/containerLogs/default/web/main",
            "verb=get, resource=nodes, subresource(s)=[proxy]",
        ),
        ("GET", "/stats/summary", "verb=get, resource=nodes, subresource(s)=[stats]"),
        ("GET", "/metrics/resource", "verb=get, resource=nodes, subresource(s)=[metrics]"),
        ("POST", "/exec/default/web/main", "verb=create, resource=nodes, subresource(s)=[proxy]"),
    ],
)
async def test_certificate_user_without_rights_is_forbidden(
    kubeapi: RunningKubeAPI, kubelet: KubeletAPI, method: str, path: str, asked: str
) -> None:
    kubeapi.api.pki.issue_client("nobody", "nobody")
    status, headers, body = await _get(kubelet, path, ctx=_cert(kubeapi, "nobody"), method=method)
    assert (status, body) == (403, f"Forbidden (user=nobody, {asked})\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_token_without_rbac_is_forbidden(kubelet: KubeletAPI, token: str) -> None:
    status, _, body = await _get(kubelet, "/containerLogs/default/web/main", token=token)
    assert status == 403
    assert body == f"Forbidden (user={SA_USER}, verb=get, resource=nodes, subresource(s)=[proxy])\n"


async def test_token_with_nodes_proxy_reads_logs_and_reviews_are_cached(
    kubeapi: RunningKubeAPI, kubelet: KubeletAPI, kubelet_auth: KubeletAuth, token: str
) -> None:
    _grant(kubeapi, "proxy-reader", "nodes/proxy")
    for _ in range(3):
        status, _, body = await _get(kubelet, "/containerLogs/default/web/main", token=token)
        assert (status, body) == (200, "hello\nbye\n")
    assert kubelet_auth.token_reviews == 1  # the TokenReview is cached ...
    assert kubelet_auth.access_reviews == 1  # ... and so is the allowed decision
    # /pods asks nodes/pods first (denied), then nodes/proxy (allowed).
    status, _, _ = await _get(kubelet, "/pods", token=token)
    assert status == 200
    assert kubelet_auth.access_reviews == 2


async def test_fine_grained_grant_alone_opens_only_its_path(
    kubeapi: RunningKubeAPI, kubelet: KubeletAPI, kubelet_auth: KubeletAuth, token: str
) -> None:
    _grant(kubeapi, "pods-reader", "nodes/pods")
    status, _, _ = await _get(kubelet, "/pods", token=token)
    assert status == 200
    assert kubelet_auth.access_reviews == 1  # allowed at the first question
    status, _, _ = await _get(kubelet, "/containerLogs/default/web/main", token=token)
    assert status == 403


async def test_a_denial_is_remembered_for_30_seconds_only(
    kubeapi: RunningKubeAPI,
    kubelet: KubeletAPI,
    kubelet_auth: KubeletAuth,
    token: str,
    clock: FakeClock,
) -> None:
    path = "/containerLogs/default/web/main"
    assert (await _get(kubelet, path, token=token))[0] == 403
    _grant(kubeapi, "proxy-reader", "nodes/proxy")
    assert (await _get(kubelet, path, token=token))[0] == 403  # still the cached denial
    await clock.advance(AUTHZ_DENIED_TTL + 1)
    assert (await _get(kubelet, path, token=token))[0] == 200
    # An allowed decision lasts five minutes, even after the grant is gone.
    kubeapi.api.auth.bindings = [b for b in kubeapi.api.auth.bindings if b.name != "proxy-reader"]
    assert (await _get(kubelet, path, token=token))[0] == 200
    await clock.advance(AUTHZ_ALLOWED_TTL + 1)
    assert (await _get(kubelet, path, token=token))[0] == 403


def _unreachable_kubeconfig(kubeapi: RunningKubeAPI, tmp_path: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load(kubeapi.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "unreachable.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_unreachable_api_server_means_401_for_tokens_and_500_for_reviews(
    kubeapi: RunningKubeAPI, token: str, tmp_path: Path
) -> None:
    client = await kube.connect(KubeSettings(kubeconfig=_unreachable_kubeconfig(kubeapi, tmp_path)))
    try:
        kubelet_auth = KubeletAuth(client, kubeapi.api.pki.ca_file, NODE)
        settings = KubeletAPISettings("127.0.0.1", 0, client_ca_file=kubeapi.api.pki.ca_file)
        api = KubeletAPI(settings, FakeProvider(), Pods(), kubelet_auth, NODE)
        async for kubelet in started(api):
            status, _, body = await _get(kubelet, "/pods", token=token)
            assert (status, body) == (401, "Unauthorized")
            status, _, body = await _get(kubelet, "/pods", ctx=_cert(kubeapi, "admin"))
            assert status == 500
            assert body == (
                "Authorization error (user=admin, verb=get, resource=nodes, subresource=pods)"
            )
    finally:
        await client.close()
