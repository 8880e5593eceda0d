"""Decoding checks, defaulting, admission and validation: what a create or update passes through.

The real API server decodes a body (unknown fields, MicroTime formats: 400), applies the
scheme's defaults, runs admission plugins (ServiceAccount, Priority,
DefaultTolerationSeconds, TaintNodesByCondition) and validates (422). The emulator does
the same steps in the same order, with the same messages as the reference recordings, so
a client sees no difference. Which fields exist is derived from the official Python
client's models, the same OpenAPI the real server is built from.
"""

from __future__ import annotations

import base64
import copy
import functools
import re
from typing import TYPE_CHECKING, Any

from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.status import StatusError, invalid

if TYPE_CHECKING:
    from vnode.sandbox.kubeapi.store import Store

Obj = dict[str, Any]

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


# ------------------------------------------------------------------ known fields
_MODEL_NAMES = {
    ("", "Event"): "CoreV1Event",
    ("events.k8s.io", "Event"): "EventsV1Event",
}


def _model_name(res: Resource) -> str:
    return _MODEL_NAMES.get((res.group, res.kind), f"{res.version.capitalize()}{res.kind}")


def _model(name: str) -> Any:
    from kubernetes.client import models

    return getattr(models, name, None)


@functools.cache
def _split_generic(typ: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"(?:List|list)\[(.+)\]", typ)
    if m:
        return "list", m.group(1)
    m = re.fullmatch(r"(?:Dict|dict)[\[(]str, (.+)[\])]", typ)
    if m:
        return "dict", m.group(1)
    return None


def _walk_type(typ: str, value: Any, path: str, out: list[str]) -> None:
    generic = _split_generic(typ)
    if generic is not None:
        kind, inner = generic
        if kind == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                _walk_type(inner, item, f"{path}[{i}]", out)
        elif kind == "dict" and isinstance(value, dict):
            for key, item in value.items():
                _walk_type(inner, item, f"{path}[{key}]", out)
        return
    model = _model(typ) if typ[:1].isupper() else None
    if model is not None and isinstance(value, dict):
        _walk_model(model, value, path + ".", out)


@functools.cache
def _json_types(model: Any) -> dict[str, str]:
    """JSON field name -> OpenAPI type of a client model class."""
    return {json_name: model.openapi_types[attr] for attr, json_name in model.attribute_map.items()}


def _walk_model(model: Any, value: Obj, prefix: str, out: list[str]) -> None:
    types = _json_types(model)
    for key, item in list(value.items()):
        typ = types.get(key)
        if typ is None:
            out.append(f"{prefix}{key}")
            continue
        _walk_type(typ, item, f"{prefix}{key}", out)


def _drop_path(obj: Any, path: str) -> None:
    """Remove one field named by an ``unknown_fields`` path (the decoder ignores them)."""
    parts = re.findall(r"[^.\[\]]+|\[[^\]]*\]", path)
    node = obj
    for part in parts[:-1]:
        if part.startswith("["):
            inner = part[1:-1]
            node = node[int(inner)] if isinstance(node, list) else node.get(inner)
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    last = parts[-1]
    if isinstance(node, dict):
        node.pop(last.strip("[]"), None)


def known_fields(kind: str) -> dict[str, str]:
    """JSON field name -> OpenAPI type for a model such as ``V1Pod`` or ``V1PodSpec``."""
    model = _model(kind)
    if model is None:
        return {}
    return {json_name: model.openapi_types[attr] for attr, json_name in model.attribute_map.items()}


def unknown_fields(kind: str, obj: Obj) -> list[str]:
    """Paths of fields the model ``kind`` (e.g. ``V1Pod``) does not define, in body order."""
    model = _model(kind)
    out: list[str] = []
    if model is not None and isinstance(obj, dict):
        _walk_model(model, obj, "", out)
    return out


# ------------------------------------------------------------------- JSON types
# Fields of type resource.Quantity: the client models call them strings, but the
# decoder takes a JSON number for them too.
_QUANTITY_FIELDS = frozenset(
    {"limits", "requests", "overhead", "capacity", "allocatable", "allocatedResources", "sizeLimit"}
)
# Integer fields that are int64 in Go (the rest are int32), for the error's type name.
_INT64_FIELDS = frozenset(
    {
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "deletionGracePeriodSeconds",
        "gracePeriodSeconds",
        "generation",
        "observedGeneration",
        "tolerationSeconds",
        "expirationSeconds",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "supplementalGroups",
        "startingDeadlineSeconds",
    }
)
_MODEL_PREFIX = re.compile(r"^(?:CoreV1|EventsV1|V\d+(?:alpha\d+|beta\d+)?)(?=[A-Z])")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _go_struct(model_name: str) -> str:
    return _MODEL_PREFIX.sub("", model_name)


