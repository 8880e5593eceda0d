"""The Compute Engine v1 REST API on loopback, for the official ``google-cloud-compute`` client.

It serves what vnode uses (instances insert/get/list/delete/aggregatedList/setLabels,
zone operations get/wait/list/delete, machine types get/list/aggregatedList) with the real
wire format and the real lifecycle: an insert answers at once with a zonal operation, the
instance moves PROVISIONING -> STAGING -> RUNNING and gets an internal IP on 127.0.0.0/8
(so the VM simulator can listen on it), a delete passes through STOPPING, Spot VMs can be
preempted (leaving a ``compute.instances.preempted`` operation, which is how a client
detects it), and ``maxRunDuration`` ends an instance by its termination action. Tests
steer failures through :attr:`ComputeEmulator.faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from vnode.clock import Clock, SystemClock
from vnode.sandbox.compute import catalogue, errors, filters, instances, listing, rules
from vnode.sandbox.compute.addresses import AddressPool
from vnode.sandbox.compute.errors import ComputeError, invalid_field, not_found
from vnode.sandbox.compute.faults import Faults
from vnode.sandbox.compute.httpapi import Handler, endpoint, error_middleware, read_body
from vnode.sandbox.compute.operations import Key, Operations
from vnode.sandbox.compute.resources import (
    CPU_PLATFORM,
    DEFAULT_BASE,
    fingerprint,
    label_fingerprint,
    timestamp,
)

log = logging.getLogger(__name__)


class VM(Protocol):
    """What ``vm_factory`` returns: the machine behind one RUNNING instance."""

    internal_ip: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


VMFactory = Callable[[dict[str, Any]], VM]


@dataclass(frozen=True)
class Timings:
    """How long the lifecycle steps take (seconds of the emulator's clock)."""

    provisioning: float = 5.0  # PROVISIONING -> STAGING
    staging: float = 10.0  # STAGING -> RUNNING
    stopping: float = 20.0  # STOPPING -> TERMINATED or gone
    wait_timeout: float = 120.0  # zoneOperations.wait answers by then even if not DONE
    request_id_window: float = 3600.0  # how long a requestId is remembered
    max_operations: int = 10000  # finished operations kept per emulator

    def scaled(self, factor: float) -> Timings:
        return replace(
            self,
            provisioning=self.provisioning * factor,
            staging=self.staging * factor,
            stopping=self.stopping * factor,
        )


# Real-world step durations scaled down so a sandbox VM boots in a fraction of a second.
DEFAULT_TIMINGS = Timings().scaled(0.01)


class ComputeEmulator:
    """A Compute Engine API for tests, the demo and the sandbox command."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        vm_factory: VMFactory | None = None,
        timings: Timings = DEFAULT_TIMINGS,
        link_base: str = DEFAULT_BASE,
        ip_network: str = "127.1.0.0/16",
        nat_network: str = "127.200.0.0/16",
        seed: int | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.vm_factory = vm_factory
        self.timings = timings
        self.base = link_base.rstrip("/")
        self.faults = Faults()
        self._rng = random.Random(seed)
        self._addresses = AddressPool(ip_network, nat_network, self._rng)
        self._ops = Operations(
            self.clock,
            self._rng,
            self.base,
            max_kept=timings.max_operations,
            request_id_window=timings.request_id_window,
        )
        # Stored instances are replaced, never edited in place, so a snapshot read from
        # another thread (tests) always sees whole objects.
        self._instances: dict[Key, dict[str, Any]] = {}
        self._lifecycle: dict[Key, asyncio.Task[None]] = {}  # boot/stop/preempt per instance
        self._deleting: dict[Key, asyncio.Task[None]] = {}
        self._vms: dict[Key, VM] = {}
        self._vm_tasks: dict[Key, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.endpoint = ""

    # -- public surface ----------------------------------------------------------------

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[error_middleware], client_max_size=8 * 1024 * 1024)
        app.add_routes(self._routes())
        # In-flight calls (a long zoneOperations.wait) must not hold a shutdown for a minute.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = self._runner.addresses
        self.port = int(sockets[0][1])
        self.endpoint = f"http://{self.host}:{self.port}"
        self.faults.bind(self._preempt_threadsafe)
        log.info("compute emulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        self.faults.bind(None)
        self._ops.release_waiters()
        tasks = [*self._lifecycle.values(), *self._deleting.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Machines stop like deleted instances' machines: stop(), then their task ends.
        for key in list(self._vms):
            await self._stop_vm(key)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def instances(self) -> list[dict[str, Any]]:
        """A snapshot of every instance (safe to read from any thread)."""
        return [copy.deepcopy(i) for i in list(self._instances.values())]

    def instance(self, name: str, zone: str | None = None) -> dict[str, Any] | None:
        for (_, z, n), inst in list(self._instances.items()):
            if n == name and (zone is None or z == zone):
                return copy.deepcopy(inst)
        return None

    @property
    def zones(self) -> list[str]:
        """The zones this emulator serves."""
        return list(catalogue.ZONES)

    @property
    def operations(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for _, o in self._ops.items()]

    def vm(self, name: str, zone: str | None = None) -> VM | None:
        for (_, z, n), vm in list(self._vms.items()):
            if n == name and (zone is None or z == zone):
                return vm
        return None

    async def preempt(self, instance: str, zone: str | None = None) -> dict[str, Any]:
        """Preempt a Spot instance now; returns the ``compute.instances.preempted`` operation."""
        return self._preempt(self._find(instance, zone))

    # -- routes ------------------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        p = "/compute/v1/projects/{project}"
        z = p + "/zones/{zone}"
        i = z + "/instances/{instance}"
        o = z + "/operations/{operation}"
        table: list[tuple[str, str, str, str, Handler]] = [
            ("GET", z + "/instances", "instances", "list", self._list_instances),
            ("POST", z + "/instances", "instances", "insert", self._insert),
            ("GET", i, "instances", "get", self._get_instance),
            ("DELETE", i, "instances", "delete", self._delete),
            ("POST", i + "/setLabels", "instances", "setLabels", self._set_labels),
            ("GET", p + "/aggregated/instances", "instances", "aggregatedList", self._agg_vms),
            ("GET", z + "/operations", "zoneOperations", "list", self._list_ops),
            ("GET", o, "zoneOperations", "get", self._get_op),
            ("POST", o + "/wait", "zoneOperations", "wait", self._wait_op),
            ("DELETE", o, "zoneOperations", "delete", self._delete_op),
            ("GET", z + "/machineTypes", "machineTypes", "list", self._list_types),
            ("GET", z + "/machineTypes/{machineType}", "machineTypes", "get", self._get_type),
            (
                "GET",
                p + "/aggregated/machineTypes",
                "machineTypes",
                "aggregatedList",
                self._agg_types,
            ),
        ]
        return [
            web.route(verb, path, endpoint(self.faults, resource, method, handler))
            for verb, path, resource, method, handler in table
        ]

    # -- lookups -----------------------------------------------------------------------

    def _zone_link(self, project: str, zone: str) -> str:
        return f"{self.base}/projects/{project}/zones/{zone}"

    @staticmethod
    def _path(key: Key) -> str:
        return f"projects/{key[0]}/zones/{key[1]}/instances/{key[2]}"

    def _lookup(self, request: web.Request) -> Key:
        project, zone = request.match_info["project"], request.match_info["zone"]
        ref = request.match_info["instance"]
        key = (project, zone, ref)
        if key in self._instances:
            return key
        for k, inst in self._instances.items():  # the API also takes the numeric id
            if k[:2] == (project, zone) and inst["id"] == ref:
                return k
        raise not_found(self._path(key))

    def _find(self, name: str, zone: str | None) -> Key:
        for key in self._instances:
            if key[2] == name and (zone is None or key[1] == zone):
                return key
        raise LookupError(f"no instance {name!r}" + (f" in {zone}" if zone else ""))

    def _update(self, key: Key, **fields: Any) -> dict[str, Any] | None:
        current = self._instances.get(key)
        if current is None:
            return None
        new = copy.deepcopy(current)
        new.update(fields)
        self._instances[key] = new
        return new

    def _remove(self, key: Key) -> None:
        inst = self._instances.pop(key, None)
        if inst is not None:
            self._addresses.release(inst)

    def _op(self, key: Key) -> dict[str, Any]:
        op = self._ops.get(key)
        assert op is not None  # just created or looked up
        return op

    # -- instances.insert --------------------------------------------------------------

    async def _insert(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        request_id = rules.check_request_id(request.query.get("requestId"))
        body = await read_body(request, "instances", "insert")
        again = self._ops.remembered(project, request_id)
        if again is not None:
            return again
        for unsupported in ("sourceInstanceTemplate", "sourceMachineImage"):
            if request.query.get(unsupported):
                raise invalid_field(
                    unsupported, request.query[unsupported], "Not supported by this emulator."
                )
        inst, shape = instances.build(
            project, zone, body, base=self.base, rng=self._rng, now=self.clock.now()
        )
        key = (project, zone, inst["name"])
        if key in self._instances:
            raise errors.already_exists(self._path(key))
        quota = self._quota_error(project, zone, shape)
        op_key = self._ops.create(key, "insert", target_id=inst["id"])
        self._ops.remember(project, request_id, op_key)
        if quota is not None:
            # Quota is checked before anything is created: the operation fails at once.
            self._ops.finish(op_key, quota, (403, "FORBIDDEN"))
            return self._op(op_key)
        self._addresses.assign(inst)
        self._instances[key] = inst
        stocked_out = self.faults.take_stockout(zone)
        self._lifecycle[key] = asyncio.create_task(
            self._boot(key, op_key, stocked_out), name=f"compute-boot-{zone}-{key[2]}"
        )
        return self._op(op_key)

    def _quota_error(
        self, project: str, zone: str, shape: catalogue.Shape
    ) -> dict[str, Any] | None:
        region = catalogue.region_of(zone)
        usage: dict[str, float] = {}
        for (p, z, _), inst in self._instances.items():
            if p != project or catalogue.region_of(z) != region:
                continue
            name = inst["machineType"].rsplit("/", 1)[-1]
            other = catalogue.lookup(z, name, field_path="", value="")
            for metric, amount in instances.quota_demand(other).items() if other else ():
                usage[metric] = usage.get(metric, 0) + amount
        for metric, amount in instances.quota_demand(shape).items():
            limit = self.faults.quota_limit(metric, region)
            if limit is not None and usage.get(metric, 0) + amount > limit:
                return errors.quota_exceeded(metric, limit, region)
        return None

    async def _boot(self, key: Key, op_key: Key, stocked_out: bool) -> None:
        """PROVISIONING -> STAGING -> RUNNING, finishing the insert operation."""
        t = self.timings
        try:
            await self.clock.sleep(t.provisioning)
            if stocked_out:
                # The zone had no capacity: the instance goes away, the operation says why.
                self._remove(key)
                stockout = errors.stockout(key[0], key[1])
                self._ops.finish(op_key, stockout, (503, "SERVICE UNAVAILABLE"))
                return
            self._update(key, status="STAGING")
            self._ops.update(op_key, progress=50)
            await self.clock.sleep(t.staging)
            family = self._instances[key]["machineType"].rsplit("/", 1)[-1].split("-", 1)[0]
            inst = self._update(
                key,
                status="RUNNING",
                cpuPlatform=CPU_PLATFORM.get(family, "Intel Cascade Lake"),
                lastStartTimestamp=timestamp(self.clock.now()),
            )
            self._ops.finish(op_key)
            if inst is None:
                return
            self._start_vm(key, inst)
            run = rules.duration_seconds(inst["scheduling"].get("maxRunDuration"))
            if run is not None:
                await self.clock.sleep(run)
                action = inst["scheduling"].get("instanceTerminationAction", "STOP")
                await self._terminate(key, delete=action == "DELETE")
        except asyncio.CancelledError:
            # A delete or preemption overtook the boot: the insert still completes.
            if not self._ops.is_done(op_key):
                self._ops.finish(op_key)
            raise
        finally:
            if self._lifecycle.get(key) is asyncio.current_task():
                del self._lifecycle[key]

    # -- the VM behind an instance -----------------------------------------------------

    def _start_vm(self, key: Key, inst: dict[str, Any]) -> None:
        if self.vm_factory is None:
            return
        try:
            vm = self.vm_factory(copy.deepcopy(inst))
        except Exception:
            log.exception("vm_factory failed for %s", self._path(key))
            return
        self._vms[key] = vm

        async def run() -> None:
            try:
                await vm.start()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("VM %s failed to start", self._path(key))

        self._vm_tasks[key] = asyncio.create_task(run(), name=f"compute-vm-{key[1]}-{key[2]}")

    async def _stop_vm(self, key: Key) -> None:
        """Stop the machine, then end its start() if that is still running."""
        vm = self._vms.pop(key, None)
        task = self._vm_tasks.pop(key, None)
        if vm is not None:
            try:
                await vm.stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("VM %s failed to stop", self._path(key))
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _terminate(self, key: Key, *, delete: bool) -> None:
        """STOPPING, then TERMINATED (kept) or gone (deleted)."""
        if self._update(key, status="STOPPING") is None:
            return
        await self._stop_vm(key)
        await self.clock.sleep(self.timings.stopping)
        if delete:
            self._remove(key)
        else:
            self._update(key, status="TERMINATED", lastStopTimestamp=timestamp(self.clock.now()))

    # -- instances.delete, get, list, setLabels ----------------------------------------

    async def _delete(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        request_id = rules.check_request_id(request.query.get("requestId"))
        again = self._ops.remembered(project, request_id)
        if again is not None:
            return again
        key = self._lookup(request)
        inst = self._instances[key]
        if inst.get("deletionProtection"):
            raise ComputeError(
                400,
                "Invalid resource usage: 'Resource cannot be deleted if it's protected against "
                "deletion.'.",
                "resourceInUseByAnotherResource",
            )
        op_key = self._ops.create(key, "delete", target_id=inst["id"])
        self._ops.remember(project, request_id, op_key)
        running = self._deleting.get(key)
        if running is None:
            lifecycle = self._lifecycle.pop(key, None)
            if lifecycle is not None:
                lifecycle.cancel()
            running = asyncio.create_task(
                self._terminate(key, delete=True), name=f"compute-delete-{key[1]}-{key[2]}"
            )
            self._deleting[key] = running
            running.add_done_callback(lambda _: self._deleting.pop(key, None))
        # Every delete of the same instance finishes when the instance is gone.
        running.add_done_callback(lambda _: self._ops.finish(op_key))
        return self._op(op_key)

    async def _get_instance(self, request: web.Request) -> dict[str, Any]:
        return copy.deepcopy(self._instances[self._lookup(request)])

    def _page(
        self,
        request: web.Request,
        items: list[dict[str, Any]],
        scope: str,
        group: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Filter, order and page ``items`` by the request's query (``group`` sorts first)."""
        q = request.query
        pred = filters.parse_filter(q.get("filter", ""))
        order, descending = filters.order_key(q.get("orderBy", ""))
        key = order if group is None else (lambda obj: group(obj) + order(obj))
        return listing.page(
            [i for i in items if pred(i)],
            key,
            descending,
            limit=listing.max_results(q.get("maxResults")),
            token=q.get("pageToken"),
            context=fingerprint([scope, q.get("filter", ""), q.get("orderBy", "")]),
        )

    async def _list_instances(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        items = [copy.deepcopy(i) for k, i in self._instances.items() if k[:2] == (project, zone)]
        page, token = self._page(request, items, f"{project}/{zone}/instances")
        link = f"{self._zone_link(project, zone)}/instances"
        ident = f"projects/{project}/zones/{zone}/instances"
        return listing.list_body("compute#instanceList", ident, link, page, token)

    async def _agg_vms(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        items = [copy.deepcopy(i) for k, i in self._instances.items() if k[0] == project]
        page, token = self._page(
            request,
            items,
            f"{project}/aggregated/instances",
            group=lambda obj: (obj["zone"].rsplit("/", 1)[-1],),
        )
        return listing.aggregated_body(
            kind="compute#instanceAggregatedList",
            field="instances",
            ident=f"projects/{project}/aggregated/instances",
            self_link=f"{self.base}/projects/{project}/aggregated/instances",
            zones=list(catalogue.ZONES),
            items=page,
            token=token,
        )

    async def _set_labels(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        request_id = rules.check_request_id(request.query.get("requestId"))
        body = await read_body(request, "instances", "setLabels")
        again = self._ops.remembered(project, request_id)
        if again is not None:
            return again
        key = self._lookup(request)
        labels = rules.check_labels(body.get("labels"), "labels")
        inst = self._instances[key]
        if body.get("labelFingerprint") != inst["labelFingerprint"]:
            raise errors.condition_not_met(
                "Labels fingerprint either invalid or resource labels have changed"
            )
        new = copy.deepcopy(inst)
        new["labelFingerprint"] = label_fingerprint(labels)
        new.pop("labels", None)
        if labels:
            new["labels"] = labels
        self._instances[key] = new
        op_key = self._ops.create(key, "setLabels", target_id=inst["id"], done=True)
        self._ops.remember(project, request_id, op_key)
        return self._op(op_key)

    # -- zone operations ---------------------------------------------------------------

    def _op_lookup(self, request: web.Request) -> Key:
        project, zone = request.match_info["project"], request.match_info["zone"]
        key = (project, zone, request.match_info["operation"])
        if self._ops.get(key) is None:
            raise not_found(f"projects/{project}/zones/{zone}/operations/{key[2]}")
        return key

    async def _get_op(self, request: web.Request) -> dict[str, Any]:
        return self._op(self._op_lookup(request))

    async def _wait_op(self, request: web.Request) -> dict[str, Any]:
        key = self._op_lookup(request)
        op = await self._ops.wait(key, self.timings.wait_timeout)
        if op is None:  # deleted while waiting
            raise not_found(f"projects/{key[0]}/zones/{key[1]}/operations/{key[2]}")
        return op

    async def _delete_op(self, request: web.Request) -> dict[str, Any]:
        self._ops.delete(self._op_lookup(request))
        return {}

    async def _list_ops(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        items = [copy.deepcopy(o) for k, o in self._ops.items() if k[:2] == (project, zone)]
        page, token = self._page(request, items, f"{project}/{zone}/operations")
        link = f"{self._zone_link(project, zone)}/operations"
        ident = f"projects/{project}/zones/{zone}/operations"
        return listing.list_body("compute#operationList", ident, link, page, token)

    # -- machine types -----------------------------------------------------------------

    async def _get_type(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        name = request.match_info["machineType"]
        shape = catalogue.lookup(zone, name, field_path="machineType", value=name)
        if shape is None:
            raise not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")
        return catalogue.to_resource(shape, zone, self.base, project)

    async def _list_types(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        items = [
            catalogue.to_resource(s, zone, self.base, project) for s in catalogue.zone_shapes(zone)
        ]
        page, token = self._page(request, items, f"{project}/{zone}/machineTypes")
        link = f"{self._zone_link(project, zone)}/machineTypes"
        ident = f"projects/{project}/zones/{zone}/machineTypes"
        return listing.list_body("compute#machineTypeList", ident, link, page, token)

    async def _agg_types(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        items = [
            catalogue.to_resource(s, zone, self.base, project)
            for zone in catalogue.ZONES
            for s in catalogue.zone_shapes(zone)
        ]
        page, token = self._page(
            request, items, f"{project}/aggregated/machineTypes", group=lambda m: (m["zone"],)
        )
        return listing.aggregated_body(
            kind="compute#machineTypeAggregatedList",
            field="machineTypes",
            ident=f"projects/{project}/aggregated/machineTypes",
            self_link=f"{self.base}/projects/{project}/aggregated/machineTypes",
            zones=list(catalogue.ZONES),
            items=page,
            token=token,
        )

    # -- Spot preemption ---------------------------------------------------------------

    def _preempt_threadsafe(self, instance: str, zone: str | None) -> None:
        key = self._find(instance, zone)  # raises in the caller's thread if unknown
        if not instances.is_spot(self._instances[key]):
            raise ValueError(f"instance {instance!r} is not a Spot or preemptible VM")
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator is not running")
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._preempt(key)
        else:
            loop.call_soon_threadsafe(self._preempt, key)

    def _preempt(self, key: Key) -> dict[str, Any]:
        inst = self._instances.get(key)
        if inst is None:
            raise LookupError(f"no instance {key[2]!r}")
        if not instances.is_spot(inst):
            raise ValueError(f"instance {key[2]!r} is not a Spot or preemptible VM")
        op_key = self._ops.create(
            key, "compute.instances.preempted", target_id=inst["id"], user="system", done=True
        )
        self._ops.update(op_key, statusMessage="Instance was preempted.")
        delete = inst["scheduling"].get("instanceTerminationAction") == "DELETE"
        lifecycle = self._lifecycle.pop(key, None)
        if lifecycle is not None:
            lifecycle.cancel()

        async def run() -> None:
            try:
                await self._terminate(key, delete=False)
                if delete:  # the DELETE termination action removes the stopped instance
                    await self.clock.sleep(self.timings.stopping)
                    self._remove(key)
            finally:
                if self._lifecycle.get(key) is asyncio.current_task():
                    del self._lifecycle[key]

        self._lifecycle[key] = asyncio.create_task(run(), name=f"compute-preempt-{key[2]}")
        return self._op(op_key)
