"""Compute Engine calls for pod VMs: insert, delete, one listing, operations, retries.

``google-cloud-compute`` is synchronous, so every call runs in a small thread pool of
its own, never on the event loop. All retrying happens here, in :meth:`Instances._call`,
with one tenacity policy: 429, 5xx, connection failures and rate-limit reasons are
retried with jittered exponential backoff (at least the server's ``Retry-After``),
within a cap on attempts and on total time. What is left is classified once into
:mod:`vnode.errors`, so the provider decides from the class, never from a message:

- quota (``QUOTA_EXCEEDED``) and stockouts (``ZONE_RESOURCE_POOL_EXHAUSTED*``), from the
  call or from the finished operation -> :class:`QuotaExceeded` (another zone may do);
- 400 and other refusals of the request itself -> :class:`InvalidPod` with the API's
  own message (the pod can never run as asked);
- retries exhausted, timeouts, permission trouble -> :class:`Retryable` (the pod
  controller retries with backoff and reports an Event).

Zone operations are awaited with ``zoneOperations.wait`` (which returns after at most
two minutes, done or not) in a loop against a deadline; their ``error.errors`` are read,
and running out of time is an error. The client's own ``operation.result()`` is not
used: it polls through an internal client that ignores a custom endpoint.

The whole fleet of a Node is read with one ``instances.aggregatedList`` per sync,
filtered by the ``vnode-node`` label and paged, so the number of Compute calls does not
grow with the number of pods.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
import tenacity
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from vnode import metrics
from vnode.clock import Clock, SystemClock
from vnode.errors import InvalidPod, NotFound, QuotaExceeded, Retryable, VnodeError
from vnode.gce import naming
from vnode.settings import GCESettings

log = logging.getLogger(__name__)

T = TypeVar("T")

QUOTA_CODES = ("QUOTA_EXCEEDED",)
STOCKOUT_PREFIX = "ZONE_RESOURCE_POOL_EXHAUSTED"
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
)
QUOTA_REASONS = frozenset({"quotaExceeded", "QUOTA_EXCEEDED"})
PREEMPTED_OPERATION = "compute.instances.preempted"

# The client's own retries are off (retry=None): retrying happens in one place, here.
_CALL: dict[str, Any] = {"retry": None, "timeout": 60.0}
# zoneOperations.wait may hold the call for up to two minutes before it answers.
_WAIT_CALL: dict[str, Any] = {"retry": None, "timeout": 150.0}


@dataclass(frozen=True)
class RetryPolicy:
    """How transient Compute failures are retried (one policy for the whole API)."""

    attempts: int = 6
    """Attempts in total, the first included."""
    deadline: float = 60.0
    """Seconds after which no new attempt starts."""
    base: float = 0.5
    cap: float = 16.0
    """Backoff: doubling from ``base`` up to ``cap`` seconds, with full jitter."""


@dataclass(frozen=True)
class VM:
    """What vnode needs of one instance from the listing."""

    name: str
    zone: str
    status: str
    """PROVISIONING, STAGING, RUNNING, STOPPING, SUSPENDING, SUSPENDED, TERMINATED, ..."""
    internal_ip: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    spot: bool = False
    machine_type: str = ""

    @property
    def pod_uid(self) -> str:
        return self.labels.get(naming.LABEL_POD_UID) or naming.uid_from_vm_name(self.name) or ""


@dataclass(frozen=True)
class InsertSpec:
    """One pod's VM, as the provider decided it."""

    name: str
    zone: str
    machine_type: str
    boot_disk_gb: int
    labels: Mapping[str, str]
    metadata: Sequence[Mapping[str, str]]
    """``metadata.items`` (``[{key, value}]``) from the bootstrap."""
    spot: bool = False
    max_run_duration: int | None = None
    """Seconds; the VM is deleted when they run out."""
    gpu_terminate: bool = False
    """GPUs cannot live-migrate: ``onHostMaintenance=TERMINATE``."""