def _go_type(typ: str, field: str) -> str:
    generic = _split_generic(typ)
    if generic is not None:
        kind, inner = generic
        return ("[]" if kind == "list" else "map[string]") + _go_type(inner, field)
    scalar = {
        "str": "string",
        "bool": "bool",
        "float": "float64",
        "bytes": "[]uint8",
        "int": "int64" if field in _INT64_FIELDS else "int32",
    }
    return scalar.get(typ) or f"v1.{_go_struct(typ)}"


def _scalar_fits(typ: str, value: Any, field: str) -> bool | None:
    """Whether a scalar JSON value decodes into ``typ``; None when ``typ`` is not scalar."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if typ in ("str", "bytes"):
        return isinstance(value, str) or (number and field in _QUANTITY_FIELDS)
    if typ == "int":
        return number and isinstance(value, int)  # Go will not read 1.5 or 30.0 as an int
    if typ == "float":
        return number
    if typ == "bool":
        return isinstance(value, bool)
    if typ in ("object", "datetime"):
        return True  # free-form (IntOrString, RawExtension) or checked as a time elsewhere
    return None


def _type_error(typ: str, value: Any, struct: str, path: str, field: str) -> str:
    got = _json_kind(value)
    if got == "number" and typ == "int" and isinstance(value, float):
        got = f"number {value!r}"
    return (
        f"json: cannot unmarshal {got} into Go struct field {struct}.{path} "
        f"of type {_go_type(typ, field)}"
    )


def _first_mismatch(typ: str, value: Any, struct: str, path: str, field: str) -> str | None:
    if value is None:
        return None  # null decodes into anything
    generic = _split_generic(typ)
    if generic is not None:
        kind, inner = generic
        if not isinstance(value, list if kind == "list" else dict):
            return _type_error(typ, value, struct, path, field)
        for item in value if isinstance(value, list) else value.values():
            err = _first_mismatch(inner, item, struct, path, field)
            if err:
                return err
        return None
    fits = _scalar_fits(typ, value, field)
    if fits is not None:
        return None if fits else _type_error(typ, value, struct, path, field)
    model = _model(typ)
    if model is None:
        return None
    if not isinstance(value, dict):
        return _type_error(typ, value, struct, path, field)
    return _model_mismatch(model, typ, value, path)


def _model_mismatch(model: Any, model_name: str, value: Obj, path: str) -> str | None:
    types = _json_types(model)
    struct = _go_struct(model_name)
    for key, item in value.items():
        typ = types.get(key)
        if typ is not None:
            err = _first_mismatch(typ, item, struct, f"{path}.{key}" if path else key, key)
            if err:
                return err
    return None


def type_mismatch(res: Resource, obj: Obj) -> str | None:
    """The decoder's error for the first field whose JSON type is wrong, in body order.

    Types come from the official client's models, e.g. a string where ``PodSpec``
    wants a map gives ``json: cannot unmarshal string into Go struct field
    PodSpec.spec.nodeSelector of type map[string]string``.
    """
    name = _model_name(res)
    model = _model(name)
    if model is None:
        return None
    return _model_mismatch(model, res.kind, obj, "")


# --------------------------------------------------------------- MicroTime format
_MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_PIECES = (
    ("2006", r"\d{4}"),
    ("-", "-"),
    ("01", r"\d{2}"),
    ("-", "-"),
    ("02", r"\d{2}"),
    ("T", "T"),
    ("15", r"\d{2}"),
    (":", ":"),
    ("04", r"\d{2}"),
    (":", ":"),
    ("05", r"\d{2}"),
    (".000000", r"\.\d{6}"),
    ("Z07:00", r"Z|[+-]\d{2}:\d{2}"),
)


def micro_time_error(value: str) -> str | None:
    """Go's ``time.Parse`` error for a MicroTime, or None when ``value`` is well formed."""
    rest = value
    for layout, pattern in _MICRO_PIECES:
        m = re.match(pattern, rest)
        if not m:
            return (
                f'parsing time "{value}" as "{_MICRO_LAYOUT}": cannot parse "{rest}" as "{layout}"'
            )
        rest = rest[m.end() :]
    if rest:
        return f'parsing time "{value}" as "{_MICRO_LAYOUT}": extra text: "{rest}"'
    return None


