"""The scheduler's fit rules and messages, as pure functions (no server, no store).

Expected messages are the real kube-scheduler's, from
``shared/reference/kube-apiserver/07-scheduler``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from vnode.sandbox.kubeapi import fit, quantity

NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
DEDICATED = {"key": "example.com/dedicated", "value": "special", "effect": "NoSchedule"}
DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


def node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str | None = "110",
    taints: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    unschedulable: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, **(extra or {})}
    if pods is not None:
        alloc["pods"] = pods
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {"allocatable": alloc, "capacity": alloc},
    }


def pod(
    name: str = "p",
    *,
    requests: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    node_selector: dict[str, str] | None = None,
    affinity: dict[str, Any] | None = None,
    node_name: str = "",
    phase: str = "Pending",
    init: list[dict[str, Any]] | None = None,
    overhead: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "busybox:1.36",
        "resources": {"requests": requests} if requests else {},
    }
    if ports:
        container["ports"] = ports
    spec: dict[str, Any] = {
        "containers": [container],
        "tolerations": DEFAULT_TOLERATIONS + (tolerations or []),
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": affinity}
        }
    if node_name:
        spec["nodeName"] = node_name
    if init:
        spec["initContainers"] = init
    if overhead:
        spec["overhead"] = overhead
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
        "status": {"phase": phase},
    }


def decide(
    p: dict[str, Any], nodes: list[dict[str, Any]], bound: list[dict[str, Any]] | None = None
) -> fit.Decision:
    return fit.decide(p, nodes, fit.usage_by_node(bound or []))


# -- quantities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100m", Fraction(1, 10)),
        ("1", 1),
        ("2.5", Fraction(5, 2)),
        ("1Ki", 1024),
        ("1.5Gi", 3 * 2**29),
        ("1M", 10**6),
        ("1k", 1000),
        ("2e3", 2000),
        ("1E", 10**18),
        ("1E3", 1000),
        ("500u", Fraction(1, 2000)),
        ("10n", Fraction(1, 10**8)),
        (".5", Fraction(1, 2)),
        ("+3", 3),
        (2, 2),
    ],
)
def test_quantity_parse(text: str | int, expected: Fraction | int) -> None:
    assert quantity.parse(text) == expected


def test_quantity_rounding() -> None:
    assert quantity.milli_value("0.0001") == 1  # rounded up, as MilliValue() does
    assert quantity.milli_value("100m") == 100
    assert quantity.value("1.2") == 2
    assert quantity.value("128Mi") == 128 * 2**20


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1Kb", "m", "1 Gi", "--1"])
def test_quantity_rejects_garbage(bad: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(bad)


# -- requests ---------------------------------------------------------------------------


def test_pod_requests_sum_containers_max_init_plus_overhead() -> None:
    p = pod(
        requests={"cpu": "250m", "memory": "64Mi"},
        init=[
            {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "16Mi"}}},
            {"name": "i2", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
        ],
        overhead={"cpu": "10m"},
    )
    p["spec"]["containers"].append({"name": "side", "resources": {"requests": {"cpu": "250m"}}})
    req = fit.pod_requests(p)
    assert req["cpu"] == 1000 + 10  # the heaviest init step beats 500m of app containers
    assert req["memory"] == 2**30  # the second init step beats 64Mi


def test_pod_requests_sidecars_add_to_app_phase() -> None:
    p = pod(
        requests={"cpu": "500m"},
        init=[
            {
                "name": "proxy",
                "restartPolicy": "Always",
                "resources": {"requests": {"cpu": "200m"}},
            },
            {"name": "setup", "resources": {"requests": {"cpu": "600m"}}},
        ],
    )
    assert fit.pod_requests(p)["cpu"] == 800  # setup runs beside the sidecar: 600+200


def test_pod_requests_extended_resources() -> None:
    assert fit.pod_requests(pod(requests={"nvidia.com/gpu": "2"}))["nvidia.com/gpu"] == 2


# -- taints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "taint", "ok"),
    [
        (
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            {"key": "k", "value": "v", "effect": "NoSchedule"},
            True,
        ),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
        (
            {"key": "k", "operator": "Equal", "value": "w"},
            {"key": "k", "value": "v", "effect": "NoSchedule"},
            False,
        ),
        (
            {"key": "k", "operator": "Exists"},
            {"key": "k", "value": "v", "effect": "NoSchedule"},
            True,
        ),
        ({"operator": "Exists"}, {"key": "anything", "value": "v", "effect": "NoExecute"}, True),
        (
            {"key": "k", "operator": "Exists", "effect": "NoExecute"},
            {"key": "k", "effect": "NoSchedule"},
            False,
        ),
        ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
    ],
)
def test_tolerates(toleration: dict[str, Any], taint: dict[str, Any], ok: bool) -> None:
    assert fit.tolerates(toleration, taint) is ok


def test_prefer_no_schedule_is_ignored() -> None:
    soft = {"key": "soft", "value": "x", "effect": "PreferNoSchedule"}
    assert decide(pod(), [node("n1", taints=[soft])]).node == "n1"


def test_untolerated_taint_message() -> None:
    d = decide(pod(), [node("ref-kubelet-node", taints=[DEDICATED])])
    assert d.node is None
    assert d.message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint "
        "{example.com/dedicated: special}. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    )
    assert d.plugins == {fit.TAINT_TOLERATION}


def test_tolerated_taint_schedules() -> None:
    tol = {
        "key": "example.com/dedicated",
        "operator": "Equal",
        "value": "special",
        "effect": "NoSchedule",
    }
    assert decide(pod(tolerations=[tol]), [node("n1", taints=[DEDICATED])]).node == "n1"


def test_not_ready_taint_prints_empty_value() -> None:
    d = decide(pod(), [node("n1", taints=[NOT_READY])])
    assert d.message.startswith(
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    )


def test_no_execute_taint_counts() -> None:
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    d = decide(pod(tolerations=[]), [node("n1", taints=[taint])])
    assert d.node == "n1"  # the default NoExecute tolerations cover unreachable
    bare = pod()
    bare["spec"]["tolerations"] = []
    assert decide(bare, [node("n1", taints=[taint])]).node is None


# -- selectors and affinity --------------------------------------------------------------


def test_node_selector_mismatch_message() -> None:
    d = decide(pod(node_selector={"disktype": "ssd"}), [node("ref-kubelet-node")])
    assert d.message == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    )


def test_node_selector_match() -> None:
    nodes = [node("a", labels={"disktype": "hdd"}), node("b", labels={"disktype": "ssd"})]
    assert decide(pod(node_selector={"disktype": "ssd"}), nodes).node == "b"


def _terms(*exprs: dict[str, Any]) -> dict[str, Any]:
    return {"nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}


@pytest.mark.parametrize(
    ("expr", "labels", "ok"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, {"zone": "b"}, True),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {"zone": "b"}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "a"}, False),
        ({"key": "gpu", "operator": "Exists"}, {"gpu": ""}, True),
        ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": ""}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "16"}, True),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "8"}, False),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "4"}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "many"}, False),
    ],
)
def test_required_affinity_operators(
    expr: dict[str, Any], labels: dict[str, str], ok: bool
) -> None:
    d = decide(pod(affinity=_terms(expr)), [node("n1", labels=labels)])
    assert (d.node == "n1") is ok


def test_affinity_terms_are_ored_and_expressions_anded() -> None:
    affinity = {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "b", "operator": "Exists"},
                ]
            },
            {"matchExpressions": [{"key": "c", "operator": "Exists"}]},
        ]
    }
    assert decide(pod(affinity=affinity), [node("n", labels={"a": "1"})]).node is None
    assert decide(pod(affinity=affinity), [node("n", labels={"a": "1", "b": "1"})]).node == "n"
    assert decide(pod(affinity=affinity), [node("n", labels={"c": "1"})]).node == "n"


def test_match_fields_pins_a_node_by_name() -> None:
    affinity = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}
        ]
    }
    nodes = [node("a"), node("b"), node("c")]
    assert decide(pod(affinity=affinity), nodes).node == "b"
    d = decide(pod(affinity=affinity, requests={"cpu": "100"}), nodes)
    assert d.message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) "
        "[NodeAffinity]. preemption: 0/3 nodes are available: 1 No preemption victims found "
        "for incoming pod, 2 Preemption is not helpful for scheduling."
    )


# -- resources --------------------------------------------------------------------------


def test_insufficient_cpu_message() -> None:
    d = decide(pod(requests={"cpu": "100"}), [node("ref-kubelet-node")])
    assert d.message == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )


def test_bound_pods_use_resources_until_they_finish() -> None:
    nodes = [node("n1", cpu="2")]
    running = pod("r", requests={"cpu": "1500m"}, node_name="n1", phase="Running")
    assert decide(pod(requests={"cpu": "1"}), nodes, [running]).node is None
    done = pod("r", requests={"cpu": "1500m"}, node_name="n1", phase="Succeeded")
    assert decide(pod(requests={"cpu": "1"}), nodes, [done]).node == "n1"


def test_insufficient_memory_and_extended_resource() -> None:
    d = decide(pod(requests={"memory": "16Gi", "nvidia.com/gpu": "1"}), [node("n1")])
    assert d.message.startswith(
        "0/1 nodes are available: 1 Insufficient memory, 1 Insufficient nvidia.com/gpu."
    )
    gpu_node = node("g", extra={"nvidia.com/gpu": "1"}, memory="32Gi")
    assert decide(pod(requests={"memory": "16Gi", "nvidia.com/gpu": "1"}), [gpu_node]).node == "g"


def test_too_many_pods() -> None:
    nodes = [node("n1", pods="1")]
    bound = [pod("x", node_name="n1", phase="Running")]
    d = decide(pod(), nodes, bound)
    assert d.message == (
        "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )


def test_node_without_pods_capacity_gives_too_many_pods_and_insufficient_cpu() -> None:
    # The reference's node with no status: both reasons at once (05-ref-s-series).
    bare = {"metadata": {"name": "bare"}, "spec": {}, "status": {}}
    d = decide(
        pod(requests={"cpu": "100"}),
        [bare, node("a", cpu="2"), node("b", cpu="2"), node("c", cpu="2")],
    )
    assert d.message == (
        "0/4 nodes are available: 1 Too many pods, 4 Insufficient cpu. preemption: 0/4 nodes "
        "are available: 4 No preemption victims found for incoming pod."
    )


def test_host_port_conflict() -> None:
    nodes = [node("n1")]
    ports = [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]
    bound = [pod("x", node_name="n1", phase="Running", ports=ports)]
    d = decide(pod(ports=ports), nodes, bound)
    assert d.message.startswith(
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    )
    udp = [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]
    assert decide(pod(ports=udp), nodes, bound).node == "n1"


# -- mixed and ordering ------------------------------------------------------------------


def test_mixed_reasons_across_two_nodes() -> None:
    # 03-ref-s-mixed: a tainted 4-cpu node and an untainted 1-cpu node, pod asks for 2 cpu.
    nodes = [node("ref-kubelet-node", taints=[DEDICATED]), node("ref-sched-node", cpu="1")]
    d = decide(pod(requests={"cpu": "2"}), nodes)
    assert d.message == (
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
        "{example.com/dedicated: special}. preemption: 0/2 nodes are available: 1 No preemption "
        "victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    )
    assert d.plugins == {fit.TAINT_TOLERATION, fit.NODE_RESOURCES_FIT}


def test_reasons_sorted_as_strings_with_counts() -> None:
    # 05-ref-s-series: "1 node(s) had untolerated taint {...}, 3 Insufficient cpu"
    nodes = [
        node("a", taints=[NOT_READY]),
        node("b", cpu="1"),
        node("c", cpu="1"),
        node("d", cpu="1"),
    ]
    d = decide(pod(requests={"cpu": "100"}), nodes)
    assert d.message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }, "
        "3 Insufficient cpu. preemption: 0/4 nodes are available: 1 Preemption is not helpful "
        "for scheduling, 3 No preemption victims found for incoming pod."
    )


def test_first_failing_filter_wins() -> None:
    # An unschedulable, tainted, mismatching, full node reports only "unschedulable".
    n = node("n1", cpu="0", taints=[DEDICATED], unschedulable=True)
    d = decide(pod(requests={"cpu": "1"}, node_selector={"x": "y"}), [n])
    assert d.message.startswith("0/1 nodes are available: 1 node(s) were unschedulable.")
    assert d.plugins == {fit.NODE_UNSCHEDULABLE}


def test_unschedulable_node_tolerated_by_its_taint() -> None:
    tol = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
    assert decide(pod(tolerations=[tol]), [node("n1", unschedulable=True)]).node == "n1"


def test_no_nodes() -> None:
    assert decide(pod(), []).message == "no nodes available to schedule pods"


def test_least_allocated_node_wins_ties_by_name() -> None:
    nodes = [node("b"), node("a"), node("c", cpu="16", memory="64Gi")]
    assert decide(pod(), nodes).node == "c"
    assert decide(pod(), [node("b"), node("a")]).node == "a"
    busy = [pod("x", requests={"cpu": "3"}, node_name="a", phase="Running")]
    assert decide(pod(), [node("b"), node("a")], busy).node == "b"


# -- against the recordings of the real scheduler ------------------------------------------


def _captured(relative: str) -> dict[str, Any]:
    from tests.conftest import reference

    return reference(relative)


def _reference_nodes(*, second: bool) -> list[dict[str, Any]]:
    """ref-kubelet-node as captured (tainted, 4 cpu) and, for the two-node captures,
    ref-sched-node (untainted, 1 cpu) as 03-ref-s-mixed describes it."""
    tainted = _captured("07-scheduler/00-node-taint-patch.json")["response"]["body"]
    nodes = [tainted]
    if second:
        plain = {
            "metadata": {
                "name": "ref-sched-node",
                "labels": {"kubernetes.io/hostname": "ref-sched-node"},
            },
            "spec": {},
            "status": {"allocatable": {"cpu": "1", "memory": "8Gi", "pods": "110"}},
        }
        nodes.append(plain)
    return nodes


@pytest.mark.parametrize(
    ("capture", "two_nodes"),
    [
        ("07-scheduler/01-ref-s-taint.pod-and-events.json", False),
        ("07-scheduler/01-ref-s-selector.pod-and-events.json", False),
        ("07-scheduler/01-ref-s-cpu.pod-and-events.json", False),
        ("07-scheduler/03-ref-s-mixed.pod-and-events.json", True),
    ],
)
def test_messages_match_the_real_scheduler(capture: str, two_nodes: bool) -> None:
    recorded = _captured(capture)
    pod_obj = recorded["response"]["body"]
    pending = dict(pod_obj, spec={k: v for k, v in pod_obj["spec"].items() if k != "nodeName"})
    (cond,) = [c for c in pod_obj["status"]["conditions"] if c["type"] == "PodScheduled"]
    (event,) = recorded["events"]["events_k8s_io_v1_list"]["items"]
    d = fit.decide(pending, _reference_nodes(second=two_nodes), {})
    assert d.node is None
    assert d.message == cond["message"] == event["note"]


def test_tolerating_pod_binds_like_the_real_scheduler() -> None:
    recorded = _captured("07-scheduler/01-ref-s-ok.pod-and-events.json")["response"]["body"]
    pending = dict(recorded, spec={k: v for k, v in recorded["spec"].items() if k != "nodeName"})
    assert (
        fit.decide(pending, _reference_nodes(second=False), {}).node == recorded["spec"]["nodeName"]
    )


# -- inter-pod affinity -------------------------------------------------------------------


def _labelled(
    name: str,
    labels: dict[str, str],
    *,
    node_name: str = "",
    namespace: str = "default",
    affinity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    p = pod(name, node_name=node_name, phase="Running" if node_name else "Pending")
    p["metadata"].update({"labels": labels, "namespace": namespace, "uid": f"uid-{name}"})
    if affinity:
        p["spec"]["affinity"] = affinity
    return p


def _term(
    labels: dict[str, str], key: str = "kubernetes.io/hostname", **extra: Any
) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def _anti(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def _with(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def test_anti_affinity_spreads_replicas() -> None:
    web = _labelled("web-1", {"app": "web"}, node_name="a")
    new = _labelled("web-2", {"app": "web"}, affinity=_anti(_term({"app": "web"})))
    assert decide(new, [node("a"), node("b")], [web]).node == "b"
    d = decide(new, [node("a")], [web])
    assert d.message == (
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules. preemption: "
        "0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )
    assert d.plugins == {fit.INTER_POD_AFFINITY}


def test_anti_affinity_is_namespaced_by_default() -> None:
    other = _labelled("web-x", {"app": "web"}, node_name="a", namespace="other")
    new = _labelled("web-2", {"app": "web"}, affinity=_anti(_term({"app": "web"})))
    assert decide(new, [node("a")], [other]).node == "a"
    everywhere = _labelled(
        "web-3", {"app": "web"}, affinity=_anti(_term({"app": "web"}, namespaceSelector={}))
    )
    assert decide(everywhere, [node("a")], [other]).node is None


def test_affinity_follows_its_peer_or_waits_for_one() -> None:
    db = _labelled("db", {"app": "db"}, node_name="b")
    app = _labelled("app", {"app": "api"}, affinity=_with(_term({"app": "db"})))
    assert decide(app, [node("a"), node("b")], [db]).node == "b"
    d = decide(app, [node("a"), node("b")], [])
    assert d.message == (
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules. preemption: "
        "0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )


def test_first_pod_of_a_self_affine_group_may_go_anywhere() -> None:
    first = _labelled("cache-1", {"app": "cache"}, affinity=_with(_term({"app": "cache"})))
    assert decide(first, [node("a")], []).node == "a"


def test_existing_pods_anti_affinity_refuses_newcomers() -> None:
    loner = _labelled(
        "loner", {"app": "loner"}, node_name="a", affinity=_anti(_term({"app": "web"}))
    )
    web = _labelled("web", {"app": "web"})
    assert decide(web, [node("a"), node("b")], [loner]).node == "b"
    assert decide(web, [node("a")], [loner]).message.startswith(
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
    )


def test_zone_wide_anti_affinity() -> None:
    zone = "topology.kubernetes.io/zone"
    nodes = [
        node("a", labels={zone: "z1"}),
        node("b", labels={zone: "z1"}),
        node("c", labels={zone: "z2"}),
    ]
    db = _labelled("db-1", {"app": "db"}, node_name="a")
    new = _labelled("db-2", {"app": "db"}, affinity=_anti(_term({"app": "db"}, zone)))
    assert decide(new, nodes, [db]).node == "c"


# -- topology spread ------------------------------------------------------------------


def _spread(
    max_skew: int = 1, key: str = "topology.kubernetes.io/zone", **extra: Any
) -> dict[str, Any]:
    return {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }


def _spreading(name: str, *constraints: dict[str, Any]) -> dict[str, Any]:
    p = _labelled(name, {"app": "web"})
    p["spec"]["topologySpreadConstraints"] = list(constraints)
    return p


ZONE = "topology.kubernetes.io/zone"


def test_spread_keeps_zones_within_max_skew() -> None:
    nodes = [node("a", labels={ZONE: "z1"}), node("b", labels={ZONE: "z2"})]
    placed = [_labelled("w1", {"app": "web"}, node_name="a")]
    # z1 has one, z2 none: another in z1 would be a skew of 2.
    assert decide(_spreading("w2", _spread()), nodes, placed).node == "b"
    d = decide(
        _spreading("w2", _spread()),
        [*nodes[:1], node("b", labels={ZONE: "z2"}, taints=[DEDICATED])],
        placed,
    )
    assert d.message == (
        "0/2 nodes are available: 1 node(s) didn't match pod topology spread constraints, "
        "1 node(s) had untolerated taint {example.com/dedicated: special}. preemption: 0/2 "
        "nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption "
        "is not helpful for scheduling."
    )


def test_spread_refuses_nodes_without_the_key() -> None:
    d = decide(_spreading("w", _spread()), [node("bare")])
    assert d.message.startswith(
        "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints "
        "(missing required label)."
    )


def test_schedule_anyway_and_other_apps_do_not_constrain() -> None:
    nodes = [node("a", labels={ZONE: "z1"}), node("b", labels={ZONE: "z2"}, cpu="1")]
    placed = [
        _labelled("w1", {"app": "web"}, node_name="a"),
        _labelled("db", {"app": "db"}, node_name="b"),
    ]
    soft = _spreading("w2", _spread(whenUnsatisfiable="ScheduleAnyway"))
    assert decide(soft, nodes[:1], placed).node == "a"
    other = _labelled("x", {"app": "other"})
    other["spec"]["topologySpreadConstraints"] = [
        dict(_spread(), labelSelector={"matchLabels": {"app": "other"}})
    ]
    assert decide(other, nodes[:1], placed).node == "a"


def test_spread_counts_only_nodes_the_pod_may_use_and_min_domains() -> None:
    nodes = [node("a", labels={ZONE: "z1", "pool": "x"}), node("b", labels={ZONE: "z2"})]
    placed = [_labelled("w1", {"app": "web"}, node_name="a")]
    pinned = _spreading("w2", _spread())
    pinned["spec"]["nodeSelector"] = {"pool": "x"}
    # Only z1 is a domain for this pod, so adding there is no skew at all.
    assert decide(pinned, nodes, placed).node == "a"
    wide = _spreading("w3", _spread(minDomains=3))
    assert decide(wide, nodes[:1], placed).node is None  # fewer domains than asked: min 0
