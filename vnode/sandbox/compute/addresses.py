"""Internal and external IPs for emulated instances, on 127.0.0.0/8.

Linux routes the whole of 127.0.0.0/8 to the loopback interface, so every address handed
out here can be bound by the VM simulator and reached by vnode without touching a real
network. Allocation starts at a random point so that emulators in parallel test processes
rarely hand out the same address.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from vnode.sandbox.compute.errors import ComputeError, invalid_field


class AddressPool:
    def __init__(self, internal: str, external: str, rng: random.Random) -> None:
        self._nets = {
            "internal": ipaddress.ip_network(internal),
            "nat": ipaddress.ip_network(external),
        }
        self._next = {k: rng.randrange(1, n.num_addresses - 2) for k, n in self._nets.items()}
        self._used: set[str] = set()

    def _take(self, kind: str) -> str:
        net = self._nets[kind]
        size = net.num_addresses
        for _ in range(size):
            offset = self._next[kind]
            self._next[kind] = offset + 1 if offset + 1 < size - 1 else 1
            addr = str(net.network_address + offset)
            if addr not in self._used and not addr.endswith((".0", ".255")):
                self._used.add(addr)
                return addr
        raise ComputeError(400, "IP space of subnetwork is exhausted.", "ipSpaceExhausted")

    def assign(self, inst: dict[str, Any]) -> None:
        """Give every interface an internal IP (and each NAT access config an external one),
        honouring a requested ``networkIP`` if it is free; all or nothing."""
        taken: list[str] = []
        try:
            for i, nic in enumerate(inst["networkInterfaces"]):
                wanted = nic.get("networkIP")
                if wanted:
                    if wanted in self._used:
                        raise invalid_field(
                            f"resource.networkInterfaces[{i}].networkIP",
                            wanted,
                            f"IP address '{wanted}' is already being used by another resource.",
                        )
                    self._used.add(wanted)
                    taken.append(wanted)
                else:
                    nic["networkIP"] = self._take("internal")
                    taken.append(nic["networkIP"])
                for ac in nic.get("accessConfigs", []):
                    if ac.get("type") == "ONE_TO_ONE_NAT" and not ac.get("natIP"):
                        ac["natIP"] = self._take("nat")
                        taken.append(ac["natIP"])
        except ComputeError:
            self._used.difference_update(taken)
            raise

    def release(self, inst: dict[str, Any]) -> None:
        for nic in inst.get("networkInterfaces", []):
            self._used.discard(nic.get("networkIP", ""))
            for ac in nic.get("accessConfigs", []):
                self._used.discard(ac.get("natIP", ""))
