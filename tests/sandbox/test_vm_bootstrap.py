"""vnode's own bootstrap on the simulated VM: the user-data ``vnode.gce.bootstrap``
renders boots a VM whose kubelet runs the pod, the way a COS VM would boot it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.sandbox.test_vm_kubelet import FAST
from tests.sandbox.vm_harness import Client, Pki, instance, pod_item, random_ip
from tests.waiting import async_wait_for
from vnode.gce.bootstrap import BootstrapOptions, render
from vnode.sandbox.vm import SimulatedVM

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "job-abc", "namespace": "team-a", "labels": {"app": "demo"}},
    "spec": {
        "hostNetwork": True,
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "busybox:1.36",
                "command": ["/bin/sh", "-c", "echo host ip is $HOST_IP; echo done"],
                "env": [{"name": "HOST_IP", "value": "__VNODE_HOST_IP__"}],
            }
        ],
    },
}


async def test_vnode_bootstrap_boots_and_runs_the_pod(tmp_path: Path) -> None:
    name = "vnode-node-team-a-job-abc"
    ip = random_ip()
    pki = Pki.create(ip, name)
    options = BootstrapOptions(
        node_name=name,
        client_ca_pem=pki.client_ca.cert_pem.decode(),
        serving_cert_pem=pki.serving.cert_pem.decode(),
        serving_key_pem=pki.serving.key_pem.decode(),
    )
    result = render(options, POD)
    shipped: list[dict[str, Any]] = []

    async def sink(entry: dict[str, Any]) -> None:
        shipped.append(entry)

    inst = instance(name, ip, result.user_data)
    inst["metadata"]["items"] = result.items()
    vm = SimulatedVM(inst, tmp_path, timings=FAST, log_sink=sink)
    await vm.start()
    try:
        assert vm.boot_error is None, vm.boot_error
        assert vm.kubelet_port == 10250
        # The boot script put the manifest in place with the VM's IP filled in.
        installed = list((tmp_path / name / "etc/kubernetes/manifests").iterdir())
        assert len(installed) == 1 and ip in installed[0].read_text()
        async with Client(vm.kubelet_url, pki, tmp_path, cert=pki.client) as client:

            async def succeeded() -> dict[str, Any] | None:
                item = await pod_item(client, f"job-abc-{name}")
                done = item and item["status"]["phase"] == "Succeeded"
                return item if done else None

            item = await async_wait_for(succeeded, timeout=20, what="pod Succeeded")
            assert item["metadata"]["namespace"] == "team-a"
            assert item["metadata"]["labels"] == {"app": "demo"}
            status, _, body = await client.get(f"/containerLogs/team-a/job-abc-{name}/main")
            assert (status, body.decode()) == (200, f"host ip is {ip}\ndone\n")
            anonymous = Client(vm.kubelet_url, pki, tmp_path)
            async with anonymous:
                assert (await anonymous.get("/pods"))[0] == 401
        await async_wait_for(_async(lambda: len(shipped) == 2), what="two lines shipped")
        assert shipped[0]["log_name"] == "vnode_containers"
        assert shipped[0]["node_name"] == name
        assert shipped[0]["file"].startswith(f"/var/log/pods/team-a_job-abc-{name}_")
        assert json.dumps([e["log"] for e in shipped]) == json.dumps([f"host ip is {ip}", "done"])
    finally:
        await vm.stop()


def _async(fn: Any) -> Any:
    async def call() -> Any:
        return fn()

    return call
