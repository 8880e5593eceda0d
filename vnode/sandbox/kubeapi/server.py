"""The aiohttp application: TLS, routing, the CRUD and watch handlers, and ``KubeAPI``.

This is the HTTP face of the emulator. It turns requests into store calls and store
answers into the exact bytes the real kube-apiserver sends (headers, Status bodies,
content negotiation, watch framing), and it owns the lifecycle: PKI and kubeconfig on
start, the listening socket, and the in-process controllers as named, supervised tasks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from vnode.clock import Clock, SystemClock
from vnode.sandbox.kubeapi import (
    admission,
    auth,
    binding,
    discovery,
    jobs,
    logproxy,
    nodelifecycle,
    openapi,
    pki,
    resources,
    scheduler,
    tables,
)
from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.status import StatusError, bad_request, method_not_allowed
from vnode.sandbox.kubeapi.store import (
    DEFAULT_ORPHAN,
    PROPAGATION_POLICIES,
    Obj,
    Store,
    Watch,
)

log = logging.getLogger(__name__)

SubresourceHandler = Callable[
    ["KubeAPI", web.Request, Resource, str, str, auth.User], Awaitable[web.StreamResponse]
]
# (plural, subresource) -> handler; (plural, "") for create-only kinds.
SUBRESOURCES: dict[tuple[str, str], SubresourceHandler] = {
    ("pods", "log"): logproxy.handle_pod_log,
    ("pods", "binding"): binding.handle_binding,
    ("pods", "eviction"): binding.handle_eviction,
    ("serviceaccounts", "token"): auth.handle_token_request,
    ("tokenreviews", ""): auth.handle_token_review,
    ("subjectaccessreviews", ""): auth.handle_subject_access_review,
    ("selfsubjectaccessreviews", ""): auth.handle_self_subject_access_review,
    ("selfsubjectreviews", ""): auth.handle_self_subject_review,
    ("localsubjectaccessreviews", ""): auth.handle_local_subject_access_review,
    ("selfsubjectrulesreviews", ""): auth.handle_self_subject_rules_review,
}

# The in-process controllers KubeAPI.start() runs (each until cancelled).
CONTROLLERS: dict[str, Callable[[Any], Awaitable[None]]] = {
    "scheduler": scheduler.run,
    "jobs": jobs.run,
    "nodelifecycle": nodelifecycle.run,
}

# Where the authenticated user of a request is kept (handlers read it).
USER_KEY: web.RequestKey[Any] = web.RequestKey("user", object)

# Fixed per-server identities the real server's API Priority and Fairness reports.
_FLOWSCHEMA_UID = str(uuid.uuid4())
_PRIORITY_LEVEL_UID = str(uuid.uuid4())

_JSON = "application/json"
_NOT_ACCEPTABLE = (
    "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, "
    "application/vnd.kubernetes.protobuf"
)


def encode(doc: Any) -> bytes:
    """Compact JSON ending in one newline, as the Go encoder writes it."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def json_response(
    doc: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    resp = web.Response(body=encode(doc), status=status, content_type=_JSON)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def status_response(err: StatusError) -> web.Response:
    return json_response(err.body(), err.code, err.headers)


