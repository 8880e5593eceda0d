"""API discovery: ``/version``, ``/api``, ``/apis`` and the per-group documents.

kubectl and client-go learn which kinds exist, their plural names, scopes, short names
and verbs from these documents before they send anything else, so they are derived
from the one resource table (``resources.RESOURCES``) and shaped byte-for-byte like a
v1.33 API server's answers (``shared/reference/kube-apiserver/01-discovery``):

- ``/api`` and ``/apis`` answer the aggregated ``apidiscovery.k8s.io/v2`` document when
  the Accept header asks for it (what kubectl does), with ``Cache-Control: public``, an
  ``Etag`` and ``Vary: Accept``, and 304 for a matching ``If-None-Match``; otherwise the
  legacy ``APIVersions`` / ``APIGroupList``. v2beta1 is no longer served.
- ``/api/v1`` and ``/apis/<group>/<version>`` answer an ``APIResourceList`` listing the
  subresources as ``<plural>/<sub>`` entries, as clients that skip aggregation expect.
- ``/healthz``, ``/livez`` and ``/readyz`` answer ``ok`` for probes, anonymous included.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from . import resources
from .resources import Resource
from .status import StatusError

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# The order a v1.33 server lists its groups in (by group priority); groups not named
# here follow in table order.
_GROUP_ORDER = (
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
)

_STATUS_VERBS = ("get", "patch", "update")
_PROXY_VERBS = ("create", "delete", "get", "patch", "update")


@dataclass(frozen=True)
class _Sub:
    """What discovery says about one subresource: its verbs and the kind it answers."""

    verbs: tuple[str, ...]
    kind: str | None = None  # None: the parent's kind
    group: str = ""  # set only when the kind lives in another group
    version: str = ""


# (parent plural or "*", subresource) -> description, as the real server lists them.
_SUBRESOURCES: dict[tuple[str, str], _Sub] = {
    ("*", "status"): _Sub(_STATUS_VERBS),
    ("*", "scale"): _Sub(_STATUS_VERBS, "Scale", "autoscaling", "v1"),
    ("namespaces", "finalize"): _Sub(("update",)),
    ("nodes", "proxy"): _Sub(_PROXY_VERBS, "NodeProxyOptions"),
    ("pods", "proxy"): _Sub(_PROXY_VERBS, "PodProxyOptions"),
    ("pods", "binding"): _Sub(("create",), "Binding"),
    ("pods", "eviction"): _Sub(("create",), "Eviction", "policy", "v1"),
    ("pods", "log"): _Sub(("get",)),
    ("pods", "attach"): _Sub(("create", "get"), "PodAttachOptions"),
    ("pods", "exec"): _Sub(("create", "get"), "PodExecOptions"),
    ("pods", "portforward"): _Sub(("create", "get"), "PodPortForwardOptions"),
    ("pods", "ephemeralcontainers"): _Sub(_STATUS_VERBS),
    ("pods", "resize"): _Sub(_STATUS_VERBS),
    ("serviceaccounts", "token"): _Sub(("create",), "TokenRequest", "authentication.k8s.io", "v1"),
}


class _Server(Protocol):
    """The part of ``server.KubeAPI`` discovery reads (kept structural: no import cycle)."""

    url: str


def _sub_info(res: Resource, sub: str) -> _Sub:
    info = _SUBRESOURCES.get((res.plural, sub)) or _SUBRESOURCES.get(("*", sub))
    if info is None:
        raise KeyError(f"no discovery description for {res.plural}/{sub}")
    return info


def storage_version_hash(res: Resource) -> str:
    """The opaque hash clients use to notice a storage version change.

    Computed like the real server (first 8 bytes of SHA-256 over group/version/kind of
    the storage version), so kinds that share storage share the hash.
    """
    group = res.storage_key[0] if res.storage else res.group
    gvk = f"{group}/{res.version}/{res.kind}"
    return base64.b64encode(hashlib.sha256(gvk.encode()).digest()[:8]).decode()


def _ordered_groups() -> list[tuple[str, list[str]]]:
    named = resources.groups()
    core = [("", named.pop(""))] if "" in named else []
    rank = {g: i for i, g in enumerate(_GROUP_ORDER)}
    rest = sorted(named.items(), key=lambda kv: rank.get(kv[0], len(rank)))
    return core + rest


def _resources_in(group: str, version: str) -> list[Resource]:
    found = [r for r in resources.RESOURCES if r.group == group and r.version == version]
    return sorted(found, key=lambda r: r.plural)


# --- documents -------------------------------------------------------------------------


def version_info() -> dict[str, str]:
    """``/version``: what kubectl reads to pick its behaviour (it reports a 1.33 server)."""
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.13-vnode-sandbox",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": _STARTED,
        "goVersion": f"python{platform.python_version()}",
        "compiler": sys.implementation.name,
        "platform": f"{sys.platform}/{machine}",
    }


_STARTED = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_versions(server_address: str) -> dict[str, Any]:
    """Legacy ``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": resources.groups().get("", []),
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in resources.groups()[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> dict[str, Any]:
    """Legacy ``/apis``: every named group with its versions, preferred first."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [api_group(g) for g, _ in _ordered_groups() if g],
    }


def api_resource_list(group: str, version: str) -> dict[str, Any]:
    """``/api/v1`` or ``/apis/<g>/<v>``: kinds and their subresources, sorted by name."""
    entries: list[dict[str, Any]] = []
    for res in _resources_in(group, version):
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": sorted(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        if res.stored:
            entry["storageVersionHash"] = storage_version_hash(res)
        entries.append(entry)
        for sub in res.subresources:
            info = _sub_info(res, sub)
            sub_entry: dict[str, Any] = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": res.namespaced,
            }
            if info.group:
                sub_entry["group"] = info.group
                sub_entry["version"] = info.version
            sub_entry["kind"] = info.kind or res.kind
            sub_entry["verbs"] = list(info.verbs)
            entries.append(sub_entry)
    entries.sort(key=lambda e: e["name"])
    out: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        out["apiVersion"] = "v1"  # the core list omits it; named groups carry it
    out["groupVersion"] = f"{group}/{version}" if group else version
    out["resources"] = entries
    return out


def _response_kind(kind: str, group: str = "", version: str = "") -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _discovery_resource(res: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": res.plural,
        "responseKind": _response_kind(res.kind),
        "scope": "Namespaced" if res.namespaced else "Cluster",
        "singularResource": res.singular,
        "verbs": sorted(res.verbs),
    }
    if res.short_names:
        entry["shortNames"] = list(res.short_names)
    if res.categories:
        entry["categories"] = list(res.categories)
    subs = []
    for sub in sorted(res.subresources):
        info = _sub_info(res, sub)
        subs.append(
            {
                "subresource": sub,
                "responseKind": _response_kind(info.kind or res.kind, info.group, info.version),
                "verbs": list(info.verbs),
            }
        )
    if subs:
        entry["subresources"] = subs
    return entry


def _discovery_group(group: str, versions: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": group} if group else {}
    metadata["creationTimestamp"] = None
    return {
        "metadata": metadata,
        "versions": [
            {
                "version": v,
                "resources": [_discovery_resource(r) for r in _resources_in(group, v)],
                "freshness": "Current",
            }
            for v in versions
        ],
    }


def aggregated(legacy_core: bool) -> dict[str, Any]:
    """The ``APIGroupDiscoveryList`` for ``/api`` (core only) or ``/apis`` (named groups)."""
    items = [_discovery_group(g, vs) for g, vs in _ordered_groups() if (g == "") == legacy_core]
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


# --- content negotiation ---------------------------------------------------------------


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for clause in accept.split(","):
        parts = [p.strip() for p in clause.split(";")]
        if not parts[0]:
            continue
        params = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip()
        out.append((parts[0].lower(), params))
    return out


def negotiate(accept: str) -> str | None:
    """Pick ``"aggregated"`` or ``"legacy"`` for a discovery Accept header, in the client's order.

    A media range is honoured when it is JSON (or a wildcard); ``as=APIGroupDiscoveryList``
    is served only for ``g=apidiscovery.k8s.io;v=v2``; any other ``as=`` (v2beta1,
    Table, ...) is skipped. ``None``: nothing acceptable (406).
    """
    if not accept.strip():
        return "legacy"
    for media, params in _media_ranges(accept):
        if media not in ("application/json", "application/*", "*/*"):
            continue
        target = params.get("as")
        if target is None:
            return "legacy"
        if (
            target == "APIGroupDiscoveryList"
            and params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") == "v2"
        ):
            return "aggregated"
    return None


# --- HTTP ------------------------------------------------------------------------------


def encode(doc: Any) -> bytes:
    """Compact JSON ending in one newline, as the Go encoder writes it."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha512(body).hexdigest().upper() + '"'


def json_response(doc: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=encode(doc), status=status, content_type="application/json")


def _not_acceptable() -> StatusError:
    return StatusError(
        406,
        "NotAcceptable",
        "406: Not Acceptable\n\nAvailable representations: application/json, "
        "application/yaml, application/vnd.kubernetes.protobuf",
        details={},
    )


def _page_not_found() -> web.Response:
    return web.Response(
        status=404,
        text="404 page not found\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


class _Discovery:
    """The request handlers; the aggregated bodies and their Etags are built once."""

    def __init__(self, api: _Server) -> None:
        self._api = api
        self._aggregated: dict[bool, tuple[bytes, str]] = {}

    def _server_address(self, request: web.Request) -> str:
        parts = urlsplit(getattr(self._api, "url", "") or "")
        if parts.hostname and parts.port:
            return f"{parts.hostname}:{parts.port}"
        return request.host

    def _aggregated_body(self, core: bool) -> tuple[bytes, str]:
        cached = self._aggregated.get(core)
        if cached is None:
            body = encode(aggregated(core))
            cached = self._aggregated[core] = (body, etag_of(body))
        return cached

    def _root(self, request: web.Request, core: bool) -> web.Response:
        choice = negotiate(request.headers.get("Accept", ""))
        if choice is None:
            err = _not_acceptable()
            return json_response(err.body(), status=err.code)
        if choice == "legacy":
            if core:
                return json_response(api_versions(self._server_address(request)))
            return json_response(api_group_list())
        body, etag = self._aggregated_body(core)
        headers = {"Cache-Control": "public", "Etag": etag, "Vary": "Accept"}
        if etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": AGGREGATED_CONTENT_TYPE})

    async def core_root(self, request: web.Request) -> web.Response:
        return self._root(request, core=True)

    async def groups_root(self, request: web.Request) -> web.Response:
        return self._root(request, core=False)

    async def core_version(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        if version not in resources.groups().get("", []):
            return _page_not_found()
        return json_response(api_resource_list("", version))

    async def group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        if not group or group not in resources.groups():
            return _page_not_found()
        return json_response({"kind": "APIGroup", "apiVersion": "v1", **api_group(group)})

    async def group_version(self, request: web.Request) -> web.Response:
        group, version = request.match_info["group"], request.match_info["version"]
        if not group or version not in resources.groups().get(group, []):
            return _page_not_found()
        return json_response(api_resource_list(group, version))

    async def version(self, request: web.Request) -> web.Response:
        return json_response(version_info())

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def routes(api: _Server) -> list[web.RouteDef]:
    """The discovery and health routes, to be added to the server's application."""
    h = _Discovery(api)
    return [
        web.get("/version", h.version, allow_head=False),
        web.get("/version/", h.version, allow_head=False),
        web.get("/healthz", h.health, allow_head=False),
        web.get("/livez", h.health, allow_head=False),
        web.get("/readyz", h.health, allow_head=False),
        web.get("/api", h.core_root, allow_head=False),
        web.get("/api/", h.core_root, allow_head=False),
        web.get("/apis", h.groups_root, allow_head=False),
        web.get("/apis/", h.groups_root, allow_head=False),
        web.get("/api/{version}", h.core_version, allow_head=False),
        web.get("/apis/{group}", h.group, allow_head=False),
        web.get("/apis/{group}/{version}", h.group_version, allow_head=False),
    ]
