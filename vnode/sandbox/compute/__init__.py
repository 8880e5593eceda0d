"""The Compute Engine API emulator (see :mod:`vnode.sandbox.compute.emulator`).

Use: ``emu = ComputeEmulator(state_dir, vm_factory=...)``; ``await emu.start()``; point the
official client at ``emu.endpoint`` (``client_options={"api_endpoint": emu.endpoint}`` and
anonymous credentials); ``await emu.stop()``. Any project id is accepted; the zones are
``emu.zones``. ``vm_factory(instance)`` is called when an instance reaches RUNNING and must
return an object with ``internal_ip`` and async ``start()``/``stop()``; ``stop()`` is called
when the instance is deleted, preempted, ends its ``maxRunDuration`` or the emulator stops.
Tests inject failures through ``emu.faults`` (:class:`~vnode.sandbox.compute.faults.Faults`).

Modules: ``emulator`` (routes, state, lifecycle), ``httpapi`` (JSON answers, per-call
checks), ``instances`` (building the stored instance), ``operations`` (zone operations and
requestIds), ``addresses`` (IPs on 127.0.0.0/8), ``catalogue`` (machine types),
``validation`` (discovery-document checks), ``rules`` (Compute's own body rules),
``filters`` and ``listing`` (list filters and paging), ``faults`` (injected failures),
``errors`` (the real error bodies), ``resources`` (links, ids, fingerprints, timestamps).
"""

from vnode.sandbox.compute.emulator import DEFAULT_TIMINGS, VM, ComputeEmulator, Timings, VMFactory
from vnode.sandbox.compute.faults import Faults

__all__ = ["DEFAULT_TIMINGS", "VM", "ComputeEmulator", "Faults", "Timings", "VMFactory"]
