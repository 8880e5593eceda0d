"""A simulated COS VM ships its container lines to the logging emulator, and vnode's
reader gives back from Cloud Logging what the VM's kubelet answers live."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from tests.sandbox.logging_harness import emulator, until
from tests.sandbox.test_vm_kubelet import FAST
from tests.sandbox.vm_harness import Client, Pki, instance, random_ip, user_data
from vnode.clock import rfc3339
from vnode.gce import bootstrap
from vnode.gce.logs import CloudLogs, CloudLogsConfig
from vnode.provider import LogOptions
from vnode.sandbox.logging import LoggingEmulator
from vnode.sandbox.vm import SimulatedVM

__all__ = ["emulator"]  # the fixture, re-exported for pytest

NAME = "vnode-logs-vm"
UID = "5b1d6a0e-2f0c-4d8e-a4b7-0c5e1f9d2a33"
MANIFEST = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: talk, namespace: default, uid: {UID}}}
spec:
  hostNetwork: true
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [/bin/sh, -c, 'echo one; echo "two (stderr)" >&2; echo three']
"""


def api_pod(status: dict[str, Any]) -> dict[str, Any]:
    created = rfc3339(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    return {
        "metadata": {
            "name": "talk",
            "namespace": "default",
            "uid": UID,
            "creationTimestamp": created,
        },
        "spec": {"containers": [{"name": "main"}]},
        "status": status,
    }


async def test_archived_logs_match_the_live_kubelet(
    tmp_path: Path, emulator: LoggingEmulator
) -> None:
    ip = random_ip()
    pki = Pki.create(ip, NAME)
    text = user_data(pki, hostname=NAME, manifests={"talk.yaml": MANIFEST})
    vm = SimulatedVM(
        instance(NAME, ip, text, **{"google-logging-enabled": "true"}),
        tmp_path / "vms",
        timings=FAST,
        log_sink=emulator.vm_sink(),
    )
    await vm.start()
    reader = CloudLogs(CloudLogsConfig(project="vnode-test", endpoint=emulator.endpoint))
    try:
        assert vm.boot_error is None, vm.boot_error
        await until(lambda: len(emulator.entries()) == 3, 20, "three shipped lines")
        entry = emulator.entries()[0]
        assert entry.labels[bootstrap.LABEL_POD] == "talk"
        assert entry.labels[bootstrap.LABEL_POD_UID] == UID
        assert entry.resource.labels["instance_id"] == vm.instance["id"]
        async with Client(vm.kubelet_url, pki, tmp_path, cert=pki.client) as client:
            path = f"/containerLogs/default/talk-{NAME}/main"
            live = {q: (await client.get(path + q))[2] for q in
                    ("", "?timestamps=true", "?tailLines=2", "?limitBytes=6")}  # fmt: skip
        # stdout and stderr are read apart, so their relative order may vary; the
        # timestamps order the archive the same way as the file.
        assert sorted(live[""].decode().splitlines()) == ["one", "three", "two (stderr)"]
        finished = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        pod = api_pod({"containerStatuses": [{"name": "main", "restartCount": 0,
                                              "state": finished}]})  # fmt: skip

        async def archived(**options: Any) -> bytes:
            stream = reader.read_logs(pod, LogOptions("main", **options))  # type: ignore[arg-type]
            return b"".join([c async for c in stream])

        assert await archived() == live[""]
        assert await archived(timestamps=True) == live["?timestamps=true"]
        assert await archived(tail_lines=2) == live["?tailLines=2"]
        assert await archived(limit_bytes=6) == live["?limitBytes=6"]
    finally:
        await reader.close()
        await vm.stop()
