"""Hard pod topology spread constraints, as kube-scheduler's PodTopologySpread filter.

A ``topologySpreadConstraints`` entry with ``whenUnsatisfiable: DoNotSchedule`` caps
how uneven matching pods may be across the domains of a topology key: placing the pod
in a node's domain may not make that domain exceed the emptiest one by more than
``maxSkew``. Domains are counted over the nodes the pod could use (its node selector
and required affinity honoured, taints ignored: the defaults of ``nodeAffinityPolicy``
and ``nodeTaintsPolicy``) that carry every constraint's key; pods being deleted do not
count. ``ScheduleAnyway`` constraints only score on a real cluster and are ignored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from vnode.sandbox.kubeapi.podaffinity import Resident
from vnode.sandbox.kubeapi.selectors import LabelSelector, Requirement, label_selector_from_spec
from vnode.sandbox.kubeapi.status import StatusError

MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
SKEW = "node(s) didn't match pod topology spread constraints"


def hard_constraints(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    constraints = (pod.get("spec") or {}).get("topologySpreadConstraints") or []
    return [
        c
        for c in constraints
        if isinstance(c, Mapping) and c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"
    ]


def _selector(constraint: Mapping[str, Any], pod_labels: Mapping[str, str]) -> LabelSelector:
    try:
        base = label_selector_from_spec(constraint.get("labelSelector"))
    except StatusError:
        return LabelSelector(nothing=True)
    extra = [  # matchLabelKeys: the pod's own values for those keys join the selector
        Requirement(key, "in", (pod_labels[key],))
        for key in constraint.get("matchLabelKeys") or []
        if key in pod_labels
    ]
    if not extra or base.nothing:
        return base
    return LabelSelector(base.requirements + tuple(extra))


class Spread:
    """The spread of one pending pod's peers, for checking it against many nodes."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        nodes: Sequence[Mapping[str, Any]],
        residents: Mapping[str, Iterable[Resident]],
        eligible: Callable[[Mapping[str, Any]], bool],
    ) -> None:
        meta = pod.get("metadata") or {}
        self._namespace = meta.get("namespace", "")
        self._labels = meta.get("labels") or {}
        self._constraints = hard_constraints(pod)
        keys = {c.get("topologyKey", "") for c in self._constraints}
        counted = [
            n
            for n in nodes
            if eligible(n) and keys <= set((n.get("metadata") or {}).get("labels") or {})
        ]
        self._counts: list[Counter[str]] = []
        for c in self._constraints:
            key, selector = c.get("topologyKey", ""), _selector(c, self._labels)
            counts: Counter[str] = Counter()
            for n in counted:
                value = n["metadata"]["labels"][key]
                counts[value] += sum(
                    1
                    for r in residents.get(n["metadata"]["name"], ())
                    if r.namespace == self._namespace
                    and not r.deleting
                    and selector.matches(r.labels)
                )
            self._counts.append(counts)

    def check(self, node: Mapping[str, Any]) -> tuple[str, bool] | None:
        """The refusal for ``node`` as (reason, resolvable by preemption), or None."""
        labels = (node.get("metadata") or {}).get("labels") or {}
        for c, counts in zip(self._constraints, self._counts, strict=True):
            key = c.get("topologyKey", "")
            if key not in labels:
                return MISSING_LABEL, False
            lowest = min(counts.values()) if counts else 0
            min_domains = c.get("minDomains")
            if isinstance(min_domains, int) and len(counts) < min_domains:
                lowest = 0
            own = 1 if _selector(c, self._labels).matches(self._labels) else 0
            if counts.get(labels[key], 0) + own - lowest > int(c.get("maxSkew") or 1):
                return SKEW, True
        return None