def _micro_time_paths(res: Resource) -> tuple[tuple[str, ...], ...]:
    if res.kind == "Lease":
        return (("spec", "renewTime"), ("spec", "acquireTime"))
    if res.kind == "Event":
        return (("eventTime",), ("series", "lastObservedTime"))
    return ()


def check_decode(res: Resource, obj: Any, *, strict: bool) -> list[str]:
    """Decode-time checks; returns warnings (unknown fields) or raises 400 like the server."""
    prefix = f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}'
    if not isinstance(obj, dict):
        raise StatusError(400, "BadRequest", f"{prefix}: json: cannot unmarshal into a {res.kind}")
    for path in _micro_time_paths(res):
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        err = (
            micro_time_error(str(value))
            if isinstance(value, str)
            else (f'parsing time "{value}" as "{_MICRO_LAYOUT}": cannot parse "{value}" as "2006"')
        )
        if err:
            raise StatusError(400, "BadRequest", f"{prefix}: {err}")
    mismatch = type_mismatch(res, obj)
    if mismatch:
        raise StatusError(400, "BadRequest", f"{prefix}: {mismatch}")
    unknown = unknown_fields(_model_name(res), obj)
    if unknown and strict:
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise StatusError(400, "BadRequest", f"{prefix}: strict decoding error: {listed}")
    for unknown_path in reversed(unknown):
        _drop_path(obj, unknown_path)
    return [f'unknown field "{u}"' for u in unknown]


# ---------------------------------------------------------------------- defaults
def _image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_probe(probe: Obj | None) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(c: Any) -> None:
    if not isinstance(c, dict):
        return
    if "image" in c and isinstance(c["image"], str) and c["image"]:
        c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.setdefault("resources", {})
    if isinstance(res, dict) and isinstance(res.get("limits"), dict):
        requests = res.setdefault("requests", {})
        for key, value in res["limits"].items():
            requests.setdefault(key, value)
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))


