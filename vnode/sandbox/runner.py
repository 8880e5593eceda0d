"""``vnode sandbox``: run the emulators in the foreground until SIGINT/SIGTERM.

The emulators: the Kubernetes API server (left out with ``--no-kube``, to run vnode
against a real cluster) and the cloud side, a Compute Engine API whose RUNNING
instances boot simulated COS VMs from their metadata, and a Cloud Logging service the
VMs ship their container lines to. ``sandbox.env`` points ``vnode run --provider gce``
at them (``VNODE_COMPUTE_ENDPOINT``, ``VNODE_PROJECT``, ``VNODE_ZONE``,
``VNODE_GCE_CA_DIR``, ``VNODE_LOGGING_ENDPOINT``).

When everything listens, the state directory holds ``kubeconfig`` (admin access),
``sandbox.env`` (``KEY=VALUE`` lines for ``set -a; . sandbox.env``) and, written last so
that a waiting script never reads a half-written directory, ``ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from vnode.sandbox.compute import ComputeEmulator
from vnode.sandbox.kubeapi.server import KubeAPI
from vnode.sandbox.logging import LoggingEmulator
from vnode.sandbox.vm import vm_factory

SANDBOX_PROJECT = "vnode-sandbox"
SANDBOX_ZONE = "us-central1-a"

log = logging.getLogger(__name__)


def write_env(path: Path, values: dict[str, str]) -> None:
    lines = [f"{k}={v}" for k, v in values.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


class Sandbox:
    """The emulators as one unit: start them all, describe them, stop them all."""

    def __init__(
        self, state_dir: Path, *, kube: bool = True, host: str = "127.0.0.1", kube_port: int = 0
    ) -> None:
        self.state_dir = state_dir
        self.kubeapi: KubeAPI | None = (
            KubeAPI(state_dir / "kube", host=host, port=kube_port) if kube else None
        )
        # The cloud side: Compute Engine, whose RUNNING instances boot simulated COS VMs,
        # which ship their container logs to Cloud Logging as the VM's fluent-bit would.
        self.logging = LoggingEmulator(host=host)
        self.compute = ComputeEmulator(
            state_dir / "compute",
            host=host,
            vm_factory=vm_factory(state_dir / "vms", log_sink=self.logging.vm_sink()),
        )

    async def start(self) -> dict[str, str]:
        """Start every emulator; return the environment a vnode run needs to use them."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "ready").unlink(missing_ok=True)
        env: dict[str, str] = {}
        if self.kubeapi is not None:
            await self.kubeapi.start()
            assert self.kubeapi.pki is not None  # start() made it
            kubeconfig = self.state_dir / "kubeconfig"
            kubeconfig.write_text(self.kubeapi.kubeconfig_path.read_text())
            env["KUBECONFIG"] = str(kubeconfig)
            env["VNODE_CLIENT_CA_FILE"] = str(self.kubeapi.pki.ca_file)
            env["VNODE_KUBEAPI_URL"] = self.kubeapi.url
            # The API server here lives on loopback, so a vnode run against it listens
            # there too (never on every interface of the machine).
            env["VNODE_KUBELET_ADDRESS"] = "127.0.0.1"
        await self.logging.start()
        env["VNODE_LOGGING_ENDPOINT"] = self.logging.endpoint
        await self.compute.start()
        env["VNODE_COMPUTE_ENDPOINT"] = self.compute.endpoint
        env["VNODE_PROJECT"] = SANDBOX_PROJECT
        env["VNODE_ZONE"] = SANDBOX_ZONE
        # vnode's CAs for the VM kubelets live with the sandbox, not in the user's home.
        env["VNODE_GCE_CA_DIR"] = str(self.state_dir / "gce-ca")
        write_env(self.state_dir / "sandbox.env", env)
        (self.state_dir / "ready").write_text("ok\n")
        return env

    async def stop(self) -> None:
        (self.state_dir / "ready").unlink(missing_ok=True)
        await self.compute.stop()  # stops the VMs too (they flush their logs first)
        await self.logging.stop()
        if self.kubeapi is not None:
            await self.kubeapi.stop()


async def serve(state_dir: Path, *, kube: bool = True, kube_port: int = 0) -> None:
    """Run the sandbox until SIGINT or SIGTERM, then stop everything it started."""
    sandbox = Sandbox(state_dir, kube=kube, kube_port=kube_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        env = await sandbox.start()
        for key, value in env.items():
            log.info("sandbox ready: %s=%s", key, value)
        print(
            f"sandbox ready; use it with: set -a; . {state_dir / 'sandbox.env'}; set +a", flush=True
        )
        await stop.wait()
        log.info("stopping the sandbox")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await sandbox.stop()
