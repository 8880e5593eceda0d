"""``vnode sandbox`` runs the logging emulator beside Compute and hands its endpoint to
``vnode run`` through ``sandbox.env``; the simulated VMs ship into it."""

from __future__ import annotations

from pathlib import Path

from tests.sandbox.logging_harness import line
from vnode.gce.logs import CloudLogs, CloudLogsConfig
from vnode.sandbox.runner import Sandbox


async def test_sandbox_env_names_the_logging_endpoint(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "state", kube=False)
    env = await sandbox.start()
    try:
        endpoint = env["VNODE_LOGGING_ENDPOINT"]
        assert endpoint == sandbox.logging.endpoint and endpoint.startswith("127.0.0.1:")
        assert (
            f"VNODE_LOGGING_ENDPOINT={endpoint}\n" in (tmp_path / "state/sandbox.env").read_text()
        )
        # What a VM's sink writes can be read back through that endpoint.
        await sandbox.logging.vm_sink()(line("hi", 1_795_449_600 * 10**9) | {"project": "p1"})
        reader = CloudLogs(CloudLogsConfig(project="p1", endpoint=endpoint))
        try:
            page, token = await reader.list_page("", descending=False, page_size=10)
        finally:
            await reader.close()
        assert [x.text for x in page] == ["hi"] and token == ""
    finally:
        await sandbox.stop()