def default_pod_spec(spec: Obj) -> None:
    """The scheme defaults of a PodSpec (pods and pod templates alike)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            _default_container(c)
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        for source in ("configMap", "secret"):
            if isinstance(vol.get(source), dict):
                vol[source].setdefault("defaultMode", 420)


def _default_pod_status(status: Obj) -> None:
    # The v1 <-> internal conversion keeps podIP and podIPs in step; the singular field
    # wins when both are set and differ. (hostIP is left alone: capture 06/11.)
    for single, plural in (("podIP", "podIPs"),):
        ips = status.get(plural)
        if status.get(single):
            if not ips or not isinstance(ips[0], dict) or ips[0].get("ip") != status[single]:
                status[plural] = [{"ip": status[single]}]
        elif ips and isinstance(ips[0], dict) and ips[0].get("ip"):
            status[single] = ips[0]["ip"]
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict):
            cond.setdefault("lastProbeTime", None)
            cond.setdefault("lastTransitionTime", None)
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or []:
            if isinstance(cs, dict):
                cs.setdefault("lastState", {})


def qos_class(spec: Obj) -> str:
    containers = [
        c
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        if isinstance(c, dict)
    ]
    requests_seen = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = res.get("limits") or {}
        requests = res.get("requests") or {}
        if limits or requests:
            requests_seen = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not requests_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default(res: Resource, obj: Obj) -> None:
    """Scheme defaults, applied on create and on update (as decoding does)."""
    key = (res.group, res.plural)
    if key == ("", "pods"):
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            default_pod_spec(spec)
        if isinstance(obj.get("status"), dict):
            _default_pod_status(obj["status"])
    elif key == ("batch", "jobs"):
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            if spec.get("completions") is None and spec.get("parallelism") is None:
                spec["completions"] = 1
                spec["parallelism"] = 1
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            # A pod failure policy needs to see pods finish, so it waits for Failed.
            spec.setdefault(
                "podReplacementPolicy",
                "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed",
            )
            template = spec.setdefault("template", {})
            if isinstance(template, dict):
                tspec = template.setdefault("spec", {})
                if isinstance(tspec, dict):
                    default_pod_spec(tspec)
    elif key == ("", "namespaces"):
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("finalizers", ["kubernetes"])
        meta = obj.setdefault("metadata", {})
        if meta.get("name"):
            labels = meta.setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = meta["name"]
    elif key == ("", "secrets"):
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            # stringData is write-only: merged into data, base64-encoded.
            current = obj.get("data")
            data: Obj = current if isinstance(current, dict) else {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        # Go serialises maps with sorted keys.
        for m in ("labels", "annotations"):
            if isinstance(meta.get(m), dict):
                meta[m] = dict(sorted(meta[m].items()))


SCHEDULING_GATED_MESSAGE = "Scheduling is blocked due to non-empty scheduling gates"


def reset_status_on_create(res: Resource, obj: Obj, *, now: str | None = None) -> None:
    """Status a client may not set on create (pods, jobs, namespaces start fresh).

    A pod created with scheduling gates says at once why it waits (``now`` is the
    condition's lastTransitionTime).
    """
    key = (res.group, res.plural)
    if key == ("", "pods"):
        spec = obj.get("spec") or {}
        status: Obj = {"phase": "Pending"}
        if spec.get("schedulingGates"):
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": now,
                    "reason": "SchedulingGated",
                    "message": SCHEDULING_GATED_MESSAGE,
                }
            ]
        status["qosClass"] = qos_class(spec)
        obj["status"] = status
    elif key == ("batch", "jobs"):
        obj["status"] = {}
    elif key == ("", "namespaces"):
        obj["status"] = {"phase": "Active"}


# --------------------------------------------------------------------- admission
def _tolerates(tolerations: list[Any], key: str, effect: str) -> bool:
    for t in tolerations:
        if not isinstance(t, dict):
            continue
        key_ok = t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists")
        if key_ok and t.get("effect") in (None, "", effect):
            return True
    return False


def _admit_pod(obj: Obj, store: Store) -> None:
    from vnode.sandbox.kubeapi import resources
    from vnode.sandbox.kubeapi.store import generate_suffix

    meta = obj["metadata"]
    spec = obj.setdefault("spec", {})
    ns = meta.get("namespace", "")
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    sa_res = resources.by_kind("", "ServiceAccount")
    if not store.exists(sa_res, ns, sa_name):
        raise StatusError(
            403,
            "Forbidden",
            f'pods "{meta.get("name")}" is forbidden: error looking up service account '
            f'{ns}/{sa_name}: serviceaccount "{sa_name}" not found',
            details={"name": meta.get("name"), "kind": "pods"},
        )
    spec["serviceAccountName"] = sa_name
    spec["serviceAccount"] = sa_name
    sa = store.get(sa_res, ns, sa_name)
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = sa.get("automountServiceAccountToken", True)
    volumes = spec.setdefault("volumes", [])
    already = any(
        isinstance(m, dict) and m.get("mountPath") == SA_MOUNT_PATH
        for c in spec.get("containers") or []
        for m in (c.get("volumeMounts") or [])
    )
    if automount and not already:
        vol_name = f"kube-api-access-{generate_suffix()}"
        volumes.append(
            {
                "name": vol_name,
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {
                                            "apiVersion": "v1",
                                            "fieldPath": "metadata.namespace",
                                        },
                                    }
                                ]
                            }
                        },
                    ],
                    "defaultMode": 420,
                },
            }
        )
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                c.setdefault("volumeMounts", []).append(
                    {"name": vol_name, "readOnly": True, "mountPath": SA_MOUNT_PATH}
                )
    if not volumes:
        spec.pop("volumes", None)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not _tolerates(tolerations, key, "NoExecute"):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )


def _admit_job(obj: Obj) -> None:
    uid = obj["metadata"]["uid"]
    name = obj["metadata"]["name"]
    spec = obj.setdefault("spec", {})
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template = spec.setdefault("template", {})
        tmeta = template.setdefault("metadata", {})
        labels = tmeta.setdefault("labels", {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
        )
        tmeta["labels"] = dict(sorted(labels.items()))


def admit_create(res: Resource, obj: Obj, store: Store) -> None:
    """Mutating admission plugins on create (after defaulting and validation)."""
    key = (res.group, res.plural)
    if key == ("", "pods"):
        _admit_pod(obj, store)
    elif key == ("batch", "jobs"):
        _admit_job(obj)
    elif key == ("", "nodes"):
        # TaintNodesByCondition: a new Node is not ready until its kubelet says so.
        taints = obj.setdefault("spec", {}).setdefault("taints", [])
        if not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
            taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})


# -------------------------------------------------------------------- validation
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
# Kinds whose names must be DNS labels rather than subdomains.
_LABEL_NAMED = frozenset({("", "namespaces")})

Cause = tuple[str, str, str]  # (reason, message, field)


def go_quote(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _invalid_value(field: str, value: Any, detail: str) -> Cause:
    return ("FieldValueInvalid", f"Invalid value: {go_quote(value)}: {detail}", field)


def _required(field: str, detail: str = "") -> Cause:
    return ("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), field)


def name_errors(value: str, field: str, *, label: bool) -> list[Cause]:
    out: list[Cause] = []
    limit = 63 if label else 253
    if len(value) > limit:
        out.append(_invalid_value(field, value, f"must be no more than {limit} characters"))
    pattern, msg = (_LABEL, _LABEL_MSG) if label else (_SUBDOMAIN, _SUBDOMAIN_MSG)
    if not pattern.fullmatch(value):
        out.append(_invalid_value(field, value, msg))
    return out


def _validate_containers(
    spec: Obj, path: str, key: str, out: list[Cause], volumes: set[str]
) -> None:
    containers = spec.get(key)
    if key == "containers" and not containers:
        out.append(_required(f"{path}.containers"))
        return
    seen: set[str] = set()
    for i, c in enumerate(containers or []):
        cpath = f"{path}.{key}[{i}]"
        if not isinstance(c, dict):
            out.append(_invalid_value(cpath, c, "must be an object"))
            continue
        name = c.get("name") or ""
        if not name:
            out.append(_required(f"{cpath}.name"))
        else:
            out.extend(name_errors(name, f"{cpath}.name", label=True))
        if not c.get("image"):
            out.append(_required(f"{cpath}.image"))
        for j, port in enumerate(c.get("ports") or []):
            number = port.get("containerPort") if isinstance(port, dict) else None
            ppath = f"{cpath}.ports[{j}].containerPort"
            if not isinstance(number, int) or not 1 <= number <= 65535:
                out.append(
                    _invalid_value(
                        ppath,
                        number if number is not None else 0,
                        "must be between 1 and 65535, inclusive",
                    )
                )
        for j, mount in enumerate(c.get("volumeMounts") or []):
            mount_name = mount.get("name") if isinstance(mount, dict) else None
            if mount_name not in volumes:
                out.append(
                    (
                        "FieldValueNotFound",
                        f"Not found: {go_quote(mount_name or '')}",
                        f"{cpath}.volumeMounts[{j}].name",
                    )
                )
        out.extend(_resource_errors(c.get("resources"), f"{cpath}.resources"))
        if name and name in seen:
            out.append(
                ("FieldValueDuplicate", f"Duplicate value: {go_quote(name)}", f"{cpath}.name")
            )
        seen.add(name)


def _resource_errors(resources: Any, path: str) -> list[Cause]:
    """Requests may not exceed limits (the real message quotes both quantities)."""
    from vnode.sandbox.kubeapi import quantity

    if not isinstance(resources, dict):
        return []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    out: list[Cause] = []
    for name, wanted in requests.items():
        if name not in limits:
            continue
        try:
            too_big = quantity.parse(wanted) > quantity.parse(limits[name])
        except (ValueError, TypeError, ZeroDivisionError):
            continue
        if too_big:
            out.append(
                _invalid_value(
                    f"{path}.requests[{name}]",
                    str(wanted),
                    f"must be less than or equal to {name} limit of {limits[name]}",
                )
            )
    return out


def _validate_volumes(spec: Obj, path: str, out: list[Cause]) -> set[str]:
    names: set[str] = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        vpath = f"{path}.volumes[{i}]"
        if not isinstance(vol, dict):
            out.append(_invalid_value(vpath, vol, "must be an object"))
            continue
        name = vol.get("name") or ""
        if not name:
            out.append(_required(f"{vpath}.name"))
        else:
            out.extend(name_errors(name, f"{vpath}.name", label=True))
        sources = [k for k in vol if k != "name"]
        if not sources:
            out.append(_required(vpath, "must specify a volume type"))
        elif len(sources) > 1:
            out.append(
                ("FieldValueForbidden", "Forbidden: may not specify more than 1 volume type", vpath)
            )
        if name in names:
            out.append(
                ("FieldValueDuplicate", f"Duplicate value: {go_quote(name)}", f"{vpath}.name")
            )
        names.add(name)
    return names


def validate_pod_spec(spec: Obj, path: str, *, restart_policies: tuple[str, ...]) -> list[Cause]:
    out: list[Cause] = []
    volumes = _validate_volumes(spec, path, out)
    _validate_containers(spec, path, "containers", out, volumes)
    _validate_containers(spec, path, "initContainers", out, volumes)
    out.extend(_toleration_errors(spec.get("tolerations") or [], f"{path}.tolerations"))
    policy = spec.get("restartPolicy")
    if policy not in restart_policies:
        supported = ", ".join(go_quote(p) for p in restart_policies)
        if policy in (None, ""):
            out.append(_required(f"{path}.restartPolicy", f"supported values: {supported}"))
        else:
            out.append(
                (
                    "FieldValueNotSupported",
                    f"Unsupported value: {go_quote(policy)}: supported values: {supported}",
                    f"{path}.restartPolicy",
                )
            )
    return out


_POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def _mutable_masked(spec: Obj) -> Obj:
    spec = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                c.pop("image", None)
    for key in (
        "activeDeadlineSeconds",
        "tolerations",
        "terminationGracePeriodSeconds",
        "schedulingGates",
    ):
        spec.pop(key, None)
    return spec


def _scheduling_gate_errors(old_spec: Obj, new_spec: Obj) -> list[Cause]:
    """Scheduling gates may only be removed once the pod exists, never added."""
    old_names = {
        g.get("name") for g in old_spec.get("schedulingGates") or [] if isinstance(g, dict)
    }
    out: list[Cause] = []
    for i, gate in enumerate(new_spec.get("schedulingGates") or []):
        name = gate.get("name") if isinstance(gate, dict) else None
        if name not in old_names:
            out.append(
                (
                    "FieldValueForbidden",
                    f"Forbidden: only deletion is allowed, but found new scheduling gate '{name}'",
                    f"spec.schedulingGates[{i}].name",
                )
            )
    return out


def _go_field(name: str) -> str:
    special = {"nodeName": "NodeName", "serviceAccountName": "ServiceAccountName"}
    return special.get(name, name[:1].upper() + name[1:])


def _pod_spec_diff(old: Obj, new: Obj) -> str:
    """A short Go-style diff of the fields that changed (the first sentence is what matters)."""
    lines = ["  core.PodSpec{"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            lines.append(f"- \t{_go_field(key)}: {go_quote(old.get(key, ''))},")
            lines.append(f"+ \t{_go_field(key)}: {go_quote(new.get(key, ''))},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def _validate_pod_update(new: Obj, old: Obj) -> list[Cause]:
    old_spec = old.get("spec") or {}
    new_spec = new.get("spec") or {}
    out: list[Cause] = []
    if _mutable_masked(old_spec) != _mutable_masked(new_spec):
        out.append(
            (
                "FieldValueForbidden",
                f"{_POD_UPDATE_FORBIDDEN}\n{_pod_spec_diff(old_spec, new_spec)}",
                "spec",
            )
        )
        return out
    out.extend(_scheduling_gate_errors(old_spec, new_spec))
    old_tol = old_spec.get("tolerations") or []
    new_tol = new_spec.get("tolerations") or []
    if any(t not in new_tol for t in old_tol):
        out.append(
            (
                "FieldValueForbidden",
                "Forbidden: existing toleration can not be modified except its tolerationSeconds",
                "spec.tolerations",
            )
        )
    return out


def validate(res: Resource, obj: Obj, old: Obj | None) -> None:
    """Raise 422 Invalid with every cause, like the resource's strategy would."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[Cause] = []
    key = (res.group, res.plural)
    if old is None:
        if not name:
            causes.append(_required("metadata.name", "name or generateName is required"))
        else:
            causes.extend(name_errors(name, "metadata.name", label=key in _LABEL_NAMED))
    causes.extend(_metadata_map_errors(meta))
    if key == ("", "pods"):
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        causes.extend(
            validate_pod_spec(spec or {}, "spec", restart_policies=("Always", "OnFailure", "Never"))
        )
        if old is not None and not causes:
            causes.extend(_validate_pod_update(obj, old))
        if old is not None:
            causes.extend(_validate_pod_status(obj, old))
    elif key == ("batch", "jobs"):
        tspec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        causes.extend(
            validate_pod_spec(tspec, "spec.template.spec", restart_policies=("OnFailure", "Never"))
        )
    elif res.kind == "Event" and old is None:
        causes.extend(_event_errors(obj, meta.get("namespace") or "", res.group))
    elif key == ("", "nodes"):
        causes.extend(_node_errors(obj, old))
    elif key in (("", "configmaps"), ("", "secrets")):
        for field_name in ("data", "binaryData"):
            for data_key in obj.get(field_name) or {}:
                if not _CONFIG_KEY.fullmatch(str(data_key)) or len(str(data_key)) > 253:
                    causes.append(
                        _invalid_value(f"{field_name}[{data_key}]", data_key, _CONFIG_KEY_MSG)
                    )
    elif key == ("coordination.k8s.io", "leases"):
        duration = (obj.get("spec") or {}).get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            causes.append(
                _invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0")
            )
    if causes:
        # Events are validated as the core kind, whichever API they came through.
        raise invalid(res.kind, name, causes, "" if res.kind == "Event" else res.group)


# ------------------------------------------------------------- metadata, status
_ANNOTATIONS_LIMIT = 256 * 1024


def _metadata_map_errors(meta: Obj) -> list[Cause]:
    from vnode.sandbox.kubeapi import selectors

    out: list[Cause] = []
    labels = meta.get("labels") or {}
    if isinstance(labels, dict):
        for k, v in labels.items():
            for msg in selectors.qualified_name_errors(str(k)):
                out.append(_invalid_value("metadata.labels", k, msg))
            for msg in selectors.label_value_errors(str(v)):
                out.append(_invalid_value("metadata.labels", v, msg))
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict):
        total = 0
        for k, v in annotations.items():
            for msg in selectors.qualified_name_errors(str(k).lower()):
                out.append(_invalid_value("metadata.annotations", k, msg))
            total += len(str(k)) + len(str(v))
        if total > _ANNOTATIONS_LIMIT:
            out.append(
                (
                    "FieldValueTooLong",
                    f"Too long: may not be more than {_ANNOTATIONS_LIMIT} bytes",
                    "metadata.annotations",
                )
            )
    return out


