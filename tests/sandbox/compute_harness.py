"""Run the Compute emulator on a background loop and point the official client at it.

The official ``google-cloud-compute`` client is synchronous, so tests call it directly
while the emulator serves from its own thread; ``call`` reaches into the emulator's loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from vnode.sandbox.compute import ComputeEmulator

PROJECT = "vnode-test"
ZONE = "us-central1-a"
IMAGE = "projects/cos-cloud/global/images/family/cos-stable"


@dataclass
class RunningCompute:
    emulator: ComputeEmulator
    loop: asyncio.AbstractEventLoop

    @property
    def endpoint(self) -> str:
        return self.emulator.endpoint

    def call(self, fn_or_coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine, or a plain callable, on the emulator's loop; return its result."""
        if inspect.iscoroutine(fn_or_coro):
            return asyncio.run_coroutine_threadsafe(fn_or_coro, self.loop).result(timeout)
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn_or_coro())
            except BaseException as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def _options(self) -> dict[str, Any]:
        return {
            "credentials": AnonymousCredentials(),
            "client_options": ClientOptions(api_endpoint=self.endpoint),
        }

    def instances(self) -> compute_v1.InstancesClient:
        return compute_v1.InstancesClient(**self._options())

    def operations(self) -> compute_v1.ZoneOperationsClient:
        return compute_v1.ZoneOperationsClient(**self._options())

    def machine_types(self) -> compute_v1.MachineTypesClient:
        return compute_v1.MachineTypesClient(**self._options())


@contextmanager
def running_compute(state_dir: Path, **kwargs: Any) -> Iterator[RunningCompute]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="compute-emulator", daemon=True)
    thread.start()
    emulator = ComputeEmulator(state_dir, **kwargs)
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(30)
    try:
        yield RunningCompute(emulator, loop)
    finally:
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(30)
        leftover = asyncio.run_coroutine_threadsafe(_pending(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        assert not leftover, f"emulator left tasks running: {leftover}"


async def _pending() -> list[str]:
    await asyncio.sleep(0)
    me = asyncio.current_task()
    return [t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done()]


def instance_body(name: str, **extra: Any) -> compute_v1.Instance:
    """A minimal instance the way vnode builds one: COS boot disk, default network."""
    body: dict[str, Any] = {
        "name": name,
        "machine_type": f"zones/{ZONE}/machineTypes/e2-standard-2",
        "disks": [
            {
                "boot": True,
                "auto_delete": True,
                "initialize_params": {"source_image": IMAGE, "disk_size_gb": 20},
            }
        ],
        "network_interfaces": [{"network": "global/networks/default"}],
    }
    body.update(extra)
    return compute_v1.Instance(body)
