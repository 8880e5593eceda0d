"""OpenAPI documents (``/openapi/v3`` and ``/openapi/v2``) for the served kinds.

``kubectl apply`` refuses to run without them (unless told ``--validate=false``), and
``kubectl explain`` reads nothing else. kubectl looks in the v3 document of a
group-version for a PATCH operation tagged with the kind's
``x-kubernetes-group-version-kind`` that accepts a ``fieldValidation`` query parameter:
when it finds one it leaves field validation to the server; it reads the schemas'
``x-kubernetes-patch-merge-key`` / ``-patch-strategy`` to build strategic merge patches,
and ``explain`` walks the schemas by ``$ref``.

The schemas are generated from the official Python client's models (each model lists
its fields, their JSON names, types and descriptions); the Go-only details the models
do not carry (definition packages, Quantity / IntOrString / MicroTime, list merge keys)
come from small tables here. Documents are built once per process, on first use, and
served with the real server's caching headers (``Etag`` is the SHA-512 of the body;
hashed v3 URLs are ``public, immutable``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from . import resources
from .resources import Resource

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = f"{_META}.Time"
MICRO_TIME = f"{_META}.MicroTime"
FIELDS_V1 = f"{_META}.FieldsV1"

# Client models that are apimachinery meta types rather than part of an API group.
_META_MODELS = frozenset(
    {
        "V1ObjectMeta",
        "V1ListMeta",
        "V1OwnerReference",
        "V1ManagedFieldsEntry",
        "V1LabelSelector",
        "V1LabelSelectorRequirement",
        "V1FieldSelectorRequirement",
        "V1Condition",
        "V1Status",
        "V1StatusDetails",
        "V1StatusCause",
        "V1DeleteOptions",
        "V1Preconditions",
    }
)

# Kinds reached through a subresource of another group-version (pods/eviction,
# serviceaccounts/token), with the group they belong to.
_SUBRESOURCE_KINDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("pods", "binding"): ("", "v1", "Binding"),
    ("pods", "eviction"): ("policy", "v1", "Eviction"),
    ("serviceaccounts", "token"): ("authentication.k8s.io", "v1", "TokenRequest"),
}

# Fields the Go types carry as special scalars the client models flatten.
_QUANTITY_MAPS = frozenset(
    {
        "limits",
        "requests",
        "capacity",
        "allocatable",
        "hard",
        "used",
        "overhead",
        "allocatedResources",
    }
)
_QUANTITY_FIELDS = frozenset({"sizeLimit"})
_MICRO_TIME_FIELDS = frozenset({"renewTime", "acquireTime", "eventTime", "lastObservedTime"})
_INT_OR_STRING_FIELDS = frozenset({"port", "targetPort", "maxUnavailable", "maxSurge"})
_INT64_FIELDS = frozenset(
    {
        "generation",
        "observedGeneration",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "deletionGracePeriodSeconds",
        "expirationSeconds",
        "tolerationSeconds",
        "gracePeriodSeconds",
        "sizeBytes",
        "supplementalGroups",
        "startingDeadlineSeconds",
    }
)


@dataclass(frozen=True)
class _ListRule:
    """Strategic-merge and list semantics of one list field, as upstream declares them."""

    merge_key: str | None = None
    strategy: str | None = None
    list_type: str | None = None  # atomic | set | map
    map_keys: tuple[str, ...] = ()


def _map(key: str, *keys: str, strategy: str = "merge") -> _ListRule:
    return _ListRule(key, strategy, "map", (key, *keys))


_ATOMIC = _ListRule(list_type="atomic")
_CONTAINER_LISTS = {
    "ports": _map("containerPort", "protocol"),
    "env": _map("name"),
    "envFrom": _ATOMIC,
    "volumeMounts": _map("mountPath"),
    "volumeDevices": _map("devicePath"),
    "command": _ATOMIC,
    "args": _ATOMIC,
    "resizePolicy": _ATOMIC,
}
_LIST_RULES: dict[str, dict[str, _ListRule]] = {
    "PodSpec": {
        "containers": _map("name"),
        "initContainers": _map("name"),
        "ephemeralContainers": _map("name"),
        "volumes": _map("name", strategy="merge,retainKeys"),
        "imagePullSecrets": _map("name"),
        "hostAliases": _map("ip"),
        "tolerations": _ATOMIC,
        "readinessGates": _ATOMIC,
        "schedulingGates": _map("name"),
        "resourceClaims": _map("name", strategy="merge,retainKeys"),
        "topologySpreadConstraints": _ListRule(
            "topologyKey", "merge", "map", ("topologyKey", "whenUnsatisfiable")
        ),
    },
    "Container": _CONTAINER_LISTS,
    "EphemeralContainer": _CONTAINER_LISTS,
    "PodStatus": {
        "conditions": _map("type"),
        "podIPs": _map("ip"),
        "hostIPs": _ListRule("ip", "merge", "atomic"),
        "containerStatuses": _ATOMIC,
        "initContainerStatuses": _ATOMIC,
        "ephemeralContainerStatuses": _ATOMIC,
        "resourceClaimStatuses": _map("name", strategy="merge,retainKeys"),
    },
    "ObjectMeta": {
        "finalizers": _ListRule(None, "merge", "set"),
        "ownerReferences": _map("uid"),
        "managedFields": _ATOMIC,
    },
    "NodeSpec": {"taints": _ATOMIC, "podCIDRs": _ListRule(None, "merge", "set")},
    "NodeStatus": {
        "conditions": _map("type"),
        "addresses": _map("type"),
        "images": _ATOMIC,
        "volumesInUse": _ATOMIC,
        "volumesAttached": _ATOMIC,
    },
    "NamespaceStatus": {"conditions": _map("type")},
    "JobStatus": {"conditions": _ListRule("type", "merge", "atomic")},
    "ServiceAccount": {"secrets": _map("name"), "imagePullSecrets": _ATOMIC},
    "LabelSelector": {"matchExpressions": _ATOMIC},
    "NodeSelectorTerm": {"matchExpressions": _ATOMIC, "matchFields": _ATOMIC},
}

# Structs replaced as a whole by a merge, as upstream marks them.
_ATOMIC_STRUCTS = frozenset(
    {
        "OwnerReference",
        "LabelSelector",
        "NodeSelector",
        "LocalObjectReference",
        "ObjectFieldSelector",
    }
)

# Core types first reached from another group's kind (a Job's pod template) still live
# in the core package.
_CORE_MODELS = frozenset(
    {
        "V1PodTemplateSpec",
        "V1ObjectReference",
        "V1EventSource",
        "V1LocalObjectReference",
        "V1TypedLocalObjectReference",
    }
)

_CLASS_RE = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z].*)$")
_GENERIC_RE = re.compile(r"^(List|Dict)\[(.*)\]$")


def _group_word(group: str) -> str:
    """``coordination`` for ``coordination.k8s.io``; ``core`` for the core group."""
    return group.split(".", maxsplit=1)[0] if group else "core"


def _package(group: str, version: str) -> str:
    return f"io.k8s.api.{_group_word(group)}.{version}"


def _model_class(group: str, version: str, kind: str) -> str:
    """The client model's class name: ``V1Pod``, or ``CoreV1Event`` where kinds collide."""
    from kubernetes.client import models

    prefix = _group_word(group).capitalize()
    for name in (f"{prefix}{version.capitalize()}{kind}", f"{version.capitalize()}{kind}"):
        if hasattr(models, name):
            return name
    raise LookupError(f"no client model for {group}/{version} {kind}")


