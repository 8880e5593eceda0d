"""The Cloud Logging emulator: the gRPC service vnode reads container logs from.

- :mod:`.emulator`: :class:`LoggingEmulator`, the server (write, list, tail, faults).
- :mod:`.filters`: the Logging query language subset, compiled to predicates.
- :mod:`.store`: entries in timestamp order, ingestion delay, page positions.
- :mod:`.fluentbit`: a simulated VM's line -> the entry vnode's fluent-bit would write.

Run it alone with ``vnode sandbox`` (it writes ``VNODE_LOGGING_ENDPOINT``), or in a test::

    emulator = LoggingEmulator()
    await emulator.start()          # emulator.endpoint == "127.0.0.1:PORT", plaintext gRPC
    vm = SimulatedVM(..., log_sink=emulator.vm_sink("vnode_containers"))
"""

from vnode.sandbox.logging.emulator import LoggingEmulator
from vnode.sandbox.logging.filters import FilterError, compile_filter

__all__ = ["FilterError", "LoggingEmulator", "compile_filter"]
