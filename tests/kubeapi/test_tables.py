"""Table output against the rows a v1.33 server computed for the same objects.

The pods are the reference capture's pods (``05-watch/05-watch-rv-0``, reduced to the
fields the printer reads); the expected rows are the captured Table rows
(``02-kubectl/01-get-pods``, ``table-variants/*``), rendered at the capture's own time so
that ages and "(Xm ago)" match too. Cases the capture does not show (init failures,
signals, NotReady, NodeLost...) follow the upstream printer's rules.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.tables import (
    human_duration,
    negotiate_as,
    partial_object_metadata_list,
    table_version,
    to_table,
    wants_table,
)

PODS = resources.by_kind("", "Pod")
T0 = "2026-11-23T20:12:43Z"
T1 = "2026-11-23T20:12:44Z"
KUBECTL_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# When the captured lists were answered.
AT_GET_PODS = _at("2026-11-23T20:15:09.500000Z")  # 02-kubectl/01-get-pods
AT_VARIANTS = _at("2026-11-23T20:29:22.720000Z")  # table-variants/*


def _conds(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"type": t, "status": s} for t, s in pairs]


_RUNNING_CONDS = _conds(
    ("PodReadyToStartContainers", "True"),
    ("Initialized", "True"),
    ("Ready", "True"),
    ("ContainersReady", "True"),
    ("PodScheduled", "True"),
)
_UNREADY_CONDS = _conds(
    ("PodReadyToStartContainers", "True"),
    ("Initialized", "True"),
    ("Ready", "False"),
    ("ContainersReady", "False"),
    ("PodScheduled", "True"),
)


def _pod(
    name: str,
    created: str,
    status: dict[str, Any],
    *,
    containers: tuple[str, ...] = ("main",),
    init: tuple[str, ...] = (),
    node: str | None = "ref-kubelet-node",
    restart_policy: str = "Always",
    **meta: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": c, "image": "busybox:1.36"} for c in containers],
        "restartPolicy": restart_policy,
    }
    if init:
        spec["initContainers"] = [{"name": c, "image": "busybox:1.36"} for c in init]
    if node:
        spec["nodeName"] = node
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "resourceVersion": "472",
            "creationTimestamp": created,
            "labels": {"app": "ref"},
            **meta,
        },
        "spec": spec,
        "status": status,
    }


def _cs(
    name: str, state: dict[str, Any], *, ready: bool = False, restarts: int = 0, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "state": state, "ready": ready, "restartCount": restarts, **extra}


def _running(**extra: Any) -> dict[str, Any]:
    return {"phase": "Running", "conditions": _RUNNING_CONDS, **extra}


def _captured_pods(web_restarts: int) -> list[dict[str, Any]]:
    ip = {"hostIP": "127.0.0.1", "startTime": T0}
    return [
        _pod(
            "ref-crash",
            T1,
            {
                "phase": "Running",
                "conditions": _UNREADY_CONDS,
                **ip,
                "podIP": "10.88.0.13",
                "podIPs": [{"ip": "10.88.0.13"}],
                "containerStatuses": [
                    _cs(
                        "main",
                        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                        restarts=5,
                        lastState={
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "startedAt": T0,
                                "finishedAt": T0,
                            }
                        },
                    )
                ],
            },
        ),
        _pod(
            "ref-creating",
            T1,
            {
                "phase": "Pending",
                "conditions": _UNREADY_CONDS,
                **ip,
                "containerStatuses": [_cs("main", {"waiting": {"reason": "ContainerCreating"}})],
            },
        ),
        _pod(
            "ref-done",
            T0,
            {
                "phase": "Succeeded",
                "conditions": _UNREADY_CONDS,
                **ip,
                "podIP": "10.88.0.12",
                "podIPs": [{"ip": "10.88.0.12"}],
                "containerStatuses": [
                    _cs("main", {"terminated": {"exitCode": 0, "reason": "Completed"}})
                ],
            },
            restart_policy="Never",
        ),
        _pod(
            "ref-failed",
            T1,
            {
                "phase": "Failed",
                "conditions": _UNREADY_CONDS,
                **ip,
                "podIP": "10.88.0.15",
                "podIPs": [{"ip": "10.88.0.15"}],
                "containerStatuses": [
                    _cs("main", {"terminated": {"exitCode": 1, "reason": "Error"}})
                ],
            },
            restart_policy="Never",
        ),
        _pod(
            "ref-init",
            T1,
            {
                "phase": "Pending",
                "conditions": _conds(("Initialized", "False"), ("Ready", "False")),
                **ip,
                "podIP": "10.88.0.16",
                "podIPs": [{"ip": "10.88.0.16"}],
                "initContainerStatuses": [
                    _cs("setup", {"running": {"startedAt": T0}}, started=True)
                ],
                "containerStatuses": [_cs("main", {"waiting": {"reason": "PodInitializing"}})],
            },
            init=("setup",),
        ),
        _pod(
            "ref-pending",
            T0,
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
                ],
            },
            node=None,
        ),
        _pod(
            "ref-terminating",
            T1,
            _running(
                **ip,
                podIP="10.88.0.17",
                podIPs=[{"ip": "10.88.0.17"}],
                containerStatuses=[_cs("main", {"running": {"startedAt": T0}}, ready=True)],
            ),
            deletionTimestamp="2026-11-23T20:13:14Z",
            deletionGracePeriodSeconds=30,
        ),
        _pod(
            "ref-web",
            T0,
            _running(
                **ip,
                podIP="10.88.0.11",
                podIPs=[{"ip": "10.88.0.11"}],
                containerStatuses=[
                    _cs("main", {"running": {"startedAt": T0}}, ready=True, restarts=web_restarts),
                    _cs("side", {"running": {"startedAt": T0}}, ready=True),
                ],
            ),
            containers=("main", "side"),
        ),
    ]


NONE = "<none>"


def _cells(pod: dict[str, Any], now: dt.datetime = AT_VARIANTS) -> list[Any]:
    rows = to_table(PODS, [pod], now=now)["rows"]
    cells: list[Any] = rows[0]["cells"]
    return cells


def test_kubectl_get_pods_rows_match_the_capture() -> None:
    table = to_table(PODS, _captured_pods(0), now=AT_GET_PODS, list_meta={"resourceVersion": "526"})
    assert [r["cells"] for r in table["rows"]] == [
        [
            "ref-crash",
            "0/1",
            "CrashLoopBackOff",
            "5 (2m26s ago)",
            "2m25s",
            "10.88.0.13",
            "ref-kubelet-node",
            NONE,
            NONE,
        ],
        [
            "ref-creating",
            "0/1",
            "ContainerCreating",
            "0",
            "2m25s",
            NONE,
            "ref-kubelet-node",
            NONE,
            NONE,
        ],
        [
            "ref-done",
            "0/1",
            "Completed",
            "0",
            "2m26s",
            "10.88.0.12",
            "ref-kubelet-node",
            NONE,
            NONE,
        ],
        ["ref-failed", "0/1", "Error", "0", "2m25s", "10.88.0.15", "ref-kubelet-node", NONE, NONE],
        ["ref-init", "0/1", "Init:0/1", "0", "2m25s", "10.88.0.16", "ref-kubelet-node", NONE, NONE],
        ["ref-pending", "0/1", "Pending", "0", "2m26s", NONE, NONE, NONE, NONE],
        [
            "ref-terminating",
            "1/1",
            "Terminating",
            "0",
            "2m25s",
            "10.88.0.17",
            "ref-kubelet-node",
            NONE,
            NONE,
        ],
        ["ref-web", "2/2", "Running", "0", "2m26s", "10.88.0.11", "ref-kubelet-node", NONE, NONE],
    ]
    assert table["metadata"] == {"resourceVersion": "526"}
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"


def test_include_object_none_rows_match_the_capture() -> None:
    table = to_table(PODS, _captured_pods(1), now=AT_VARIANTS, include_object="None")
    rows = table["rows"]
    assert [r["cells"][2:5] for r in rows] == [
        ["CrashLoopBackOff", "5 (16m ago)", "16m"],
        ["ContainerCreating", "0", "16m"],
        ["Completed", "0", "16m"],
        ["Error", "0", "16m"],
        ["Init:0/1", "0", "16m"],
        ["Pending", "0", "16m"],
        ["Terminating", "0", "16m"],
        ["Running", "1", "16m"],
    ]
    assert all(r["object"] is None for r in rows)
    # Terminal pods carry the row condition the real server adds.
    assert rows[2]["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert rows[3]["conditions"] == [
        {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
    ]
    assert list(rows[2]) == ["cells", "conditions", "object"]
    assert "conditions" not in rows[0]


def test_pod_column_definitions_are_the_captured_ones() -> None:
    columns = to_table(PODS, [], now=AT_VARIANTS)["columnDefinitions"]
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in columns] == [
        ("Name", "string", "name", 0),
        ("Ready", "string", "", 0),
        ("Status", "string", "", 0),
        ("Restarts", "string", "", 0),
        ("Age", "string", "", 0),
        ("IP", "string", "", 1),
        ("Node", "string", "", 1),
        ("Nominated Node", "string", "", 1),
        ("Readiness Gates", "string", "", 1),
    ]
    assert list(columns[0]) == ["name", "type", "format", "description", "priority"]
    assert columns[0]["description"].startswith("Name must be unique within a namespace.")
    assert (
        columns[4]["description"].endswith("api-conventions.md#metadata")
        and "\n\nPopulated by the system." in columns[4]["description"]
    )
    assert columns[3]["description"] == (
        "The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted."
    )


# --- STATUS cases the printer derives ---------------------------------------------------


def _one(state: dict[str, Any], **cs_extra: Any) -> dict[str, Any]:
    return _pod("p", T0, _running(containerStatuses=[_cs("main", state, **cs_extra)]))


@pytest.mark.parametrize(
    ("pod", "status"),
    [
        (_one({"terminated": {"exitCode": 2}}), "ExitCode:2"),
        (_one({"terminated": {"exitCode": 137, "signal": 9}}), "Signal:9"),
        (_one({"terminated": {"exitCode": 1, "reason": "OOMKilled"}}), "OOMKilled"),
        (_one({"waiting": {"reason": "ImagePullBackOff"}}), "ImagePullBackOff"),
        (_one({"waiting": {}}), "Running"),
        (_pod("p", T0, {"phase": "Failed", "reason": "Evicted"}), "Evicted"),
        (_pod("p", T0, {}), ""),
        (
            _pod(
                "p",
                T0,
                {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                    ],
                },
            ),
            "SchedulingGated",
        ),
    ],
)
def test_container_states(pod: dict[str, Any], status: str) -> None:
    assert _cells(pod)[2] == status


def _init_pod(
    state: dict[str, Any], init: tuple[str, ...] = ("a", "b"), index: int = 0
) -> dict[str, Any]:
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    statuses = [_cs(n, done) for n in init[:index]] + [_cs(init[index], state)]
    return _pod(
        "p",
        T0,
        {
            "phase": "Pending",
            "conditions": _conds(("Initialized", "False")),
            "initContainerStatuses": statuses,
            "containerStatuses": [_cs("main", {"waiting": {"reason": "PodInitializing"}})],
        },
        init=init,
    )


@pytest.mark.parametrize(
    ("pod", "status"),
    [
        (_init_pod({"running": {}}), "Init:0/2"),
        (_init_pod({"running": {}}, index=1), "Init:1/2"),
        (_init_pod({"waiting": {"reason": "PodInitializing"}}), "Init:0/2"),
        (_init_pod({"waiting": {"reason": "CrashLoopBackOff"}}), "Init:CrashLoopBackOff"),
        (_init_pod({"terminated": {"exitCode": 1, "reason": "Error"}}), "Init:Error"),
        (_init_pod({"terminated": {"exitCode": 3}}), "Init:ExitCode:3"),
        (_init_pod({"terminated": {"exitCode": 143, "signal": 15}}), "Init:Signal:15"),
    ],
)
def test_init_container_states(pod: dict[str, Any], status: str) -> None:
    assert _cells(pod)[2] == status


def test_init_restarts_count_while_initializing() -> None:
    pod = _init_pod(
        {"waiting": {"reason": "CrashLoopBackOff"}},
    )
    pod["status"]["initContainerStatuses"][0].update(
        restartCount=3,
        lastState={"terminated": {"exitCode": 1, "finishedAt": "2026-11-23T20:27:22Z"}},
    )
    assert _cells(pod)[1:4] == ["0/1", "Init:CrashLoopBackOff", "3 (2m ago)"]


def test_completed_container_beside_a_running_one() -> None:
    statuses = [
        _cs("main", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
        _cs("side", {"running": {}}, ready=True),
    ]
    ready = _pod("p", T0, _running(containerStatuses=statuses), containers=("main", "side"))
    assert _cells(ready)[1:3] == ["1/2", "Running"]
    not_ready = copy.deepcopy(ready)
    not_ready["status"]["conditions"] = _UNREADY_CONDS
    assert _cells(not_ready)[1:3] == ["1/2", "NotReady"]


def test_deleted_pods() -> None:
    lost = _one({"running": {}}, ready=True)
    lost["metadata"]["deletionTimestamp"] = T1
    assert _cells(lost)[2] == "Terminating"
    lost["status"]["reason"] = "NodeLost"
    assert _cells(lost)[2] == "Unknown"
    done = _pod("p", T0, {"phase": "Succeeded"}, deletionTimestamp=T1)
    assert _cells(done)[2] == "Succeeded"


def test_sidecars_count_as_containers() -> None:
    pod = _pod(
        "p",
        T0,
        _running(
            initContainerStatuses=[_cs("proxy", {"running": {}}, ready=True, started=True)],
            containerStatuses=[_cs("main", {"running": {}}, ready=True)],
        ),
        init=("proxy",),
    )
    pod["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    assert _cells(pod)[1:3] == ["2/2", "Running"]


def test_restarts_show_the_latest_termination() -> None:
    pod = _pod(
        "p",
        T0,
        _running(
            containerStatuses=[
                _cs(
                    "a",
                    {"running": {}},
                    ready=True,
                    restarts=2,
                    lastState={"terminated": {"exitCode": 1, "finishedAt": "2026-11-23T20:00:00Z"}},
                ),
                _cs(
                    "b",
                    {"running": {}},
                    ready=True,
                    restarts=1,
                    lastState={"terminated": {"exitCode": 1, "finishedAt": "2026-11-23T20:29:00Z"}},
                ),
            ]
        ),
        containers=("a", "b"),
    )
    assert _cells(pod)[3] == "3 (22s ago)"


def test_wide_cells() -> None:
    pod = _one({"running": {}}, ready=True)
    pod["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}, {"conditionType": "x"}]
    pod["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    pod["status"]["nominatedNodeName"] = "other"
    pod["status"]["podIPs"] = [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]
    assert _cells(pod)[5:] == ["10.0.0.9", "ref-kubelet-node", "other", "1/2"]


# --- ages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "<invalid>"),
        (-1.5, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (119, "119s"),
        (120, "2m"),
        (196, "3m16s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (760 * 86400, "2y30d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


# --- other kinds -----------------------------------------------------------------------


def test_node_rows_match_the_capture() -> None:
    node = {
        "metadata": {"name": "ref-kubelet-node", "creationTimestamp": T0, "labels": {}},
        "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": "ref-kubelet-node"},
            ],
            "nodeInfo": {
                "kernelVersion": "6.1.0-fake",
                "osImage": "Virtual Kubelet (fake)",
                "containerRuntimeVersion": "fake://1.0",
                "kubeletVersion": "v1.33.13",
            },
        },
    }
    nodes = resources.by_kind("", "Node")
    table = to_table(nodes, [node], now=_at("2026-11-23T20:15:13.500000Z"))
    assert table["rows"][0]["cells"] == [
        "ref-kubelet-node",
        "Ready",
        NONE,
        "2m30s",
        "v1.33.13",
        "127.0.0.1",
        NONE,
        "Virtual Kubelet (fake)",
        "6.1.0-fake",
        "fake://1.0",
    ]
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Status",
        "Roles",
        "Age",
        "Version",
        "Internal-IP",
        "External-IP",
        "OS-Image",
        "Kernel-Version",
        "Container-Runtime",
    ]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0] * 5 + [1] * 5
    node["status"]["conditions"][0]["status"] = "Unknown"
    node["spec"]["unschedulable"] = True
    node["metadata"]["labels"] = {
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/control-plane": "",
        "kubernetes.io/role": "gpu",
    }
    node["status"]["nodeInfo"] = {}
    cells = to_table(nodes, [node], now=AT_VARIANTS)["rows"][0]["cells"]
    assert cells[1:3] == ["NotReady,SchedulingDisabled", "control-plane,gpu,worker"]
    assert cells[7:] == ["<unknown>"] * 3
    del node["status"]["conditions"]
    assert to_table(nodes, [node], now=AT_VARIANTS)["rows"][0]["cells"][1] == (
        "Unknown,SchedulingDisabled"
    )


def test_event_rows_match_the_capture() -> None:
    started = {
        "metadata": {"name": "ref-web.18eac5b57e277600", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "ref-web", "fieldPath": "spec.containers{main}"},
        "reason": "Started",
        "message": "Started container main",
        "source": {"component": "kubelet", "host": "ref-kubelet-node"},
        "firstTimestamp": "2026-11-23T20:13:04Z",
        "lastTimestamp": "2026-11-23T20:13:05Z",
        "count": 2,
        "type": "Normal",
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": "ref-kubelet-node",
    }
    minimal = {
        "metadata": {"name": "ref-web.4pnmr", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "ref-web"},
        "reason": "Test",
        "message": "minimal event",
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "type": "Warning",
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    }
    table = to_table(
        resources.by_kind("", "Event"), [started, minimal], now=_at("2026-11-23T20:29:22.75Z")
    )
    assert [r["cells"] for r in table["rows"]] == [
        [
            "16m",
            "Normal",
            "Started",
            "pod/ref-web",
            "spec.containers{main}",
            "kubelet, ref-kubelet-node",
            "Started container main",
            "16m",
            2,
            "ref-web.18eac5b57e277600",
        ],
        [
            "<unknown>",
            "Warning",
            "Test",
            "pod/ref-web",
            "",
            "",
            "minimal event",
            "<unknown>",
            1,
            "ref-web.4pnmr",
        ],
    ]
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]


def test_new_api_events_print_like_core_events() -> None:
    pulling = {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": {"name": "ref-web.18eac5b5c850ba00", "namespace": "default"},
        "eventTime": "2026-11-23T20:13:06.001057Z",
        "reportingController": "example.com/vnode",
        "reportingInstance": "vnode-ref-kubelet-node",
        "action": "Pulling",
        "reason": "Pulling",
        "regarding": {"kind": "Pod", "name": "ref-web", "fieldPath": "spec.containers{side}"},
        "note": 'Pulling image "busybox:1.36"',
        "type": "Normal",
        "deprecatedSource": {},
        "deprecatedFirstTimestamp": None,
        "deprecatedLastTimestamp": None,
    }
    expected = [
        "16m",
        "Normal",
        "Pulling",
        "pod/ref-web",
        "spec.containers{side}",
        "example.com/vnode, vnode-ref-kubelet-node",
        'Pulling image "busybox:1.36"',
        "16m",
        1,
        "ref-web.18eac5b5c850ba00",
    ]
    for res in (resources.by_kind("events.k8s.io", "Event"), resources.by_kind("", "Event")):
        assert (
            to_table(res, [pulling], now=_at("2026-11-23T20:29:22.75Z"))["rows"][0]["cells"]
            == expected
        )
    series = dict(pulling, series={"count": 4, "lastObservedTime": "2026-11-23T20:29:00.000000Z"})
    cells = to_table(resources.by_kind("events.k8s.io", "Event"), [series], now=AT_VARIANTS)[
        "rows"
    ][0]["cells"]
    assert (cells[0], cells[8]) == ("22s", 4)


def test_configmap_lease_namespace_secret_serviceaccount_rows() -> None:
    now = _at("2026-11-23T20:29:22.76Z")
    cm = {
        "metadata": {"name": "ref-apply-cm", "creationTimestamp": "2026-11-23T20:15:26Z"},
        "data": {"a": "2", "b": "new"},
    }
    table = to_table(resources.by_kind("", "ConfigMap"), [cm], now=now)
    assert table["rows"][0]["cells"] == ["ref-apply-cm", 2, "13m"]
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    lease = {
        "metadata": {"name": "ref-kubelet-node", "creationTimestamp": T0},
        "spec": {"holderIdentity": "ref-kubelet-node"},
    }
    table = to_table(resources.by_kind("coordination.k8s.io", "Lease"), [lease], now=now)
    assert table["rows"][0]["cells"] == ["ref-kubelet-node", "ref-kubelet-node", "16m"]
    assert table["columnDefinitions"][1]["description"].startswith("holderIdentity contains")
    ns = {
        "metadata": {"name": "default", "creationTimestamp": "2026-11-20T20:00:00Z"},
        "status": {"phase": "Active"},
    }
    assert to_table(resources.by_kind("", "Namespace"), [ns], now=now)["rows"][0]["cells"] == [
        "default",
        "Active",
        "3d",
    ]
    secret = {
        "metadata": {"name": "s", "creationTimestamp": T0},
        "type": "Opaque",
        "data": {"k": "dg=="},
    }
    table = to_table(resources.by_kind("", "Secret"), [secret], now=now)
    assert table["rows"][0]["cells"] == ["s", "Opaque", 1, "16m"]
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    sa = {"metadata": {"name": "default", "creationTimestamp": T0}}
    table = to_table(resources.by_kind("", "ServiceAccount"), [sa], now=now)
    assert table["rows"][0]["cells"] == ["default", 0, "16m"]
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Secrets", "Age"]


def test_job_rows() -> None:
    jobs = resources.by_kind("batch", "Job")
    job = {
        "metadata": {"name": "pi", "creationTimestamp": "2026-11-23T20:20:00Z"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "pi", "image": "perl:5.34"},
                        {"name": "log", "image": "busybox"},
                    ]
                }
            },
        },
        "status": {"startTime": "2026-11-23T20:20:00Z", "succeeded": 1, "active": 2},
    }
    table = to_table(jobs, [job], now=AT_VARIANTS)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Status",
        "Completions",
        "Duration",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert table["rows"][0]["cells"] == [
        "pi",
        "Running",
        "1/3",
        "9m22s",
        "9m22s",
        "pi,log",
        "perl:5.34,busybox",
        "batch.kubernetes.io/controller-uid=u-1",
    ]
    job["status"].update(
        succeeded=3,
        completionTime="2026-11-23T20:20:41Z",
        conditions=[
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ],
    )
    assert table_cells(jobs, job)[1:4] == ["Complete", "3/3", "41s"]
    job["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    assert table_cells(jobs, job)[1] == "Failed"
    job["status"]["conditions"] = [{"type": "Suspended", "status": "True"}]
    assert table_cells(jobs, job)[1] == "Suspended"
    job["metadata"]["deletionTimestamp"] = T1
    assert table_cells(jobs, job)[1] == "Terminating"
    bare = {"metadata": {"name": "j"}, "spec": {"parallelism": 4}, "status": {}}
    assert table_cells(jobs, bare)[1:5] == ["Running", "0/1 of 4", "", "<unknown>"]
    assert table_cells(jobs, {"metadata": {"name": "j"}, "spec": {}})[2] == "0/1"


def table_cells(res: Resource, obj: dict[str, Any]) -> list[Any]:
    cells: list[Any] = to_table(res, [obj], now=AT_VARIANTS)["rows"][0]["cells"]
    return cells


def test_other_kinds_use_the_default_convertor() -> None:
    res = resources.by_kind("authentication.k8s.io", "TokenReview")
    table = to_table(res, [{"metadata": {"name": "x", "creationTimestamp": T0}}], now=AT_VARIANTS)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [
        ("Name", "string"),
        ("Created At", "date"),
    ]
    assert table["rows"][0]["cells"] == ["x", "2026-11-23T20:12:43Z"]


# --- table shape -----------------------------------------------------------------------


def test_row_objects_follow_include_object() -> None:
    pod = _captured_pods(0)[-1]
    meta = to_table(PODS, [pod], now=AT_VARIANTS)["rows"][0]["object"]
    assert meta == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": pod["metadata"],
    }
    full = to_table(PODS, [pod], now=AT_VARIANTS, include_object="Object")["rows"][0]["object"]
    assert full == pod
    beta = to_table(PODS, [pod], now=AT_VARIANTS, api_version="meta.k8s.io/v1beta1")
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"


def test_watch_events_after_the_first_carry_null_column_definitions() -> None:
    table = to_table(
        PODS,
        [_captured_pods(0)[-1]],
        now=AT_VARIANTS,
        list_meta={"resourceVersion": "551"},
        with_column_definitions=False,
    )
    assert list(table) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
    assert table["columnDefinitions"] is None
    assert table["metadata"] == {"resourceVersion": "551"}


def test_empty_list_and_list_metadata() -> None:
    table = to_table(
        PODS,
        [],
        now=AT_VARIANTS,
        list_meta={
            "resourceVersion": "936",
            "continue": "abc",
            "remainingItemCount": 3,
            "selfLink": "x",
        },
    )
    assert table["rows"] == []
    assert table["metadata"] == {
        "resourceVersion": "936",
        "continue": "abc",
        "remainingItemCount": 3,
    }


def test_bad_include_object_is_400() -> None:
    from vnode.sandbox.kubeapi.status import StatusError

    with pytest.raises(StatusError) as info:
        to_table(PODS, [], now=AT_VARIANTS, include_object="Everything")
    assert info.value.code == 400


def test_partial_object_metadata_list() -> None:
    pod = _captured_pods(0)[-1]
    out = partial_object_metadata_list([pod], list_meta={"resourceVersion": "936"})
    assert out == {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "936"},
        "items": [
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": pod["metadata"],
            }
        ],
    }


# --- Accept negotiation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (KUBECTL_ACCEPT, "meta.k8s.io/v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "meta.k8s.io/v1beta1"),
        ("application/json; as=Table; g=meta.k8s.io; v=v1", "meta.k8s.io/v1"),
        ("application/json", None),
        ("application/json, */*", None),
        ("", None),
        ("application/json;as=Table;v=v2;g=meta.k8s.io", None),
        ("application/json;as=Table;v=v1;g=other.io", None),
        ("application/yaml;as=Table;v=v1;g=meta.k8s.io", None),
        ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", None),
    ],
)
def test_table_negotiation(accept: str, version: str | None) -> None:
    assert table_version(accept) == version
    assert wants_table(accept) is (version is not None)


def test_partial_metadata_negotiation() -> None:
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
    assert negotiate_as(accept, ("PartialObjectMetadataList", "PartialObjectMetadata")) == (
        "PartialObjectMetadataList",
        "meta.k8s.io/v1",
    )