@dataclass
class _Kind:
    group: str
    version: str
    kind: str
    model: str
    list_model: str | None


@dataclass
class _Catalog:
    """Every client model reachable from the served kinds, with its definition name."""

    names: dict[str, str] = field(default_factory=dict)  # model class -> definition name
    gvk: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # definition -> GVKs


def _served_kinds() -> list[_Kind]:
    kinds: list[_Kind] = []
    seen: set[tuple[str, str, str]] = set()

    def add(group: str, version: str, kind: str, with_list: bool) -> None:
        if (group, version, kind) in seen:
            return
        seen.add((group, version, kind))
        model = _model_class(group, version, kind)
        list_model = None
        if with_list:
            try:
                list_model = _model_class(group, version, kind + "List")
            except LookupError:
                list_model = None
        kinds.append(_Kind(group, version, kind, model, list_model))

    for res in resources.RESOURCES:
        add(res.group, res.version, res.kind, res.stored)
    for res in resources.RESOURCES:
        for sub in res.subresources:
            target = _SUBRESOURCE_KINDS.get((res.plural, sub))
            if target:
                add(*target, with_list=False)
    return kinds


def _catalog(kinds: list[_Kind]) -> _Catalog:
    from kubernetes.client import models

    cat = _Catalog()
    queue: list[tuple[str, str]] = []  # (model, package it inherits)
    for k in kinds:
        pkg = _package(k.group, k.version)
        cat.names[k.model] = f"{pkg}.{k.kind}"
        cat.gvk[f"{pkg}.{k.kind}"] = [{"group": k.group, "kind": k.kind, "version": k.version}]
        queue.append((k.model, pkg))
        if k.list_model:
            cat.names[k.list_model] = f"{pkg}.{k.kind}List"
            cat.gvk[f"{pkg}.{k.kind}List"] = [
                {"group": k.group, "kind": f"{k.kind}List", "version": k.version}
            ]
            queue.append((k.list_model, pkg))
    queue.append(("V1Status", _META))
    queue.append(("V1DeleteOptions", _META))
    # Breadth first, core kinds first: a type shared by several groups (PodTemplateSpec
    # in a Job) belongs to the package that defines it, which is reached first.
    index = 0
    while index < len(queue):
        model, pkg = queue[index]
        index += 1
        if model not in cat.names:
            cat.names[model] = _definition_name(model, pkg)
        for type_name in getattr(models, model).openapi_types.values():
            for ref in re.findall(r"[A-Z][A-Za-z0-9]+", type_name):
                if ref in ("List", "Dict") or ref in cat.names:
                    continue
                if any(ref == q for q, _ in queue[index:]):
                    continue
                queue.append((ref, cat.names[model].rsplit(".", 1)[0]))
    return cat


