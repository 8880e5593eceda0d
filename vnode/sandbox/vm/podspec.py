"""A static pod manifest as the standalone kubelet turns it into a pod.

The kubelet decodes each manifest with the API's defaulting, then applies the static
pod rules (pkg/kubelet/config): the name gets ``-<node name>`` appended, the namespace
defaults to ``default``, the UID is a hash of the manifest, the node and the file (kept
if the manifest sets one), the ``kubernetes.io/config.*`` annotations are added, and a
``NoExecute``/``Exists`` toleration is appended. ``/pods`` serialises the result with
Go's encoder: struct field order, sorted map keys, HTML-escaped strings and a trailing
newline. The reference captures in ``shared/reference/kubelet`` are what this matches.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from typing import Any

OBJECT_META = [
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
]  # fmt: skip
POD_SPEC = [
    "volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
    "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector",
    "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName",
    "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext",
    "imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "tolerations",
    "hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates",
    "runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead",
    "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates",
    "resourceClaims", "resources",
]  # fmt: skip
CONTAINER = [
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
    "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe",
    "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
]  # fmt: skip
VOLUME = [
    "name", "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo",
    "secret", "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume",
    "cinder", "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap",
    "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image",
]  # fmt: skip
_NESTED: dict[str, list[str]] = {
    "hostPath": ["path", "type"],
    "emptyDir": ["medium", "sizeLimit"],
    "configMap": ["name", "items", "defaultMode", "optional"],
    "secret": ["secretName", "items", "defaultMode", "optional"],
    "projected": ["sources", "defaultMode"],
    "downwardAPI": ["items", "defaultMode"],
    "persistentVolumeClaim": ["claimName", "readOnly"],
}
_SOURCE = {"serviceAccountToken": ["audience", "expirationSeconds", "path"]}
VOLUME_MOUNT = [
    "name", "readOnly", "recursiveReadOnly", "mountPath", "subPath", "mountPropagation",
    "subPathExpr",
]  # fmt: skip
ENV_VAR = ["name", "value", "valueFrom"]
PORT = ["name", "hostPort", "containerPort", "protocol", "hostIP"]
TOLERATION = ["key", "operator", "value", "effect", "tolerationSeconds"]
RESOURCES = ["limits", "requests", "claims"]
PROBE = [
    "exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "timeoutSeconds",
    "periodSeconds", "successThreshold", "failureThreshold", "terminationGracePeriodSeconds",
]  # fmt: skip


def ordered(obj: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """Known keys in Go struct order, then the rest as they came."""
    out = {k: obj[k] for k in order if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def _quantity(v: Any) -> Any:
    """A YAML number in resources becomes the quantity string Go's encoder writes."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    if float(v).is_integer():
        return str(int(v))
    return f"{round(v * 1000)}m"


def _sorted_map(m: Any) -> Any:
    return {k: m[k] for k in sorted(m)} if isinstance(m, dict) else m


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: Any) -> Any:
    if not isinstance(probe, dict):
        return probe
    p = dict(probe)
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)
    if isinstance(p.get("httpGet"), dict):
        p["httpGet"] = {**p["httpGet"]}
        p["httpGet"].setdefault("path", "/")
        p["httpGet"].setdefault("scheme", "HTTP")
    return ordered(p, PROBE)


def _default_container(c: dict[str, Any], host_network: bool) -> dict[str, Any]:
    c = dict(c)
    res = dict(c.get("resources") or {})
    limits = res.get("limits") or {}
    if limits:
        requests = dict(res.get("requests") or {})
        for k, v in limits.items():
            requests.setdefault(k, v)
        res["requests"] = requests
    res = {
        k: {q: _quantity(x) for q, x in v.items()} if isinstance(v, dict) else v
        for k, v in res.items()
    }
    c["resources"] = ordered({k: _sorted_map(v) for k, v in res.items()}, RESOURCES)
    if "ports" in c:
        ports = []
        for given in c["ports"] or []:
            port = dict(given)
            port.setdefault("protocol", "TCP")
            if host_network and "containerPort" in port:
                port.setdefault("hostPort", port["containerPort"])
            ports.append(ordered(port, PORT))
        c["ports"] = ports
    if "env" in c:
        env = []
        for var in c["env"] or []:
            e = dict(var)
            ref = (e.get("valueFrom") or {}).get("fieldRef")
            if isinstance(ref, dict) and "apiVersion" not in ref:
                e["valueFrom"] = {**e["valueFrom"], "fieldRef": {"apiVersion": "v1", **ref}}
            env.append(ordered(e, ENV_VAR))
        c["env"] = env
    if "volumeMounts" in c:
        c["volumeMounts"] = [ordered(dict(m), VOLUME_MOUNT) for m in c["volumeMounts"] or []]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            c[probe] = _default_probe(c[probe])
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _image_pull_policy(str(c.get("image", ""))))
    return ordered(c, CONTAINER)


