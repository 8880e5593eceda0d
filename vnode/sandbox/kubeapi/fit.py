"""Whether a pod fits a node, and the scheduler's words for why not.

Pure functions over raw objects, so the rules are unit-tested without a server. They
follow the filters of kube-scheduler's default profile in their order
(NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, then
PodTopologySpread and InterPodAffinity from :mod:`topologyspread` and
:mod:`podaffinity`): a node
is rejected by the first filter that fails, and the failure message counts the reasons
over all nodes exactly as the real scheduler prints them (see ``07-scheduler`` in the
reference captures), including the preemption summary that follows them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnode.sandbox.kubeapi import podaffinity, quantity, topologyspread

# Plugin names: the requeue logic keys on them, and one message names a plugin.
NODE_UNSCHEDULABLE = "NodeUnschedulable"
TAINT_TOLERATION = "TaintToleration"
NODE_AFFINITY = "NodeAffinity"
NODE_PORTS = "NodePorts"
NODE_RESOURCES_FIT = "NodeResourcesFit"
POD_TOPOLOGY_SPREAD = "PodTopologySpread"
INTER_POD_AFFINITY = "InterPodAffinity"

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NO_NODES = "no nodes available to schedule pods"
AFFINITY_CONFLICT = "pod affinity terms conflict"

# Scoring treats a container without requests as asking for this much, so empty pods
# still spread instead of piling onto one node (the scheduler's non-zero defaults).
_DEFAULT_MILLI_CPU = 100
_DEFAULT_MEMORY = 200 * 1024 * 1024


@dataclass(frozen=True)
class Rejection:
    """Why one node cannot take the pod: the filter, its reasons, and whether evicting
    lower-priority pods could ever help (``resolvable``), which decides the preemption
    wording."""

    plugin: str
    reasons: tuple[str, ...]
    resolvable: bool


@dataclass
class NodeUsage:
    """What the pods already bound to a node take from it."""

    requested: Counter[str] = field(default_factory=Counter)
    scoring: Counter[str] = field(default_factory=Counter)
    pods: int = 0
    # Counted, so one pod leaving does not free a port another pod also holds.
    host_ports: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    residents: dict[str, podaffinity.Resident] = field(default_factory=dict)  # by uid
    with_anti_affinity: int = 0  # residents that refuse some newcomers

    def add(self, pod: Mapping[str, Any]) -> None:
        self.add_parts(pod_parts(pod))

    def add_parts(self, parts: PodParts) -> None:
        requests, scoring, ports, resident = parts
        self.requested.update(requests)
        self.scoring.update(scoring)
        self.pods += 1
        self.host_ports.update(ports)
        self.residents[resident.uid] = resident
        self.with_anti_affinity += bool(resident.anti_affinity)

    def remove_parts(self, parts: PodParts) -> None:
        requests, scoring, ports, resident = parts
        self.requested.subtract(requests)
        self.scoring.subtract(scoring)
        self.pods -= 1
        self.host_ports.subtract(ports)
        self.host_ports = +self.host_ports
        if self.residents.pop(resident.uid, None) is not None:
            self.with_anti_affinity -= bool(resident.anti_affinity)


# What a bound pod takes from its node: (requests, scoring requests, host ports, and
# itself as inter-pod affinity sees it).
PodParts = tuple[Counter[str], Counter[str], frozenset[tuple[str, str, int]], podaffinity.Resident]


def pod_parts(pod: Mapping[str, Any]) -> PodParts:
    return (
        pod_requests(pod),
        scoring_requests(pod),
        frozenset(host_ports(pod)),
        podaffinity.resident(pod),
    )


# -- requests ---------------------------------------------------------------------------


def _amounts(resources: Mapping[str, Any] | None) -> Counter[str]:
    out: Counter[str] = Counter()
    for name, amount in ((resources or {}).get("requests") or {}).items():
        try:
            out[name] = quantity.milli_value(amount) if name == "cpu" else quantity.value(amount)
        except quantity.QuantityError:
            continue  # admission rejects these; never let one crash the scheduler
    return out


def _max(a: Counter[str], b: Counter[str]) -> Counter[str]:
    return Counter({k: max(a.get(k, 0), b.get(k, 0)) for k in set(a) | set(b)})


def pod_requests(pod: Mapping[str, Any]) -> Counter[str]:
    """cpu in millicores, memory and the rest in units: the larger of what the app
    containers (plus sidecars) need together and what the heaviest init step needs, plus
    the pod overhead."""
    spec = pod.get("spec") or {}
    total: Counter[str] = Counter()
    for c in spec.get("containers") or []:
        total.update(_amounts(c.get("resources")))
    sidecars: Counter[str] = Counter()
    init_peak: Counter[str] = Counter()
    for c in spec.get("initContainers") or []:
        need = _amounts(c.get("resources"))
        if c.get("restartPolicy") == "Always":
            # A sidecar keeps running: it adds to every later step and to the app phase.
            sidecars.update(need)
            step = Counter(sidecars)
        else:
            step = need + sidecars
        init_peak = _max(init_peak, step)
    total.update(sidecars)
    total = _max(total, init_peak)
    overhead = _amounts({"requests": spec.get("overhead") or {}})
    total.update(overhead)
    return Counter({k: v for k, v in total.items() if v})


def scoring_requests(pod: Mapping[str, Any]) -> Counter[str]:
    """cpu and memory as scoring sees them: an unset request counts as a small default."""
    out: Counter[str] = Counter()
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = _amounts(c.get("resources"))
        out["cpu"] += req.get("cpu") or _DEFAULT_MILLI_CPU
        out["memory"] += req.get("memory") or _DEFAULT_MEMORY
    return out


def allocatable(node: Mapping[str, Any]) -> Counter[str]:
    status = node.get("status") or {}
    source = status.get("allocatable") or status.get("capacity") or {}
    return _amounts({"requests": source})


def host_ports(pod: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) the pod claims on its node."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    out: set[tuple[str, str, int]] = set()
    for c in containers:
        for p in c.get("ports") or []:
            hp = p.get("hostPort")
            if isinstance(hp, int) and hp > 0:
                out.add((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
    return out


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def usage_by_node(pods: Iterable[Mapping[str, Any]]) -> dict[str, NodeUsage]:
    """Bound pods that still hold their resources (terminal ones have given them back)."""
    out: dict[str, NodeUsage] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not is_terminal(pod):
            out.setdefault(node, NodeUsage()).add(pod)
    return out


# -- taints and tolerations -------------------------------------------------------------


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(
    taints: Iterable[Mapping[str, Any]],
    tolerations: Iterable[Mapping[str, Any]],
    effects: tuple[str, ...] = ("NoSchedule", "NoExecute"),
) -> Mapping[str, Any] | None:
    """The first taint with one of ``effects`` that no toleration covers."""
    tols = list(tolerations)
    for taint in taints:
        if taint.get("effect") not in effects:
            continue
        if not any(tolerates(t, taint) for t in tols):
            return taint
    return None


def taint_text(taint: Mapping[str, Any]) -> str:
    return "{" + f"{taint.get('key', '')}: {taint.get('value') or ''}" + "}"


# -- node selection ---------------------------------------------------------------------


def _requirement_matches(req: Mapping[str, Any], value: str | None) -> bool:
    op = req.get("operator")
    values = list(req.get("values") or [])
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term selects nothing
    labels = (node.get("metadata") or {}).get("labels") or {}
    for req in exprs:
        if not _requirement_matches(req, labels.get(req.get("key", ""))):
            return False
    for req in fields:
        if req.get("key") != "metadata.name" or req.get("operator") not in ("In", "NotIn"):
            return False
        if not _requirement_matches(req, (node.get("metadata") or {}).get("name")):
            return False
    return True


def _required_terms(pod: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def matches_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector (every label equal) and required node affinity (any term)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, want in ((pod.get("spec") or {}).get("nodeSelector") or {}).items():
        if labels.get(key) != want:
            return False
    terms = _required_terms(pod)
    if terms is None:
        return True
    return any(_term_matches(t, node) for t in terms)


def affinity_node_names(pod: Mapping[str, Any]) -> set[str] | None:
    """The node names the pod's required affinity pins it to, when every term pins it
    with ``matchFields metadata.name In`` (how DaemonSet pods are aimed); else None."""
    terms = _required_terms(pod)
    if not terms:
        return None
    names: set[str] = set()
    for term in terms:
        term_names: set[str] | None = None
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In":
                vals = set(req.get("values") or [])
                term_names = vals if term_names is None else term_names & vals
        if term_names is None:
            return None  # this term does not pin a name, and terms are ORed
        names |= term_names
    return names


# -- the filters ------------------------------------------------------------------------


def check_unschedulable(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Rejection | None:
    if not (node.get("spec") or {}).get("unschedulable"):
        return None
    taint = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    if any(tolerates(t, taint) for t in (pod.get("spec") or {}).get("tolerations") or []):
        return None
    return Rejection(NODE_UNSCHEDULABLE, ("node(s) were unschedulable",), False)


def check_taints(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Rejection | None:
    taint = untolerated_taint(
        (node.get("spec") or {}).get("taints") or [],
        (pod.get("spec") or {}).get("tolerations") or [],
    )
    if taint is None:
        return None
    return Rejection(
        TAINT_TOLERATION, (f"node(s) had untolerated taint {taint_text(taint)}",), False
    )


def check_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Rejection | None:
    if matches_affinity(pod, node):
        return None
    return Rejection(NODE_AFFINITY, ("node(s) didn't match Pod's node affinity/selector",), False)


def _ports_conflict(want: tuple[str, str, int], used: Iterable[tuple[str, str, int]]) -> bool:
    ip, proto, port = want
    for uip, uproto, uport in used:
        if uport == port and uproto == proto and (ip == uip or "0.0.0.0" in (ip, uip)):
            return True
    return False


def check_ports(pod: Mapping[str, Any], usage: NodeUsage) -> Rejection | None:
    if any(_ports_conflict(p, usage.host_ports) for p in host_ports(pod)):
        return Rejection(
            NODE_PORTS, ("node(s) didn't have free ports for the requested pod ports",), True
        )
    return None


def check_resources(
    request: Mapping[str, int], node: Mapping[str, Any], usage: NodeUsage
) -> Rejection | None:
    alloc = allocatable(node)
    reasons: list[str] = []
    if usage.pods + 1 > alloc.get("pods", 0):
        reasons.append("Too many pods")
    for name in sorted(request):
        if name == "pods":
            continue
        need = request[name]
        if need > 0 and need > alloc.get(name, 0) - usage.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
    if not reasons:
        return None
    return Rejection(NODE_RESOURCES_FIT, tuple(reasons), True)


def check_spread(node: Mapping[str, Any], spread: topologyspread.Spread | None) -> Rejection | None:
    refusal = spread.check(node) if spread is not None else None
    if refusal is None:
        return None
    return Rejection(POD_TOPOLOGY_SPREAD, (refusal[0],), refusal[1])


def check_inter_pod(
    pod: Mapping[str, Any], node: Mapping[str, Any], peers: podaffinity.Peers | None
) -> Rejection | None:
    refusal = peers.check(pod, node) if peers is not None else None
    if refusal is None:
        return None
    return Rejection(INTER_POD_AFFINITY, (refusal[0],), refusal[1])


def check_node(
    pod: Mapping[str, Any],
    node: Mapping[str, Any],
    usage: NodeUsage | None = None,
    request: Mapping[str, int] | None = None,
    *,
    peers: podaffinity.Peers | None = None,
    spread: topologyspread.Spread | None = None,
) -> Rejection | None:
    """The first filter that rejects ``node`` for ``pod``, or None when it fits (topology
    spread and inter-pod affinity only when ``spread``/``peers`` say where pods are)."""
    usage = usage or NodeUsage()
    request = pod_requests(pod) if request is None else request
    return (
        check_unschedulable(pod, node)
        or check_taints(pod, node)
        or check_affinity(pod, node)
        or check_ports(pod, usage)
        or check_resources(request, node, usage)
        or check_spread(node, spread)
        or check_inter_pod(pod, node, peers)
    )


def _peers(
    pod: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], usage: Mapping[str, NodeUsage]
) -> podaffinity.Peers | None:
    """Only worth building when the pod or some bound pod has (anti-)affinity terms."""
    relevant = (
        podaffinity.required_terms(pod, "podAffinity")
        or podaffinity.required_terms(pod, "podAntiAffinity")
        or any(u.with_anti_affinity for u in usage.values())
    )
    if not relevant:
        return None
    return podaffinity.Peers(nodes, {name: u.residents.values() for name, u in usage.items()})


def score(node: Mapping[str, Any], usage: NodeUsage, pod: Mapping[str, Any]) -> float:
    """Least-allocated: the share of cpu and memory left after placing the pod."""
    alloc = allocatable(node)
    want = scoring_requests(pod)
    parts = []
    for name in ("cpu", "memory"):
        cap = alloc.get(name, 0)
        used = usage.scoring.get(name, 0) + want.get(name, 0)
        parts.append(0.0 if cap <= 0 or used > cap else (cap - used) / cap)
    return sum(parts) / len(parts)


# -- the message ------------------------------------------------------------------------


def _histogram(counts: Counter[str]) -> str:
    # The scheduler prints "<count> <reason>" strings sorted as strings.
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def failure_message(num_nodes: int, rejections: Iterable[Rejection], prefilter: str = "") -> str:
    """``0/N nodes are available: ...`` with the preemption summary, as the scheduler
    writes it into the PodScheduled condition and the FailedScheduling event."""
    rejections = list(rejections)
    head = f"0/{num_nodes} nodes are available:"
    if prefilter:
        msg = f"{head} {prefilter}."
    else:
        reasons: Counter[str] = Counter()
        for r in rejections:
            reasons.update(r.reasons)
        msg = f"{head} {_histogram(reasons)}."
    preemption: Counter[str] = Counter()
    for r in rejections:
        preemption[NO_VICTIMS if r.resolvable else NOT_HELPFUL] += 1
    return f"{msg} preemption: {head} {_histogram(preemption)}."


@dataclass(frozen=True)
class Decision:
    """The outcome for one pod: a node, or the message and the rejecting plugins."""

    node: str | None
    message: str = ""
    plugins: frozenset[str] = frozenset()


def decide(
    pod: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], usage: Mapping[str, NodeUsage]
) -> Decision:
    """Pick the least-allocated feasible node (ties by name), or explain the failure."""
    if not nodes:
        return Decision(None, NO_NODES)
    request = pod_requests(pod)
    pinned = affinity_node_names(pod)
    if pinned is not None and not pinned:
        unresolvable = [Rejection(NODE_AFFINITY, (AFFINITY_CONFLICT,), False)] * len(nodes)
        return Decision(
            None,
            failure_message(len(nodes), unresolvable, prefilter=AFFINITY_CONFLICT),
            frozenset({NODE_AFFINITY}),
        )
    peers = _peers(pod, nodes, usage)
    spread = None
    if topologyspread.hard_constraints(pod):
        spread = topologyspread.Spread(
            pod,
            nodes,
            {name: u.residents.values() for name, u in usage.items()},
            lambda n: matches_affinity(pod, n),
        )
    rejections: list[Rejection] = []
    best: tuple[float, str] | None = None
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if pinned is not None and name not in pinned:
            rejections.append(
                Rejection(
                    NODE_AFFINITY, (f"node(s) didn't satisfy plugin(s) [{NODE_AFFINITY}]",), False
                )
            )
            continue
        node_usage = usage.get(name) or NodeUsage()
        rejection = check_node(pod, node, node_usage, request, peers=peers, spread=spread)
        if rejection is not None:
            rejections.append(rejection)
            continue
        s = score(node, node_usage, pod)
        if best is None or s > best[0]:
            best = (s, name)
    if best is not None:
        return Decision(best[1])
    return Decision(
        None,
        failure_message(len(nodes), rejections),
        frozenset(r.plugin for r in rejections),
    )