def _definition_name(model: str, inherited: str) -> str:
    match = _CLASS_RE.match(model)
    if not match:
        raise LookupError(f"unexpected client model name {model}")
    _, version, name = match.groups()
    if model in _META_MODELS:
        return f"{_META}.{name}"
    if model in _CORE_MODELS:
        return f"io.k8s.api.core.{version.lower()}.{name}"
    base = inherited.rsplit(".", 1)[0] if inherited != _META else "io.k8s.api.core"
    return f"{base}.{version.lower()}.{name}"


# --- schemas -------------------------------------------------------------------------


class _SchemaBuilder:
    """Builds one JSON schema per client model; ``ref`` decides v2 or v3 reference style."""

    def __init__(self, catalog: _Catalog, v3: bool) -> None:
        self.catalog = catalog
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"

    def ref(self, name: str, description: str | None) -> dict[str, Any]:
        target = {"$ref": self.prefix + name}
        out: dict[str, Any] = {}
        if description:
            out["description"] = description
        if self.v3 and description:
            out["allOf"] = [target]  # v3 keeps sibling keywords beside a $ref this way
            return out
        out.update(target)
        return out

    def property(
        self, owner: str, json_name: str, type_name: str, description: str | None
    ) -> dict[str, Any]:
        generic = _GENERIC_RE.match(type_name)
        if generic and generic.group(1) == "List":
            schema: dict[str, Any] = {
                "type": "array",
                "items": self.item(json_name, generic.group(2)),
            }
            rule = _LIST_RULES.get(owner, {}).get(json_name)
            if rule:
                schema.update(_rule_extensions(rule))
            return _describe(schema, description)
        if generic:
            value_type = generic.group(2).split(",", 1)[1].strip()
            if json_name in _QUANTITY_MAPS and value_type == "str":
                values = self.ref(QUANTITY, None)
            else:
                values = self.item(json_name, value_type)
            return _describe({"type": "object", "additionalProperties": values}, description)
        if type_name == "datetime":
            return self.ref(MICRO_TIME if json_name in _MICRO_TIME_FIELDS else TIME, description)
        if type_name == "object":
            if json_name in _INT_OR_STRING_FIELDS:
                return self.ref(INT_OR_STRING, description)
            if json_name == "fieldsV1":
                return self.ref(FIELDS_V1, description)
            return _describe(
                {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, description
            )
        if type_name == "str" and json_name in _QUANTITY_FIELDS:
            return self.ref(QUANTITY, description)
        if type_name in _SCALARS:
            scalar = dict(_SCALARS[type_name])
            if type_name == "int" and json_name in _INT64_FIELDS:
                scalar["format"] = "int64"
            return _describe(scalar, description)
        return self.ref(self.catalog.names[type_name], description)

    def item(self, json_name: str, type_name: str) -> dict[str, Any]:
        if type_name in _SCALARS:
            return dict(_SCALARS[type_name])
        if _GENERIC_RE.match(type_name):
            return self.property("", json_name, type_name, None)
        if type_name == "object":
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        target = self.ref(self.catalog.names[type_name], None)
        return {"allOf": [target]} if self.v3 else target

    def model(self, model: str) -> dict[str, Any]:
        from kubernetes.client import models

        cls = getattr(models, model)
        definition = self.catalog.names[model]
        short = definition.rsplit(".", 1)[1]
        fields = cls.model_fields
        props: dict[str, Any] = {}
        required: list[str] = []
        for attr, type_name in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            info = fields.get(attr)
            description = info.description if info is not None else None
            props[json_name] = self.property(short, json_name, type_name, description)
            if info is not None and info.is_required():
                required.append(json_name)
        schema: dict[str, Any] = {}
        doc = _class_description(cls.__doc__)
        if doc:
            schema["description"] = doc
        schema["type"] = "object"
        if required:
            schema["required"] = required
        schema["properties"] = dict(sorted(props.items()))
        if definition in self.catalog.gvk:
            schema["x-kubernetes-group-version-kind"] = self.catalog.gvk[definition]
        if short in _ATOMIC_STRUCTS:
            schema["x-kubernetes-map-type"] = "atomic"
        return schema

    def all(self) -> dict[str, Any]:
        out = {name: self.model(model) for model, name in self.catalog.names.items()}
        out.update(_special_schemas())
        return dict(sorted(out.items()))


_SCALARS: dict[str, dict[str, str]] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int32"},
    "bool": {"type": "boolean"},
    "float": {"type": "number", "format": "double"},
    "bytes": {"type": "string", "format": "byte"},
    "date": {"type": "string", "format": "date"},
}


