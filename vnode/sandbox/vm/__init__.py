"""Simulated Container-Optimized OS VMs whose standalone kubelet answers like a real one.

``vm_factory(root_dir, **options)`` is what the Compute emulator's ``vm_factory`` hook
takes; each instance that reaches RUNNING gets a :class:`SimulatedVM` booted from its
metadata. See :mod:`vnode.sandbox.vm.machine`.
"""

from vnode.sandbox.vm.machine import SimulatedVM, vm_factory
from vnode.sandbox.vm.shipping import LogEntry, LogSink
from vnode.sandbox.vm.timings import Timings

__all__ = ["LogEntry", "LogSink", "SimulatedVM", "Timings", "vm_factory"]
