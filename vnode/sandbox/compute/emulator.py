"""The Compute Engine v1 REST API on loopback, for the official ``google-cloud-compute`` client.

It serves what vnode uses (instances insert/get/list/delete/aggregatedList/setLabels,
zone operations get/wait/list/delete, machine types get/list/aggregatedList) with the real
wire format and the real lifecycle: an insert answers at once with a zonal operation, the
instance moves PROVISIONING -> STAGING -> RUNNING and gets an internal IP (on 127.0.0.0/8,
which Linux routes entirely to loopback, so the VM simulator can listen on it), a delete
passes through STOPPING, Spot VMs can be preempted (leaving a
``compute.instances.preempted`` operation, which is how a client detects it), and
``maxRunDuration`` ends an instance by its termination action. Tests steer failures
through :attr:`ComputeEmulator.faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import json
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from vnode.clock import Clock, SystemClock
from vnode.sandbox.compute import catalogue, errors, filters, listing, rules, validation
from vnode.sandbox.compute.errors import ComputeError, invalid_field, not_found
from vnode.sandbox.compute.faults import Faults
from vnode.sandbox.compute.resources import (
    CPU_PLATFORM,
    DEFAULT_BASE,
    fingerprint,
    full_link,
    label_fingerprint,
    new_id,
    operation_name,
    service_account_email,
    timestamp,
)

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (project, zone, name)
Handler = Callable[[web.Request], Awaitable[dict[str, Any]]]


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

_EXTRA_QUERY = {"returnPartialSuccess"}


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        charset="UTF-8",
        headers=headers,
    )


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
        self._networks = {
            "internal": ipaddress.ip_network(ip_network),
            "nat": ipaddress.ip_network(nat_network),
        }
        # Start at a random host so emulators in parallel test processes rarely collide.
        self._next_ip = {
            k: self._rng.randrange(1, n.num_addresses - 2) for k, n in self._networks.items()
        }
        self._ips: set[str] = set()
        # Stored resources are replaced, never edited in place, so a snapshot read from
        # another thread (tests) always sees whole objects.
        self._instances: dict[Key, dict[str, Any]] = {}
        self._ops: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._op_done: dict[Key, asyncio.Event] = {}
        self._request_ids: dict[tuple[str, str], tuple[Key, float]] = {}
        self._lifecycle: dict[Key, asyncio.Task[None]] = {}
        self._vms: dict[Key, VM] = {}
        self._vm_tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.endpoint = ""

    # -- public surface ----------------------------------------------------------------

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        app.add_routes(self._routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.endpoint = f"http://{self.host}:{self.port}"
        self.faults.bind(self._preempt_threadsafe)
        log.info("compute emulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        self.faults.bind(None)
        tasks = list(self._lifecycle.values()) + list(self._vm_tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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
    def operations(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in list(self._ops.values())]

    def vm(self, name: str, zone: str | None = None) -> VM | None:
        for (_, z, n), vm in list(self._vms.items()):
            if n == name and (zone is None or z == zone):
                return vm
        return None

    async def preempt(self, instance: str, zone: str | None = None) -> dict[str, Any]:
        """Preempt a Spot instance now; returns the ``compute.instances.preempted`` operation."""
        key = self._find(instance, zone)
        return self._preempt(key)

    # -- HTTP plumbing -----------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        p = "/compute/v1/projects/{project}"
        z = p + "/zones/{zone}"
        table: list[tuple[str, str, str, str, Handler]] = [
            ("GET", z + "/instances", "instances", "list", self._list_instances),
            ("POST", z + "/instances", "instances", "insert", self._insert),
            ("GET", z + "/instances/{instance}", "instances", "get", self._get_instance),
            ("DELETE", z + "/instances/{instance}", "instances", "delete", self._delete),
            (
                "POST",
                z + "/instances/{instance}/setLabels",
                "instances",
                "setLabels",
                self._set_labels,
            ),
            (
                "GET",
                p + "/aggregated/instances",
                "instances",
                "aggregatedList",
                self._agg_instances,
            ),
            ("GET", z + "/operations", "zoneOperations", "list", self._list_ops),
            ("GET", z + "/operations/{operation}", "zoneOperations", "get", self._get_op),
            ("POST", z + "/operations/{operation}/wait", "zoneOperations", "wait", self._wait_op),
            ("DELETE", z + "/operations/{operation}", "zoneOperations", "delete", self._delete_op),
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
        routes = []
        for verb, path, resource, method, handler in table:
            routes.append(web.route(verb, path, self._wrap(resource, method, handler)))
        return routes

    def _wrap(
        self, resource: str, method: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            name = f"{resource}.{method}"
            delay = self.faults.delay_for(name)
            if delay > 0:
                await asyncio.sleep(delay)
            project = request.match_info["project"]
            scripted = self.faults.take_error(name)
            if scripted is not None:
                err = errors.for_fault(scripted.code, scripted.reason, scripted.message, project)
                if scripted.retry_after is not None:
                    err.headers["Retry-After"] = f"{scripted.retry_after:g}"
                raise err
            query = {k: v for k, v in request.query.items() if k not in _EXTRA_QUERY}
            validation.validate_query(resource, method, query)
            if "zone" in request.match_info and request.match_info["zone"] not in catalogue.ZONES:
                raise invalid_field("zone", request.match_info["zone"], "Unknown zone.")
            return _json(await handler(request))

        return serve

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ComputeError as e:
            return _json(e.body(), e.code, e.headers or None)
        except web.HTTPNotFound:
            err = ComputeError(404, f"The requested URL {request.path} was not found.", "notFound")
            return _json(err.body(), 404)
        except web.HTTPMethodNotAllowed:
            err = ComputeError(405, f"Method {request.method} is not allowed.", "badRequest")
            return _json(err.body(), 405)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("compute emulator failed on %s %s", request.method, request.path)
            err = errors.internal_error()
            return _json(err.body(), 500)

    async def _body(self, request: web.Request, resource: str, method: str) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            raise errors.bad_request_payload(
                [("", f"Invalid JSON payload received. {e}.")]
            ) from None
        validation.validate_body(resource, method, body)
        if not isinstance(body, dict):  # validate_body refuses these; keeps mypy honest
            raise errors.bad_request_payload([("", "Invalid JSON payload received.")])
        return body

    # -- links and lookups -------------------------------------------------------------

    def _zone_link(self, project: str, zone: str) -> str:
        return f"{self.base}/projects/{project}/zones/{zone}"

    def _instance_link(self, key: Key) -> str:
        return f"{self._zone_link(key[0], key[1])}/instances/{key[2]}"

    def _instance_path(self, key: Key) -> str:
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
        raise not_found(self._instance_path(key))

    def _find(self, name: str, zone: str | None) -> Key:
        for key in self._instances:
            if key[2] == name and (zone is None or key[1] == zone):
                return key
        raise LookupError(f"no instance {name!r}" + (f" in {zone}" if zone else ""))

    def _store(self, key: Key, inst: dict[str, Any]) -> None:
        self._instances[key] = inst

    def _update(self, key: Key, **fields: Any) -> dict[str, Any] | None:
        current = self._instances.get(key)
        if current is None:
            return None
        new = copy.deepcopy(current)
        new.update(fields)
        self._instances[key] = new
        return new

    # -- IP addresses ------------------------------------------------------------------

    def _allocate(self, kind: str) -> str:
        net = self._networks[kind]
        size = net.num_addresses
        for _ in range(size):
            offset = self._next_ip[kind]
            self._next_ip[kind] = offset + 1 if offset + 1 < size - 1 else 1
            addr = str(net.network_address + offset)
            if addr not in self._ips and not addr.endswith((".0", ".255")):
                self._ips.add(addr)
                return addr
        raise ComputeError(400, "IP space of subnetwork is exhausted.", "ipSpaceExhausted")

    def _release(self, inst: dict[str, Any]) -> None:
        for nic in inst.get("networkInterfaces", []):
            self._ips.discard(nic.get("networkIP", ""))
            for ac in nic.get("accessConfigs", []):
                self._ips.discard(ac.get("natIP", ""))

    # -- operations --------------------------------------------------------------------

    def _new_op(
        self,
        key: Key,
        op_type: str,
        *,
        target_id: str,
        user: str | None = None,
        status: str = "RUNNING",
    ) -> dict[str, Any]:
        project, zone, _ = key
        now = self.clock.now()
        name = operation_name(now, self._rng)
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": new_id(self._rng),
            "name": name,
            "zone": self._zone_link(project, zone),
            "operationType": op_type,
            "targetLink": self._instance_link(key),
            "targetId": target_id,
            "status": status,
            "user": user or f"vnode@{project}.iam.gserviceaccount.com",
            "progress": 0,
            "insertTime": timestamp(now),
            "startTime": timestamp(now),
            "selfLink": f"{self._zone_link(project, zone)}/operations/{name}",
        }
        op_key = (project, zone, name)
        self._ops[op_key] = op
        self._op_done[op_key] = asyncio.Event()
        self._trim_ops()
        if status == "DONE":
            self._finish_op(op_key)
        return op

    def _trim_ops(self) -> None:
        while len(self._ops) > self.timings.max_operations:
            victim = next((k for k, o in self._ops.items() if o["status"] == "DONE"), None)
            if victim is None:
                return
            del self._ops[victim]
            self._op_done.pop(victim, None)

    def _op_key(self, op: dict[str, Any]) -> Key:
        project, zone = op["zone"].split("/projects/", 1)[1].split("/zones/")
        return (project, zone, op["name"])

    def _set_op(self, op_key: Key, **fields: Any) -> None:
        current = self._ops.get(op_key)
        if current is not None:
            new = copy.deepcopy(current)
            new.update(fields)
            self._ops[op_key] = new

    def _finish_op(
        self, op_key: Key, error: dict[str, Any] | None = None, http: tuple[int, str] | None = None
    ) -> None:
        fields: dict[str, Any] = {
            "status": "DONE",
            "progress": 100,
            "endTime": timestamp(self.clock.now()),
        }
        if error is not None:
            fields["error"] = {"errors": [error]}
        if http is not None:
            fields["httpErrorStatusCode"], fields["httpErrorMessage"] = http
        self._set_op(op_key, **fields)
        event = self._op_done.get(op_key)
        if event is not None:
            event.set()

    def _remembered(self, project: str, request_id: str | None) -> dict[str, Any] | None:
        if request_id is None:
            return None
        now = self.clock.monotonic()
        for rid, (_, at) in list(self._request_ids.items()):
            if now - at > self.timings.request_id_window:
                del self._request_ids[rid]
        hit = self._request_ids.get((project, request_id))
        if hit is None:
            return None
        op = self._ops.get(hit[0])
        return copy.deepcopy(op) if op is not None else None

    def _remember(self, project: str, request_id: str | None, op: dict[str, Any]) -> None:
        if request_id is not None:
            self._request_ids[(project, request_id)] = (self._op_key(op), self.clock.monotonic())

    # -- instances.insert --------------------------------------------------------------

    async def _insert(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        request_id = rules.check_request_id(request.query.get("requestId"))
        body = await self._body(request, "instances", "insert")
        again = self._remembered(project, request_id)
        if again is not None:
            return again
        for unsupported in ("sourceInstanceTemplate", "sourceMachineImage"):
            if request.query.get(unsupported):
                raise invalid_field(
                    unsupported, request.query[unsupported], "Not supported by this emulator."
                )
        name = rules.check_name(body.get("name"))
        key = (project, zone, name)
        inst, shape = self._build_instance(key, body)
        if key in self._instances:
            raise errors.already_exists(self._instance_path(key))
        self._allocate_addresses(inst)
        quota = self._quota_error(project, zone, shape)
        op = self._new_op(key, "insert", target_id=inst["id"])
        self._remember(project, request_id, op)
        op_key = self._op_key(op)
        if quota is not None:
            self._release(inst)
            self._finish_op(op_key, quota, (403, "FORBIDDEN"))
            return copy.deepcopy(self._ops[op_key])
        self._store(key, inst)
        stocked_out = self.faults.take_stockout(zone)
        self._lifecycle[key] = asyncio.create_task(
            self._boot(key, op_key, stocked_out), name=f"compute-boot-{zone}-{name}"
        )
        return copy.deepcopy(self._ops[op_key])

    def _build_instance(
        self, key: Key, body: dict[str, Any]
    ) -> tuple[dict[str, Any], catalogue.Shape]:
        project, zone, name = key
        mt = body.get("machineType")
        if not mt:
            raise errors.required_field("resource.machineType")
        mt_zone, mt_name = rules.resource_name(mt, "machineTypes")
        if mt_zone is not None and mt_zone != zone:
            raise invalid_field(
                "resource.machineType",
                mt,
                f"Machine type zone '{mt_zone}' does not match instance zone '{zone}'.",
            )
        shape = catalogue.lookup(zone, mt_name, field_path="resource.machineType", value=mt)
        if shape is None:
            raise invalid_field(
                "resource.machineType",
                mt,
                f"Machine type with name '{mt_name}' does not exist in zone '{zone}'.",
            )
        labels = rules.check_labels(body.get("labels"))
        rules.check_metadata(body.get("metadata"))
        accelerators = self._accelerators(key, body.get("guestAccelerators") or [], shape)
        scheduling = rules.normalise_scheduling(body.get("scheduling"), has_gpus=bool(accelerators))
        now = self.clock.now()
        inst = copy.deepcopy(body)
        inst.update(
            {
                "kind": "compute#instance",
                "id": new_id(self._rng),
                "creationTimestamp": timestamp(now),
                "name": name,
                "machineType": f"{self._zone_link(project, zone)}/machineTypes/{shape.name}",
                "status": "PROVISIONING",
                "zone": self._zone_link(project, zone),
                "selfLink": self._instance_link(key),
                "scheduling": scheduling,
                "cpuPlatform": "Unknown CPU Platform",
                "labelFingerprint": label_fingerprint(labels),
                "startRestricted": False,
                "deletionProtection": bool(body.get("deletionProtection", False)),
                "canIpForward": bool(body.get("canIpForward", False)),
                "networkInterfaces": self._nics(key, body.get("networkInterfaces") or []),
                "disks": self._disks(key, body.get("disks") or []),
                "tags": {
                    **(
                        {"items": body["tags"]["items"]}
                        if (body.get("tags") or {}).get("items")
                        else {}
                    ),
                    "fingerprint": fingerprint((body.get("tags") or {}).get("items") or []),
                },
                "metadata": self._metadata(body.get("metadata")),
            }
        )
        for output_only in ("statusMessage", "lastStartTimestamp", "lastStopTimestamp"):
            inst.pop(output_only, None)
        if labels:
            inst["labels"] = labels
        else:
            inst.pop("labels", None)
        if accelerators:
            inst["guestAccelerators"] = accelerators
        if body.get("serviceAccounts"):
            inst["serviceAccounts"] = [
                {
                    "email": service_account_email(project)
                    if sa.get("email") in (None, "", "default")
                    else sa["email"],
                    "scopes": list(sa.get("scopes") or []),
                }
                for sa in body["serviceAccounts"]
            ]
        inst["fingerprint"] = fingerprint({k: v for k, v in inst.items() if k != "status"})
        return inst, shape

    def _accelerators(
        self, key: Key, requested: list[dict[str, Any]], shape: catalogue.Shape
    ) -> list[dict[str, Any]]:
        project, zone, _ = key
        for i, acc in enumerate(requested):
            _, acc_type = rules.resource_name(acc.get("acceleratorType") or "", "acceleratorTypes")
            bundled = dict(shape.accelerators)
            if acc_type not in bundled:
                raise invalid_field(
                    f"resource.guestAccelerators[{i}].acceleratorType",
                    acc.get("acceleratorType") or "",
                    f"Accelerator type '{acc_type}' is not supported with machine type "
                    f"'{shape.name}'.",
                )
            if int(acc.get("acceleratorCount") or 0) != bundled[acc_type]:
                raise invalid_field(
                    f"resource.guestAccelerators[{i}].acceleratorCount",
                    str(acc.get("acceleratorCount")),
                    f"Machine type '{shape.name}' comes with exactly {bundled[acc_type]} "
                    f"{acc_type} accelerator(s).",
                )
        return [
            {
                "acceleratorType": f"{self._zone_link(project, zone)}/acceleratorTypes/{t}",
                "acceleratorCount": n,
            }
            for t, n in shape.accelerators
        ]

    def _nics(self, key: Key, nics: list[dict[str, Any]]) -> list[dict[str, Any]]:
        project, zone, _ = key
        if not nics:
            raise invalid_field(
                "resource.networkInterfaces", "", "Network interface must be specified."
            )
        region = catalogue.region_of(zone)
        out = []
        for i, nic in enumerate(nics):
            n = copy.deepcopy(nic)
            n["kind"] = "compute#networkInterface"
            n["name"] = f"nic{i}"
            n["network"] = full_link(
                n.get("network") or "global/networks/default", self.base, project
            )
            n["subnetwork"] = full_link(
                n.get("subnetwork") or f"regions/{region}/subnetworks/default", self.base, project
            )
            n.setdefault("stackType", "IPV4_ONLY")
            configs = []
            for ac in n.get("accessConfigs") or []:
                c = dict(ac)
                c["kind"] = "compute#accessConfig"
                c.setdefault("type", "ONE_TO_ONE_NAT")
                c.setdefault("name", "External NAT")
                c.setdefault("networkTier", "PREMIUM")
                configs.append(c)
            if configs:
                n["accessConfigs"] = configs
            else:
                n.pop("accessConfigs", None)
            n["fingerprint"] = fingerprint(n)
            out.append(n)
        return out

    def _allocate_addresses(self, inst: dict[str, Any]) -> None:
        """Give every interface an internal IP (and a NAT IP per access config) or refuse."""
        taken: list[str] = []
        try:
            for i, nic in enumerate(inst["networkInterfaces"]):
                wanted = nic.get("networkIP")
                if wanted:
                    if wanted in self._ips:
                        raise invalid_field(
                            f"resource.networkInterfaces[{i}].networkIP",
                            wanted,
                            f"IP address '{wanted}' is already being used by another resource.",
                        )
                    self._ips.add(wanted)
                    taken.append(wanted)
                else:
                    nic["networkIP"] = self._allocate("internal")
                    taken.append(nic["networkIP"])
                for ac in nic.get("accessConfigs", []):
                    if ac.get("type") == "ONE_TO_ONE_NAT" and not ac.get("natIP"):
                        ac["natIP"] = self._allocate("nat")
                        taken.append(ac["natIP"])
        except ComputeError:
            for ip in taken:
                self._ips.discard(ip)
            raise

    def _disks(self, key: Key, disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        project, zone, name = key
        if not disks:
            raise invalid_field("resource.disks", "", "Boot disk must be specified.")
        has_boot = any(d.get("boot") for d in disks)
        out = []
        for i, disk in enumerate(disks):
            d = copy.deepcopy(disk)
            params = d.pop("initializeParams", None) or {}
            if (
                not d.get("source")
                and not params.get("sourceImage")
                and not params.get("sourceSnapshot")
            ):
                raise invalid_field(
                    f"resource.disks[{i}]",
                    "",
                    "Source image or source disk must be specified.",
                )
            boot = bool(d.get("boot")) or (not has_boot and i == 0)
            disk_name = params.get("diskName") or (name if boot else f"{name}-{i}")
            d.update(
                {
                    "kind": "compute#attachedDisk",
                    "type": d.get("type") or "PERSISTENT",
                    "mode": d.get("mode") or "READ_WRITE",
                    "source": full_link(d["source"], self.base, project)
                    if d.get("source")
                    else f"{self._zone_link(project, zone)}/disks/{disk_name}",
                    "deviceName": d.get("deviceName") or f"persistent-disk-{i}",
                    "index": i,
                    "boot": boot,
                    "autoDelete": bool(d.get("autoDelete", False)),
                    "interface": d.get("interface") or "SCSI",
                    "diskSizeGb": str(params.get("diskSizeGb") or 10),
                    "architecture": "X86_64",
                }
            )
            out.append(d)
        return out

    def _metadata(self, metadata: dict[str, Any] | None) -> dict[str, Any]:
        items = [
            {"key": it.get("key"), "value": it.get("value") or ""}
            for it in (metadata or {}).get("items") or []
        ]
        out: dict[str, Any] = {"kind": "compute#metadata", "fingerprint": fingerprint(items)}
        if items:
            out["items"] = items
        return out

    def _quota_error(
        self, project: str, zone: str, shape: catalogue.Shape
    ) -> dict[str, Any] | None:
        region = catalogue.region_of(zone)
        usage: dict[str, float] = {}
        for (p, z, _), inst in self._instances.items():
            if p != project or catalogue.region_of(z) != region:
                continue
            other = catalogue.lookup(
                z, inst["machineType"].rsplit("/", 1)[-1], field_path="", value=""
            )
            if other is None:
                continue
            for metric, amount in _demand(other).items():
                usage[metric] = usage.get(metric, 0) + amount
        for metric, amount in _demand(shape).items():
            limit = self.faults.quota_limit(metric, region)
            if limit is not None and usage.get(metric, 0) + amount > limit:
                return errors.quota_exceeded(metric, limit, region)
        return None

    async def _boot(self, key: Key, op_key: Key, stocked_out: bool) -> None:
        """PROVISIONING -> STAGING -> RUNNING, finishing the insert operation."""
        t = self.timings
        try:
            self._set_op(op_key, progress=0)
            await self.clock.sleep(t.provisioning)
            if stocked_out:
                inst = self._instances.pop(key, None)
                if inst is not None:
                    self._release(inst)
                self._finish_op(
                    op_key, errors.stockout(key[0], key[1]), (503, "SERVICE UNAVAILABLE")
                )
                return
            self._update(key, status="STAGING")
            self._set_op(op_key, progress=50)
            await self.clock.sleep(t.staging)
            family = self._instances[key]["machineType"].rsplit("/", 1)[-1].split("-", 1)[0]
            inst = self._update(
                key,
                status="RUNNING",
                cpuPlatform=CPU_PLATFORM.get(family, "Intel Cascade Lake"),
                lastStartTimestamp=timestamp(self.clock.now()),
            )
            self._finish_op(op_key)
            if inst is None:
                return
            self._start_vm(key, inst)
            run = rules.duration_seconds(inst["scheduling"].get("maxRunDuration"))
            if run is not None:
                await self.clock.sleep(run)
                action = inst["scheduling"].get("instanceTerminationAction", "STOP")
                await self._terminate(key, delete=action == "DELETE")
        except asyncio.CancelledError:
            # A delete overtook the boot: the insert still reports completion.
            if self._ops.get(op_key, {}).get("status") != "DONE":
                self._finish_op(op_key)
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
            log.exception("vm_factory failed for %s", self._instance_path(key))
            return
        self._vms[key] = vm

        async def run() -> None:
            try:
                await vm.start()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("VM %s failed to start", self._instance_path(key))

        task = asyncio.create_task(run(), name=f"compute-vm-{key[1]}-{key[2]}")
        self._vm_tasks.add(task)
        task.add_done_callback(self._vm_tasks.discard)

    async def _stop_vm(self, key: Key) -> None:
        vm = self._vms.pop(key, None)
        if vm is None:
            return
        try:
            await vm.stop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("VM %s failed to stop", self._instance_path(key))

    async def _terminate(self, key: Key, *, delete: bool) -> None:
        """STOPPING, then TERMINATED (kept) or gone (deleted)."""
        if self._update(key, status="STOPPING") is None:
            return
        await self._stop_vm(key)
        await self.clock.sleep(self.timings.stopping)
        if delete:
            inst = self._instances.pop(key, None)
            if inst is not None:
                self._release(inst)
        else:
            self._update(key, status="TERMINATED", lastStopTimestamp=timestamp(self.clock.now()))

    # -- instances.delete, get, list, setLabels ----------------------------------------

    async def _delete(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        request_id = rules.check_request_id(request.query.get("requestId"))
        again = self._remembered(project, request_id)
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
        op = self._new_op(key, "delete", target_id=inst["id"])
        self._remember(project, request_id, op)
        op_key = self._op_key(op)
        boot = self._lifecycle.pop(key, None)
        if boot is not None:
            boot.cancel()

        async def run() -> None:
            try:
                await self._terminate(key, delete=True)
            finally:
                self._finish_op(op_key)
                if self._lifecycle.get(key) is asyncio.current_task():
                    del self._lifecycle[key]

        self._lifecycle[key] = asyncio.create_task(run(), name=f"compute-delete-{key[1]}-{key[2]}")
        return copy.deepcopy(self._ops[op_key])

    async def _get_instance(self, request: web.Request) -> dict[str, Any]:
        return copy.deepcopy(self._instances[self._lookup(request)])

    def _list_page(
        self,
        request: web.Request,
        items: list[dict[str, Any]],
        scope: str,
        key: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        q = request.query
        pred = filters.parse_filter(q.get("filter", ""))
        order, descending = filters.order_key(q.get("orderBy", ""))
        if key is not None:
            base_order = order
            order = lambda obj: key(obj) + base_order(obj)  # noqa: E731
        limit = listing.max_results(q.get("maxResults"))
        context = fingerprint([scope, q.get("filter", ""), q.get("orderBy", "")])
        return listing.page(
            [i for i in items if pred(i)],
            order,
            descending,
            limit=limit,
            token=q.get("pageToken"),
            context=context,
        )

    async def _list_instances(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        items = [copy.deepcopy(i) for k, i in self._instances.items() if k[:2] == (project, zone)]
        page, token = self._list_page(request, items, f"{project}/{zone}/instances")
        return _list_body(
            "compute#instanceList",
            f"projects/{project}/zones/{zone}/instances",
            f"{self._zone_link(project, zone)}/instances",
            page,
            token,
        )

    async def _agg_instances(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        items = [copy.deepcopy(i) for k, i in self._instances.items() if k[0] == project]
        page, token = self._list_page(
            request,
            items,
            f"{project}/aggregated/instances",
            key=lambda obj: (obj["zone"].rsplit("/", 1)[-1],),
        )
        return _aggregated_body(
            kind="compute#instanceAggregatedList",
            field="instances",
            ident=f"projects/{project}/aggregated/instances",
            self_link=f"{self.base}/projects/{project}/aggregated/instances",
            items=page,
            token=token,
        )

    async def _set_labels(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        request_id = rules.check_request_id(request.query.get("requestId"))
        body = await self._body(request, "instances", "setLabels")
        again = self._remembered(project, request_id)
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
        self._store(key, new)
        op = self._new_op(key, "setLabels", target_id=inst["id"], status="DONE")
        self._remember(project, request_id, op)
        return copy.deepcopy(self._ops[self._op_key(op)])

    # -- zone operations ---------------------------------------------------------------

    def _op_lookup(self, request: web.Request) -> Key:
        project, zone = request.match_info["project"], request.match_info["zone"]
        key = (project, zone, request.match_info["operation"])
        if key not in self._ops:
            raise not_found(f"projects/{project}/zones/{zone}/operations/{key[2]}")
        return key

    async def _get_op(self, request: web.Request) -> dict[str, Any]:
        return copy.deepcopy(self._ops[self._op_lookup(request)])

    async def _wait_op(self, request: web.Request) -> dict[str, Any]:
        key = self._op_lookup(request)
        event = self._op_done.get(key)
        if event is not None and not event.is_set():
            waiter = asyncio.create_task(event.wait())
            timer = asyncio.create_task(self.clock.sleep(self.timings.wait_timeout))
            try:
                await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                timer.cancel()
        op = self._ops.get(key)
        if op is None:
            raise not_found(f"projects/{key[0]}/zones/{key[1]}/operations/{key[2]}")
        return copy.deepcopy(op)

    async def _delete_op(self, request: web.Request) -> dict[str, Any]:
        key = self._op_lookup(request)
        del self._ops[key]
        self._op_done.pop(key, None)
        return {}

    async def _list_ops(self, request: web.Request) -> dict[str, Any]:
        project, zone = request.match_info["project"], request.match_info["zone"]
        items = [copy.deepcopy(o) for k, o in self._ops.items() if k[:2] == (project, zone)]
        page, token = self._list_page(request, items, f"{project}/{zone}/operations")
        return _list_body(
            "compute#operationList",
            f"projects/{project}/zones/{zone}/operations",
            f"{self._zone_link(project, zone)}/operations",
            page,
            token,
        )

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
        page, token = self._list_page(request, items, f"{project}/{zone}/machineTypes")
        return _list_body(
            "compute#machineTypeList",
            f"projects/{project}/zones/{zone}/machineTypes",
            f"{self._zone_link(project, zone)}/machineTypes",
            page,
            token,
        )

    async def _agg_types(self, request: web.Request) -> dict[str, Any]:
        project = request.match_info["project"]
        items = [
            catalogue.to_resource(s, zone, self.base, project)
            for zone in catalogue.ZONES
            for s in catalogue.zone_shapes(zone)
        ]
        page, token = self._list_page(
            request,
            items,
            f"{project}/aggregated/machineTypes",
            key=lambda obj: (obj["zone"],),
        )
        return _aggregated_body(
            kind="compute#machineTypeAggregatedList",
            field="machineTypes",
            ident=f"projects/{project}/aggregated/machineTypes",
            self_link=f"{self.base}/projects/{project}/aggregated/machineTypes",
            items=page,
            token=token,
        )

    # -- Spot preemption ---------------------------------------------------------------

    def _preempt_threadsafe(self, instance: str, zone: str | None) -> None:
        key = self._find(instance, zone)  # raises in the caller's thread if unknown
        inst = self._instances[key]
        if not _is_spot(inst):
            raise ValueError(f"instance {instance!r} is not a Spot or preemptible VM")
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._preempt(key)
        else:
            loop.call_soon_threadsafe(self._preempt, key)

    def _preempt(self, key: Key) -> dict[str, Any]:
        inst = self._instances.get(key)
        if inst is None:
            raise LookupError(f"no instance {key[2]!r}")
        if not _is_spot(inst):
            raise ValueError(f"instance {key[2]!r} is not a Spot or preemptible VM")
        op = self._new_op(
            key,
            "compute.instances.preempted",
            target_id=inst["id"],
            user="system",
            status="DONE",
        )
        self._set_op(self._op_key(op), statusMessage="Instance was preempted.")
        delete = inst["scheduling"].get("instanceTerminationAction") == "DELETE"
        boot = self._lifecycle.pop(key, None)
        if boot is not None:
            boot.cancel()

        async def run() -> None:
            try:
                await self._terminate(key, delete=False)
                if delete:
                    await self.clock.sleep(self.timings.stopping)
                    gone = self._instances.pop(key, None)
                    if gone is not None:
                        self._release(gone)
            finally:
                if self._lifecycle.get(key) is asyncio.current_task():
                    del self._lifecycle[key]

        self._lifecycle[key] = asyncio.create_task(run(), name=f"compute-preempt-{key[2]}")
        return copy.deepcopy(self._ops[self._op_key(op)])


def _is_spot(inst: dict[str, Any]) -> bool:
    s = inst.get("scheduling") or {}
    return s.get("provisioningModel") == "SPOT" or bool(s.get("preemptible"))


def _demand(shape: catalogue.Shape) -> dict[str, float]:
    out: dict[str, float] = {"INSTANCES": 1}
    cpu_metric = catalogue.CPU_QUOTA_METRIC.get(shape.family, "CPUS")
    out[cpu_metric] = out.get(cpu_metric, 0) + shape.cpus
    for acc, count in shape.accelerators:
        gpu = catalogue.GPU_QUOTA_METRIC.get(acc)
        if gpu:
            out[gpu] = out.get(gpu, 0) + count
    return out


def _list_body(
    kind: str, ident: str, self_link: str, items: list[dict[str, Any]], token: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "id": ident, "selfLink": self_link}
    if items:
        body["items"] = items
    if token:
        body["nextPageToken"] = token
    return body


def _aggregated_body(
    *,
    kind: str,
    field: str,
    ident: str,
    self_link: str,
    items: list[dict[str, Any]],
    token: str | None,
) -> dict[str, Any]:
    scopes: dict[str, Any] = {}
    for zone in catalogue.ZONES:
        scope = f"zones/{zone}"
        in_scope = [i for i in items if i["zone"].rsplit("/", 1)[-1] == zone]
        if in_scope:
            scopes[scope] = {field: in_scope}
        else:
            scopes[scope] = {
                "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}],
                }
            }
    body: dict[str, Any] = {"kind": kind, "id": ident, "items": scopes, "selfLink": self_link}
    if token:
        body["nextPageToken"] = token
    return body
