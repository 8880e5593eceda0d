"""Discovery documents and their HTTP negotiation, checked against a v1.33 server's answers.

The expected values are the facts recorded from a real API server (reference captures
``01-discovery``): entry shapes, subresource kinds and verbs, storage version hashes,
the aggregated-discovery headers and the Accept rules.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vnode.sandbox.kubeapi import discovery, resources

KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


class _FakeServer:
    url = "https://127.0.0.1:6443"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    app.add_routes(discovery.routes(_FakeServer()))
    async with TestClient(TestServer(app)) as c:
        yield c


def _entry(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["resources"] if e["name"] == name)


def test_core_resource_list_matches_the_real_server() -> None:
    doc = discovery.api_resource_list("", "v1")
    assert list(doc) == ["kind", "groupVersion", "resources"]  # no apiVersion for core
    assert _entry(doc, "pods") == {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "shortNames": ["po"],
        "categories": ["all"],
        "storageVersionHash": "xPOwRZ+Yhw8=",
    }
    assert _entry(doc, "pods/eviction") == {
        "name": "pods/eviction",
        "singularName": "",
        "namespaced": True,
        "group": "policy",
        "version": "v1",
        "kind": "Eviction",
        "verbs": ["create"],
    }
    assert _entry(doc, "pods/log")["kind"] == "Pod"
    assert _entry(doc, "pods/binding")["kind"] == "Binding"
    assert _entry(doc, "nodes/proxy")["kind"] == "NodeProxyOptions"
    assert _entry(doc, "namespaces/finalize")["verbs"] == ["update"]
    assert _entry(doc, "namespaces")["verbs"] == [
        "create",
        "delete",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    token = _entry(doc, "serviceaccounts/token")
    assert (token["group"], token["version"], token["kind"]) == (
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
    )
    names = [e["name"] for e in doc["resources"]]
    assert names == sorted(names)
    assert {"pods/status", "nodes/status", "namespaces/status"} <= set(names)


def test_group_resource_lists_match_the_real_server() -> None:
    leases = discovery.api_resource_list("coordination.k8s.io", "v1")
    assert leases == {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "coordination.k8s.io/v1",
        "resources": [
            {
                "name": "leases",
                "singularName": "lease",
                "namespaced": True,
                "kind": "Lease",
                "verbs": [
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ],
                "storageVersionHash": "gqkMMb/YqFM=",
            }
        ],
    }
    jobs = discovery.api_resource_list("batch", "v1")
    assert _entry(jobs, "jobs")["storageVersionHash"] == "mudhfqk/qZY="
    assert _entry(jobs, "jobs/status")["verbs"] == ["get", "patch", "update"]
    # events.k8s.io Events are stored as core Events: same hash as core.
    events = discovery.api_resource_list("events.k8s.io", "v1")
    assert _entry(events, "events")["storageVersionHash"] == "r2yiGXH7wu8="
    # Create-only review kinds carry no storage hash.
    reviews = discovery.api_resource_list("authentication.k8s.io", "v1")
    assert "storageVersionHash" not in _entry(reviews, "tokenreviews")


def test_aggregated_entries_match_the_real_server() -> None:
    core = discovery.aggregated(legacy_core=True)
    assert core["items"][0]["metadata"] == {"creationTimestamp": None}
    version = core["items"][0]["versions"][0]
    assert version["freshness"] == "Current"
    nodes = next(r for r in version["resources"] if r["resource"] == "nodes")
    assert nodes == {
        "resource": "nodes",
        "responseKind": {"group": "", "version": "", "kind": "Node"},
        "scope": "Cluster",
        "singularResource": "node",
        "verbs": [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "shortNames": ["no"],
        "subresources": [
            {
                "subresource": "proxy",
                "responseKind": {"group": "", "version": "", "kind": "NodeProxyOptions"},
                "verbs": ["create", "delete", "get", "patch", "update"],
            },
            {
                "subresource": "status",
                "responseKind": {"group": "", "version": "", "kind": "Node"},
                "verbs": ["get", "patch", "update"],
            },
        ],
    }
    groups = discovery.aggregated(legacy_core=False)
    names = [item["metadata"]["name"] for item in groups["items"]]
    # The real server's priority order, restricted to the groups served here.
    assert names == [
        "events.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "batch",
        "coordination.k8s.io",
    ]


def test_every_resource_is_discoverable() -> None:
    listed = set()
    for group, versions in resources.groups().items():
        for version in versions:
            for entry in discovery.api_resource_list(group, version)["resources"]:
                listed.add((group, version, entry["name"]))
    for res in resources.RESOURCES:
        assert (res.group, res.version, res.plural) in listed
        for sub in res.subresources:
            assert (res.group, res.version, f"{res.plural}/{sub}") in listed


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (KUBECTL_ACCEPT, "aggregated"),
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "aggregated"),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
            "application/json",
            "legacy",
        ),
        ("application/json", "legacy"),
        ("*/*", "legacy"),
        ("", "legacy"),
        ("application/xml", None),
    ],
)
def test_negotiation(accept: str, expected: str | None) -> None:
    assert discovery.negotiate(accept) == expected


async def test_aggregated_headers_and_if_none_match(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/apis", headers={"Accept": KUBECTL_ACCEPT})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == discovery.AGGREGATED_CONTENT_TYPE
    assert resp.headers["Cache-Control"] == "public"
    assert resp.headers["Vary"] == "Accept"
    body = await resp.read()
    assert body.endswith(b"}\n")
    etag = resp.headers["Etag"]
    assert etag == discovery.etag_of(body)
    assert json.loads(body)["kind"] == "APIGroupDiscoveryList"

    again = await client.get("/apis", headers={"Accept": KUBECTL_ACCEPT, "If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["Etag"] == etag

    other = await client.get("/api", headers={"Accept": KUBECTL_ACCEPT, "If-None-Match": etag})
    assert other.status == 200  # /api has its own body and Etag
    assert other.headers["Etag"] != etag


async def test_legacy_roots(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api", headers={"Accept": "application/json"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert "Etag" not in resp.headers
    assert await resp.json() == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
        ],
    }
    beta_only = await client.get(
        "/apis",
        headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
            "application/json"
        },
    )
    doc = await beta_only.json()
    assert doc["kind"] == "APIGroupList"
    assert doc["groups"][0]["preferredVersion"] == {
        "groupVersion": "events.k8s.io/v1",
        "version": "v1",
    }
    xml = await client.get("/apis", headers={"Accept": "application/xml"})
    assert xml.status == 406
    assert (await xml.json())["reason"] == "NotAcceptable"


async def test_group_documents_and_unknown_paths(client: TestClient[Any, Any]) -> None:
    group = await client.get("/apis/coordination.k8s.io")
    assert await group.json() == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "coordination.k8s.io",
        "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"},
    }
    batch = await client.get("/apis/batch/v1")
    assert (await batch.json())["groupVersion"] == "batch/v1"
    core = await client.get("/api/v1")
    assert (await core.json())["groupVersion"] == "v1"
    for path in ("/apis/nosuch.example.com", "/apis/batch/v9", "/api/v2"):
        missing = await client.get(path)
        assert missing.status == 404
        assert await missing.text() == "404 page not found\n"


async def test_version_and_health(client: TestClient[Any, Any]) -> None:
    version = await (await client.get("/version")).json()
    assert (version["major"], version["minor"]) == ("1", "33")
    assert version["gitVersion"].startswith("v1.33.")
    assert set(version) == {
        "major",
        "minor",
        "emulationMajor",
        "emulationMinor",
        "minCompatibilityMajor",
        "minCompatibilityMinor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    }
    for path in ("/healthz", "/livez", "/readyz"):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert await resp.text() == "ok"
