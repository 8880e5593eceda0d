"""The Lease heartbeat on fake time: shape, rhythm, retries, conflicts, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

import pytest

from tests.node.fake_kube import FakeKube, install
from vnode.clock import FakeClock, parse_time
from vnode.node import kube
from vnode.node.lease import LeaseKeeper
from vnode.settings import LeaseSettings

PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Harness:
    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self.clock = FakeClock()
        self.uid = ""
        self.keeper = LeaseKeeper(object(), "n1", lambda: self.uid, LeaseSettings(), self.clock)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.keeper.run(), name="lease-under-test")

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(round(seconds / step)):
            await self.clock.advance(step)

    def stored(self) -> dict:
        return self.fake.objects[PATH]


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    harness = Harness(install(monkeypatch))
    yield harness
    if harness.task is not None:
        harness.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await harness.task


async def test_creates_a_kubelet_style_lease(h: Harness) -> None:
    h.start()
    await h.advance(0.5)
    lease = h.stored()
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["kind"] == "Lease"
    assert lease["metadata"]["name"] == "n1"
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["spec"]["holderIdentity"] == "n1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert MICRO_TIME.match(lease["spec"]["renewTime"])
    # The Node's uid is not known yet: no owner until it is.
    assert "ownerReferences" not in lease["metadata"]
    assert h.keeper.renewals == 1


async def test_owner_reference_added_once_the_node_uid_is_known(h: Harness) -> None:
    h.start()
    await h.advance(0.5)
    h.uid = "node-uid-1"
    await h.advance(10)
    assert h.stored()["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid-1"}
    ]
    # A recreated Node (new uid) moves the owner reference with it.
    h.uid = "node-uid-2"
    await h.advance(10)
    refs = h.stored()["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == ["node-uid-2"]


async def test_owner_reference_set_at_creation_when_known(h: Harness) -> None:
    h.uid = "u-0"
    h.start()
    await h.advance(0.5)
    created = h.fake.calls[-1]
    assert created.method == "POST"
    assert created.body["metadata"]["ownerReferences"][0]["uid"] == "u-0"


async def test_renews_every_interval_by_put_with_advancing_time(h: Harness) -> None:
    h.start()
    await h.advance(0.5)
    first = parse_time(h.stored()["spec"]["renewTime"])
    await h.advance(100)
    # Created at t=0, then renewed at t=10, 20, ..., 100.
    assert h.keeper.renewals == 11
    assert h.fake.count("POST") == 1
    assert h.fake.count("PUT") == 10
    last = parse_time(h.stored()["spec"]["renewTime"])
    assert (last - first).total_seconds() == pytest.approx(100, abs=1)
    assert all(MICRO_TIME.match(c.body["spec"]["renewTime"]) for c in h.fake.calls
               if c.method == "PUT")  # fmt: skip
    # A renewal is a PUT of the whole Lease as last read, resourceVersion included.
    put = next(c for c in h.fake.calls if c.method == "PUT")
    assert put.body["metadata"]["resourceVersion"]
    assert put.body["metadata"]["uid"]


async def test_adopts_an_existing_lease(h: Harness) -> None:
    h.fake.put_object(PATH, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 15,
                 "renewTime": "2020-01-01T00:00:00.000000Z"},
    })  # fmt: skip
    h.start()
    await h.advance(0.5)
    assert h.fake.count("POST") == 0
    spec = h.stored()["spec"]
    assert spec["holderIdentity"] == "n1"
    assert spec["leaseDurationSeconds"] == 40
    assert spec["renewTime"].startswith("2026-")


async def test_failures_are_retried_quickly_and_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vnode.node.lease")
    h.start()
    await h.advance(0.5)  # created at t=0
    error = kube.api_error(503, "ServiceUnavailable", "etcd is sad")
    h.fake.fail("PUT", PATH, error, times=3)
    await h.advance(10)  # t=10.5: the renewal at t=10 failed
    assert h.keeper.failures == 1
    await h.advance(3)  # retries at t=11 and 12 fail, t=13 succeeds
    assert h.keeper.failures == 0
    assert h.keeper.renewals == 2
    assert h.fake.count("PUT") == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("renewing Lease kube-node-lease/n1 failed" in m for m in messages) == 3
    assert all("etcd is sad" in m for m in messages if "failed (attempt" in m)
    assert any("renewed again after 3 failed attempts" in m for m in messages)
    # Back to the normal rhythm, counted from the last success (t=13): next at t=23.
    await h.advance(9)
    assert h.keeper.renewals == 2
    await h.advance(1.5)
    assert h.keeper.renewals == 3


async def test_an_expired_lease_is_logged_as_an_error(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vnode.node.lease")
    h.start()
    await h.advance(0.5)
    h.fake.fail("PUT", PATH, ConnectionResetError("connection reset"), times=100)
    await h.advance(60)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("the lease has expired" in r.getMessage() for r in errors)
    assert h.keeper.failures >= 40  # retried every second, never given up


async def test_conflict_rereads_and_retries_at_once(h: Harness) -> None:
    h.start()
    await h.advance(0.5)
    # Someone else writes the Lease between renewals: vnode's copy is now stale.
    other = h.stored()
    other["metadata"].setdefault("labels", {})["touched"] = "yes"
    h.fake.put_object(PATH, other)
    await h.advance(10)
    # PUT (409) -> GET -> PUT, all within the same renewal.
    methods = [c.method for c in h.fake.calls]
    assert methods == ["GET", "POST", "PUT", "GET", "PUT"]
    assert h.keeper.renewals == 2
    assert h.keeper.failures == 0
    assert h.stored()["metadata"]["labels"] == {"touched": "yes"}


async def test_a_deleted_lease_is_created_again(h: Harness) -> None:
    h.start()
    await h.advance(0.5)
    del h.fake.objects[PATH]
    await h.advance(10)
    assert h.fake.count("POST") == 2
    assert h.keeper.renewals == 2
    assert PATH in h.fake.objects


async def test_shutdown_stops_renewing_and_deletes_nothing(h: Harness) -> None:
    h.start()
    await h.advance(20.5)
    assert h.task is not None
    h.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await h.task
    calls = len(h.fake.calls)
    await h.advance(60)
    assert len(h.fake.calls) == calls
    assert h.fake.count("DELETE") == 0
    assert PATH in h.fake.objects
