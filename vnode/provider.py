"""The Provider boundary: what a backend must do to run the pods of a vnode Node.

``vnode.node`` (the Kubernetes face) drives a :class:`Provider`; the built-in GCE backend
and out-of-process plugins implement it. The two sides meet only here.

**Pod representation.** Pods cross this boundary as plain JSON dictionaries, exactly as
the API server sent them (``Pod`` below), and statuses go back as plain ``PodStatus``
dictionaries in API form. We chose raw dicts over the generated ``kubernetes.client``
models on purpose: building a model tree costs far more than the JSON decode (measured
in ``benchmarks/``), the models drop fields they do not know (new API fields would be
lost on the way to the VM), and a dict round-trips to ``pods/status`` without
conversion. The TypedDicts below document the few keys vnode itself relies on; a
provider may read any other field of the API object.

**Rules for implementers** (the controller depends on them):

- Every method may be called again with the same pod, concurrently with other pods, and
  after a restart of vnode. Make each step safe to repeat: ``create_pod`` of a pod that
  already runs is success; ``delete_pod`` of a pod that does not exist is success.
- Calls for one pod are never concurrent with each other (the controller serialises
  per pod key); calls for different pods are.
- Raise :mod:`vnode.errors` classes: ``InvalidPod`` (and subclasses) when the pod can
  never run here (the pod ends ``Failed`` with its reason and message), ``Retryable``
  for transient trouble (retried with backoff and reported as an Event),
  ``QuotaExceeded`` when capacity is lacking, ``NotFound`` when asked about something
  the backend does not have. Any other exception is treated as retryable and logged.
- Never block the event loop: wrap synchronous SDKs in a thread pool.
- ``pod_status`` is called often (every status period for every pod): answer from a
  cache refreshed in bulk, not with one remote call per pod.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable


class ObjectMeta(TypedDict):
    name: str
    namespace: str
    uid: str
    labels: NotRequired[dict[str, str]]
    annotations: NotRequired[dict[str, str]]
    deletionTimestamp: NotRequired[str]


class Pod(TypedDict):
    """A core/v1 Pod as JSON. ``spec`` and ``status`` are the API's own shapes."""

    metadata: ObjectMeta
    spec: dict[str, Any]
    status: NotRequired[dict[str, Any]]


PodStatus = dict[str, Any]
"""A core/v1 PodStatus as JSON (``phase``, ``conditions``, ``containerStatuses``, ...)."""


@dataclass(frozen=True)
class PodRef:
    """A pod the backend runs, as found when listing it (for adoption after a restart)."""

    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class LogOptions:
    """The kubelet's ``/containerLogs`` options, already parsed and validated.

    Semantics are the kubelet's: ``tail_lines`` counts from the end (0 means none),
    ``since_*`` bound by the entry's timestamp, ``limit_bytes`` cuts the output,
    ``timestamps`` prefixes each line with its RFC 3339 nanosecond time and a space,
    ``previous`` asks for the prior instance of a restarted container, ``follow`` keeps
    the stream open until the container ends.
    """

    container: str
    follow: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: dt.datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    previous: bool = False


class EventRecorder(Protocol):
    """Reports something about a pod as a Kubernetes Event (reporting component vnode)."""

    def __call__(self, pod: Pod, type_: str, reason: str, message: str, /) -> None: ...


class ClusterReader(Protocol):
    """Read access to the cluster objects a pod refers to.

    A VM cannot reach the API server, so a backend resolves ConfigMaps, Secrets and
    service-account tokens on vnode's side, through this.
    """

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str],
        expiration_seconds: int,
        pod: Pod | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class ProviderContext:
    """What vnode hands a provider at start."""

    node_name: str
    cluster: ClusterReader
    record_event: EventRecorder
    # Called by a provider that pushes status changes (see SupportsStatusNotify).
    notify: Callable[[Pod | PodRef], None] = field(default=lambda _: None)


@runtime_checkable
class Provider(Protocol):
    """A backend that runs pods. See the module docstring for the rules."""

    name: str
    """Short name, used in the Node label ``vnode.dev/provider`` (e.g. ``gce``)."""

    async def start(self, context: ProviderContext) -> None:
        """Connect to the backend. Called once, before any other method."""

    async def stop(self) -> None:
        """Release connections and background tasks. Pods keep running."""

    async def create_pod(self, pod: Pod) -> None:
        """Start running ``pod``. Returns once the backend accepted it (not once it runs)."""

    async def update_pod(self, pod: Pod) -> None:
        """Apply a change of a running pod (new labels, a shorter deadline). May do nothing."""

    async def delete_pod(self, pod: Pod) -> None:
        """Stop ``pod`` and free what it used. A missing pod is success."""

    async def pod_status(self, pod: Pod) -> PodStatus | None:
        """The pod's current status in API form, or None while the backend knows nothing yet.

        A pod the backend lost (its machine vanished) is reported ``Failed`` with a reason,
        not as None.
        """

    async def list_pods(self) -> list[PodRef]:
        """Every pod the backend runs for this Node, found by its own labels."""

    def container_logs(self, pod: Pod, options: LogOptions) -> AsyncIterator[bytes]:
        """Stream a container's log, already formatted as the kubelet would send it.

        Raise ``NotFound`` for an unknown container. With ``follow``, keep yielding until
        the container ends; the caller stops iterating when its client goes away.
        """


@runtime_checkable
class SupportsCapacity(Protocol):
    """A provider that knows how much the Node can hold (else settings decide)."""

    async def node_capacity(self) -> dict[str, str]:
        """Resource name -> quantity, e.g. ``{"cpu": "1000", "nvidia.com/gpu": "8"}``."""


@runtime_checkable
class SupportsStatusNotify(Protocol):
    """A provider that pushes status changes through ``ProviderContext.notify``.

    The controller still polls, but slowly; pushes make status changes prompt.
    """

    pushes_status: bool


@runtime_checkable
class SupportsStats(Protocol):
    """A provider that can answer the kubelet's ``/stats/summary`` and ``/metrics/resource``."""

    async def stats_summary(self) -> dict[str, Any]: ...

    async def metrics_resource(self) -> str: ...


ProviderFactory = Callable[[], "Provider | Awaitable[Provider]"]