def instance_body(settings: GCESettings, spec: InsertSpec) -> dict[str, Any]:
    """The ``instances.insert`` body (proto field names) for ``spec``."""
    zone = spec.zone
    scheduling: dict[str, Any] = {
        "provisioning_model": "SPOT" if spec.spot else "STANDARD",
        # Spot VMs cannot migrate or restart; a one-shot VM never should be restarted
        # anyway: a restart would run the pod again behind everyone's back.
        "on_host_maintenance": "TERMINATE" if (spec.spot or spec.gpu_terminate) else "MIGRATE",
        "automatic_restart": False,
    }
    if spec.spot or spec.max_run_duration is not None:
        scheduling["instance_termination_action"] = "DELETE"
    if spec.max_run_duration is not None:
        scheduling["max_run_duration"] = {"seconds": int(spec.max_run_duration)}
    interface: dict[str, Any] = {"network": settings.network}
    if settings.subnetwork:
        interface["subnetwork"] = settings.subnetwork
    if settings.external_ip:
        interface["access_configs"] = [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
    body: dict[str, Any] = {
        "name": spec.name,
        "machine_type": f"zones/{zone}/machineTypes/{spec.machine_type}",
        "disks": [
            {
                "boot": True,
                "auto_delete": True,
                "initialize_params": {
                    "source_image": settings.image,
                    "disk_size_gb": int(spec.boot_disk_gb),
                    "disk_type": f"zones/{zone}/diskTypes/{settings.boot_disk_type}",
                },
            }
        ],
        "network_interfaces": [interface],
        "labels": dict(spec.labels),
        "metadata": {"items": [dict(i) for i in spec.metadata]},
        "scheduling": scheduling,
    }
    if settings.network_tags:
        body["tags"] = {"items": list(settings.network_tags)}
    if settings.service_account:
        body["service_accounts"] = [
            {"email": settings.service_account, "scopes": list(settings.scopes)}
        ]
    return body


# -- error classification ------------------------------------------------------------------


def _reasons(err: gexc.GoogleAPICallError) -> set[str]:
    out = {str(e.get("reason")) for e in (err.errors or []) if isinstance(e, Mapping)}
    if err.reason:
        out.add(str(err.reason))
    return out


def _retry_after(err: BaseException) -> float | None:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw = headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def transient(err: BaseException) -> bool:
    """Worth another attempt right away (with backoff): 429, 5xx, rate limits, I/O."""
    if isinstance(err, gexc.GoogleAPICallError):
        code = int(err.code or 0)
        if code == 429 or code >= 500:
            return True
        return code == 403 and bool(_reasons(err) & RATE_LIMIT_REASONS)
    return isinstance(err, (requests.ConnectionError, requests.Timeout, ConnectionError))


def classify(err: BaseException, what: str) -> VnodeError:
    """The :mod:`vnode.errors` class of a failed Compute call (see the module docstring)."""
    if isinstance(err, VnodeError):
        return err
    if isinstance(err, gexc.GoogleAPICallError):
        code = int(err.code or 0)
        message = _api_message(err)
        reasons = _reasons(err)
        if transient(err):
            return Retryable(
                f"{what}: Compute Engine answered {code} ({message}); retries exhausted",
                retry_after=_retry_after(err),
            )
        if reasons & QUOTA_REASONS or any(r.startswith(STOCKOUT_PREFIX) for r in reasons):
            return QuotaExceeded(f"{what}: {message}")
        if code == 404:
            return NotFound(f"{what}: {message}")
        if code == 400:
            return InvalidPod(f"{what}: Compute Engine refused the VM: {message}")
        return Retryable(f"{what}: Compute Engine answered {code}: {message}")
    if transient(err):
        return Retryable(f"{what}: cannot reach Compute Engine ({err}); retries exhausted")
    return Retryable(f"{what}: {type(err).__name__}: {err}")


def _api_message(err: gexc.GoogleAPICallError) -> str:
    for e in err.errors or []:
        if isinstance(e, Mapping) and e.get("message"):
            return str(e["message"])
    return str(err.message or err)


def operation_error(op: Mapping[str, Any], what: str) -> VnodeError | None:
    """The error a finished operation carries, classified; None when it succeeded."""
    errors = ((op.get("error") or {}).get("errors")) or []
    if not errors:
        return None
    codes = [str(e.get("code") or "") for e in errors]
    message = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
    status = int(op.get("http_error_status_code") or 0)
    if any(c in QUOTA_CODES or c.startswith(STOCKOUT_PREFIX) for c in codes):
        return QuotaExceeded(f"{what}: {message}")
    if "RESOURCE_ALREADY_EXISTS" in codes:
        return None
    if status >= 500 or status == 429 or not status:
        return Retryable(f"{what}: the operation failed: {message}")
    return InvalidPod(f"{what}: Compute Engine refused the VM: {message}")


class _Attempt(Exception):
    """Carries a transient error to tenacity together with its Retry-After."""

    def __init__(self, err: BaseException) -> None:
        super().__init__(str(err))
        self.err = err
        self.retry_after = _retry_after(err)


# -- the client ----------------------------------------------------------------------------


@dataclass
class Clients:
    instances: Any
    operations: Any
    machine_types: Any


def make_clients(settings: GCESettings) -> Clients:
    """The three Compute clients, REST transport; anonymous against an emulator."""
    kwargs: dict[str, Any] = {"transport": "rest"}
    if settings.compute_endpoint:
        kwargs["client_options"] = ClientOptions(api_endpoint=settings.compute_endpoint)
        if settings.compute_endpoint.startswith("http://"):
            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return Clients(
        instances=compute_v1.InstancesClient(**kwargs),
        operations=compute_v1.ZoneOperationsClient(**kwargs),
        machine_types=compute_v1.MachineTypesClient(**kwargs),
    )


class Instances:
    """The Compute Engine calls of the GCE provider (async over a thread pool)."""

    def __init__(
        self,
        settings: GCESettings,
        *,
        clients: Clients | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.project = settings.project
        self._clients = clients
        self._clock = clock or SystemClock()
        self._retry = retry or RetryPolicy()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, settings.api_threads), thread_name_prefix="compute"
        )
        self._rng = random.Random()

    async def open(self) -> None:
        """Build the Compute clients in a thread: their constructors look up credentials
        (files, perhaps the metadata server), which must not stall the event loop."""
        if self._clients is None:
            self._clients = await asyncio.to_thread(make_clients, self.settings)

    @property
    def clients(self) -> Clients:
        if self._clients is None:  # used without open() (tools, tests): built on first use
            self._clients = make_clients(self.settings)
        return self._clients

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the one retry loop --------------------------------------------------------------

    async def _call(
        self,
        what: str,
        fn: Callable[[], T],
        on_retry: Callable[[str], None] | None = None,
        *,
        method: str = "other",
    ) -> T:
        """Run ``fn`` in the pool, retrying transient failures; classify the rest.

        ``on_retry`` hears about each retry (the provider reports it as an Event);
        ``method`` names the API method in the call metrics."""
        loop = asyncio.get_running_loop()
        policy = self._retry

        async def once() -> T:
            try:
                return await loop.run_in_executor(self._pool, metrics.counted_call(method, fn))
            except Exception as err:
                if transient(err):
                    raise _Attempt(err) from err
                raise

        def wait(state: tenacity.RetryCallState) -> float:
            delay = min(policy.cap, policy.base * 2 ** (state.attempt_number - 1))
            delay = self._rng.uniform(0, delay)
            outcome = state.outcome
            err = outcome.exception() if outcome is not None else None
            after = getattr(err, "retry_after", None)
            return max(delay, after or 0.0)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome is not None else None
            message = (
                f"{what}: {getattr(err, 'err', err)}; retrying (attempt {state.attempt_number} "
                f"of {policy.attempts} failed)"
            )
            log.info("%s", message)
            if on_retry is not None:
                on_retry(message)

        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(_Attempt),
            stop=tenacity.stop_after_attempt(policy.attempts)
            | tenacity.stop_after_delay(policy.deadline),
            wait=wait,
            sleep=self._clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return await retrying(once)
        except _Attempt as e:
            raise classify(e.err, what) from e.err
        except VnodeError:
            raise
        except Exception as e:
            raise classify(e, what) from e

    # -- operations ----------------------------------------------------------------------

    async def wait(self, zone: str, operation: Any, what: str) -> dict[str, Any]:
        """Await a zone operation until DONE or the deadline; returns it as a dict.

        Raises the operation's own error, classified, and ``Retryable`` on a timeout.
        """
        op = _op_dict(operation)
        deadline = self._clock.monotonic() + self.settings.operation_timeout_seconds
        name = op["name"]
        ops = self.clients.operations
        while op.get("status") != "DONE":
            if self._clock.monotonic() >= deadline:
                raise Retryable(
                    f"{what}: operation {name} in {zone} not done after "
                    f"{self.settings.operation_timeout_seconds:g} s"
                )
            op = _op_dict(
                await self._call(
                    f"{what} (waiting for {name})",
                    lambda: ops.wait(project=self.project, zone=zone, operation=name, **_WAIT_CALL),
                    method="zoneOperations.wait",
                )
            )
        err = operation_error(op, what)
        if err is not None:
            raise err
        return op

    # -- instances -----------------------------------------------------------------------

    @metrics.timed("vm_create_seconds", "vm_creates")
    async def insert(
        self,
        spec: InsertSpec,
        *,
        request_id: str,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """Create the VM and wait until Compute finished the insert (the VM runs).

        An instance of that name that already exists is success: the name comes from
        the pod, so it is this pod's VM from an earlier attempt.
        """
        what = f"creating VM {spec.name} in {spec.zone}"
        body = compute_v1.Instance(instance_body(self.settings, spec))
        request = compute_v1.InsertInstanceRequest(
            project=self.project, zone=spec.zone, instance_resource=body, request_id=request_id
        )
        client = self.clients.instances
        try:
            op = await self._call(
                what,
                lambda: client.insert_unary(request=request, **_CALL),
                on_retry,
                method="instances.insert",
            )
        except Retryable as e:
            if _already_exists(e.__cause__):
                return
            raise
        await self.wait(spec.zone, op, what)

    @metrics.timed("vm_delete_seconds", "vm_deletes")
    async def delete(self, name: str, zone: str, *, wait: bool = False) -> bool:
        """Delete the VM; False when there was none (which is success)."""
        what = f"deleting VM {name} in {zone}"
        client = self.clients.instances
        request = compute_v1.DeleteInstanceRequest(project=self.project, zone=zone, instance=name)
        try:
            op = await self._call(
                what,
                lambda: client.delete_unary(request=request, **_CALL),
                method="instances.delete",
            )
        except NotFound:
            return False
        if wait:
            await self.wait(zone, op, what)
        return True

    async def list_vms(self, node: str) -> list[VM]:
        """Every VM of ``node`` in every zone: one aggregated, filtered, paged listing."""
        client = self.clients.instances
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project,
            filter=naming.node_filter(node),
            max_results=500,
        )

        def run() -> list[VM]:
            out: list[VM] = []
            for _, scoped in client.aggregated_list(request=request, **_CALL):
                for inst in scoped.instances:
                    out.append(_vm(inst))
            return out

        return await self._call(
            f"listing the VMs of node {node}", run, method="instances.aggregatedList"
        )

    async def preempted(self, zone: str, names: set[str]) -> set[str]:
        """Which of ``names`` Compute preempted (their ``compute.instances.preempted``
        operation); one call per zone, made only when a Spot VM stopped unasked."""
        ops = self.clients.operations
        request = compute_v1.ListZoneOperationsRequest(
            project=self.project, zone=zone, filter=f'operationType = "{PREEMPTED_OPERATION}"'
        )

        def run() -> set[str]:
            found: set[str] = set()
            for op in ops.list(request=request, **_CALL):
                target = str(op.target_link or "").rsplit("/", 1)[-1]
                if target in names:
                    found.add(target)
            return found

        return await self._call(f"listing preemptions in {zone}", run, method="zoneOperations.list")

    async def machine_types(self, zone: str) -> list[dict[str, Any]]:
        """The zone's ``machineTypes.list`` items (snake_case dicts)."""
        client = self.clients.machine_types
        request = compute_v1.ListMachineTypesRequest(
            project=self.project, zone=zone, max_results=500
        )

        def run() -> list[dict[str, Any]]:
            return [
                compute_v1.MachineType.to_dict(m) for m in client.list(request=request, **_CALL)
            ]

        return await self._call(f"listing machine types in {zone}", run, method="machineTypes.list")


def _already_exists(err: BaseException | None) -> bool:
    return isinstance(err, gexc.Conflict) or (
        isinstance(err, gexc.GoogleAPICallError) and "alreadyExists" in _reasons(err)
    )


def _op_dict(op: Any) -> dict[str, Any]:
    """An Operation (proto or dict) as a plain dict with the status as its name."""
    if isinstance(op, Mapping):
        return dict(op)
    out: dict[str, Any] = compute_v1.Operation.to_dict(op)
    status = out.get("status")
    if isinstance(status, int):
        out["status"] = compute_v1.Operation.Status(status).name
    return out


def _vm(inst: Any) -> VM:
    interfaces = list(inst.network_interfaces)
    ip = str(interfaces[0].network_i_p) if interfaces else ""
    scheduling = inst.scheduling
    spot = str(scheduling.provisioning_model or "") == "SPOT" or bool(scheduling.preemptible)
    return VM(
        name=str(inst.name),
        zone=str(inst.zone).rsplit("/", 1)[-1],
        status=str(inst.status),
        internal_ip=ip,
        labels=dict(inst.labels),
        spot=spot,
        machine_type=str(inst.machine_type).rsplit("/", 1)[-1],
    )
