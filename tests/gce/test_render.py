"""`vnode render` underneath: the real provider against offline stand-ins, and proof that
what it prints is what the provider really sends to Compute Engine."""

from __future__ import annotations

import copy
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sandbox.compute_harness import PROJECT, RunningCompute, running_compute
from vnode.errors import InvalidPod, PodTooLarge
from vnode.gce import naming
from vnode.gce.bootstrap import STAGED_MANIFEST_PATH, decode_write_file
from vnode.gce.instances import RetryPolicy
from vnode.gce.kubelets import KubeletClient
from vnode.gce.machines import choose_machine
from vnode.gce.provider import GCEProvider
from vnode.gce.render import (
    PLACEHOLDER_TOKEN,
    PLACEHOLDER_UID,
    OfflineCluster,
    PlaceholderPKI,
    render_pod,
)
from vnode.provider import ProviderContext
from vnode.sandbox.compute.catalogue import to_resource, zone_shapes
from vnode.settings import GCESettings

ZONE = "us-central1-a"
SETTINGS_KW: dict[str, Any] = {"project": PROJECT, "zones": (ZONE,)}


def catalogue(zone: str) -> list[dict[str, Any]]:
    return [to_resource(s, zone, "https://compute.test", PROJECT) for s in zone_shapes(zone)]


def settings(**kw: Any) -> GCESettings:
    return GCESettings(**{**SETTINGS_KW, **kw})


def pod(name: str = "hello", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "echo hi"],
                "resources": {"requests": {"cpu": "2", "memory": "3Gi"}},
            }
        ],
    }
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def files_of(user_data: str) -> dict[str, bytes]:
    config = yaml.safe_load(user_data)
    return {e["path"]: decode_write_file(e) for e in config["write_files"]}


def items(instance: dict[str, Any]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in instance["metadata"]["items"]}


async def test_a_simple_pod_gets_its_machine_labels_and_cloud_init() -> None:
    s = settings()
    out = await render_pod(pod(), s, node_name="vnode-a", machine_types=catalogue)
    vm = naming.vm_name(PLACEHOLDER_UID)
    chosen = choose_machine(pod(), catalogue(ZONE), s, zone=ZONE)
    body = out.instance
    assert (out.zone, body["name"]) == (ZONE, vm)
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/{chosen.machine_type}"
    assert body["labels"] == naming.pod_labels("vnode-a", "default", "hello", PLACEHOLDER_UID)
    assert body["scheduling"]["automaticRestart"] is False
    assert body["disks"][0]["initializeParams"]["diskSizeGb"] == str(chosen.boot_disk_gb)
    assert out.request_id == naming.request_id(PLACEHOLDER_UID, ZONE)
    # The REST form Compute receives: camelCase, no empty defaults.
    assert "networkInterfaces" in body and "guestAccelerators" not in body
    assert out.user_data == items(body)["user-data"]
    assert out.user_data.startswith("#cloud-config\n")
    manifest = yaml.safe_load(files_of(out.user_data)[STAGED_MANIFEST_PATH])
    assert manifest["metadata"]["name"] == "hello"
    assert manifest["spec"]["containers"][0]["command"] == ["sh", "-c", "echo hi"]
    assert any("pod uid" in p for p in out.placeholders)
    assert "PLACEHOLDER: " in out.user_data  # certificates are marked, never real


async def test_a_gpu_pod_gets_a_gpu_machine_that_cannot_migrate() -> None:
    gpu = pod("trainer")
    gpu["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    out = await render_pod(gpu, settings(), node_name="vnode", machine_types=catalogue)
    assert out.instance["machineType"].startswith(f"zones/{ZONE}/machineTypes/g2-")
    assert out.instance["scheduling"]["onHostMaintenance"] == "TERMINATE"


async def test_a_pod_with_a_pvc_fails_as_it_would_on_the_node() -> None:
    claimed = pod(
        "claimed", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]
    )
    with pytest.raises(InvalidPod, match='volume "data" is a persistentVolumeClaim volume'):
        await render_pod(claimed, settings(), node_name="vnode", machine_types=catalogue)


