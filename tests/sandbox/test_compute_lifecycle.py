"""Instance lifecycle in the Compute emulator, on an injected clock.

PROVISIONING -> STAGING -> RUNNING -> STOPPING -> gone; ``zoneOperations.wait`` semantics;
``maxRunDuration`` with its termination action; Spot preemption leaving the
``compute.instances.preempted`` operation vnode looks for; and the VM hook.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from google.cloud import compute_v1

from tests.sandbox.compute_harness import (
    PROJECT,
    ZONE,
    RunningCompute,
    instance_body,
    running_compute,
)
from tests.waiting import wait_for
from vnode.clock import FakeClock
from vnode.sandbox.compute import Timings

TIMINGS = Timings(provisioning=5, staging=10, stopping=20, wait_timeout=120)


class FakeVM:
    """Records what the emulator asks of the machine behind an instance.

    Like a real machine, ``start`` keeps running until ``stop`` halts it.
    """

    def __init__(self, instance: dict[str, Any]) -> None:
        self.instance = instance
        self.internal_ip = instance["networkInterfaces"][0]["networkIP"]
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self._halt: asyncio.Event | None = None

    async def start(self) -> None:
        self._halt = asyncio.Event()
        self.started.set()
        try:
            await self._halt.wait()
        finally:
            self.finished.set()

    async def stop(self) -> None:
        self.stopped.set()
        if self._halt is not None:
            self._halt.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def vms() -> list[FakeVM]:
    return []


@pytest.fixture
def compute(tmp_path: Path, clock: FakeClock, vms: list[FakeVM]) -> Iterator[RunningCompute]:
    def factory(instance: dict[str, Any]) -> FakeVM:
        vm = FakeVM(instance)
        vms.append(vm)
        return vm

    with running_compute(tmp_path, clock=clock, timings=TIMINGS, vm_factory=factory) as rc:
        yield rc


def advance(rc: RunningCompute, clock: FakeClock, seconds: float) -> None:
    rc.call(clock.advance(seconds))


def status(rc: RunningCompute, name: str) -> str | None:
    inst = rc.emulator.instance(name)
    return None if inst is None else str(inst["status"])


def op_status(rc: RunningCompute, name: str) -> Any:
    return rc.operations().get(project=PROJECT, zone=ZONE, operation=name)


def insert(rc: RunningCompute, name: str, **extra: Any) -> str:
    op = rc.instances().insert(
        project=PROJECT, zone=ZONE, instance_resource=instance_body(name, **extra)
    )
    return str(op.name)


def boot(rc: RunningCompute, clock: FakeClock, name: str, **extra: Any) -> str:
    op = insert(rc, name, **extra)
    advance(rc, clock, TIMINGS.provisioning + TIMINGS.staging)
    assert status(rc, name) == "RUNNING"
    return op


def test_instance_moves_through_the_real_states(
    compute: RunningCompute, clock: FakeClock, vms: list[FakeVM]
) -> None:
    op = insert(compute, "life")
    assert status(compute, "life") == "PROVISIONING"
    assert op_status(compute, op).status != compute_v1.Operation.Status.DONE
    advance(compute, clock, TIMINGS.provisioning)
    assert status(compute, "life") == "STAGING"
    assert vms == []  # the VM only exists once the instance runs
    advance(compute, clock, TIMINGS.staging)
    assert status(compute, "life") == "RUNNING"
    done = op_status(compute, op)
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.end_time

    assert len(vms) == 1
    vm = vms[0]
    assert vm.instance["name"] == "life"
    assert vm.instance["status"] == "RUNNING"
    assert vm.internal_ip.startswith("127.")
    wait_for(vm.started.is_set, what="VM start")
    inst = compute.emulator.instance("life")
    assert inst is not None
    assert inst["cpuPlatform"] != "Unknown CPU Platform"
    assert inst["lastStartTimestamp"]

    delete = compute.instances().delete(project=PROJECT, zone=ZONE, instance="life")
    wait_for(lambda: status(compute, "life") == "STOPPING", what="STOPPING")
    wait_for(vm.stopped.is_set, what="VM stop")
    assert op_status(compute, delete.name).status != compute_v1.Operation.Status.DONE
    advance(compute, clock, TIMINGS.stopping)
    wait_for(lambda: status(compute, "life") is None, what="instance gone")
    assert op_status(compute, delete.name).status == compute_v1.Operation.Status.DONE
    assert compute.emulator.vm("life") is None
    assert vm.finished.is_set()


def test_repeated_deletes_all_finish_when_the_instance_is_gone(
    compute: RunningCompute, clock: FakeClock
) -> None:
    boot(compute, clock, "twice")
    client = compute.instances()
    first = client.delete(project=PROJECT, zone=ZONE, instance="twice")
    wait_for(lambda: status(compute, "twice") == "STOPPING", what="STOPPING")
    second = client.delete(project=PROJECT, zone=ZONE, instance="twice")
    assert second.name != first.name
    for op in (first, second):
        assert op_status(compute, op.name).status != compute_v1.Operation.Status.DONE
    advance(compute, clock, TIMINGS.stopping)
    wait_for(lambda: status(compute, "twice") is None, what="instance gone")
    for op in (first, second):
        assert op_status(compute, op.name).status == compute_v1.Operation.Status.DONE


def test_stopping_the_emulator_stops_running_machines(tmp_path: Path) -> None:
    clock = FakeClock()
    machines: list[FakeVM] = []

    def factory(instance: dict[str, Any]) -> FakeVM:
        machines.append(FakeVM(instance))
        return machines[-1]

    with running_compute(tmp_path, clock=clock, timings=TIMINGS, vm_factory=factory) as rc:
        boot(rc, clock, "left-running")
        wait_for(machines[0].started.is_set, what="VM start")
    assert machines[0].stopped.is_set()
    assert machines[0].finished.is_set()


def test_wait_blocks_until_done_or_its_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    slow = Timings(provisioning=300, staging=10, stopping=20, wait_timeout=120)
    with running_compute(tmp_path, clock=clock, timings=slow) as rc:
        op = insert(rc, "slow")
        ops = rc.operations()
        with ThreadPoolExecutor(1) as pool:
            # At the deadline the wait returns the operation as it stands, not DONE.
            pending = pool.submit(ops.wait, project=PROJECT, zone=ZONE, operation=op)
            wait_for(lambda: clock.sleepers >= 2, what="the wait to start")  # boot + timer
            advance(rc, clock, 1)
            assert not pending.done()
            advance(rc, clock, slow.wait_timeout)
            early = pending.result(10)
            assert early.status == compute_v1.Operation.Status.RUNNING
            # A wait whose deadline is beyond the operation's end returns when it is DONE.
            advance(rc, clock, 250 - clock.monotonic())  # the boot ends at 310
            finishing = pool.submit(ops.wait, project=PROJECT, zone=ZONE, operation=op)
            wait_for(lambda: clock.sleepers >= 2, what="the second wait to start")
            advance(rc, clock, 60)
            assert finishing.result(10).status == compute_v1.Operation.Status.DONE


def test_delete_while_provisioning_finishes_both_operations(
    compute: RunningCompute, clock: FakeClock, vms: list[FakeVM]
) -> None:
    op = insert(compute, "short")
    delete = compute.instances().delete(project=PROJECT, zone=ZONE, instance="short")
    advance(compute, clock, TIMINGS.stopping)
    wait_for(lambda: status(compute, "short") is None, what="instance gone")
    assert op_status(compute, op).status == compute_v1.Operation.Status.DONE
    assert op_status(compute, delete.name).status == compute_v1.Operation.Status.DONE
    assert vms == []


@pytest.mark.parametrize(("action", "final"), [("DELETE", None), ("STOP", "TERMINATED")])
def test_max_run_duration_ends_the_instance_by_its_action(
    compute: RunningCompute,
    clock: FakeClock,
    vms: list[FakeVM],
    action: str,
    final: str | None,
) -> None:
    boot(
        compute,
        clock,
        "bounded",
        scheduling={"max_run_duration": {"seconds": 600}, "instance_termination_action": action},
    )
    advance(compute, clock, 599)
    assert status(compute, "bounded") == "RUNNING"
    advance(compute, clock, 1)
    wait_for(lambda: status(compute, "bounded") == "STOPPING", what="STOPPING")
    wait_for(vms[0].stopped.is_set, what="VM stop")
    advance(compute, clock, TIMINGS.stopping)
    wait_for(lambda: status(compute, "bounded") == final, what=f"final state {final}")


def test_spot_preemption_is_visible_as_a_zone_operation(
    compute: RunningCompute, clock: FakeClock, vms: list[FakeVM]
) -> None:
    spot = {"provisioning_model": "SPOT", "instance_termination_action": "DELETE"}
    boot(compute, clock, "spot-vm", scheduling=spot)
    boot(compute, clock, "steady")
    with pytest.raises(ValueError, match="not a Spot"):
        compute.emulator.faults.preempt("steady")
    with pytest.raises(LookupError):
        compute.emulator.faults.preempt("nobody")

    compute.emulator.faults.preempt("spot-vm", ZONE)
    wait_for(lambda: status(compute, "spot-vm") == "STOPPING", what="STOPPING")
    request = compute_v1.ListZoneOperationsRequest(
        project=PROJECT, zone=ZONE, filter='operationType="compute.instances.preempted"'
    )
    preempted = list(compute.operations().list(request=request))
    assert len(preempted) == 1
    event = preempted[0]
    self_link = compute.emulator.instance("spot-vm")["selfLink"]  # type: ignore[index]
    assert event.target_link == self_link
    assert event.status == compute_v1.Operation.Status.DONE
    assert event.status_message == "Instance was preempted."
    # The documented way to narrow it to one instance also works.
    narrowed = compute_v1.ListZoneOperationsRequest(
        project=PROJECT,
        zone=ZONE,
        filter=f'operationType="compute.instances.preempted" AND targetLink="{self_link}"',
    )
    assert [o.name for o in compute.operations().list(request=narrowed)] == [event.name]

    spot_vm = next(v for v in vms if v.instance["name"] == "spot-vm")
    wait_for(spot_vm.stopped.is_set, what="VM stop")
    advance(compute, clock, TIMINGS.stopping)
    wait_for(lambda: status(compute, "spot-vm") == "TERMINATED", what="TERMINATED")
    advance(compute, clock, TIMINGS.stopping)
    wait_for(lambda: status(compute, "spot-vm") is None, what="deleted after preemption")
    assert status(compute, "steady") == "RUNNING"


def test_preempted_spot_with_stop_action_stays_terminated(
    compute: RunningCompute, clock: FakeClock
) -> None:
    boot(compute, clock, "spot-stop", scheduling={"provisioning_model": "SPOT"})
    inst = compute.emulator.instance("spot-stop")
    assert inst is not None
    assert inst["scheduling"]["instanceTerminationAction"] == "STOP"  # the Spot default
    compute.call(compute.emulator.preempt("spot-stop"))
    advance(compute, clock, TIMINGS.stopping * 3)
    wait_for(lambda: status(compute, "spot-stop") == "TERMINATED", what="TERMINATED")


class ListeningVM:
    """A machine that serves on its internal IP, as the simulated kubelet will."""

    def __init__(self, instance: dict[str, Any]) -> None:
        self.internal_ip = instance["networkInterfaces"][0]["networkIP"]
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(self.internal_ip.encode())
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(greet, self.internal_ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def test_machines_can_listen_on_their_internal_ips(tmp_path: Path) -> None:
    machines: list[ListeningVM] = []

    def factory(instance: dict[str, Any]) -> ListeningVM:
        machines.append(ListeningVM(instance))
        return machines[-1]

    with running_compute(tmp_path, vm_factory=factory) as rc:
        for name in ("web-1", "web-2"):
            op = rc.instances().insert(
                project=PROJECT, zone=ZONE, instance_resource=instance_body(name)
            )
            rc.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
        wait_for(lambda: len(machines) == 2 and all(m.port for m in machines), what="servers")
        assert machines[0].internal_ip != machines[1].internal_ip
        for machine in machines:
            with socket.create_connection((machine.internal_ip, machine.port), timeout=5) as conn:
                assert conn.recv(64).decode() == machine.internal_ip
