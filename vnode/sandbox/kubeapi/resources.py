"""The resource kinds the emulator serves: one table drives routing, storage and discovery.

A kind not listed here answers like an unknown resource on the real server. Discovery
documents, the OpenAPI documents and the router are all derived from this table, so
adding a kind is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # e.g. "status", "binding", "log"
    # Kinds that store the same objects under another group (events.k8s.io/v1 Events
    # are core/v1 Events seen through a conversion) name the storage they share.
    storage: tuple[str, str] | None = None
    # Create-only kinds (TokenReview, SubjectAccessReview) are answered, never stored.
    stored: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Where the objects live; shared between views of one kind."""
        return self.storage or (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """``pods`` or ``leases.coordination.k8s.io``: how error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_CREATE_ONLY = ("create",)

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        ("create", "delete", "get", "list", "patch", "update", "watch"),
        short_names=("ns",),
        subresources=("status", "finalize"),
    ),
    Resource(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        False,
        short_names=("no",),
        subresources=("status", "proxy"),
    ),
    Resource(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        short_names=("po",),
        categories=("all",),
        subresources=("status", "binding", "eviction", "log"),
    ),
    Resource("", "v1", "events", "event", "Event", True, short_names=("ev",)),
    Resource("", "v1", "configmaps", "configmap", "ConfigMap", True, short_names=("cm",)),
    Resource("", "v1", "secrets", "secret", "Secret", True),
    Resource(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        True,
        short_names=("sa",),
        subresources=("token",),
    ),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    Resource(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        True,
        short_names=("ev",),
        storage=("", "events"),
    ),
    Resource(
        "batch", "v1", "jobs", "job", "Job", True, categories=("all",), subresources=("status",)
    ),
    Resource(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        False,
        _CREATE_ONLY,
        stored=False,
    ),
    Resource(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        False,
        _CREATE_ONLY,
        stored=False,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        False,
        _CREATE_ONLY,
        stored=False,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        False,
        _CREATE_ONLY,
        stored=False,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        True,
        _CREATE_ONLY,
        stored=False,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        False,
        _CREATE_ONLY,
        stored=False,
    ),
)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(group: str, kind: str) -> Resource:
    for r in RESOURCES:
        if r.group == group and r.kind == kind:
            return r
    raise KeyError((group, kind))


def groups() -> dict[str, list[str]]:
    """Group name -> served versions, core group first, in discovery order."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out