_IP_HINT = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _ip_errors(status: Obj, key: str) -> list[Cause]:
    import ipaddress

    out: list[Cause] = []
    for i, entry in enumerate(status.get(key) or []):
        ip = entry.get("ip") if isinstance(entry, dict) else None
        try:
            ipaddress.ip_address(str(ip))
        except ValueError:
            out.append(_invalid_value(f"status.{key}[{i}].ip", ip or "", _IP_HINT))
    return out


def _validate_pod_status(new: Obj, old: Obj) -> list[Cause]:
    status = new.get("status") or {}
    out = _ip_errors(status, "podIPs") + _ip_errors(status, "hostIPs")
    policy = (new.get("spec") or {}).get("restartPolicy")
    if policy == "Always":
        return out
    old_statuses = (old.get("status") or {}).get("containerStatuses") or []
    new_statuses = status.get("containerStatuses") or []
    for i, before in enumerate(old_statuses):
        terminated = ((before or {}).get("state") or {}).get("terminated")
        if terminated is None:
            continue
        if terminated.get("exitCode", 0) != 0 and policy == "OnFailure":
            continue
        for after in new_statuses:
            if after.get("name") == before.get("name") and not (after.get("state") or {}).get(
                "terminated"
            ):
                out.append(
                    (
                        "FieldValueForbidden",
                        "Forbidden: may not be transitioned to non-terminated state",
                        f"status.containerStatuses[{i}].state",
                    )
                )
    return out