async def test_a_pod_too_large_for_every_machine() -> None:
    huge = pod("huge")
    huge["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "5000"}}
    with pytest.raises(PodTooLarge):
        await render_pod(huge, settings(), node_name="vnode", machine_types=catalogue)


async def test_configmaps_and_secrets_come_from_the_given_objects_only() -> None:
    env_pod = pod("configured")
    env_pod["spec"]["containers"][0]["env"] = [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}
    ]
    config = {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "fast"}}
    out = await render_pod(
        env_pod, settings(), node_name="vnode", machine_types=catalogue,
        cluster=OfflineCluster([config]),
    )  # fmt: skip
    manifest = yaml.safe_load(files_of(out.user_data)[STAGED_MANIFEST_PATH])
    assert manifest["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "fast"}]
    with pytest.raises(InvalidPod, match='configmap "cfg" not found'):
        await render_pod(env_pod, settings(), node_name="vnode", machine_types=catalogue)


async def test_a_token_volume_gets_the_placeholder_token() -> None:
    projected = pod(
        "tokened",
        volumes=[{"name": "tok", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault"}}]}}],
    )  # fmt: skip
    projected["spec"]["containers"][0]["volumeMounts"] = [{"name": "tok", "mountPath": "/t"}]
    out = await render_pod(projected, settings(), node_name="vnode", machine_types=catalogue)
    assert PLACEHOLDER_TOKEN.encode() in b"".join(files_of(out.user_data).values())
    assert any("service-account token for default/default" in p for p in out.placeholders)


async def test_the_file_pod_is_not_changed_and_a_status_is_ignored() -> None:
    ran = pod()
    ran["metadata"]["uid"] = "11111111-2222-4333-8444-555555555555"
    ran["status"] = {"phase": "Running"}
    before = copy.deepcopy(ran)
    out = await render_pod(ran, settings(), node_name="vnode", machine_types=catalogue)
    assert ran == before
    assert out.instance["name"] == naming.vm_name("11111111-2222-4333-8444-555555555555")
    assert not any("pod uid" in p for p in out.placeholders)


# -- what render prints is what the provider sends --------------------------------------


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    with running_compute(tmp_path / "compute") as rc:  # instances without machines
        yield rc


class NoCluster:
    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def request_token(self, *args: Any, **kwargs: Any) -> str:
        return PLACEHOLDER_TOKEN


async def test_render_prints_exactly_what_the_provider_inserts(compute: RunningCompute) -> None:
    """The real provider, given the same placeholder certificates, creates a VM in the
    Compute emulator whose metadata, labels, scheduling and shape are what render shows."""
    the_pod = pod("same")
    the_pod["metadata"]["uid"] = "abcdef00-1111-4222-8333-444444444444"
    the_pod["metadata"]["namespace"] = "team"
    s = settings(compute_endpoint=compute.endpoint)
    shown = await render_pod(the_pod, s, node_name="vnode-x", machine_types=catalogue)

    provider = GCEProvider(
        s,
        retry=RetryPolicy(attempts=3, deadline=10.0, base=0.01, cap=0.05),
        pki=PlaceholderPKI(),
        kubelets=KubeletClient(ssl.create_default_context()),
        accept_wait=60.0,  # the insert finishes within create_pod, however slow the machine
    )
    await provider.start(ProviderContext("vnode-x", NoCluster(), lambda *a: None))
    try:
        await provider.create_pod(the_pod)  # type: ignore[arg-type]
    finally:
        await provider.stop()
    real = compute.emulator.instance(shown.instance["name"], ZONE)
    assert real is not None
    assert items(real) == items(shown.instance)
    assert real["labels"] == shown.instance["labels"]
    assert real["machineType"].endswith(shown.instance["machineType"])
    for key in ("provisioningModel", "onHostMaintenance", "automaticRestart",
                "instanceTerminationAction"):  # fmt: skip
        assert real["scheduling"].get(key) == shown.instance["scheduling"].get(key), key
    assert real["tags"]["items"] == shown.instance["tags"]["items"]
    # Compute resolves the "default" service account to its email; the scopes stay.
    assert [a["scopes"] for a in real["serviceAccounts"]] == [
        a["scopes"] for a in shown.instance["serviceAccounts"]
    ]
