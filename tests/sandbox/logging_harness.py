"""Shared pieces of the Cloud Logging tests: a running emulator, entries like the
VM's fluent-bit writes, and pods whose logs are read back."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vnode.sandbox.logging import LoggingEmulator
from vnode.sandbox.logging.fluentbit import entry_from_line

PROJECT = "vnode-test-project"
UID = "0f0e6c5e-7d7b-4c1e-9a51-5d0c2c1e2f10"
BASE_NS = 1_795_449_600 * 1_000_000_000  # 2026-11-23T16:00:00Z
_ids = itertools.count(1)


@pytest.fixture
async def emulator() -> AsyncIterator[LoggingEmulator]:
    em = LoggingEmulator()
    await em.start()
    try:
        yield em
    finally:
        await em.stop()


def line(
    text: str,
    ts_ns: int,
    *,
    container: str = "main",
    restart: int = 0,
    uid: str = UID,
    pod: str = "job",
    namespace: str = "default",
    stream: str = "stdout",
    node: str = "vnode-vm-1",
) -> dict[str, Any]:
    """A shipped line, as the VM simulator hands it to its log sink."""
    return {
        "timestamp_ns": ts_ns,
        "stream": stream,
        "log": text,
        "namespace": namespace,
        "pod_name": f"{pod}-{node}",
        "pod_uid": uid,
        "container_name": container,
        "restart_count": restart,
        "file": f"/var/log/pods/{namespace}_{pod}-{node}_{uid}/{container}/{restart}.log",
        "instance_id": "1234567890",
        "instance_name": node,
        "zone": "us-central1-a",
        "project": PROJECT,
    }


def write_lines(
    em: LoggingEmulator,
    texts: list[str],
    *,
    start_ns: int = BASE_NS,
    step_ns: int = 1_000_000,
    **kw: Any,
) -> list[int]:
    """Write one entry per text, ``step_ns`` apart; returns their timestamps."""
    stamps = [start_ns + i * step_ns for i in range(len(texts))]
    em.write(entry_from_line(line(t, ts, **kw)) for t, ts in zip(texts, stamps, strict=True))
    return stamps


def pod(
    *,
    container: str = "main",
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    uid: str = UID,
    created: str = "2026-11-23T15:59:00Z",
    extra_containers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An API pod whose container status says which instance runs."""
    status: dict[str, Any] = {
        "name": container,
        "restartCount": restarts,
        "state": state if state is not None else {"running": {"startedAt": created}},
        "lastState": {"terminated": last} if last else {},
    }
    containers = [{"name": c} for c in (container, *extra_containers)]
    return {
        "metadata": {
            "name": "job",
            "namespace": "default",
            "uid": uid,
            "creationTimestamp": created,
        },
        "spec": {"containers": containers},
        "status": {"phase": "Running", "containerStatuses": [status]},
    }


def client_for(endpoint: str) -> tuple[Any, Any]:
    """google-cloud-logging's async client on a plaintext channel to ``endpoint``."""
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2AsyncClient
    from google.cloud.logging_v2.services.logging_service_v2.transports import grpc_asyncio

    channel = grpc.aio.insecure_channel(endpoint)
    transport = grpc_asyncio.LoggingServiceV2GrpcAsyncIOTransport(
        channel=channel, credentials=AnonymousCredentials()
    )
    return LoggingServiceV2AsyncClient(transport=transport), channel


async def until(predicate: Any, timeout: float = 10.0, what: str = "") -> Any:  # noqa: ASYNC109
    """Wait (on the event loop) until ``predicate()`` is truthy; fail after ``timeout``."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)
