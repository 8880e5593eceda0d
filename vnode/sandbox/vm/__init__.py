"""Simulated Container-Optimized OS VMs whose standalone kubelet answers like a real one.

``vm_factory(root_dir, **options)`` is what the Compute emulator's ``vm_factory`` hook
takes: each instance that reaches RUNNING gets a :class:`SimulatedVM` that boots from the
instance's own metadata into ``root_dir/<instance name>`` (see :mod:`.machine`). Options:
``timings`` (:class:`Timings`, scaled down for tests), ``log_sink`` (an async callable
taking one :data:`LogEntry` per container line; see :mod:`.shipping`), ``port`` /
``read_only_port`` (listen elsewhere than the configured ports), ``stop_grace`` (seconds
containers get when the instance goes), ``allow_webhook`` (boot a configuration a real
standalone kubelet would refuse) and ``clock``.

What vnode may assume: the kubelet listens on the instance's internal IP (127.0.0.0/8)
at the port its configuration names (10250), with the configured serving certificate
and client CA. Its answers follow the real kubelet v1.33 captured in
``shared/reference/kubelet``: ``/pods``, ``/containerLogs`` (every option and error),
``/healthz``, ``/stats/summary``, ``/metrics/resource``, ``/runningpods/``.

Where the simulation stops short of a real VM:

- Containers are local processes: images are not pulled (a container without
  ``command`` waits with CreateContainerConfigError), they see the host's filesystem
  (volume mounts are not applied; their sources are created under the VM root), share
  the host's network, and run as the simulator's user.
- A client certificate from another CA is refused during the TLS handshake, where the
  real kubelet completes the handshake and answers 401.
- The pod UID is a stable hash of the manifest, the node and the file, but not the same
  hash as Go's (which hashes Go's in-memory dump of the pod).
- gRPC probes always fail.
"""

from vnode.sandbox.vm.machine import SimulatedVM, vm_factory
from vnode.sandbox.vm.shipping import LogEntry, LogSink
from vnode.sandbox.vm.timings import Timings

__all__ = ["LogEntry", "LogSink", "SimulatedVM", "Timings", "vm_factory"]