def _default_volume(v: dict[str, Any]) -> dict[str, Any]:
    v = dict(v)
    for kind in ("configMap", "secret", "projected", "downwardAPI"):
        if isinstance(v.get(kind), dict):
            v[kind] = {**v[kind]}
            v[kind].setdefault("defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        v["hostPath"] = {**v["hostPath"]}
        v["hostPath"].setdefault("type", "")
    if isinstance(v.get("projected"), dict):
        sources = []
        for s in v["projected"].get("sources") or []:
            sources.append({k: ordered(x, _SOURCE[k]) if k in _SOURCE else x for k, x in s.items()})
        v["projected"]["sources"] = sources
    for kind, order in _NESTED.items():
        if isinstance(v.get(kind), dict):
            v[kind] = ordered(v[kind], order)
    return ordered(v, VOLUME)


def pod_uid(manifest: dict[str, Any], node_name: str, source: str) -> str:
    """32 hex digits, stable for the same manifest, node and file (like the kubelet's)."""
    h = hashlib.md5(usedforsecurity=False)
    h.update(f"host:{node_name}".encode())
    h.update(f"file:{source}".encode())
    h.update(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def static_pod(
    manifest: dict[str, Any], *, node_name: str, source: str, seen: dt.datetime | str
) -> dict[str, Any]:
    """The pod the kubelet serves for a manifest file (status still to be filled in).

    ``seen`` is when the kubelet read the file (RFC3339Nano text, or a datetime)."""
    meta_in = dict(manifest.get("metadata") or {})
    spec_in = copy.deepcopy(manifest.get("spec") or {})
    uid = str(meta_in.get("uid") or pod_uid(manifest, node_name, source))
    annotations = dict(meta_in.get("annotations") or {})
    annotations["kubernetes.io/config.hash"] = uid
    annotations["kubernetes.io/config.seen"] = seen if isinstance(seen, str) else rfc3339_nano(seen)
    annotations["kubernetes.io/config.source"] = "file"
    meta = {k: v for k, v in meta_in.items() if k not in ("uid", "creationTimestamp")}
    meta["name"] = f"{meta_in.get('name', '')}-{node_name.lower()}"
    meta["namespace"] = meta_in.get("namespace") or "default"
    meta["uid"] = uid
    meta["creationTimestamp"] = None
    if "labels" in meta:
        meta["labels"] = _sorted_map(meta["labels"])
    meta["annotations"] = _sorted_map(annotations)

    spec = dict(spec_in)
    host_network = bool(spec.get("hostNetwork"))
    if "volumes" in spec:
        spec["volumes"] = [_default_volume(v) for v in spec["volumes"] or []]
    for key in ("initContainers", "containers"):
        if key in spec:
            spec[key] = [_default_container(c, host_network) for c in spec[key] or []]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    spec["nodeName"] = node_name
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    tolerations = [ordered(dict(t), TOLERATION) for t in spec.get("tolerations") or []]
    tolerations.append({"operator": "Exists", "effect": "NoExecute"})
    spec["tolerations"] = tolerations
    spec.setdefault("enableServiceLinks", True)
    if "nodeSelector" in spec:
        spec["nodeSelector"] = _sorted_map(spec["nodeSelector"])
    return {
        "metadata": ordered(meta, OBJECT_META),
        "spec": ordered(spec, POD_SPEC),
        "status": {"phase": "Pending"},
    }


def rfc3339_nano(t: dt.datetime, *, fixed: bool = False) -> str:
    """Go's RFC3339Nano: trailing zeros of the fraction trimmed (``fixed`` keeps nine)."""
    t = t.astimezone(dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    nanos = f"{t.microsecond * 1000:09d}"
    if fixed:
        return f"{base}.{nanos}Z"
    nanos = nanos.rstrip("0")
    return f"{base}.{nanos}Z" if nanos else f"{base}Z"


def go_json(obj: Any) -> bytes:
    """Go's ``encoding/json`` Encoder output: compact, HTML-escaped, newline-terminated."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return (text + "\n").encode()