_EVENT_V1_NAMES = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
    "reportingController": "reportingComponent",
}


def _event_errors(obj: Obj, namespace: str, group: str) -> list[Cause]:
    """Event create validation: legacy rules for every API, strict ones for events.k8s.io."""
    from vnode.sandbox.kubeapi import selectors

    ev = {_EVENT_V1_NAMES.get(k, k): v for k, v in obj.items()} if group else dict(obj)
    out: list[Cause] = []
    involved_ns = str((ev.get("involvedObject") or {}).get("namespace") or "")
    controller_field = "reportingComponent" if not group else "reportingController"
    if not ev.get("eventTime"):
        if (involved_ns and namespace != involved_ns) or (
            not involved_ns and namespace not in ("", "default")
        ):
            out.append(
                _invalid_value(
                    "involvedObject.namespace", involved_ns, "does not match event.namespace"
                )
            )
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            out.append(
                _invalid_value(
                    "involvedObject.namespace", involved_ns, "does not match event.namespace"
                )
            )
        controller = str(ev.get("reportingComponent") or "")
        if not controller:
            out.append(_required(controller_field))
        for msg in selectors.qualified_name_errors(controller):
            out.append(_invalid_value(controller_field, controller, msg))
        instance = str(ev.get("reportingInstance") or "")
        if not instance:
            out.append(_required("reportingInstance"))
        elif len(instance) > 128:
            out.append(_invalid_value("reportingInstance", "", "can have at most 128 characters"))
        action = str(ev.get("action") or "")
        if not action:
            out.append(_required("action"))
        elif len(action) > 128:
            out.append(_invalid_value("action", "", "can have at most 128 characters"))
        reason = str(ev.get("reason") or "")
        if not reason:
            out.append(_required("reason"))
        elif len(reason) > 128:
            out.append(_invalid_value("reason", "", "can have at most 128 characters"))
        if len(str(ev.get("message") or "")) > 1024:
            out.append(_invalid_value("message", "", "can have at most 1024 characters"))
    if not group:
        return out
    # Strict rules for events created through events.k8s.io/v1.
    if not ev.get("eventTime"):
        out.append(_required("eventTime"))
    if ev.get("type") not in ("Normal", "Warning"):
        out.append(_invalid_value("type", "", f"has invalid value: {ev.get('type') or ''}"))
    for key in ("firstTimestamp", "lastTimestamp", "count"):
        if ev.get(key):
            out.append(_invalid_value(key, "", "needs to be unset"))
    source = ev.get("source") or {}
    if isinstance(source, dict) and (source.get("component") or source.get("host")):
        out.append(_invalid_value("source", "", "needs to be unset"))
    return out


