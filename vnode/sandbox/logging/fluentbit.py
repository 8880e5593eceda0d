"""What vnode's fluent-bit on a COS VM makes of one container line, as a LogEntry.

The VM simulator hands over each joined CRI line (see ``vnode.sandbox.vm.shipping``);
this module builds the entry the real pipeline would deliver: the ``tail`` input with
the CRI parser, the path parser that reads the labels out of
``/var/log/pods/<ns>_<pod>-<node>_<uid>/<container>/<n>.log``, the rename into the
``vnode.dev/`` label keys and the ``stackdriver`` output with the ``gce_instance``
resource. The sandbox may not import the GCE package (they are separate layers), so the
label keys are spelled here again; a test holds them equal to the bootstrap's, which
is what writes the real configuration.
"""

from __future__ import annotations

import re
from typing import Any

from google.cloud.logging_v2.types import log_entry as _log_entry

LogEntryPb: Any = _log_entry.LogEntry.pb()

DEFAULT_LOG_NAME = "vnode_containers"
POD_LOGS_DIR = "/var/log/pods"
PAYLOAD_KEY = "message"
LABEL_POD_UID = "vnode.dev/pod-uid"
LABEL_NAMESPACE = "vnode.dev/namespace"
LABEL_POD = "vnode.dev/pod"
LABEL_CONTAINER = "vnode.dev/container"
LABEL_RESTART_COUNT = "vnode.dev/restart-count"
LABEL_STREAM = "vnode.dev/stream"
LOG_LABELS = (
    LABEL_POD_UID,
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_CONTAINER,
    LABEL_RESTART_COUNT,
    LABEL_STREAM,
)
_GROUPS = {
    "namespace": LABEL_NAMESPACE,
    "pod": LABEL_POD,
    "pod_uid": LABEL_POD_UID,
    "container": LABEL_CONTAINER,
    "restart_count": LABEL_RESTART_COUNT,
}


def path_labels(path: str, node_name: str, stream: str) -> dict[str, str]:
    """The labels the path parser and the renames give a line of ``path``; none when
    the path is not one of this VM's container logs (fluent-bit ships it bare)."""
    m = re.match(
        rf"^{re.escape(POD_LOGS_DIR)}/(?P<namespace>[^_/]+)_(?P<pod>[^_/]+)-{re.escape(node_name)}"
        r"_(?P<pod_uid>[^_/]+)/(?P<container>[^/]+)/(?P<restart_count>[0-9]+)\.log$",
        path,
    )
    if m is None:
        return {}
    labels = {label: m.group(group) for group, label in _GROUPS.items()}
    labels[LABEL_STREAM] = stream
    return labels


def entry_from_line(line: dict[str, Any], log_name: str = DEFAULT_LOG_NAME) -> Any:
    """One shipped line (the VM simulator's dict) -> a ``google.logging.v2.LogEntry``."""
    project = str(line.get("project") or "")
    entry = LogEntryPb(log_name=f"projects/{project}/logs/{log_name.replace('/', '%2F')}")
    entry.resource.type = "gce_instance"
    entry.resource.labels.update(
        {
            "instance_id": str(line.get("instance_id", "")),
            "zone": str(line.get("zone", "")),
            "project_id": project,
        }
    )
    ts_ns = int(line["timestamp_ns"])
    entry.timestamp.seconds, entry.timestamp.nanos = divmod(ts_ns, 1_000_000_000)
    labels = path_labels(
        str(line.get("file", "")), str(line.get("instance_name", "")), str(line["stream"])
    )
    # The stream is renamed into a label whether or not the path parser matched.
    labels.setdefault(LABEL_STREAM, str(line["stream"]))
    entry.labels.update(labels)
    entry.json_payload.update({PAYLOAD_KEY: str(line.get("log", ""))})
    return entry
