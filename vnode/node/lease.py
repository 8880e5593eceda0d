"""The Node's Lease: the heartbeat the node lifecycle controller watches.

If the Lease in ``kube-node-lease`` is not renewed within its duration (40 s), the
cluster marks the Node unreachable and, minutes later, evicts its pods. So the renewal
runs as its own task on its own API connection (nothing pod-related can delay it),
renews every ``renew_interval`` counted from the last success, and after a failure
retries every ``retry_interval`` while logging loudly.

The Lease looks exactly like a kubelet's: named after the Node, ``holderIdentity`` the
Node's name, ``leaseDurationSeconds`` 40, an ``ownerReference`` to the Node once its uid
is known (so deleting the Node deletes the Lease), ``renewTime`` a MicroTime with exactly
six fractional digits. It is renewed by PUT of the whole object, so a concurrent writer
causes a 409: the Lease is then read again and the renewal retried at once.

On shutdown the Lease is simply no longer renewed; it is never deleted (a restarting
vnode must not make the Node look gone).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any

from vnode import metrics
from vnode.clock import Clock, micro_time
from vnode.node import kube
from vnode.settings import LeaseSettings

log = logging.getLogger(__name__)

NAMESPACE = "kube-node-lease"
API_VERSION = "coordination.k8s.io/v1"
# Conflicts are retried at once, but not forever within one attempt.
CONFLICT_ATTEMPTS = 5
REQUEST_TIMEOUT = 10.0
"""Seconds one Lease request may take (the kubelet's heartbeat client uses 10 s): a hung
connection is abandoned and retried well before the 40 s lease lapses."""


class LeaseKeeper:
    """Creates and renews the Node's Lease until cancelled. See the module docstring."""

    def __init__(
        self,
        api: Any,
        node_name: str,
        node_uid: Callable[[], str],
        settings: LeaseSettings,
        clock: Clock,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.node_uid = node_uid
        self.settings = settings
        self.clock = clock
        self.collection = kube.path(API_VERSION, "leases", namespace=NAMESPACE)
        self.path = kube.path(API_VERSION, "leases", node_name, namespace=NAMESPACE)
        self.lease: dict[str, Any] | None = None  # the latest Lease the API server returned
        self.renewals = 0  # successful creates and renewals
        self.failures = 0  # failed attempts since the last success
        self.last_success: float | None = None  # clock.monotonic() of the last success

    def _spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": self.settings.duration_seconds,
            "renewTime": micro_time(self.clock.now()),
        }

    def _owner(self) -> list[dict[str, Any]] | None:
        uid = self.node_uid()
        if not uid:
            return None
        return [{"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": uid}]

    def _renewed(self, lease: dict[str, Any]) -> dict[str, Any]:
        """``lease`` with a new renewTime and vnode as holder (the kubelet's renewal)."""
        out = copy.deepcopy(lease)
        out.setdefault("spec", {}).update(self._spec())
        owner = self._owner()
        if owner is not None:
            refs = [
                r for r in out["metadata"].get("ownerReferences") or []
                if not (r.get("kind") == "Node" and r.get("apiVersion") == "v1")
            ]  # fmt: skip
            out["metadata"]["ownerReferences"] = owner + refs
        return out

    async def _create(self) -> dict[str, Any] | None:
        metadata: dict[str, Any] = {"name": self.node_name, "namespace": NAMESPACE}
        if (owner := self._owner()) is not None:
            metadata["ownerReferences"] = owner
        body = {"apiVersion": API_VERSION, "kind": "Lease", "metadata": metadata,
                "spec": self._spec()}  # fmt: skip
        try:
            created = await kube.request(
                self.api, "POST", self.collection, body=body, timeout=REQUEST_TIMEOUT
            )
        except kube.ApiError as e:
            if kube.already_exists(e):
                return None
            raise
        log.info("created Lease %s/%s", NAMESPACE, self.node_name)
        return created

    @metrics.timed("lease_renew_seconds")
    async def renew_once(self) -> dict[str, Any]:
        """Create or renew the Lease once; conflicts are resolved by reading it again."""
        lease = self.lease
        for _ in range(CONFLICT_ATTEMPTS):
            if lease is None:
                try:
                    lease = await kube.request(self.api, "GET", self.path, timeout=REQUEST_TIMEOUT)
                except kube.ApiError as e:
                    if not e.not_found:
                        raise
                    created = await self._create()
                    if created is None:
                        continue  # created by someone else meanwhile: read and renew it
                    self.lease = created
                    return created
            try:
                renewed = await kube.request(
                    self.api, "PUT", self.path, body=self._renewed(lease), timeout=REQUEST_TIMEOUT
                )
            except kube.ApiError as e:
                if e.conflict or e.not_found:
                    lease = None  # changed or deleted underneath: read (or create) again
                    continue
                raise
            self.lease = renewed
            return renewed
        raise kube.api_error(409, "Conflict", f"Lease {self.node_name} kept changing")

    async def run(self) -> None:
        """Renew until cancelled. Never raises: every failure is logged and retried."""
        while True:
            started = self.clock.monotonic()
            try:
                await self.renew_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.failures += 1
                lapsed = (
                    self.last_success is not None
                    and started - self.last_success >= self.settings.duration_seconds
                )
                log.log(
                    logging.ERROR if lapsed or self.failures > 3 else logging.WARNING,
                    "renewing Lease %s/%s failed (attempt %d%s), retrying in %.1f s: %r",
                    NAMESPACE, self.node_name, self.failures,
                    "; the lease has expired, the Node will turn NotReady" if lapsed else "",
                    self.settings.retry_interval, e,
                )  # fmt: skip
                await self.clock.sleep(self.settings.retry_interval)
                continue
            if self.failures:
                log.warning("Lease %s/%s renewed again after %d failed attempts",
                            NAMESPACE, self.node_name, self.failures)  # fmt: skip
            self.failures = 0
            self.renewals += 1
            self.last_success = self.clock.monotonic()
            metrics.current().lease_last_success.set(self.clock.now().timestamp())
            # Like the kubelet's sliding period: the next renewal is due renew_interval
            # after this one succeeded.
            await self.clock.sleep(self.settings.renew_interval)