def _describe(schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    return {"description": description, **schema} if description else schema


def _rule_extensions(rule: _ListRule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.list_type:
        out["x-kubernetes-list-type"] = rule.list_type
    if rule.map_keys:
        out["x-kubernetes-list-map-keys"] = list(rule.map_keys)
    if rule.merge_key:
        out["x-kubernetes-patch-merge-key"] = rule.merge_key
    if rule.strategy:
        out["x-kubernetes-patch-strategy"] = rule.strategy
    return out


def _class_description(doc: str | None) -> str:
    if not doc:
        return ""
    text = doc.split("Attributes:", 1)[0]
    return " ".join(line.strip() for line in text.strip().splitlines()).strip()


def _special_schemas() -> dict[str, Any]:
    return {
        QUANTITY: {
            "description": "Quantity is a fixed-point representation of a number, written "
            "as a string such as 100m, 1Gi or 1.5 (a plain number is accepted too).",
            "oneOf": [{"type": "string"}, {"type": "number"}],
        },
        INT_OR_STRING: {
            "description": "IntOrString is a type that can hold an int32 or a string.",
            "type": "string",
            "format": "int-or-string",
            "x-kubernetes-int-or-string": True,
        },
        TIME: {
            "description": "Time is a wrapper around time.Time which supports correct "
            "marshaling to YAML and JSON (RFC 3339, to the second).",
            "type": "string",
            "format": "date-time",
        },
        MICRO_TIME: {
            "description": "MicroTime is version of Time with microsecond level precision.",
            "type": "string",
            "format": "date-time",
        },
        f"{_META}.Patch": {
            "description": "Patch is provided to give a concrete name and type to the "
            "Kubernetes PATCH request body.",
            "type": "object",
        },
        FIELDS_V1: {
            "description": "FieldsV1 stores a set of fields in a data structure like a Trie, "
            "in JSON format.",
            "type": "object",
        },
    }


# --- paths ---------------------------------------------------------------------------

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {**schema, "uniqueItems": True},
    }


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}
_DRY_RUN = _query(
    "dryRun",
    "When present, indicates that modifications should not be persisted. Valid value: All.",
    _STR,
)
_FIELD_MANAGER = _query(
    "fieldManager",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
    _STR,
)
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request "
    "containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) "
    "and Strict.",
    _STR,
)
_FORCE = _query(
    "force",
    'Force is going to "force" Apply requests. It must be unset for non-apply patch requests.',
    _BOOL,
)
_PRETTY = _query("pretty", "If 'true', then the output is pretty printed.", _STR)
_LIST_PARAMS = [
    _query(
        "allowWatchBookmarks",
        "allowWatchBookmarks requests watch events with type BOOKMARK.",
        _BOOL,
    ),
    _query(
        "continue",
        "The continue option should be set when retrieving more results from the server.",
        _STR,
    ),
    _query(
        "fieldSelector",
        "A selector to restrict the list of returned objects by their fields.",
        _STR,
    ),
    _query(
        "labelSelector",
        "A selector to restrict the list of returned objects by their labels.",
        _STR,
    ),
    _query("limit", "limit is a maximum number of responses to return for a list call.", _INT),
    _query(
        "resourceVersion",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
        _STR,
    ),
    _query(
        "resourceVersionMatch",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        _STR,
    ),
    _query(
        "sendInitialEvents",
        "`sendInitialEvents=true` may be set together with `watch=true`.",
        _BOOL,
    ),
    _query("timeoutSeconds", "Timeout for the list/watch call.", _INT),
    _query("watch", "Watch for changes to the described resources.", _BOOL),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _query(
        "gracePeriodSeconds", "The duration in seconds before the object should be deleted.", _INT
    ),
    _query("propagationPolicy", "Whether and how garbage collection will be performed.", _STR),
]


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "description": description,
        "required": True,
        "schema": {"type": "string", "uniqueItems": True},
    }


