"""Required inter-pod affinity and anti-affinity, as kube-scheduler's InterPodAffinity.

A pod may ask to run in the same topology domain (nodes sharing a label value, such as
``kubernetes.io/hostname``) as pods matching a selector, or never in one with them; and
pods already running may refuse newcomers the same way. The three refusals carry the
real scheduler's words. Preferred terms only score on a real cluster and are ignored.

Namespaces: a term's ``namespaces`` list, else the pod's own namespace; an empty
``namespaceSelector`` (``{}``) means every namespace. A non-empty namespaceSelector
needs namespace labels, which the scheduler does not cache here: it is treated as
every namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vnode.sandbox.kubeapi.selectors import LabelSelector, label_selector_from_spec
from vnode.sandbox.kubeapi.status import StatusError

AFFINITY_MISMATCH = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_MISMATCH = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"


@dataclass(frozen=True)
class Resident:
    """A bound pod as (anti-)affinity sees it."""

    uid: str
    namespace: str
    labels: Mapping[str, str]
    anti_affinity: tuple[Mapping[str, Any], ...]  # its own required anti-affinity terms
    deleting: bool = False  # topology spread does not count pods on their way out


def required_terms(pod: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """``podAffinity`` or ``podAntiAffinity`` required terms of ``pod``."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    terms = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return [t for t in terms if isinstance(t, Mapping)]


def resident(pod: Mapping[str, Any]) -> Resident:
    meta = pod.get("metadata") or {}
    return Resident(
        meta.get("uid", ""),
        meta.get("namespace", ""),
        dict(meta.get("labels") or {}),
        tuple(required_terms(pod, "podAntiAffinity")),
        bool(meta.get("deletionTimestamp")),
    )


def _selector(term: Mapping[str, Any]) -> LabelSelector:
    try:
        return label_selector_from_spec(term.get("labelSelector"))
    except StatusError:
        return LabelSelector(nothing=True)  # an invalid selector selects nothing


def term_matches(
    term: Mapping[str, Any], owner_namespace: str, namespace: str, labels: Mapping[str, str]
) -> bool:
    """Whether a pod (``namespace``, ``labels``) is one the term of a pod in
    ``owner_namespace`` points at."""
    namespaces = list(term.get("namespaces") or [])
    selector = term.get("namespaceSelector")
    if not namespaces and selector is None:
        namespaces = [owner_namespace]
    if namespaces and namespace not in namespaces and selector is None:
        return False
    return _selector(term).matches(labels)


class Peers:
    """Where the bound pods are, by node, for checking one pod against many nodes."""

    def __init__(
        self, nodes: Sequence[Mapping[str, Any]], residents: Mapping[str, Iterable[Resident]]
    ) -> None:
        self._labels = {
            n["metadata"]["name"]: (n.get("metadata") or {}).get("labels") or {} for n in nodes
        }
        self._placed = [
            (self._labels.get(node, {}), r) for node, rs in residents.items() for r in rs
        ]

    def _in_domain(self, key: str, value: str) -> Iterable[Resident]:
        return (r for labels, r in self._placed if labels.get(key) == value)

    def check(self, pod: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[str, bool] | None:
        """The refusal for ``pod`` on ``node`` as (reason, resolvable by preemption)."""
        meta = pod.get("metadata") or {}
        ns, labels = meta.get("namespace", ""), meta.get("labels") or {}
        node_labels = (node.get("metadata") or {}).get("labels") or {}
        affinity = required_terms(pod, "podAffinity")
        if affinity and not self._affinity_ok(affinity, ns, labels, node_labels):
            return AFFINITY_MISMATCH, False
        for term in required_terms(pod, "podAntiAffinity"):
            value = node_labels.get(term.get("topologyKey", ""))
            if value is not None and any(
                term_matches(term, ns, r.namespace, r.labels)
                for r in self._in_domain(term.get("topologyKey", ""), value)
            ):
                return ANTI_AFFINITY_MISMATCH, True
        for there, r in self._placed:
            for term in r.anti_affinity:
                key = term.get("topologyKey", "")
                value = there.get(key)
                if (
                    value is not None
                    and node_labels.get(key) == value
                    and term_matches(term, r.namespace, ns, labels)
                ):
                    return EXISTING_ANTI_AFFINITY, True
        return None

    def _affinity_ok(
        self,
        terms: list[Mapping[str, Any]],
        ns: str,
        labels: Mapping[str, str],
        node_labels: Mapping[str, str],
    ) -> bool:
        keys = [t.get("topologyKey", "") for t in terms]
        if any(k not in node_labels for k in keys):
            return False  # every topology key must exist on the node
        # Domains holding a pod that matches all the terms (the scheduler's counts).
        domains = {
            (k, there[k])
            for there, r in self._placed
            if all(term_matches(t, ns, r.namespace, r.labels) for t in terms)
            for k in keys
            if k in there
        }
        if all((k, node_labels[k]) in domains for k in keys):
            return True
        # The first pod of a group: nothing matches yet and it matches its own terms.
        return not domains and all(term_matches(t, ns, ns, labels) for t in terms)
