"""A simulated Container-Optimized OS VM behind one Compute Engine instance.

It boots as the real VM does, from the instance's own metadata: cloud-init applies the
``user-data`` cloud-config into the VM's root directory (``<root>/<instance name>``),
the boot starts the systemd units ``bootcmd``/``runcmd`` name (their dependencies first,
running the boot scripts cloud-init wrote; see :mod:`.units`), and if one of them runs a
kubelet, that kubelet comes up with the flags and the configuration file it was given:
static pods from ``staticPodPath``, the kubelet API on the instance's internal IP with
the configured serving certificate, client CA and authentication. A boot that would
leave a real VM without a working kubelet leaves this one without it, and says why in
:attr:`SimulatedVM.boot_error` and the log.

Addresses: the internal IP is on 127.0.0.0/8, which Linux routes to loopback, so each
VM binds its own IP with the real ports (10250 and, if configured, the read-only
port). vnode may therefore assume the real kubelet port; ``port`` overrides it only
for tests that must not depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from vnode.certs import self_signed_server
from vnode.clock import Clock, SystemClock
from vnode.sandbox.vm import bootconfig, cloudinit, units
from vnode.sandbox.vm.api import KubeletAPI, tls_context
from vnode.sandbox.vm.bootconfig import KubeletBootError, KubeletSetup
from vnode.sandbox.vm.cloudinit import CloudConfigError, host_path
from vnode.sandbox.vm.crilog import LineCallback
from vnode.sandbox.vm.kubelet import Kubelet
from vnode.sandbox.vm.pods import PodHost
from vnode.sandbox.vm.shipping import LogSink, Shipper
from vnode.sandbox.vm.timings import Timings

log = logging.getLogger(__name__)


def metadata_items(instance: dict[str, Any]) -> dict[str, str]:
    items = (instance.get("metadata") or {}).get("items") or []
    return {str(i.get("key")): str(i.get("value", "")) for i in items if "key" in i}


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _project(instance: dict[str, Any]) -> str:
    parts = str(instance.get("zone", "")).split("/")
    return parts[parts.index("projects") + 1] if "projects" in parts else ""


class SimulatedVM:
    def __init__(
        self,
        instance: dict[str, Any],
        root_dir: Path,
        *,
        clock: Clock | None = None,
        timings: Timings | None = None,
        port: int | None = None,
        read_only_port: int | None = None,
        log_sink: LogSink | None = None,
        allow_webhook: bool = False,
        stop_grace: float = 5.0,
    ) -> None:
        self.instance = instance
        self.name = str(instance["name"])
        self.zone = _last(str(instance.get("zone", "")))
        self.internal_ip = str(
            ((instance.get("networkInterfaces") or [{}])[0]).get("networkIP", "127.0.0.1")
        )
        self.root = root_dir / self.name
        self.clock: Clock = clock or SystemClock()
        self.timings = timings or Timings()
        self.metadata = metadata_items(instance)
        self.log_sink = log_sink
        self.allow_webhook = allow_webhook
        self.stop_grace = stop_grace
        self._port_override = port
        self._ro_override = read_only_port
        self.setup: KubeletSetup | None = None
        self.kubelet: Kubelet | None = None
        self.boot_error: str | None = None
        self.kubelet_port: int | None = None  # where the kubelet API really listens
        self.read_only_port: int | None = None
        self.booted = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._shipper: Shipper | None = None

    @property
    def kubelet_url(self) -> str:
        return f"https://{self.internal_ip}:{self.kubelet_port}"

    # -- boot ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._boot()
        except asyncio.CancelledError:
            # Deleted while booting: release whatever the boot had already opened.
            await self._stop_kubelet()
            raise
        except (CloudConfigError, KubeletBootError, OSError) as e:
            self.boot_error = str(e)
            log.error("VM %s: kubelet did not come up: %s", self.name, e)
            await self._stop_kubelet()
        finally:
            self.booted.set()

    async def _boot(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        user_data = self.metadata.get("user-data")
        if user_data is None:
            raise KubeletBootError("instance metadata has no user-data: nothing to boot")
        config = cloudinit.parse(user_data)
        cloudinit.apply_write_files(self.root, config)
        setup = bootconfig.load(self.root, config, self.name, allow_webhook=self.allow_webhook)
        started = await units.start_dependencies(
            self.root, bootconfig.started_units(config), setup.unit, self.internal_ip, self.name
        )
        log_name = units.fluent_bit_log_name(self.root, started)
        if setup.address not in ("0.0.0.0", "::", "", self.internal_ip):
            raise KubeletBootError(
                f"kubelet listens on {setup.address}, which is not reachable on the "
                f"instance's internal IP {self.internal_ip}"
            )
        self.setup = setup
        cert, key = setup.tls_cert_file, setup.tls_key_file
        if cert is None or key is None:
            # No serving certificate configured: the kubelet makes a self-signed one.
            pki = host_path(self.root, f"{setup.root_dir}/pki")
            cert, key = self_signed_server(
                setup.node_name, [self.internal_ip, setup.node_name]
            ).write(pki, "kubelet")
        ssl_ctx = tls_context(cert, key, setup.client_ca_file)
        host = PodHost(
            root=self.root,
            node_name=setup.node_name,
            host_ip=self.internal_ip,
            pod_logs_dir=setup.pod_logs_dir,
            root_dir=setup.root_dir,
            clock=self.clock,
            now_ns=self._now_ns,
            timings=self.timings,
            line_sink=self._line_sink,
            cpu_count=os.cpu_count() or 1,
            memory_bytes=8 << 30,
        )
        logging_on = self.metadata.get("google-logging-enabled", "").lower() == "true"
        if self.log_sink is not None and (logging_on or log_name is not None):
            self._shipper = Shipper(
                self.log_sink,
                {
                    "instance_id": str(self.instance.get("id", "")),
                    "instance_name": self.name,
                    "zone": self.zone,
                    "project": _project(self.instance),
                    "instance_labels": dict(self.instance.get("labels") or {}),
                    "node_name": setup.node_name,
                    **({"log_name": log_name} if log_name else {}),
                },
                setup.pod_logs_dir,
            )
            self._shipper.start()
        kubelet = Kubelet(setup, host)
        api = KubeletAPI(kubelet, setup, allow_webhook=self.allow_webhook)
        port = self._port_override if self._port_override is not None else setup.port
        self.kubelet_port = await self._serve(api.secure_app(), port, ssl_ctx)
        ro = self._ro_override if self._ro_override is not None else setup.read_only_port
        if setup.read_only_port:
            self.read_only_port = await self._serve(api.read_only_app(), ro, None)
        self.kubelet = kubelet
        await kubelet.start()
        log.info(
            "VM %s: kubelet %s up on %s:%s (static pods from %s)",
            self.name,
            setup.node_name,
            self.internal_ip,
            self.kubelet_port,
            setup.static_pod_vm_path or "-",
        )

    async def _serve(self, app: web.Application, port: int, ssl_ctx: Any) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.internal_ip, port, ssl_context=ssl_ctx, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            raise KubeletBootError(
                f"failed to listen on {self.internal_ip}:{port}: {e.strerror or e}"
            ) from e
        return int(runner.addresses[-1][1])

    def _now_ns(self) -> int:
        if isinstance(self.clock, SystemClock):
            return time.time_ns()
        return int(self.clock.now().timestamp() * 1_000_000) * 1000

    def _line_sink(self, pod: dict[str, Any], container: str, attempt: int) -> LineCallback | None:
        if self._shipper is None:
            return None
        return self._shipper.line_sink(pod, container, attempt)

    # -- shutdown ------------------------------------------------------------------------

    async def stop(self) -> None:
        """The instance is deleted or preempted: containers get ``stop_grace`` seconds."""
        await self._stop_kubelet()

    async def _stop_kubelet(self) -> None:
        if self.kubelet is not None:
            await self.kubelet.stop(grace=self.stop_grace)
        if self._shipper is not None:
            await self._shipper.stop()
            self._shipper = None
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()


def vm_factory(root_dir: Path, **options: Any) -> Callable[[dict[str, Any]], SimulatedVM]:
    """What the Compute emulator calls for each instance that reaches RUNNING."""

    def make(instance: dict[str, Any]) -> SimulatedVM:
        return SimulatedVM(instance, root_dir, **options)

    return make
