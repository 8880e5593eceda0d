"""The VM simulator behind the Compute emulator: an inserted instance boots from its own
metadata, its kubelet answers on the instance's internal IP and the real port, the pod's
log lines are shipped, and deleting the instance stops the containers."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from google.cloud import compute_v1

from tests.sandbox.compute_harness import PROJECT, ZONE, instance_body, running_compute
from tests.sandbox.test_vm_kubelet import FAST
from tests.sandbox.vm_harness import Pki, random_ip, reference_manifest, user_data
from tests.waiting import wait_for
from vnode.sandbox.vm import SimulatedVM, vm_factory


def _get(url: str, pki: Pki, tmp: Path) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cadata=pki.serving_ca.cert_pem.decode())
    cert, key = pki.client.write(tmp, "client")
    ctx.load_cert_chain(str(cert), str(key))
    with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
        return resp.status, resp.read()


def test_an_inserted_instance_runs_its_static_pod(tmp_path: Path) -> None:
    name = "vnode-pod-1"
    ip = random_ip()
    pki = Pki.create(ip, name)
    text = user_data(pki, hostname="%H", manifests={"pod.yaml": reference_manifest("sleeper.yaml")})
    shipped: list[dict[str, Any]] = []
    machines: list[SimulatedVM] = []

    async def sink(entry: dict[str, Any]) -> None:
        shipped.append(entry)

    make = vm_factory(tmp_path / "vms", timings=FAST, log_sink=sink)

    def factory(instance: dict[str, Any]) -> SimulatedVM:
        machines.append(make(instance))
        return machines[-1]

    with running_compute(tmp_path / "compute", vm_factory=factory) as rc:
        body = instance_body(
            name,
            network_interfaces=[{"network": "global/networks/default", "network_i_p": ip}],
            metadata=compute_v1.Metadata(
                items=[
                    compute_v1.Items(key="user-data", value=text),
                    compute_v1.Items(key="google-logging-enabled", value="true"),
                ]
            ),
        )
        op = rc.instances().insert(project=PROJECT, zone=ZONE, instance_resource=body)
        rc.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
        wait_for(lambda: machines and machines[0].booted.is_set(), what="VM boot")
        vm = machines[0]
        assert vm.boot_error is None
        assert (vm.internal_ip, vm.kubelet_port) == (ip, 10250)

        def running() -> bool:
            status, body = _get(f"https://{ip}:10250/pods", pki, tmp_path)
            items = json.loads(body)["items"] or []
            return status == 200 and [
                (i["metadata"]["name"], i["status"]["phase"]) for i in items
            ] == [(f"sleeper-{name}", "Running")]

        wait_for(running, timeout=20, what="sleeper running on the VM")
        wait_for(lambda: shipped, what="the first log line shipped")
        entry = shipped[0]
        assert (entry["log"], entry["instance_name"], entry["zone"]) == ("sleeping", name, ZONE)
        assert entry["instance_id"] == str(rc.emulator.instance(name)["id"])
        worker = vm.kubelet.pod("default", f"sleeper-{name}") if vm.kubelet else None
        assert worker is not None
        pid = worker.app_views[0].state[1].pid

        op = rc.instances().delete(project=PROJECT, zone=ZONE, instance=name)
        rc.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)

        def process_gone() -> bool:
            try:
                Path(f"/proc/{pid}").stat()
            except FileNotFoundError:
                return True
            return False

        wait_for(process_gone, timeout=20, what="the container process killed")