# ------------------------------------------------------------ taints, tolerations
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
    "'[-._a-zA-Z0-9]+')"
)


def _effect_error(effect: Any, path: str, *, required: bool) -> list[Cause]:
    if effect in (None, ""):
        return [_required(path)] if required else []
    if effect not in _EFFECTS:
        supported = ", ".join(go_quote(e) for e in _EFFECTS)
        return [
            (
                "FieldValueNotSupported",
                f"Unsupported value: {go_quote(effect)}: supported values: {supported}",
                path,
            )
        ]
    return []


def _toleration_errors(tolerations: list[Any], path: str) -> list[Cause]:
    from vnode.sandbox.kubeapi import selectors

    out: list[Cause] = []
    for i, t in enumerate(tolerations):
        if not isinstance(t, dict):
            continue
        tpath = f"{path}[{i}]"
        key = t.get("key") or ""
        if key:
            for msg in selectors.qualified_name_errors(key):
                out.append(_invalid_value(f"{tpath}.key", key, msg))
        operator = t.get("operator") or "Equal"
        if not key and operator != "Exists":
            out.append(
                _invalid_value(
                    f"{tpath}.operator",
                    operator,
                    "operator must be Exists when `key` is empty, "
                    'which means "match all values and all keys"',
                )
            )
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            out.append(
                _invalid_value(
                    f"{tpath}.effect",
                    t.get("effect") or "",
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if operator == "Exists" and t.get("value"):
            out.append(
                _invalid_value(
                    f"{tpath}.operator",
                    t["value"],
                    "value must be empty when `operator` is 'Exists'",
                )
            )
        elif operator not in ("Equal", "Exists"):
            out.append(
                (
                    "FieldValueNotSupported",
                    f'Unsupported value: {go_quote(operator)}: supported values: "Equal", "Exists"',
                    f"{tpath}.operator",
                )
            )
        out.extend(_effect_error(t.get("effect"), f"{tpath}.effect", required=False))
    return out


def _node_errors(obj: Obj, old: Obj | None) -> list[Cause]:
    from vnode.sandbox.kubeapi import selectors

    out: list[Cause] = []
    spec = obj.get("spec") or {}
    for i, taint in enumerate(spec.get("taints") or []):
        if not isinstance(taint, dict):
            continue
        key = taint.get("key") or ""
        if not key:
            out.append(_required(f"spec.taints[{i}].key"))
        for msg in selectors.qualified_name_errors(key) if key else []:
            out.append(_invalid_value(f"spec.taints[{i}].key", key, msg))
        for msg in selectors.label_value_errors(str(taint.get("value") or "")):
            out.append(_invalid_value(f"spec.taints[{i}].value", taint.get("value"), msg))
        out.extend(_effect_error(taint.get("effect"), f"spec.taints[{i}].effect", required=True))
    if old is not None:
        before = (old.get("spec") or {}).get("providerID") or ""
        after = spec.get("providerID") or ""
        if before and before != after:
            out.append(
                (
                    "FieldValueForbidden",
                    'Forbidden: node updates may not change providerID except from "" to valid',
                    "spec.providerID",
                )
            )
    return out
