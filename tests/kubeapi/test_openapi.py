"""OpenAPI documents: what kubectl reads from them, and the real server's caching headers.

kubectl decides that the server validates fields itself when the group-version's v3
document has a PATCH operation tagged with the kind's GVK that takes a
``fieldValidation`` query parameter; ``apply`` reads the patch merge keys and
``explain`` follows the ``$ref`` chain. These tests check those properties for every
served kind rather than comparing bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from vnode.sandbox.kubeapi import openapi, resources


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    app.add_routes(openapi.routes(object()))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture(scope="module")
def v3() -> dict[str, dict[str, Any]]:
    return {key: json.loads(blob.body) for key, blob in openapi.Documents.v3().items()}


def _gv_key(res: resources.Resource) -> str:
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _schema_for(doc: dict[str, Any], res: resources.Resource) -> dict[str, Any]:
    gvk = {"group": res.group, "version": res.version, "kind": res.kind}
    found = [
        s
        for s in doc["components"]["schemas"].values()
        if gvk in s.get("x-kubernetes-group-version-kind", [])
    ]
    assert len(found) == 1, res
    return found[0]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` / ``allOf`` the way kubectl explain does."""
    while True:
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "allOf" in schema:
            schema = schema["allOf"][0]
        else:
            return schema


def test_every_served_kind_supports_server_side_field_validation(
    v3: dict[str, dict[str, Any]],
) -> None:
    for res in resources.RESOURCES:
        doc = v3[_gv_key(res)]
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        patches = [
            item["patch"]
            for item in doc["paths"].values()
            if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk
        ]
        if "patch" not in res.verbs:
            assert not patches, res
            continue
        assert patches, res
        for op in patches:
            query = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= query


def test_every_served_kind_has_a_schema(v3: dict[str, dict[str, Any]]) -> None:
    for res in resources.RESOURCES:
        schema = _schema_for(v3[_gv_key(res)], res)
        assert {"apiVersion", "kind", "metadata"} <= set(schema["properties"])


def test_every_reference_resolves_within_its_document(v3: dict[str, dict[str, Any]]) -> None:
    for doc in v3.values():
        schemas = doc["components"]["schemas"]
        for ref in _refs(doc):
            assert ref.startswith("#/components/schemas/")
            assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_pod_schema_carries_the_upstream_patch_semantics(v3: dict[str, dict[str, Any]]) -> None:
    doc = v3["api/v1"]
    schemas = doc["components"]["schemas"]
    spec = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert spec["containers"]["x-kubernetes-patch-merge-key"] == "name"
    assert spec["containers"]["x-kubernetes-patch-strategy"] == "merge"
    assert spec["containers"]["x-kubernetes-list-map-keys"] == ["name"]
    assert spec["volumes"]["x-kubernetes-patch-strategy"] == "merge,retainKeys"
    assert spec["tolerations"]["x-kubernetes-list-type"] == "atomic"
    assert "x-kubernetes-patch-merge-key" not in spec["tolerations"]
    container = schemas["io.k8s.api.core.v1.Container"]
    assert container["required"] == ["name"]
    props = container["properties"]
    assert props["env"]["x-kubernetes-patch-merge-key"] == "name"
    assert props["volumeMounts"]["x-kubernetes-patch-merge-key"] == "mountPath"
    assert props["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    status = schemas["io.k8s.api.core.v1.PodStatus"]["properties"]
    assert status["conditions"]["x-kubernetes-patch-merge-key"] == "type"
    meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["ownerReferences"]["x-kubernetes-patch-merge-key"] == "uid"
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    assert _resolve(doc, meta["creationTimestamp"])["format"] == "date-time"


def test_go_only_types_are_named_like_upstream(v3: dict[str, dict[str, Any]]) -> None:
    schemas = v3["api/v1"]["components"]["schemas"]
    limits = schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["$ref"].endswith("resource.Quantity")
    port = schemas["io.k8s.api.core.v1.HTTPGetAction"]["properties"]["port"]
    assert _resolve(v3["api/v1"], port)["x-kubernetes-int-or-string"] is True
    lease = v3["apis/coordination.k8s.io/v1"]["components"]["schemas"]
    renew = lease["io.k8s.api.coordination.v1.LeaseSpec"]["properties"]["renewTime"]
    assert renew["allOf"][0]["$ref"].endswith("meta.v1.MicroTime")
    # A Job's pod template is the core type, not a batch one.
    batch = v3["apis/batch/v1"]["components"]["schemas"]
    assert "io.k8s.api.core.v1.PodTemplateSpec" in batch
    # Both Event kinds exist, each in its own group's document.
    assert "io.k8s.api.core.v1.Event" in v3["api/v1"]["components"]["schemas"]
    events = v3["apis/events.k8s.io/v1"]["components"]["schemas"]
    assert "note" in events["io.k8s.api.events.v1.Event"]["properties"]


def test_subresource_kinds_of_other_groups(v3: dict[str, dict[str, Any]]) -> None:
    paths = v3["api/v1"]["paths"]
    token = paths["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"]
    assert token["x-kubernetes-group-version-kind"] == {
        "group": "authentication.k8s.io",
        "version": "v1",
        "kind": "TokenRequest",
    }
    eviction = paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
    assert eviction["x-kubernetes-group-version-kind"]["group"] == "policy"


async def test_v3_index_and_hashed_documents(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/openapi/v3")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    index = json.loads(await resp.text())
    expected = {"api/v1"} | {
        f"apis/{g}/{v}" for g, vs in resources.groups().items() if g for v in vs
    }
    assert set(index["paths"]) == expected

    url = index["paths"]["api/v1"]["serverRelativeURL"]
    digest = re.fullmatch(r"/openapi/v3/api/v1\?hash=([0-9A-F]{128})", url)
    assert digest is not None
    doc = await client.get(url, headers={"Accept": "application/json"})
    assert doc.status == 200
    body = await doc.read()
    assert hashlib.sha512(body).hexdigest().upper() == digest.group(1)
    assert doc.headers["Content-Type"] == "application/json"
    assert doc.headers["Cache-Control"] == "public, immutable"
    assert doc.headers["Etag"] == f'"{digest.group(1)}"'
    assert "Expires" in doc.headers
    assert json.loads(body)["openapi"] == "3.0.0"

    cached = await client.get(url, headers={"If-None-Match": doc.headers["Etag"]})
    assert cached.status == 304

    unhashed = await client.get("/openapi/v3/api/v1")
    assert unhashed.headers["Cache-Control"] == "no-cache, private"
    assert unhashed.headers["Etag"] == doc.headers["Etag"]

    stale = await client.get("/openapi/v3/api/v1?hash=00", allow_redirects=False)
    assert stale.status == 301
    assert stale.headers["Location"] == url

    missing = await client.get("/openapi/v3/apis/apps/v1")
    assert missing.status == 404


async def test_v2_document(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/openapi/v2", headers={"Accept": "application/json"})
    assert resp.status == 200
    doc = await resp.json()
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    for ref in _refs(doc):
        assert ref.removeprefix("#/definitions/") in definitions, ref
    pod = definitions["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert (await client.get("/openapi/v2", headers={"Accept": "application/xml"})).status == 406
