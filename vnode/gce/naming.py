"""Names and labels of a pod's VM, derived from the pod so that every step can repeat.

The VM name comes from the pod's uid alone: a retried insert (after a crash, a timeout,
a restart of vnode) names the same instance, so Compute Engine answers "already exists"
instead of making a second VM. The ``requestId`` of an insert is a UUID derived from the
uid and the zone, so a retry within Compute's idempotency window is the same request.

GCE labels allow only lowercase letters, digits, ``-`` and ``_`` (values up to 63
characters, keys starting with a letter); pod names may hold dots and run to 253
characters, so label values are sanitised. The uid label is exact (uids are lowercase
hex and dashes) and is what vnode matches on; namespace and name labels are for people
filtering in the console and for best-effort names when adopting.
"""

from __future__ import annotations

import re
import uuid

VM_PREFIX = "vnode-"
LABEL_NODE = "vnode-node"
LABEL_POD_UID = "vnode-pod-uid"
LABEL_NAMESPACE = "vnode-namespace"
LABEL_POD = "vnode-pod"

MAX_LABEL = 63
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9_-]")
_INSTANCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# A fixed namespace for vnode's request ids (itself derived, so no magic constant).
_REQUEST_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://vnode.dev/gce/request-id")


def vm_name(pod_uid: str) -> str:
    """``vnode-<uid>``: a valid instance name (42 characters) for any Kubernetes uid."""
    cleaned = re.sub(r"[^a-z0-9-]", "-", pod_uid.lower()).strip("-")
    if not cleaned:
        raise ValueError("a pod without a uid has no VM name")
    name = (VM_PREFIX + cleaned)[:63].rstrip("-")
    assert _INSTANCE_NAME.match(name), name
    return name


def uid_from_vm_name(name: str) -> str | None:
    """The pod uid a VM name was made from, or None for a VM vnode did not name."""
    return name[len(VM_PREFIX) :] if name.startswith(VM_PREFIX) else None


def request_id(pod_uid: str, zone: str, action: str = "insert") -> str:
    """A UUID that is the same for every attempt of ``action`` on this pod in ``zone``."""
    return str(uuid.uuid5(_REQUEST_NS, f"{action}/{zone}/{pod_uid}"))


def label_value(text: str) -> str:
    """``text`` as a GCE label value: lowercase, ``[a-z0-9_-]``, at most 63 characters."""
    return _NOT_LABEL_CHAR.sub("-", text.lower())[:MAX_LABEL]


def pod_labels(node: str, namespace: str, name: str, uid: str) -> dict[str, str]:
    """The labels every VM of a pod carries (see the module docstring)."""
    return {
        LABEL_NODE: label_value(node),
        LABEL_POD_UID: label_value(uid),
        LABEL_NAMESPACE: label_value(namespace),
        LABEL_POD: label_value(name),
    }


def node_filter(node: str) -> str:
    """The Compute list filter for every VM of this Node."""
    return f'labels.{LABEL_NODE} = "{label_value(node)}"'


def mirror_name(pod_name: str, vm: str) -> str:
    """The name the VM kubelet reports the static pod under (``<pod>-<node name>``)."""
    return f"{pod_name}-{vm}"