def _op_id(verb: str, res: Resource, kind: str, namespaced: bool, suffix: str = "") -> str:
    group = _group_word(res.group).capitalize()
    scope = "Namespaced" if namespaced else ""
    return f"{verb}{group}{res.version.capitalize()}{scope}{kind}{suffix}"


class _PathBuilder:
    def __init__(self, catalog: _Catalog, schemas: _SchemaBuilder) -> None:
        self.catalog = catalog
        self.schemas = schemas

    def _content(
        self,
        definition: str,
        types: tuple[str, ...] = (
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ),
    ) -> dict[str, Any]:
        ref = {"$ref": self.schemas.prefix + definition}
        return {t: {"schema": ref} for t in types}

    def _responses(self, definition: str, *codes: str) -> dict[str, Any]:
        names = {"200": "OK", "201": "Created", "202": "Accepted"}
        out = {c: {"description": names[c], "content": self._content(definition)} for c in codes}
        out["401"] = {"description": "Unauthorized"}
        return out

    def operation(
        self,
        verb: str,
        action: str,
        res: Resource,
        gvk: dict[str, str],
        definition: str,
        *,
        namespaced: bool,
        params: list[dict[str, Any]],
        codes: tuple[str, ...],
        body: str | None = None,
        body_types: tuple[str, ...] = ("*/*",),
        suffix: str = "",
        kind_name: str | None = None,
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "tags": [f"{_group_word(res.group)}_{res.version}"],
            "description": f"{action} {kind_name or gvk['kind']}",
            "operationId": _op_id(verb, res, kind_name or gvk["kind"], namespaced, suffix),
            "parameters": params,
        }
        if body:
            op["requestBody"] = {
                "content": {
                    t: {"schema": {"$ref": self.schemas.prefix + body}} for t in body_types
                },
                "required": True,
            }
        op["responses"] = self._responses(definition, *codes)
        op["x-kubernetes-action"] = action
        op["x-kubernetes-group-version-kind"] = gvk
        return op

    def for_resource(self, res: Resource) -> dict[str, Any]:
        """The collection, item and subresource paths of one resource."""
        pkg = _package(res.group, res.version)
        definition = self.catalog.names[_model_class(res.group, res.version, res.kind)]
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        ns = res.namespaced
        collection = (
            f"{base}/namespaces/{{namespace}}/{res.plural}" if ns else f"{base}/{res.plural}"
        )
        item = f"{collection}/{{name}}"
        ns_param = (
            [_path_param("namespace", "object name and auth scope, such as for teams and projects")]
            if ns
            else []
        )
        name_param = [_path_param("name", f"name of the {res.kind}")]
        paths: dict[str, Any] = {}
        verbs = set(res.verbs)
        list_def = f"{pkg}.{res.kind}List"

        coll: dict[str, Any] = {"parameters": [*ns_param, _PRETTY]}
        if "list" in verbs and list_def in self.catalog.gvk:
            coll["get"] = self.operation(
                "list",
                "list",
                res,
                gvk,
                list_def,
                namespaced=ns,
                params=_LIST_PARAMS,
                codes=("200",),
            )
        if "create" in verbs:
            coll["post"] = self.operation(
                "create",
                "post",
                res,
                gvk,
                definition,
                namespaced=ns,
                params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                codes=("200", "201", "202"),
                body=definition,
            )
        if "deletecollection" in verbs:
            coll["delete"] = self.operation(
                "deleteCollection",
                "deletecollection",
                res,
                gvk,
                f"{_META}.Status",
                namespaced=ns,
                params=[*_DELETE_PARAMS, *_LIST_PARAMS],
                codes=("200",),
                body=f"{_META}.DeleteOptions",
            )
        paths[collection] = coll
        if ns and "list" in verbs and list_def in self.catalog.gvk:
            paths[f"{base}/{res.plural}"] = {
                "parameters": [_PRETTY],
                "get": self.operation(
                    "list",
                    "list",
                    res,
                    gvk,
                    list_def,
                    namespaced=False,
                    params=_LIST_PARAMS,
                    codes=("200",),
                    suffix="ForAllNamespaces",
                ),
            }
        if res.stored:
            paths[item] = self._item_ops(
                res, gvk, definition, ns=ns, params=[*name_param, *ns_param]
            )
        for sub in res.subresources:
            sub_path = self._subresource(res, sub, gvk, definition, [*name_param, *ns_param])
            if sub_path:
                paths[f"{item}/{sub}"] = sub_path
        return paths

    def _item_ops(
        self,
        res: Resource,
        gvk: dict[str, str],
        definition: str,
        *,
        ns: bool,
        params: list[dict[str, Any]],
        suffix: str = "",
    ) -> dict[str, Any]:
        verbs = set(res.verbs)
        out: dict[str, Any] = {"parameters": [*params, _PRETTY]}
        kind = res.kind
        if "get" in verbs:
            out["get"] = self.operation(
                "read",
                "get",
                res,
                gvk,
                definition,
                namespaced=ns,
                params=[],
                codes=("200",),
                suffix=suffix,
                kind_name=kind,
            )
        if "update" in verbs:
            out["put"] = self.operation(
                "replace",
                "put",
                res,
                gvk,
                definition,
                namespaced=ns,
                params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                codes=("200", "201"),
                body=definition,
                suffix=suffix,
                kind_name=kind,
            )
        if "delete" in verbs and not suffix:
            out["delete"] = self.operation(
                "delete",
                "delete",
                res,
                gvk,
                definition,
                namespaced=ns,
                params=_DELETE_PARAMS,
                codes=("200", "202"),
                body=f"{_META}.DeleteOptions",
                kind_name=kind,
            )
        if "patch" in verbs:
            out["patch"] = self.operation(
                "patch",
                "patch",
                res,
                gvk,
                definition,
                namespaced=ns,
                params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE],
                codes=("200", "201"),
                body=f"{_META}.Patch",
                body_types=_PATCH_TYPES,
                suffix=suffix,
                kind_name=kind,
            )
        return out

    def _subresource(
        self,
        res: Resource,
        sub: str,
        gvk: dict[str, str],
        definition: str,
        params: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        if sub == "status":
            return self._item_ops(
                res, gvk, definition, ns=res.namespaced, params=params, suffix="Status"
            )
        target = _SUBRESOURCE_KINDS.get((res.plural, sub))
        if target is None:
            return None  # log, proxy, finalize: no schema-bearing body worth describing
        group, version, kind = target
        body = f"{_package(group, version)}.{kind}"
        target_gvk = {"group": group, "version": version, "kind": kind}
        return {
            "parameters": [*params, _PRETTY],
            "post": self.operation(
                "create",
                "post",
                res,
                target_gvk,
                body,
                namespaced=res.namespaced,
                params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                codes=("200", "201", "202"),
                body=body,
                suffix=sub.capitalize(),
                kind_name=res.kind,
            ),
        }


# --- documents -----------------------------------------------------------------------


def _reachable(schemas: dict[str, Any], roots: list[str], prefix: str) -> dict[str, Any]:
    """The schemas ``roots`` reference, transitively, so a document carries only its own."""
    keep: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep or name not in schemas:
            continue
        keep.add(name)
        for ref in re.findall(re.escape(prefix) + r'([^"]+)"', json.dumps(schemas[name])):
            todo.append(ref)
    return {n: schemas[n] for n in sorted(keep)}


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def build_v3() -> dict[str, dict[str, Any]]:
    """One OpenAPI v3 document per served group-version, keyed like the v3 index."""
    kinds = _served_kinds()
    catalog = _catalog(kinds)
    builder = _SchemaBuilder(catalog, v3=True)
    schemas = builder.all()
    paths_builder = _PathBuilder(catalog, builder)
    docs: dict[str, dict[str, Any]] = {}
    for group, versions in resources.groups().items():
        for version in versions:
            paths: dict[str, Any] = {}
            for res in resources.RESOURCES:
                if (res.group, res.version) == (group, version):
                    paths.update(paths_builder.for_resource(res))
            roots = sorted(set(re.findall(r'#/components/schemas/([^"]+)"', json.dumps(paths))))
            roots += [
                n
                for n, gvks in catalog.gvk.items()
                if any(g["group"] == group and g["version"] == version for g in gvks)
            ]
            docs[_gv_key(group, version)] = {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": "1.33"},
                "paths": dict(sorted(paths.items())),
                "components": {
                    "schemas": _reachable(schemas, roots, "#/components/schemas/"),
                    "securitySchemes": {
                        "BearerToken": {
                            "type": "apiKey",
                            "description": "Bearer Token authentication",
                            "name": "authorization",
                            "in": "header",
                        }
                    },
                },
            }
    return docs


def build_v2() -> dict[str, Any]:
    """The single Swagger 2.0 document, for clients that still read ``/openapi/v2``."""
    kinds = _served_kinds()
    catalog = _catalog(kinds)
    builder = _SchemaBuilder(catalog, v3=False)
    paths_builder = _PathBuilder(catalog, builder)
    paths: dict[str, Any] = {}
    for res in resources.RESOURCES:
        paths.update(paths_builder.for_resource(res))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "1.33"},
        "paths": {p: _swagger_path(ops) for p, ops in sorted(paths.items())},
        "definitions": builder.all(),
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            }
        },
        "security": [{"BearerToken": []}],
    }


