"""Server-side ``Table`` output, the cells ``kubectl get`` prints.

kubectl does not compute columns itself: it asks for ``as=Table`` and prints what the
server sends, so the STATUS, READY, RESTARTS and AGE a user sees come from here. The
column definitions and the cell logic follow the real server's printers for each kind
(pods, nodes, namespaces, events, configmaps, secrets, serviceaccounts, leases, jobs)
and its default convertor (Name, Created At) for anything else; ages use the same
human duration rounding, so a pod shows ``3m16s``, ``5d`` or ``2y`` as it would on a
real cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vnode.clock import parse_time
from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.selectors import label_selector_from_spec
from vnode.sandbox.kubeapi.status import bad_request

TABLE_V1 = "meta.k8s.io/v1"
TABLE_V1BETA1 = "meta.k8s.io/v1beta1"

# ---------------------------------------------------------------------------------------
# Column definitions (descriptions are the API field docs the real server uses)

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_CREATED_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is "
    "in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_ADDRESSES_DOC = (
    "List of addresses reachable to the node. Queried from cloud provider, if available. "
    "More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This "
    "field is declared as mergeable, but the merge key is not sufficiently unique, which can "
    "cause data corruption when it is merged. Callers should instead use a full-replacement "
    "patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that "
    "addresses can change during the lifetime of a Node. However, there are some exceptions "
    "where this may not be possible, such as Pods that inherit a Node's address in its own "
    "status or consumers of the downward API (status.hostIP)."
)


def _col(
    name: str, description: str, *, priority: int = 0, type_: str = "string", fmt: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_NAME = _col("Name", _NAME_DOC, fmt="name")
_AGE = _col("Age", _CREATED_DOC)

_POD_COLUMNS = (
    _NAME,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted.",
    ),
    _AGE,
    _col(
        "IP",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if "
        "not yet allocated.",
        priority=1,
    ),
    _col(
        "Node",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a "
        "candidate for scheduling by the scheduler defined in schedulerName. Once this field "
        "is set, the kubelet for this node becomes responsible for the lifecycle of this pod. "
        "This field should not be used to express a desire for the pod to be scheduled on a "
        "specific node. "
        "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
        priority=1,
    ),
    _col(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it "
        "cannot be scheduled right away as preemption victims receive their graceful "
        "termination periods. This field does not guarantee that the pod will be scheduled on "
        "this node. Scheduler may decide to place the pod elsewhere if other nodes become "
        "available sooner. Scheduler may also decide to give the resources on this node to a "
        "higher priority pod that is created after preemption. As a result, this field may be "
        "different than PodSpec.nodeName when the pod is scheduled.",
        priority=1,
    ),
    _col(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready "
        "when all its containers are ready AND all conditions specified in the readiness gates "
        'have status equal to "True" More info: '
        "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
        priority=1,
    ),
)

_NODE_COLUMNS = (
    _NAME,
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    _AGE,
    _col("Version", "Kubelet Version reported by the node."),
    _col("Internal-IP", _ADDRESSES_DOC, priority=1),
    _col("External-IP", _ADDRESSES_DOC, priority=1),
    _col(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        priority=1,
    ),
    _col(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        priority=1,
    ),
    _col(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
        "containerd://1.4.2).",
        priority=1,
    ),
)

_EVENT_COLUMNS = (
    _col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    _col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    _col(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status.",
    ),
    _col("Object", "The object that this event is about."),
    _col(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string should "
        "contain a valid JSON/Go field access statement, such as "
        "desiredState.manifest.containers[2]. For example, if the object reference is to a "
        'container within a pod, this would take on a value like: "spec.containers{name}" '
        '(where "name" refers to the name of the container that triggered the event) or if no '
        'container name is specified "spec.containers[2]" (container with index 2 in this '
        "pod). This syntax is chosen only to have some well-defined way of referencing a part "
        "of an object.",
        priority=1,
    ),
    _col(
        "Source",
        "The component reporting this event. Should be a short machine understandable string.",
        priority=1,
    ),
    _col("Message", "A human-readable description of the status of this operation."),
    _col(
        "First Seen",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        priority=1,
    ),
    _col("Count", "The number of times this event has occurred.", priority=1),
    _col("Name", _NAME_DOC, priority=1, fmt="name"),
)

_NAMESPACE_COLUMNS = (_NAME, _col("Status", "The status of the namespace"), _AGE)

_CONFIGMAP_COLUMNS = (
    _NAME,
    _col(
        "Data",
        "Data contains the configuration data. Each key must consist of alphanumeric "
        "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the "
        "BinaryData field. The keys stored in Data must not overlap with the keys in the "
        "BinaryData field, this is enforced during validation process.",
    ),
    _AGE,
)

_SECRET_COLUMNS = (
    _NAME,
    _col(
        "Type",
        "Used to facilitate programmatic handling of secret data. More info: "
        "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    _col(
        "Data",
        "Data contains the secret data. Each key must consist of alphanumeric characters, "
        "'-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, "
        "representing the arbitrary (possibly non-string) data value here. Described in "
        "https://tools.ietf.org/html/rfc4648#section-4",
    ),
    _AGE,
)

_SERVICEACCOUNT_COLUMNS = (
    _NAME,
    _col(
        "Secrets",
        "Secrets is a list of the secrets in the same namespace that pods running using this "
        "ServiceAccount are allowed to use. Pods are only limited to this list if this service "
        'account has a "kubernetes.io/enforce-mountable-secrets" annotation set to "true". The '
        '"kubernetes.io/enforce-mountable-secrets" annotation is deprecated since v1.32. Prefer '
        "separate namespaces to isolate access to mounted secrets. This field should not be "
        "used to find auto-generated service account token secrets for use outside of pods. "
        "Instead, tokens can be requested directly using the TokenRequest API, or service "
        "account token secrets can be manually created. More info: "
        "https://kubernetes.io/docs/concepts/configuration/secret",
    ),
    _AGE,
)

_LEASE_COLUMNS = (
    _NAME,
    _col(
        "Holder",
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated "
        "Leader Election is used, the holder identity must be equal to the elected "
        "LeaseCandidate.metadata.name field.",
    ),
    _AGE,
)

_JOB_COLUMNS = (
    _NAME,
    _col("Status", "Status of the job."),
    _col(
        "Completions",
        "The number of pods which reached phase Succeeded. The value increases monotonically "
        "for a given spec. However, it may decrease in reaction to scale down of elastic "
        "indexed jobs.",
    ),
    _col("Duration", "Time required to complete the job."),
    _AGE,
    _col("Containers", "Names of each container in the template.", priority=1),
    _col("Images", "Images referenced by each container in the template.", priority=1),
    _col(
        "Selector",
        "A label query over pods that should match the pod count. Normally, the system sets "
        "this field for you. More info: "
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
        priority=1,
    ),
)

_DEFAULT_COLUMNS = (_NAME, _col("Created At", _CREATED_DOC, type_="date"))

# ---------------------------------------------------------------------------------------
# Durations


def human_duration(seconds: float) -> str:
    """A duration the way kubectl shows ages: ``45s``, ``3m16s``, ``12m``, ``5h3m``,
    ``3d4h``, ``120d``, ``2y30d``; slightly negative values (clock skew) read ``0s``."""
    whole = int(seconds)  # truncates toward zero, as the server does
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        s = whole % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def _time(value: Any) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def since(value: Any, now: dt.datetime) -> str:
    """Age of a timestamp field; ``<unknown>`` when it is unset."""
    t = _time(value)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _get(obj: Any, *path: str) -> Any:
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _name(obj: dict[str, Any]) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _age(obj: dict[str, Any], now: dt.datetime) -> str:
    return since(_get(obj, "metadata", "creationTimestamp"), now)


# ---------------------------------------------------------------------------------------
# Pods


def _condition_true(conditions: Any, ctype: str) -> bool:
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c.get("status") == "True"
    return False


def _later(a: dt.datetime | None, b: Any) -> dt.datetime | None:
    t = _time(b)
    if t is None:
        return a
    return t if a is None or t > a else a


def pod_cells(pod: dict[str, Any], now: dt.datetime) -> list[Any]:
    """NAME, READY, STATUS, RESTARTS, AGE, IP, NODE, NOMINATED NODE, READINESS GATES."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = spec.get("containers") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(containers)
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: dt.datetime | None = None
    last_sidecar_restart: dt.datetime | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def is_sidecar(name: Any) -> bool:
        return (init_specs.get(name) or {}).get("restartPolicy") == "Always"

    total += sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        finished = _get(cs, "lastState", "terminated", "finishedAt")
        if _get(cs, "lastState", "terminated") is not None:
            last_restart = _later(last_restart, finished)
        sidecar = is_sidecar(cs.get("name"))
        if sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            if _get(cs, "lastState", "terminated") is not None:
                last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode') or 0}"
        elif (
            waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing"
        ):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Walk backwards so that the first container's state is the one that shows.
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            if _get(cs, "lastState", "terminated") is not None:
                last_restart = _later(
                    last_restart, _get(cs, "lastState", "terminated", "finishedAt")
                )
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode') or 0}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_condition = _condition_true(status.get("conditions"), "Ready")
            reason = "Running" if ready_condition else "NotReady"

    deleting = _get(pod, "metadata", "deletionTimestamp") is not None
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"

    ips = status.get("podIPs") or []
    pod_ip = (ips[0].get("ip") if ips and isinstance(ips[0], dict) else "") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            for c in status.get("conditions") or []:
                if c.get("type") == gate.get("conditionType"):
                    true_count += c.get("status") == "True"
                    break
        gates_cell = f"{true_count}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def _pod_row_conditions(pod: dict[str, Any]) -> list[dict[str, Any]] | None:
    phase = _get(pod, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return None
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


# ---------------------------------------------------------------------------------------
# Other kinds


def node_cells(node: dict[str, Any], now: dt.datetime) -> list[Any]:
    status = node.get("status") or {}
    states: list[str] = []
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            states = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if _get(node, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in (_get(node, "metadata", "labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/") :]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return str(a.get("address") or "")
        return "<none>"

    return [
        _name(node),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _age(node, now),
        info.get("kubeletVersion") or "",
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _as_core_event(event: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 field names (both views share a printer)."""
    if "regarding" not in event and "note" not in event and "deprecatedSource" not in event:
        return event
    return {
        "metadata": event.get("metadata") or {},
        "involvedObject": event.get("regarding") or {},
        "reason": event.get("reason"),
        "message": event.get("note"),
        "source": event.get("deprecatedSource") or {},
        "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": event.get("deprecatedLastTimestamp"),
        "count": event.get("deprecatedCount"),
        "type": event.get("type"),
        "eventTime": event.get("eventTime"),
        "series": event.get("series"),
        "reportingComponent": event.get("reportingController"),
        "reportingInstance": event.get("reportingInstance"),
    }


def event_cells(event: dict[str, Any], now: dt.datetime) -> list[Any]:
    ev = _as_core_event(event)
    first = (
        since(ev.get("firstTimestamp"), now)
        if _time(ev.get("firstTimestamp"))
        else since(ev.get("eventTime"), now)
    )
    last = since(ev.get("lastTimestamp"), now) if _time(ev.get("lastTimestamp")) else first
    count = int(ev.get("count") or 0)
    series = ev.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    ref = ev.get("involvedObject") or {}
    kind = str(ref.get("kind") or "").lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    return [
        last,
        ev.get("type") or "",
        ev.get("reason") or "",
        target,
        ref.get("fieldPath") or "",
        f"{component}, {instance}" if instance else component,
        str(ev.get("message") or "").strip(),
        first,
        count,
        _name(ev),
    ]


def job_cells(job: dict[str, Any], now: dt.datetime) -> list[Any]:
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = _time(status.get("startTime")), _time(status.get("completionTime"))
    if start is None:
        duration = ""
    elif end is None:
        duration = human_duration((now - start).total_seconds())
    else:
        duration = human_duration((end - start).total_seconds())
    conditions = status.get("conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _get(job, "metadata", "deletionTimestamp") is not None:
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    elif _condition_true(conditions, "SuccessCriteriaMet"):
        state = "SuccessCriteriaMet"
    else:
        state = "Running"
    template = _get(spec, "template", "spec", "containers") or []
    selector = spec.get("selector")
    return [
        _name(job),
        state,
        completions,
        duration,
        _age(job, now),
        ",".join(str(c.get("name") or "") for c in template),
        ",".join(str(c.get("image") or "") for c in template),
        str(label_selector_from_spec(selector)) if isinstance(selector, dict) else "",
    ]


def _default_cells(obj: dict[str, Any], now: dt.datetime) -> list[Any]:
    created = _time(_get(obj, "metadata", "creationTimestamp"))
    # Go formats the zero time when the field is unset.
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else "0001-01-01T00:00:00Z"
    return [_name(obj), stamp]


@dataclass(frozen=True)
class _Printer:
    columns: tuple[dict[str, Any], ...]
    cells: Callable[[dict[str, Any], dt.datetime], list[Any]]
    conditions: Callable[[dict[str, Any]], list[dict[str, Any]] | None] = lambda _: None


_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "Pod"): _Printer(_POD_COLUMNS, pod_cells, _pod_row_conditions),
    ("", "Node"): _Printer(_NODE_COLUMNS, node_cells),
    ("", "Event"): _Printer(_EVENT_COLUMNS, event_cells),
    ("events.k8s.io", "Event"): _Printer(_EVENT_COLUMNS, event_cells),
    ("", "Namespace"): _Printer(
        _NAMESPACE_COLUMNS,
        lambda o, now: [_name(o), _get(o, "status", "phase") or "", _age(o, now)],
    ),
    ("", "ConfigMap"): _Printer(
        _CONFIGMAP_COLUMNS,
        lambda o, now: [
            _name(o),
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _age(o, now),
        ],
    ),
    ("", "Secret"): _Printer(
        _SECRET_COLUMNS,
        lambda o, now: [_name(o), o.get("type") or "", len(o.get("data") or {}), _age(o, now)],
    ),
    ("", "ServiceAccount"): _Printer(
        _SERVICEACCOUNT_COLUMNS,
        lambda o, now: [_name(o), len(o.get("secrets") or []), _age(o, now)],
    ),
    ("coordination.k8s.io", "Lease"): _Printer(
        _LEASE_COLUMNS,
        lambda o, now: [_name(o), _get(o, "spec", "holderIdentity") or "", _age(o, now)],
    ),
    ("batch", "Job"): _Printer(_JOB_COLUMNS, job_cells),
}

_DEFAULT_PRINTER = _Printer(_DEFAULT_COLUMNS, _default_cells)

# ---------------------------------------------------------------------------------------
# Tables

INCLUDE_OBJECT = ("None", "Metadata", "Object")


def column_definitions(res: Resource) -> list[dict[str, Any]]:
    printer = _PRINTERS.get((res.group, res.kind), _DEFAULT_PRINTER)
    return [dict(c) for c in printer.columns]


def partial_object_metadata(obj: dict[str, Any], api_version: str = TABLE_V1) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": obj.get("metadata") or {},
    }


def to_table(
    res: Resource,
    objects: list[dict[str, Any]],
    *,
    include_object: str = "Metadata",
    now: dt.datetime,
    list_meta: dict[str, Any] | None = None,
    with_column_definitions: bool = True,
    api_version: str = TABLE_V1,
) -> dict[str, Any]:
    """A ``Table`` of ``objects`` as the real server renders ``res``.

    ``include_object`` is the ``includeObject`` query parameter (None, Metadata, Object);
    ``list_meta`` the list's metadata (``resourceVersion``, ``continue``,
    ``remainingItemCount``), or for a single object ``{"resourceVersion": <its RV>}``;
    ``with_column_definitions=False`` gives ``"columnDefinitions": null`` as watch events
    after the first carry; ``api_version`` is ``meta.k8s.io/v1`` or ``/v1beta1`` as
    negotiated (see :func:`table_version`).
    """
    if include_object not in INCLUDE_OBJECT:
        raise bad_request(
            f'includeObject: Unsupported value: "{include_object}": supported values: '
            '"Metadata", "None", "Object"'
        )
    printer = _PRINTERS.get((res.group, res.kind), _DEFAULT_PRINTER)
    metadata: dict[str, Any] = {}
    for key in ("resourceVersion", "continue", "remainingItemCount"):
        if list_meta and list_meta.get(key) not in (None, ""):
            metadata[key] = list_meta[key]
    rows: list[dict[str, Any]] = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, now)}
        conditions = printer.conditions(obj)
        if conditions:
            row["conditions"] = conditions
        if include_object == "Object":
            full = dict(obj)
            full.setdefault("kind", res.kind)
            full.setdefault("apiVersion", res.api_version)
            row["object"] = full
        elif include_object == "Metadata":
            row["object"] = partial_object_metadata(obj, api_version)
        else:
            row["object"] = None
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": [dict(c) for c in printer.columns]
        if with_column_definitions
        else None,
        "rows": rows,
    }


def partial_object_metadata_list(
    objects: list[dict[str, Any]],
    *,
    list_meta: dict[str, Any] | None = None,
    api_version: str = TABLE_V1,
) -> dict[str, Any]:
    """The ``as=PartialObjectMetadataList`` answer to a list."""
    metadata = {
        k: v
        for k, v in (list_meta or {}).items()
        if k in ("resourceVersion", "continue", "remainingItemCount") and v not in (None, "")
    }
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": api_version,
        "metadata": metadata,
        "items": [partial_object_metadata(o, api_version) for o in objects],
    }


# ---------------------------------------------------------------------------------------
# Accept negotiation


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for part in (accept or "").split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for p in pieces[1:]:
            if "=" in p:
                k, v = p.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        out.append((pieces[0].lower(), params))
    return out


def negotiate_as(accept: str, kinds: tuple[str, ...]) -> tuple[str, str] | None:
    """The first Accept entry asking for one of ``kinds`` in meta.k8s.io (``as=Table``,
    ``as=PartialObjectMetadataList``...), as ``(kind, api_version)``; None when the
    client did not ask for a transformed answer."""
    for media, params in _media_ranges(accept):
        if media not in ("application/json", "application/*", "*/*"):
            continue
        kind = params.get("as")
        if kind not in kinds or params.get("g") != "meta.k8s.io":
            continue
        version = params.get("v")
        if version in ("v1", "v1beta1"):
            return kind, f"meta.k8s.io/{version}"
    return None


def table_version(accept: str) -> str | None:
    """``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1`` when ``accept`` asks for a Table."""
    found = negotiate_as(accept, ("Table",))
    return found[1] if found else None


def wants_table(accept_header: str) -> bool:
    """Whether the Accept header asks for ``as=Table`` (v1 or v1beta1, g=meta.k8s.io)."""
    return table_version(accept_header) is not None
