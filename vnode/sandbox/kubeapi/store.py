"""Objects, the one cluster-wide resourceVersion counter and the watch event window.

Everything the emulator serves lives here, in memory, keyed by storage key and
``(namespace, name)``. Every committed change takes the next resourceVersion from one
counter (as etcd's revision does), is appended to a bounded per-kind event window (the
watch cache: a watch from a resourceVersion older than the window gets 410 Gone) and is
fanned out to open watches and to in-process listeners (controllers).

The store owns the write semantics the real registry implements: optimistic
concurrency, no-op updates that do not bump the resourceVersion, status subresources,
graceful pod deletion, finalizers, delete preconditions and events.k8s.io/v1 Events as a
converted view of core/v1 Events. Defaulting and validation are in ``admission``.
All methods run on the server's event loop; none of them blocks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from vnode.clock import Clock, rfc3339
from vnode.sandbox.kubeapi import admission, resources
from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.status import StatusError, already_exists, conflict, gone, not_found

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_T = TypeVar("_T")
# (event_type, res, new, old); new and old are shared by all listeners: read-only.
Listener = Callable[[str, Resource, Obj, "Obj | None"], None]

# Namespaces every cluster has from the start.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-node-lease", "kube-public")

# Kinds whose objects carry metadata.generation (their strategies bump it on spec change).
GENERATION_KINDS = frozenset({("", "pods"), ("batch", "jobs")})

# Kinds the real registry answers a DELETE for with the deleted object rather than a
# Status (``ReturnDeletedObject`` in their storage).
RETURNS_DELETED_OBJECT = frozenset({("", "pods"), ("", "serviceaccounts")})

# Kinds whose default deletion propagation is Orphan: batch/v1 Jobs, kept that way for
# compatibility (every other kind defaults to Background).
DEFAULT_ORPHAN = frozenset({("batch", "jobs")})
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no 0/1/3).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_METADATA_ORDER = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
# Metadata the server owns; a client's value is ignored on update.
_SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)


def clone(value: _T) -> _T:
    """A deep copy of a JSON-shaped value (several times faster than ``copy.deepcopy``)."""
    return cast(_T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def gc_finalizers(
    key: tuple[str, str],
    finalizers: list[str],
    propagation_policy: str | None,
    orphan_dependents: bool | None,
) -> list[str]:
    """The finalizers a DELETE leaves on an object, as the garbage collector wants them.

    An explicit ``orphanDependents`` or ``propagationPolicy`` decides; without one a
    finalizer already on the object keeps its policy, else the kind's default does.
    Orphan asks for ``orphan``, Foreground for ``foregroundDeletion``, Background for
    neither; the finalizer of the policy not chosen is taken away.
    """
    if orphan_dependents is not None:
        orphan, foreground = orphan_dependents, False
    elif propagation_policy is not None:
        orphan = propagation_policy == "Orphan"
        foreground = propagation_policy == "Foreground"
    elif ORPHAN_FINALIZER in finalizers or FOREGROUND_FINALIZER in finalizers:
        first = next(f for f in finalizers if f in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER))
        orphan, foreground = first == ORPHAN_FINALIZER, first == FOREGROUND_FINALIZER
    else:
        orphan, foreground = key in DEFAULT_ORPHAN, False
    out = [
        f
        for f in finalizers
        if (f != ORPHAN_FINALIZER or orphan) and (f != FOREGROUND_FINALIZER or foreground)
    ]
    if orphan and ORPHAN_FINALIZER not in out:
        out.append(ORPHAN_FINALIZER)
    if foreground and FOREGROUND_FINALIZER not in out:
        out.append(FOREGROUND_FINALIZER)
    return out


def generate_suffix() -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def has_status_subresource(res: Resource) -> bool:
    return "status" in res.subresources


def _ordered_metadata(meta: Obj) -> Obj:
    out = {k: meta[k] for k in _METADATA_ORDER if k in meta}
    out.update({k: v for k, v in meta.items() if k not in out})
    return out


def _ordered(obj: Obj, kind: str, api_version: str) -> Obj:
    out: Obj = {"kind": kind, "apiVersion": api_version}
    if "metadata" in obj:
        out["metadata"] = _ordered_metadata(obj["metadata"])
    for k, v in obj.items():
        if k not in ("kind", "apiVersion", "metadata"):
            out[k] = v
    return out


# ---------------------------------------------------------------- events.k8s.io view
# core/v1 field -> events.k8s.io/v1 field (fact E8); objects are stored in core/v1 form.
_EVENT_FIELDS = (
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)
_CORE_EVENT_ORDER = (
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
)
_EVENTS_V1_ORDER = (
    "eventTime",
    "series",
    "reportingController",
    "reportingInstance",
    "action",
    "reason",
    "regarding",
    "related",
    "note",
    "type",
    "deprecatedSource",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "deprecatedCount",
)


def normalize_core_event(obj: Obj) -> Obj:
    """The shape the real server returns: Go zero values for the non-omitempty fields."""
    always: Obj = {
        "involvedObject": {},
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    }
    out: Obj = {"kind": "Event", "apiVersion": "v1", "metadata": obj.get("metadata", {})}
    for key in _CORE_EVENT_ORDER:
        value = obj.get(key)
        if key in always:
            out[key] = value if value is not None else always[key]
        elif value not in (None, "", 0, [], {}):
            out[key] = value
    for key, value in obj.items():
        if key not in out and key not in ("kind", "apiVersion", *_CORE_EVENT_ORDER):
            out[key] = value
    return out


def event_to_core(obj: Obj) -> Obj:
    """events.k8s.io/v1 -> core/v1 (storage form)."""
    out: Obj = {"metadata": obj.get("metadata", {})}
    rename = {new: old for old, new in _EVENT_FIELDS}
    for key, value in obj.items():
        if key in ("kind", "apiVersion", "metadata"):
            continue
        out[rename.get(key, key)] = value
    return normalize_core_event(out)


def event_from_core(obj: Obj) -> Obj:
    """core/v1 (storage form) -> events.k8s.io/v1."""
    rename = dict(_EVENT_FIELDS)
    fields: Obj = {}
    for key, value in obj.items():
        if key in ("kind", "apiVersion", "metadata"):
            continue
        fields[rename.get(key, key)] = value
    out: Obj = {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }
    out["eventTime"] = fields.get("eventTime")
    for key in _EVENTS_V1_ORDER[1:]:
        value = fields.get(key)
        if key in ("deprecatedSource",):
            out[key] = value or {}
        elif key in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp") or value not in (
            None,
            "",
            0,
            [],
            {},
        ):
            out[key] = value
    for key, value in fields.items():
        if key not in out and key not in ("reportingComponent",) and value not in (None, ""):
            out[key] = value
    return out


# ------------------------------------------------------------------ managed fields
# List fields merged by key in server-side apply's field sets (``k:{...}`` entries).
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "conditions": ("type",),
    "ports": ("containerPort", "protocol"),
    "volumeMounts": ("mountPath",),
    "podIPs": ("ip",),
    "hostIPs": ("ip",),
    "ownerReferences": ("uid",),
    "imagePullSecrets": ("name",),
    "addresses": ("type",),
}
_SET_LISTS = frozenset({"finalizers"})
# Structs Kubernetes marks atomic: owned as a whole, no per-field entries.
_ATOMIC = frozenset({"fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"})
_UNMANAGED_METADATA = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def _fields(value: Any, name: str) -> Obj:
    if isinstance(value, dict):
        if not value or name in _ATOMIC:
            return {}
        out: Obj = {".": {}}
        for k in sorted(value):
            out[f"f:{k}"] = _fields(value[k], k)
        return out
    if isinstance(value, list) and name in _SET_LISTS:
        out = {".": {}}
        for item in value:
            out[f"v:{json.dumps(item)}"] = {}
        return out
    if isinstance(value, list) and name in _LIST_KEYS and all(isinstance(i, dict) for i in value):
        entries = {}
        for item in value:
            key = {k: item[k] for k in _LIST_KEYS[name] if k in item}
            entries[f"k:{json.dumps(key, separators=(',', ':'))}"] = _fields(item, "")
        out = {".": {}} if name != "containers" else {}
        out.update(sorted(entries.items()))
        return out
    return {}


def fields_v1(obj: Obj, subresource: str | None, status_subresource: bool) -> Obj:
    """A FieldsV1 set describing what one writer set (approximates the real field sets)."""
    out: Obj = {}
    for top in sorted(obj):
        value = obj[top]
        if top in ("kind", "apiVersion"):
            continue
        if top == "metadata":
            meta = {k: v for k, v in value.items() if k not in _UNMANAGED_METADATA}
            if meta:
                out["f:metadata"] = {f"f:{k}": _fields(v, k) for k, v in sorted(meta.items())}
            continue
        if status_subresource and ((top == "status") != (subresource == "status")):
            continue
        if isinstance(value, dict):
            if value:
                out[f"f:{top}"] = {f"f:{k}": _fields(v, k) for k, v in sorted(value.items())}
        else:
            out[f"f:{top}"] = _fields(value, top)
    return out


# ------------------------------------------------------------------------ watches
class _Event:
    __slots__ = ("kind", "new", "old", "rv")

    def __init__(self, rv: int, kind: str, new: Obj, old: Obj | None) -> None:
        self.rv, self.kind, self.new, self.old = rv, kind, new, old


class Watch:
    """One open watch: filtered, converted events queued for one consumer."""

    def __init__(
        self,
        store: Store,
        res: Resource,
        namespace: str,
        *,
        label_selector: Any,
        field_selector: Any,
        start_rv: int,
    ) -> None:
        self._store = store
        self.res = res
        self.namespace = namespace
        self._labels = label_selector
        self._fields = field_selector
        self.start_rv = start_rv
        self.queue: asyncio.Queue[Obj] = asyncio.Queue()
        self.closed = False

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        if not self._labels.matches(meta.get("labels")):
            return False
        # Only a converted view (events.k8s.io) needs a copy to be matched against.
        view = self._store.view(self.res, obj) if self.res.storage is not None else obj
        return bool(self._fields.matches(view))

    def offer(self, ev: _Event) -> None:
        if self.closed or ev.rv <= self.start_rv:
            return
        new_ok = ev.kind != "DELETED" and self.matches(ev.new)
        old_ok = ev.old is not None and self.matches(ev.old)
        if ev.kind == "DELETED":
            if self.matches(ev.new):
                self._put("DELETED", ev.new)
        elif new_ok and old_ok:
            self._put("MODIFIED", ev.new)
        elif new_ok:
            self._put("ADDED", ev.new)
        elif old_ok and ev.old is not None:
            # Stopped matching: the previous object with the event's resourceVersion.
            old = clone(ev.old)
            old["metadata"]["resourceVersion"] = str(ev.rv)
            self._put("DELETED", old)

    def _put(self, kind: str, obj: Obj) -> None:
        self.queue.put_nowait({"type": kind, "object": self._store.view(self.res, obj)})

    async def next(self, timeout: float | None = None) -> Obj | None:  # noqa: ASYNC109
        """The next event, or None when ``timeout`` seconds pass without one or once closed."""
        if self.closed:
            return None
        try:
            if timeout is None:
                ev = await self.queue.get()
            else:
                ev = await asyncio.wait_for(self.queue.get(), max(timeout, 0.0))
        except TimeoutError:
            return None
        return None if self.closed else ev

    def close(self) -> None:
        """Stop the watch; a consumer waiting in :meth:`next` wakes up with None."""
        if self.closed:
            return
        self.closed = True
        self._store._watches.discard(self)
        self.queue.put_nowait({})


class _Window:
    """The bounded event history of one kind: what a watch can resume from."""

    def __init__(self, size: int, floor: int) -> None:
        self.events: deque[_Event] = deque()
        self.size = size
        self.floor = floor  # oldest resourceVersion a watch may start from

    def append(self, ev: _Event) -> None:
        self.events.append(ev)
        self.trim()

    def trim(self) -> None:
        while len(self.events) > self.size:
            self.floor = self.events.popleft().rv


# -------------------------------------------------------------------------- store
class Store:
    def __init__(self, clock: Clock, *, window: int = 1000) -> None:
        self.clock = clock
        self._window_size = window
        self._rv = 1
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._watches: set[Watch] = set()
        self._listeners: list[Listener] = []
        self.root_ca = ""
        for ns in SYSTEM_NAMESPACES:
            self.create(
                resources.by_kind("", "Namespace"),
                "",
                {"metadata": {"name": ns}},
                manager="kube-apiserver",
            )

    # ------------------------------------------------------------------ basics
    @property
    def window(self) -> int:
        """How many events per kind a watch can resume across (older RVs get 410)."""
        return self._window_size

    @window.setter
    def window(self, size: int) -> None:
        self._window_size = size
        for win in self._windows.values():
            win.size = size
            win.trim()

    @property
    def resource_version(self) -> int:
        return self._rv

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(event_type, res, new, old)`` synchronously after every committed write.

        ``new`` and ``old`` are copies made once per write and shared by all listeners:
        a listener must treat them as read-only (copy before changing anything).
        """
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _bucket(self, res: Resource) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(res.storage_key, {})

    def _window(self, key: tuple[str, str]) -> _Window:
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = _Window(self._window_size, 1)
        return win

    @staticmethod
    def _ns(res: Resource, namespace: str) -> str:
        return namespace if res.namespaced else ""

    def _storage_res(self, res: Resource) -> Resource:
        if res.storage:
            found = resources.lookup(res.storage[0], "v1", res.storage[1])
            if found is not None:
                return found
        return res

    def view(self, res: Resource, obj: Obj) -> Obj:
        """A copy of a stored object as ``res`` presents it (kind/apiVersion, conversion)."""
        obj = clone(obj)
        if res.storage is not None and res.group == "events.k8s.io":
            return event_from_core(obj)
        return _ordered(obj, res.kind, res.api_version)

    def _to_storage(self, res: Resource, obj: Obj) -> Obj:
        if res.storage is not None and res.group == "events.k8s.io":
            return event_to_core(obj)
        if res.storage_key == ("", "events"):
            return normalize_core_event(obj)
        return obj

    def _stored(self, res: Resource, namespace: str, name: str) -> Obj:
        obj = self._bucket(res).get((self._ns(res, namespace), name))
        if obj is None:
            raise not_found(res.plural, name, res.group)
        return obj

    def require_namespace(self, namespace: str, *, creating: str = "") -> None:
        ns = self._objects.get(("", "namespaces"), {}).get(("", namespace))
        if ns is None:
            raise not_found("namespaces", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise StatusError(
                403,
                "Forbidden",
                f"{creating} is forbidden: unable to create new content in namespace "
                f"{namespace} because it is being terminated",
                details={
                    "name": creating.split('"')[1] if '"' in creating else "",
                    "kind": creating.split(" ", maxsplit=1)[0],
                },
            )

    # ------------------------------------------------------------------- reads
    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        return self.view(res, self._stored(res, namespace, name))

    def exists(self, res: Resource, namespace: str, name: str) -> bool:
        return (self._ns(res, namespace), name) in self._bucket(res)

    def list(
        self,
        res: Resource,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> tuple[list[Obj], str]:
        from vnode.sandbox.kubeapi import selectors

        labels = selectors.parse_label_selector(label_selector)
        fields = selectors.parse_field_selector(field_selector, res)
        ns = self._ns(res, namespace)
        out: list[Obj] = []
        for (obj_ns, _), obj in sorted(self._bucket(res).items()):
            if ns and obj_ns != ns:
                continue
            if not labels.matches(obj["metadata"].get("labels")):
                continue
            view = self.view(res, obj)
            if fields.matches(view):
                out.append(view)
        return out, str(self._rv)

    # ------------------------------------------------------------------ commit
    def _commit(self, res: Resource, kind: str, new: Obj, old: Obj | None) -> Obj:
        """Give ``new`` the next resourceVersion, store it (or drop it) and fan it out."""
        sres = self._storage_res(res)
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        key = (new["metadata"].get("namespace", ""), new["metadata"]["name"])
        bucket = self._bucket(sres)
        if kind == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = new
        ev = _Event(self._rv, kind, new, old)
        self._window(sres.storage_key).append(ev)
        for w in list(self._watches):
            if w.res.storage_key == sres.storage_key:
                w.offer(ev)
        if self._listeners:
            # One copy per write, shared by every listener: listeners must not modify it.
            shared_new, shared_old = clone(new), (clone(old) if old else None)
            for fn in list(self._listeners):
                try:
                    fn(kind, sres, shared_new, shared_old)
                except Exception:
                    log.exception("store listener %r failed", fn)
        return new

    def _now(self) -> dt.datetime:
        return self.clock.now()

    def _managed(
        self,
        obj: Obj,
        old: Obj | None,
        *,
        manager: str,
        operation: str,
        subresource: str | None,
        res: Resource,
    ) -> None:
        meta = obj["metadata"]
        entries = [
            e
            for e in (old or {}).get("metadata", {}).get("managedFields", []) or []
            if not (
                e.get("manager") == manager
                and e.get("operation") == operation
                and e.get("subresource") == subresource
            )
        ]
        fields = fields_v1(obj, subresource, has_status_subresource(res))
        if fields:
            entry: Obj = {
                "manager": manager,
                "operation": operation,
                "apiVersion": res.api_version,
                "time": rfc3339(self._now()),
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            }
            if subresource:
                entry["subresource"] = subresource
            entries.append(entry)
        if entries:
            meta["managedFields"] = entries
        else:
            meta.pop("managedFields", None)

    # ------------------------------------------------------------------ create
    def create(
        self,
        res: Resource,
        namespace: str,
        obj: Obj,
        *,
        manager: str = "unknown",
        dry_run: bool = False,
        operation: str = "Update",
    ) -> Obj:
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        ns = self._ns(res, namespace)
        if res.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + generate_suffix()
        for key in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ):
            meta.pop(key, None)
        admission.default(res, obj)
        admission.validate(res, obj, None)
        name = meta["name"]
        if res.namespaced:
            self.require_namespace(ns, creating=f'{res.qualified} "{name}"')
        sres = self._storage_res(res)
        obj = self._to_storage(res, obj)
        meta = obj["metadata"]
        if (ns, name) in self._bucket(sres):
            raise already_exists(res.plural, name, res.group)
        admission.reset_status_on_create(sres, obj, now=rfc3339(self._now()))
        self._managed(obj, None, manager=manager, operation=operation, subresource=None, res=sres)
        meta["uid"] = str(uuid.uuid4())
        admission.admit_create(sres, obj, self)
        meta["creationTimestamp"] = rfc3339(self._now())
        if sres.storage_key in GENERATION_KINDS:
            meta["generation"] = 1
        obj = _ordered(obj, sres.kind, sres.api_version)
        if dry_run:
            return self.view(res, obj)
        self._commit(sres, "ADDED", obj, None)
        self._after_create(sres, obj)
        return self.view(res, obj)

    def _after_create(self, res: Resource, obj: Obj) -> None:
        """What controllers of a real cluster do at once for a new namespace."""
        if res.storage_key != ("", "namespaces"):
            return
        ns = obj["metadata"]["name"]
        self.create(
            resources.by_kind("", "ServiceAccount"),
            ns,
            {"metadata": {"name": "default"}},
            manager="kube-controller-manager",
        )
        self.create(
            resources.by_kind("", "ConfigMap"),
            ns,
            {
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "annotations": {
                        "kubernetes.io/description": (
                            "Contains a CA bundle that can be used to verify the "
                            "kube-apiserver when using internal endpoints such as "
                            "the internal service IP or kubernetes.default.svc. No "
                            "other usage is guaranteed across distributions of "
                            "Kubernetes clusters."
                        )
                    },
                },
                "data": {"ca.crt": self.root_ca},
            },
            manager="kube-controller-manager",
        )

    def set_root_ca(self, pem: str) -> None:
        """Publish the cluster CA in every namespace's ``kube-root-ca.crt`` ConfigMap."""
        self.root_ca = pem
        cm = resources.by_kind("", "ConfigMap")
        for _, ns in list(self._objects.get(("", "namespaces"), {})):
            if self.exists(cm, ns, "kube-root-ca.crt"):
                self.mutate(
                    cm,
                    ns,
                    "kube-root-ca.crt",
                    lambda o: o.setdefault("data", {}).update({"ca.crt": pem}),
                )

    # ------------------------------------------------------------------ update
    def update(
        self,
        res: Resource,
        namespace: str,
        name: str,
        obj: Obj,
        *,
        subresource: str | None = None,
        manager: str = "unknown",
        dry_run: bool = False,
        operation: str = "Update",
    ) -> Obj:
        obj = clone(obj)
        old = self._stored(res, namespace, name)
        sres = self._storage_res(res)
        meta = obj.setdefault("metadata", {})
        rv = meta.get("resourceVersion")
        if rv not in (None, "") and str(rv) != old["metadata"]["resourceVersion"]:
            raise conflict(res.plural, name, res.group)
        uid = meta.get("uid")
        if uid and uid != old["metadata"].get("uid"):
            raise conflict(
                res.plural,
                name,
                res.group,
                why=f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{old['metadata'].get('uid')}",
            )
        if res.namespaced:
            meta["namespace"] = old["metadata"]["namespace"]
        meta["name"] = name
        admission.default(res, obj)
        new = self._to_storage(res, obj)
        return self._write(
            sres,
            old,
            new,
            subresource=subresource,
            manager=manager,
            dry_run=dry_run,
            view_res=res,
            operation=operation,
        )

    def _merge_update(self, res: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
        """Apply the registry's rules for which parts of ``new`` an update may change."""
        merged = clone(new)
        meta = merged.setdefault("metadata", {})
        old_meta = old["metadata"]
        for key in _SYSTEM_METADATA:
            if key in old_meta:
                meta[key] = clone(old_meta[key])
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        meta["managedFields"] = clone(old_meta.get("managedFields", []))
        if subresource == "binding":
            # pods/binding: the one write that may set spec.nodeName, with the binding's
            # annotations and the PodScheduled condition it brings.
            out = clone(old)
            out.setdefault("spec", {})["nodeName"] = (merged.get("spec") or {}).get("nodeName")
            if meta.get("annotations"):
                out["metadata"]["annotations"] = meta["annotations"]
            out["status"] = merged.get("status") or {}
            return out
        if subresource == "status":
            # Only status and labels/annotations change through /status (fact D4).
            out = clone(old)
            if "status" in merged:
                out["status"] = merged["status"]
            else:
                out.pop("status", None)
            for key in ("labels", "annotations"):
                if key in meta:
                    out["metadata"][key] = meta[key]
                else:
                    out["metadata"].pop(key, None)
            return out
        if has_status_subresource(res):
            if "status" in old:
                merged["status"] = clone(old["status"])
            else:
                merged.pop("status", None)
        return merged

    def _write(
        self,
        res: Resource,
        old: Obj,
        new: Obj,
        *,
        subresource: str | None,
        manager: str,
        dry_run: bool = False,
        view_res: Resource | None = None,
        operation: str = "Update",
    ) -> Obj:
        """Commit an update of ``old`` to ``new`` (storage form); answer as ``view_res``."""
        shown = view_res or res
        merged = self._merge_update(res, old, new, subresource)
        if subresource != "binding":
            admission.validate(res, merged, old)
        if (
            res.storage_key in GENERATION_KINDS
            and merged.get("spec") != old.get("spec")
            and subresource != "binding"
        ):  # binding leaves generation alone (07/04c)
            merged["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        merged = _ordered(merged, res.kind, res.api_version)
        if subresource != "binding":  # a Binding is its own object: no managedFields entry
            self._managed(
                merged, old, manager=manager, operation=operation, subresource=subresource, res=res
            )
        if self._same(merged, old):
            return self.view(shown, old)
        if dry_run:
            return self.view(shown, merged)
        meta = merged["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            # The last finalizer of an object being deleted is gone: delete it now.
            self._commit(res, "DELETED", merged, old)
            return self.view(shown, merged)
        self._commit(res, "MODIFIED", merged, old)
        return self.view(shown, merged)

    @staticmethod
    def _same(a: Obj, b: Obj) -> bool:
        def strip(o: Obj) -> Obj:
            o = dict(o)
            meta = dict(o.get("metadata", {}))
            meta.pop("managedFields", None)
            meta.pop("resourceVersion", None)
            o["metadata"] = meta
            return o

        return strip(a) == strip(b)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        *,
        subresource: str | None = None,
        manager: str = "unknown",
        dry_run: bool = False,
        strict: bool = False,
    ) -> Obj:
        from vnode.sandbox.kubeapi import patches

        current = self.get(res, namespace, name)
        patched = patches.apply_patch(current, content_type, body, res.kind)
        if not isinstance(patched, dict):
            raise StatusError(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                details={},
            )
        # The patched object is decoded like a request body (MicroTime formats, unknown
        # fields dropped).
        admission.check_decode(res, patched, strict=strict)
        patched.setdefault("metadata", {})
        if patched["metadata"].get("name") not in (None, name):
            raise StatusError(
                400,
                "BadRequest",
                f"the name of the object ({patched['metadata'].get('name')}) does not match "
                f"the name on the URL ({name})",
            )
        return self.update(
            res,
            namespace,
            name,
            patched,
            subresource=subresource,
            manager=manager,
            dry_run=dry_run,
            operation="Apply"
            if patches.media_type(content_type) == patches.APPLY_PATCH
            else "Update",
        )

    def mutate(
        self,
        res: Resource,
        namespace: str,
        name: str,
        fn: Callable[[Obj], None],
        *,
        subresource: str | None = None,
        manager: str = "kube-controller-manager",
    ) -> Obj:
        """Read-modify-write for in-process controllers: ``fn`` edits a copy in place."""
        current = self.get(res, namespace, name)
        fn(current)
        current["metadata"]["resourceVersion"] = self._stored(res, namespace, name)["metadata"][
            "resourceVersion"
        ]
        return self.update(res, namespace, name, current, subresource=subresource, manager=manager)

    # ------------------------------------------------------------------ delete
    def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
        propagation_policy: str | None = None,
        orphan_dependents: bool | None = None,
    ) -> Obj:
        """Delete (or start deleting) an object; returns what the API answers with.

        That is the object itself while it lingers (graceful deletion, finalizers) or for
        kinds that return deleted objects, else a ``Status`` of ``Success``.
        ``propagation_policy`` / ``orphan_dependents`` are the DeleteOptions: they become
        the ``orphan`` / ``foregroundDeletion`` finalizers (see :func:`gc_finalizers`).
        """
        sres = self._storage_res(res)
        old = self._stored(res, namespace, name)
        meta = old["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise _precondition_conflict(
                res,
                name,
                (
                    f"the UID in the precondition ({pre['uid']}) does not match the UID in "
                    f"record ({meta.get('uid')}). The object might have been deleted and then "
                    f"recreated"
                ),
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta["resourceVersion"]:
            raise _precondition_conflict(
                res,
                name,
                (
                    f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not "
                    f"match the ResourceVersion in record ({meta['resourceVersion']}). The object "
                    f"might have been modified"
                ),
            )
        if sres.storage_key == ("", "namespaces"):
            return self._delete_namespace(res, old, dry_run)
        graceful = sres.storage_key == ("", "pods")
        grace = 0
        if graceful:
            grace = self._pod_grace(old, grace_period_seconds)
        now = self._now()
        new = clone(old)
        nmeta = new["metadata"]
        wanted = gc_finalizers(
            sres.storage_key,
            list(meta.get("finalizers") or []),
            propagation_policy,
            orphan_dependents,
        )
        if wanted:
            nmeta["finalizers"] = wanted
        else:
            nmeta.pop("finalizers", None)
        finalizers_changed = wanted != list(meta.get("finalizers") or [])
        finalizers = bool(wanted)
        if meta.get("deletionTimestamp"):
            # Already being deleted: a later DELETE may only shorten the grace period.
            current = meta.get("deletionGracePeriodSeconds") or 0
            if not graceful or grace >= current:
                if not finalizers_changed:
                    return self.view(res, old)
                grace = current  # only the finalizers change
            else:
                nmeta["deletionTimestamp"] = rfc3339(now + dt.timedelta(seconds=grace))
                nmeta["deletionGracePeriodSeconds"] = grace
        elif graceful or finalizers:
            nmeta["deletionTimestamp"] = rfc3339(now + dt.timedelta(seconds=grace))
            nmeta["deletionGracePeriodSeconds"] = grace
            if nmeta.get("generation"):
                nmeta["generation"] = int(nmeta["generation"]) + 1
        else:
            if dry_run:
                return self._deleted_answer(res, old)
            self._commit(sres, "DELETED", new, old)
            return self._deleted_answer(res, new)
        new = _ordered(new, sres.kind, sres.api_version)
        if dry_run:
            return self.view(res, new)
        self._commit(sres, "MODIFIED", new, old)
        if grace == 0 and not finalizers:
            final = clone(new)
            self._commit(sres, "DELETED", final, new)
            return self.view(res, final)
        return self.view(res, new)

    def _deleted_answer(self, res: Resource, obj: Obj) -> Obj:
        if self._storage_res(res).storage_key in RETURNS_DELETED_OBJECT:
            return self.view(res, obj)
        details: Obj = {"name": obj["metadata"]["name"]}
        if res.group:
            details["group"] = res.group
        details["kind"] = res.plural
        details["uid"] = obj["metadata"].get("uid", "")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    @staticmethod
    def _pod_grace(pod: Obj, requested: int | None) -> int:
        spec = pod.get("spec", {})
        grace = (
            requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
        )
        if grace is None:
            grace = 30
        grace = int(grace)
        if grace < 0:
            grace = 1
        # Never-scheduled and finished pods have nothing to stop: removed at once.
        if not spec.get("nodeName"):
            grace = 0
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            grace = 0
        return grace

    def _delete_namespace(self, res: Resource, old: Obj, dry_run: bool) -> Obj:
        """Simplified namespace lifecycle: mark Terminating, remove contents, remove it."""
        name = old["metadata"]["name"]
        new = clone(old)
        if not new["metadata"].get("deletionTimestamp"):
            new["metadata"]["deletionTimestamp"] = rfc3339(self._now())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
        new.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return self.view(res, new)
        if new != old:
            self._commit(res, "MODIFIED", new, old)
        for r in resources.RESOURCES:
            if not r.namespaced or not r.stored or r.storage is not None:
                continue
            for (obj_ns, _), obj in list(self._bucket(r).items()):
                if obj_ns != name:
                    continue
                gone_obj = clone(obj)
                gone_obj["metadata"].pop("finalizers", None)
                self._commit(r, "DELETED", gone_obj, obj)
        answer = self.view(res, new)
        self._commit(res, "DELETED", clone(new), new)
        return answer

    # ------------------------------------------------------------------- watch
    def subscribe(
        self,
        res: Resource,
        namespace: str = "",
        *,
        resource_version: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> Watch:
        """Open a watch; raises StatusError 410 when ``resource_version`` is too old."""
        from vnode.sandbox.kubeapi import selectors

        labels = selectors.parse_label_selector(label_selector)
        fields = selectors.parse_field_selector(field_selector, res)
        ns = self._ns(res, namespace)
        sres = self._storage_res(res)
        if resource_version in (None, "", "0"):
            w = Watch(
                self, res, ns, label_selector=labels, field_selector=fields, start_rv=self._rv
            )
            for (obj_ns, _), obj in sorted(self._bucket(sres).items()):
                if (not ns or obj_ns == ns) and w.matches(obj):
                    w._put("ADDED", obj)
            self._watches.add(w)
            return w
        try:
            start = int(str(resource_version))
        except ValueError:
            raise StatusError(
                400, "BadRequest", f'invalid resource version "{resource_version}"'
            ) from None
        win = self._window(sres.storage_key)
        if start < win.floor:
            raise gone(f"too old resource version: {start} ({win.floor})")
        w = Watch(self, res, ns, label_selector=labels, field_selector=fields, start_rv=start)
        for ev in win.events:
            w.offer(ev)
        self._watches.add(w)
        return w

    async def watch(
        self,
        res: Resource,
        namespace: str = "",
        *,
        resource_version: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[Obj]:
        w = self.subscribe(
            res,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        try:
            while not w.closed:
                ev = await w.next()
                if ev is not None:
                    yield ev
        finally:
            w.close()

    def latest_resource_version(self, res: Resource) -> int:
        """The resourceVersion of the last change to this kind (what bookmarks carry)."""
        win = self._window(self._storage_res(res).storage_key)
        return win.events[-1].rv if win.events else win.floor

    def oldest_resource_version(self, res: Resource) -> int:
        return self._window(self._storage_res(res).storage_key).floor


def _precondition_conflict(res: Resource, name: str, why: str) -> StatusError:
    """Delete-precondition conflicts name the Kind, not the resource (as the reference)."""
    details: Obj = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.kind
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.kind} "{name}": {why}',
        details=details,
    )