def _swagger_param(param: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in param.items() if k != "schema"}
    out.update(param["schema"])
    return out


def _swagger_path(path: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one v3 path item in Swagger 2.0 form (parameters inline, body as a param)."""
    out: dict[str, Any] = {}
    for key, value in path.items():
        if key == "parameters":
            out[key] = [_swagger_param(p) for p in value]
            continue
        op = {k: v for k, v in value.items() if k not in ("requestBody", "responses")}
        op["parameters"] = [_swagger_param(p) for p in value["parameters"]]
        if "requestBody" in value:
            content = value["requestBody"]["content"]
            op["consumes"] = list(content)
            op["parameters"].insert(
                0,
                {
                    "name": "body",
                    "in": "body",
                    "required": True,
                    "schema": next(iter(content.values()))["schema"],
                },
            )
        op["produces"] = [
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ]
        op["schemes"] = ["https"]
        op["responses"] = {
            code: (
                {
                    "description": r["description"],
                    "schema": next(iter(r["content"].values()))["schema"],
                }
                if "content" in r
                else r
            )
            for code, r in value["responses"].items()
        }
        out[key] = op
    return out


# --- serving -------------------------------------------------------------------------


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()


@dataclass(frozen=True)
class _Blob:
    body: bytes
    hash: str


class Documents:
    """The encoded documents, built on first request and kept for the process."""

    _lock = threading.Lock()
    _v3: dict[str, _Blob] | None = None
    _v2: _Blob | None = None
    _built_at = datetime.now(UTC)

    @classmethod
    def v3(cls) -> dict[str, _Blob]:
        with cls._lock:
            if cls._v3 is None:
                built = {}
                for key, doc in build_v3().items():
                    body = _encode(doc)
                    built[key] = _Blob(body, _hash(body))
                cls._v3 = built
            return cls._v3

    @classmethod
    def v2(cls) -> _Blob:
        with cls._lock:
            if cls._v2 is None:
                body = _encode(build_v2())
                cls._v2 = _Blob(body, _hash(body))
            return cls._v2

    @classmethod
    def index(cls) -> dict[str, Any]:
        return {
            "paths": {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={blob.hash}"}
                for key, blob in sorted(cls.v3().items())
            }
        }

    @classmethod
    def last_modified(cls) -> str:
        return format_datetime(cls._built_at, usegmt=True)


def _accepts_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return True
    for clause in accept.split(","):
        media = clause.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False


def _not_acceptable() -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "406: Not Acceptable",
        "reason": "NotAcceptable",
        "details": {},
        "code": 406,
    }
    return web.Response(
        status=406, body=json.dumps(body).encode() + b"\n", content_type="application/json"
    )


def _document(request: web.Request, blob: _Blob, *, immutable: bool) -> web.StreamResponse:
    etag = f'"{blob.hash}"'
    headers = {
        "Etag": etag,
        "Vary": "Accept",
        "Accept-Ranges": "bytes",
        "Last-Modified": Documents.last_modified(),
    }
    if immutable:
        headers["Cache-Control"] = "public, immutable"
        expires = datetime.now(UTC) + timedelta(days=365)
        headers["Expires"] = expires.strftime("%a, %d %b %Y %H:%M:%S UTC")
    else:
        headers["Cache-Control"] = "no-cache, private"
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    if not _accepts_json(request):
        return _not_acceptable()
    response = web.Response(body=blob.body, headers=headers, content_type="application/json")
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression()
    return response


async def _built() -> None:
    """Build the documents off the event loop the first time (about half a second)."""
    await asyncio.to_thread(Documents.v3)


async def _v3_index(request: web.Request) -> web.Response:
    await _built()
    body = json.dumps(Documents.index(), separators=(",", ":")).encode()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={
            "Last-Modified": Documents.last_modified(),
            "Accept-Ranges": "bytes",
            "Cache-Control": "no-cache, private",
        },
    )


async def _v3_document(request: web.Request) -> web.StreamResponse:
    key = request.match_info["path"].strip("/")
    await _built()
    blob = Documents.v3().get(key)
    if blob is None:
        return web.Response(
            status=404,
            text="404 page not found\n",
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    wanted = request.query.get("hash")
    if wanted is not None and wanted != blob.hash:
        # A stale hash (the document changed): send the client to the current one.
        raise web.HTTPMovedPermanently(f"/openapi/v3/{key}?hash={blob.hash}")
    return _document(request, blob, immutable=wanted is not None)


async def _v2(request: web.Request) -> web.StreamResponse:
    return _document(request, await asyncio.to_thread(Documents.v2), immutable=False)


def routes(api: object) -> list[web.RouteDef]:
    """The OpenAPI routes, to be added to the server's application."""
    del api  # the documents depend on the resource table only
    return [
        web.get("/openapi/v3", _v3_index, allow_head=False),
        web.get("/openapi/v3/", _v3_index, allow_head=False),
        web.get("/openapi/v3/{path:.+}", _v3_document, allow_head=False),
        web.get("/openapi/v2", _v2, allow_head=False),
    ]
