"""The Compute Engine API emulator (see :mod:`vnode.sandbox.compute.emulator`).

Modules: ``emulator`` (HTTP server, state, lifecycle), ``catalogue`` (machine types),
``validation`` (discovery-document checks), ``rules`` (Compute's own body rules),
``filters`` and ``listing`` (list filters and paging), ``faults`` (injected failures),
``errors`` (the real error bodies), ``resources`` (links, ids, fingerprints).
"""

from vnode.sandbox.compute.emulator import DEFAULT_TIMINGS, VM, ComputeEmulator, Timings, VMFactory
from vnode.sandbox.compute.faults import Faults

__all__ = ["DEFAULT_TIMINGS", "VM", "ComputeEmulator", "Faults", "Timings", "VMFactory"]
