"""``vnode sandbox``: run the emulators in the foreground until SIGINT/SIGTERM.

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

from vnode.sandbox.kubeapi.server import KubeAPI

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
        write_env(self.state_dir / "sandbox.env", env)
        (self.state_dir / "ready").write_text("ok\n")
        return env

    async def stop(self) -> None:
        (self.state_dir / "ready").unlink(missing_ok=True)
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