def page_not_found() -> web.Response:
    return web.Response(
        status=404,
        text="404 page not found\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _not_found_resource() -> StatusError:
    return StatusError(
        404, "NotFound", "the server could not find the requested resource", details={}
    )


# --------------------------------------------------------------- negotiation
def _media_types(accept: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        params = {}
        for b in bits[1:]:
            if "=" in b:
                k, v = b.split("=", 1)
                params[k.strip()] = v.strip()
        out.append((bits[0].lower(), params))
    return out


def negotiate(accept: str) -> tuple[str, str, str]:
    """(format, as, meta version) for an Accept header.

    format is json|yaml; as is ''|Table|PartialObjectMetadata[List]; the meta.k8s.io version
    (v1 or v1beta1) is what a Table or partial-metadata answer is labelled with.
    """
    if not accept.strip():
        return "json", "", "v1"
    for mime, params in _media_types(accept):
        if mime in ("application/json", "*/*", "application/*", "application/yaml"):
            kind = params.get("as", "")
            if kind:
                if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
                    continue
                if kind not in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
                    continue
            fmt = "yaml" if mime == "application/yaml" else "json"
            return fmt, kind, params.get("v", "v1")
    raise StatusError(406, "NotAcceptable", _NOT_ACCEPTABLE, details={})


def _render(
    doc: Any, fmt: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    if fmt == "yaml":
        import yaml

        resp = web.Response(
            text=yaml.safe_dump(doc, sort_keys=False),
            status=status,
            content_type="application/yaml",
        )
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp
    return json_response(doc, status, headers)


# ------------------------------------------------------------------- helpers
def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None


def _bool_param(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def manager_of(request: web.Request) -> str:
    explicit = request.query.get("fieldManager")
    if explicit:
        return explicit
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0] if agent else "unknown"


def _go_quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch.isprintable() and ord(ch) < 0x7F:
        return f"'{ch}'"
    return f"'\\u{ord(ch):04x}'"


def encode_continue(rv: int, start_key: str) -> str:
    doc = {"v": "meta.k8s.io/v1", "rv": rv, "start": start_key + "\u0000"}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    def invalid(why: str) -> StatusError:
        return bad_request(f"invalid continue token: continue key is not valid: {why}")

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid("illegal base64 data at input byte 0") from None
    text = raw.decode("latin-1")
    stripped = text.lstrip()
    if stripped and stripped[0] not in '{["-0123456789tfn':
        raise invalid(
            f"invalid character {_go_quote_char(stripped[0])} looking for beginning of value"
        )
    try:
        doc = json.loads(raw)
        return int(doc["rv"]), str(doc["start"]).rstrip("\u0000")
    except (ValueError, KeyError, TypeError):
        raise invalid("unexpected end of JSON input") from None


def _json_body(raw: bytes, res: Resource) -> Any:
    from vnode.sandbox.kubeapi import patches

    err = patches.bad_json_body(res.kind, raw)
    if err is not None:
        raise err
    return json.loads(raw)


def _internal_group(res: Resource) -> str:
    return res.group.split(".")[0] if res.group and res.kind != "Event" else "core"


def _check_kind(obj: Any, res: Resource) -> None:
    if not isinstance(obj, dict):
        raise bad_request(
            f"the object provided is unrecognized (must be of type {res.kind}): couldn't get "
            f"version/kind; json parse error: json: cannot unmarshal into Go value"
        )
    kind = obj.get("kind")
    if kind and kind != res.kind:
        version = str(obj.get("apiVersion") or res.api_version).rsplit("/", 1)[-1]
        raise bad_request(
            f'{kind} in version "{version}" cannot be handled as a {res.kind}: converting '
            f"({version}.{kind}) to ({_internal_group(res)}.{res.kind}): unknown conversion"
        )


@dataclass
class _Target:
    res: Resource
    namespace: str
    name: str
    subresource: str
    watch_prefix: bool


# ------------------------------------------------------------------- KubeAPI
class KubeAPI:
    """The sandbox Kubernetes API server: construct, ``await start()``, ``await stop()``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        controllers: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.controllers = controllers
        self.store = Store(self.clock)
        self.url = ""
        self.kubeconfig_path = self.state_dir / "kubeconfig"
        self.pki: pki.ClusterPKI | None = None
        self.auth: auth.Auth | None = None
        # Watch bookmark cadence (the real server: about once a minute).
        self.bookmark_interval = 60.0
        # Seconds before a watch's timeoutSeconds deadline when a last bookmark goes out.
        self.bookmark_before_deadline = 2.0
        # A watch without timeoutSeconds ends after this long (the server's request timeout).
        self.default_watch_timeout = 1800.0
        # Node lifecycle timings (seconds), as the reference cluster's controller-manager.
        self.node_monitor_grace_period = 40.0
        self.node_startup_grace_period = 60.0
        self.node_monitor_period = 5.0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pki = await asyncio.to_thread(pki.create, self.state_dir / "pki")
        self.store.set_root_ca(self.pki.ca_file.read_text())
        self.auth = auth.Auth(self.pki, self.store, self.clock)
        app = self.make_app()
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.pki.server_ssl_context()
        )
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        self.url = f"https://{self.host}:{self.port}"
        pki.write_kubeconfig(self.kubeconfig_path, self.url, self.pki)
        if self.controllers:
            self._start_controllers()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for watch in list(self.store._watches):
            watch.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _start_controllers(self) -> None:
        for name, run in CONTROLLERS.items():
            task = asyncio.create_task(self._supervise(name, run), name=f"kubeapi-{name}")
            self._tasks.append(task)

    @property
    def _auth(self) -> auth.Auth:
        if self.auth is None:
            raise RuntimeError("KubeAPI.start() has not run")
        return self.auth

    async def _supervise(self, name: str, run: Callable[[KubeAPI], Awaitable[None]]) -> None:
        """Keep a controller running: a crash is logged and the controller restarts."""
        while True:
            try:
                await run(self)
                log.warning("controller %s returned; restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller %s crashed; restarting in 1 s", name)
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------------- the app
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.on_response_prepare.append(self._common_headers)
        app.add_routes(discovery.routes(self))
        app.add_routes(openapi.routes(self))
        app.router.add_route("*", "/api/v1/{rest:.*}", self._core)
        app.router.add_route("*", "/apis/{group}/{version}/{rest:.*}", self._grouped)
        return app

    @staticmethod
    async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.popall("Server", None)  # the real server names no software
        h.setdefault("Audit-Id", str(uuid.uuid4()))
        h.setdefault("Cache-Control", "no-cache, private")
        if request.get(USER_KEY) is None:
            return  # authentication failed: the request never reached API Priority and Fairness
        parts = request.path.rstrip("/").split("/")
        if parts[-1:] == ["log"] and parts[-3:-2] == ["pods"]:
            return  # pods/log is long-running: API Priority and Fairness never sees it
        h.setdefault("X-Kubernetes-Pf-Flowschema-Uid", _FLOWSCHEMA_UID)
        h.setdefault("X-Kubernetes-Pf-Prioritylevel-Uid", _PRIORITY_LEVEL_UID)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            request[USER_KEY] = self._auth.authenticate(request)
            if request.match_info.get("rest") is None:
                # A non-resource path (discovery, version, health, OpenAPI).
                self._auth.authorize(
                    request[USER_KEY], request.method.lower(), None, "", "", "", request.path
                )
            return await handler(request)
        except StatusError as err:
            return status_response(err)
        except web.HTTPNotFound:
            return page_not_found()
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            log.exception("internal error serving %s %s", request.method, request.path)
            return status_response(
                StatusError(500, "InternalError", f"Internal error occurred: {e}")
            )

    # ------------------------------------------------------------------ routing
    async def _core(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "", "v1", request.match_info["rest"])

    async def _grouped(self, request: web.Request) -> web.StreamResponse:
        group, version = request.match_info["group"], request.match_info["version"]
        if version not in resources.groups().get(group, []) or not group:
            return page_not_found()
        return await self._dispatch(request, group, version, request.match_info["rest"])

    def _target(self, group: str, version: str, rest: str) -> _Target | None:
        parts = [p for p in rest.split("/") if p != ""]
        watch_prefix = False
        if parts and parts[0] == "watch":
            watch_prefix = True
            parts = parts[1:]
        if not parts:
            return None
        namespace = ""
        namespace_sub = len(parts) == 3 and resources.lookup(group, version, parts[2]) is None
        if parts[0] == "namespaces" and len(parts) >= 3 and not namespace_sub:
            namespace = parts[1]
            parts = parts[2:]
        res = resources.lookup(group, version, parts[0])
        if res is None or len(parts) > 3:
            raise _not_found_resource()
        if namespace and not res.namespaced:
            raise _not_found_resource()
        name = parts[1] if len(parts) > 1 else ""
        sub = parts[2] if len(parts) > 2 else ""
        if sub and sub not in res.subresources and (res.plural, sub) not in SUBRESOURCES:
            raise _not_found_resource()
        return _Target(res, namespace, name, sub, watch_prefix)

    async def _dispatch(
        self, request: web.Request, group: str, version: str, rest: str
    ) -> web.StreamResponse:
        target = self._target(group, version, rest)
        if target is None:
            return page_not_found()
        res, ns, name, sub = target.res, target.namespace, target.name, target.subresource
        method = request.method
        user = request[USER_KEY]
        watching = target.watch_prefix or _bool_param(request, "watch")
        verb = self._verb(method, name, watching, res, request)
        self._auth.authorize(
            user,
            verb,
            res,
            ns,
            name,
            sub,
            request.path,
            field_selector=request.query.get("fieldSelector", ""),
        )
        if (res.plural, "") in SUBRESOURCES and not name:
            return await SUBRESOURCES[(res.plural, "")](self, request, res, ns, name, user)
        if sub and sub != "status":
            handler = SUBRESOURCES.get((res.plural, sub))
            if handler is None:
                raise _not_found_resource()
            return await handler(self, request, res, ns, name, user)
        if res.namespaced and not ns and name and method != "GET":
            raise _not_found_resource()
        if res.namespaced and not ns and method in ("POST", "DELETE"):
            # Cluster-wide paths of namespaced kinds only list and watch.
            raise method_not_allowed()
        if verb not in res.verbs and not sub:
            raise method_not_allowed()
        if method == "GET":
            if watching:
                return await self._watch(request, res, ns, name)
            if name:
                return self._get(request, res, ns, name)
            return self._list(request, res, ns)
        if method == "POST":
            if name:
                raise method_not_allowed()
            return await self._create(request, res, ns)
        if method == "PUT" and name:
            return await self._update(request, res, ns, name, sub or None)
        if method == "PATCH" and name:
            return await self._patch(request, res, ns, name, sub or None)
        if method == "DELETE":
            if name:
                return await self._delete(request, res, ns, name)
            return await self._delete_collection(request, res, ns)
        raise method_not_allowed()

    @staticmethod
    def _verb(method: str, name: str, watching: bool, res: Resource, request: web.Request) -> str:
        if method == "GET":
            if watching:
                return "watch"
            return "get" if name else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method, method.lower())

    # ---------------------------------------------------------------- handlers
    def _table_or_object(
        self,
        request: web.Request,
        res: Resource,
        objects: list[Obj],
        *,
        as_kind: str,
        list_meta: Obj | None,
        single: Obj | None,
    ) -> Any:
        accept = request.headers.get("Accept", "")
        if as_kind == "Table":
            return tables.to_table(
                res,
                objects,
                include_object=request.query.get("includeObject", "Metadata"),
                now=self.clock.now(),
                list_meta=list_meta,
                api_version=tables.table_version(accept) or tables.TABLE_V1,
            )
        if as_kind.startswith("PartialObjectMetadata"):
            found = tables.negotiate_as(
                accept, ("PartialObjectMetadata", "PartialObjectMetadataList")
            )
            api_version = found[1] if found else tables.TABLE_V1
            if single is not None:
                return tables.partial_object_metadata(single, api_version)
            return tables.partial_object_metadata_list(
                objects, list_meta=list_meta, api_version=api_version
            )
        return single

    def _get(self, request: web.Request, res: Resource, ns: str, name: str) -> web.Response:
        fmt, as_kind, _ = negotiate(request.headers.get("Accept", ""))
        obj = self.store.get(res, ns, name)
        if as_kind:
            # A single object's Table carries the object's own resourceVersion.
            rv = obj.get("metadata", {}).get("resourceVersion")
            return _render(
                self._table_or_object(
                    request,
                    res,
                    [obj],
                    as_kind=as_kind,
                    list_meta={"resourceVersion": rv},
                    single=obj,
                ),
                fmt,
            )
        return _render(obj, fmt)

    def _list(self, request: web.Request, res: Resource, ns: str) -> web.Response:
        fmt, as_kind, _ = negotiate(request.headers.get("Accept", ""))
        q = request.query
        limit = _int_param(request, "limit") or 0
        token = q.get("continue", "")
        self._check_list_rv(
            q.get("resourceVersion", ""), q.get("resourceVersionMatch", ""), limit, token
        )
        items, rv = self.store.list(
            res,
            ns,
            label_selector=q.get("labelSelector", ""),
            field_selector=q.get("fieldSelector", ""),
        )
        if token:
            _, start = decode_continue(token)
            items = [o for o in items if _key(o) > start]
        meta: Obj = {"resourceVersion": rv}
        if limit > 0 and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            meta["continue"] = encode_continue(int(rv), _key(items[-1]))
            meta["remainingItemCount"] = remaining
        if as_kind:
            return _render(
                self._table_or_object(
                    request,
                    res,
                    items,
                    as_kind=as_kind,
                    list_meta=meta,
                    single=None,
                ),
                fmt,
            )
        body = {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": items,
        }
        return _render(body, fmt)

    def _check_list_rv(self, rv: str, match: str, limit: int, token: str) -> None:
        if match and not rv:
            raise _list_options_invalid(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )
        if match and match not in ("Exact", "NotOlderThan"):
            raise _list_options_invalid(
                "resourceVersionMatch",
                f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"',
                reason="FieldValueNotSupported",
            )
        if rv in ("", "0") or token:
            return
        try:
            wanted = int(rv)
        except ValueError:
            raise bad_request(f'invalid resource version "{rv}"') from None
        current = self.store.resource_version
        if wanted > current:
            raise StatusError(
                504,
                "Timeout",
                f"Timeout: Too large resource version: {wanted}, current: {current}",
                details={
                    "causes": [
                        {
                            "reason": "ResourceVersionTooLarge",
                            "message": "Too large resource version",
                        }
                    ],
                    "retryAfterSeconds": 1,
                },
                headers={"Retry-After": "1"},
            )
        exact = match == "Exact" or (not match and limit > 0)
        if exact and wanted != current:
            raise StatusError(
                410, "Expired", "The resourceVersion for the provided list is too old."
            )

    async def _read_object(self, request: web.Request, res: Resource) -> tuple[Obj, list[str]]:
        raw = await request.read()
        obj = _json_body(raw, res)
        _check_kind(obj, res)
        mode = request.query.get("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation must be Ignore, Warn or Strict, got {mode}")
        warnings = admission.check_decode(res, obj, strict=mode == "Strict")
        return obj, (warnings if mode == "Warn" else [])

    @staticmethod
    def _with_warnings(resp: web.Response, warnings: list[str]) -> web.Response:
        for w in warnings:
            escaped = w.replace("\\", "\\\\").replace('"', '\\"')
            resp.headers.add("Warning", f'299 - "{escaped}"')
        return resp

    @staticmethod
    def _restricted(request: web.Request) -> bool:
        """Whether NodeRestriction admission applies: the caller is a kubelet identity."""
        return auth.node_name_of(request[USER_KEY]) is not None

    def _admit(
        self,
        request: web.Request,
        res: Resource,
        *,
        sub: str,
        operation: str,
        obj: Obj,
        old: Obj | None,
    ) -> None:
        if self._restricted(request):
            self._auth.admit(
                request[USER_KEY], res, subresource=sub, operation=operation, obj=obj, old=old
            )

    async def _create(self, request: web.Request, res: Resource, ns: str) -> web.Response:
        fmt, _, _ = negotiate(request.headers.get("Accept", ""))
        obj, warnings = await self._read_object(request, res)
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
        if res.namespaced and meta and meta.get("namespace") and meta["namespace"] != ns:
            raise bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        self._admit(request, res, sub="", operation="create", obj=obj, old=None)
        created = self.store.create(
            res, ns, obj, manager=manager_of(request), dry_run=_dry_run(request)
        )
        return self._with_warnings(_render(created, fmt, 201), warnings)

    async def _update(
        self, request: web.Request, res: Resource, ns: str, name: str, sub: str | None
    ) -> web.Response:
        fmt, _, _ = negotiate(request.headers.get("Accept", ""))
        obj, warnings = await self._read_object(request, res)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name "
                f"on the URL ({name})"
            )
        if res.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        if self._restricted(request):
            would_be = self.store.update(res, ns, name, obj, subresource=sub, dry_run=True)
            old = self.store.get(res, ns, name)
            self._admit(request, res, sub=sub or "", operation="update", obj=would_be, old=old)
        updated = self.store.update(
            res,
            ns,
            name,
            obj,
            subresource=sub,
            manager=manager_of(request),
            dry_run=_dry_run(request),
        )
        return self._with_warnings(_render(updated, fmt), warnings)

    async def _patch(
        self, request: web.Request, res: Resource, ns: str, name: str, sub: str | None
    ) -> web.Response:
        from vnode.sandbox.kubeapi import patches

        fmt, _, _ = negotiate(request.headers.get("Accept", ""))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in patches.PATCH_TYPES:
            raise StatusError(
                415, "UnsupportedMediaType", "415: Unsupported Media Type", details={}
            )
        body = await request.read()
        manager = manager_of(request)
        if content_type == "application/apply-patch+yaml" and not self.store.exists(res, ns, name):
            obj = _apply_body(body)
            obj.setdefault("metadata", {})["name"] = name
            created = self.store.create(
                res, ns, obj, manager=manager, dry_run=_dry_run(request), operation="Apply"
            )
            return _render(created, fmt, 201)
        if self._restricted(request):
            would_be = self.store.patch(
                res, ns, name, content_type, body, subresource=sub, dry_run=True
            )
            old = self.store.get(res, ns, name)
            self._admit(request, res, sub=sub or "", operation="update", obj=would_be, old=old)
        patched = self.store.patch(
            res,
            ns,
            name,
            content_type,
            body,
            subresource=sub,
            manager=manager,
            dry_run=_dry_run(request),
            strict=request.query.get("fieldValidation") == "Strict",
        )
        return _render(patched, fmt)

    async def _delete(
        self, request: web.Request, res: Resource, ns: str, name: str
    ) -> web.Response:
        fmt, _, _ = negotiate(request.headers.get("Accept", ""))
        options = await _delete_options(request)
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = _int_param(request, "gracePeriodSeconds")
        dry = _dry_run(request) or "All" in (options.get("dryRun") or [])
        policy, orphan, warnings = _propagation(request, res, options)
        answer = self.store.delete(
            res,
            ns,
            name,
            grace_period_seconds=grace,
            preconditions=options.get("preconditions"),
            dry_run=dry,
            propagation_policy=policy,
            orphan_dependents=orphan,
        )
        return self._with_warnings(_render(answer, fmt), warnings)

    async def _delete_collection(
        self, request: web.Request, res: Resource, ns: str
    ) -> web.Response:
        fmt, _, _ = negotiate(request.headers.get("Accept", ""))
        options = await _delete_options(request)
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = _int_param(request, "gracePeriodSeconds")
        policy, orphan, warnings = _propagation(request, res, options)
        items, _ = self.store.list(
            res,
            ns,
            label_selector=request.query.get("labelSelector", ""),
            field_selector=request.query.get("fieldSelector", ""),
        )
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            with contextlib.suppress(StatusError):
                out = self.store.delete(
                    res,
                    meta.get("namespace", ""),
                    meta["name"],
                    grace_period_seconds=grace,
                    dry_run=_dry_run(request),
                    propagation_policy=policy,
                    orphan_dependents=orphan,
                )
                deleted.append(out if out.get("kind") != "Status" else obj)
        return self._with_warnings(
            _render(
                {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(self.store.resource_version)},
                    "items": deleted,
                },
                fmt,
            ),
            warnings,
        )

    # -------------------------------------------------------------------- watch
    async def _watch(
        self, request: web.Request, res: Resource, ns: str, name: str
    ) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        _, as_kind, _ = negotiate(accept)
        q = request.query
        if _bool_param(request, "sendInitialEvents"):
            raise _list_options_invalid(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is "
                "enabled",
            )
        timeout = _int_param(request, "timeoutSeconds")
        field_selector = q.get("fieldSelector", "")
        if name:
            extra = f"metadata.name={name}"
            field_selector = f"{field_selector},{extra}" if field_selector else extra
        rv = q.get("resourceVersion")
        watch: Watch | None = None
        error: StatusError | None = None
        try:
            watch = self.store.subscribe(
                res,
                ns,
                resource_version=rv,
                label_selector=q.get("labelSelector", ""),
                field_selector=field_selector,
            )
        except StatusError as e:
            if e.code != 410:
                raise
            error = e
        resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            if error is not None or watch is None:
                assert error is not None
                await resp.write(encode({"type": "ERROR", "object": error.body()}))
            else:
                await self._stream(
                    resp,
                    watch,
                    res,
                    as_kind=as_kind,
                    table_version=tables.table_version(accept) or tables.TABLE_V1,
                    limit=timeout,
                    bookmarks=_bool_param(request, "allowWatchBookmarks"),
                )
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            log.debug("watch client went away")
        except Exception:
            # Headers are out: the stream can only end; the client re-lists and re-watches.
            log.exception("watch on %s failed while streaming", request.path)
        finally:
            if watch is not None:
                watch.close()
        return resp

    async def _stream(
        self,
        resp: web.StreamResponse,
        watch: Watch,
        res: Resource,
        *,
        as_kind: str,
        table_version: str,
        limit: int | None,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if limit is not None and limit > 0:
            deadline = started + limit
        else:
            deadline = started + self.default_watch_timeout * (1 + random.random()) / 2
        next_periodic = started + self.bookmark_interval
        last_call = deadline - self.bookmark_before_deadline if limit else None
        first_table = True
        while True:
            now = loop.time()
            if now >= deadline:
                return
            wake = deadline
            if bookmarks:
                wake = min(wake, next_periodic)
                if last_call is not None:
                    wake = min(wake, last_call)
            ev = await watch.next(wake - now)
            if watch.closed:
                return  # the server is stopping
            if ev is None:
                now = loop.time()
                if not bookmarks:
                    continue
                due = now >= next_periodic or (last_call is not None and now >= last_call)
                if now >= next_periodic:
                    next_periodic = now + self.bookmark_interval
                if last_call is not None and now >= last_call:
                    last_call = None
                # Only once the kind's resourceVersion moved past where the watch began.
                current = self.store.latest_resource_version(res)
                if due and current > watch.start_rv:
                    await resp.write(
                        encode({"type": "BOOKMARK", "object": _bookmark_object(res, current)})
                    )
                continue
            obj = ev["object"]
            if as_kind == "Table":
                # Each event's Table carries that object's resourceVersion; only the
                # first one carries the column definitions.
                table = tables.to_table(
                    res,
                    [obj],
                    now=self.clock.now(),
                    list_meta={"resourceVersion": obj.get("metadata", {}).get("resourceVersion")},
                    with_column_definitions=first_table,
                    api_version=table_version,
                )
                first_table = False
                ev = {"type": ev["type"], "object": table}
            await resp.write(encode(ev))


# --------------------------------------------------------------------- helpers
def _key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def _list_options_invalid(
    field_name: str, detail: str, reason: str = "FieldValueForbidden"
) -> StatusError:
    prefix = "Forbidden: " if reason == "FieldValueForbidden" else ""
    message = f"{prefix}{detail}"
    return StatusError(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {field_name}: {message}',
        details={
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [{"reason": reason, "message": message, "field": field_name}],
        },
    )


async def _delete_options(request: web.Request) -> Obj:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError:
        raise bad_request(
            "the body of the request was in an unknown format - accepted media "
            "types include: application/json, application/yaml, "
            "application/vnd.kubernetes.protobuf"
        ) from None
    return options if isinstance(options, dict) else {}


_JOB_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set "
    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to "
    "suppress this warning"
)


def _propagation(
    request: web.Request, res: Resource, options: Obj
) -> tuple[str | None, bool | None, list[str]]:
    """(propagationPolicy, orphanDependents, warnings) of a DELETE: body, else query.

    A Job deleted with neither set keeps its pods (the legacy batch/v1 default), and the
    real server says so in a warning.
    """
    policy = options.get("propagationPolicy")
    if policy is None:
        policy = request.query.get("propagationPolicy") or None
    orphan = options.get("orphanDependents")
    if orphan is None and request.query.get("orphanDependents"):
        orphan = _bool_param(request, "orphanDependents")
    if policy is not None and policy not in PROPAGATION_POLICIES:
        raise _delete_options_invalid(
            "propagationPolicy",
            f'Unsupported value: "{policy}": supported values: '
            + ", ".join(f'"{p}"' for p in PROPAGATION_POLICIES),
            "FieldValueNotSupported",
        )
    warnings: list[str] = []
    if policy is None and orphan is None and (res.group, res.plural) in DEFAULT_ORPHAN:
        warnings.append(_JOB_ORPHAN_WARNING)
    return policy, (bool(orphan) if orphan is not None else None), warnings


def _delete_options_invalid(field_name: str, message: str, reason: str) -> StatusError:
    return StatusError(
        422,
        "Invalid",
        f'DeleteOptions.meta.k8s.io "" is invalid: {field_name}: {message}',
        details={
            "group": "meta.k8s.io",
            "kind": "DeleteOptions",
            "causes": [{"reason": reason, "message": message, "field": field_name}],
        },
    )


def _apply_body(body: bytes) -> Obj:
    import yaml

    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError as e:
        raise bad_request(f"error decoding YAML: {e}") from None
    if not isinstance(doc, dict):
        raise bad_request("error decoding YAML: not an object")
    return doc


_BOOKMARK_BODIES: dict[str, Obj] = {
    "Pod": {"spec": {"containers": None}, "status": {}},
    "Node": {
        "spec": {},
        "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}, "nodeInfo": {}},
    },
    "Namespace": {"spec": {}, "status": {}},
    "Job": {
        "spec": {
            "template": {"metadata": {"creationTimestamp": None}, "spec": {"containers": None}}
        },
        "status": {},
    },
    "Lease": {"spec": {}},
}


def _bookmark_object(res: Resource, rv: int) -> Obj:
    obj: Obj = {
        "kind": res.kind,
        "apiVersion": res.api_version,
        "metadata": {"resourceVersion": str(rv), "creationTimestamp": None},
    }
    obj.update(json.loads(json.dumps(_BOOKMARK_BODIES.get(res.kind, {}))))
    return obj


def server_address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"
