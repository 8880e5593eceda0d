"""Static pod conversion: every env source, every volume kind, tokens and what is refused."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
import yaml

from tests.refdata import REFERENCE
from vnode.errors import InvalidPod
from vnode.gce.manifest import (
    HOST_IP_PLACEHOLDER,
    POD_UID_ANNOTATION,
    ManifestOptions,
    StaticPod,
    VolumeFile,
    build_static_pod,
)
from vnode.provider import Pod
from vnode.settings import GCESettings

REFERENCE_MANIFESTS = REFERENCE / "kubelet/manifests"
UID = "0b6a4f0e-5d0c-4a43-9d1a-5a0d1e3f9c11"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


class FakeCluster:
    """A ClusterReader over dicts, counting reads and recording token requests."""

    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads: list[tuple[str, str, str]] = []
        self.token_requests: list[dict[str, Any]] = []

    def add_config_map(
        self, name: str, data: dict[str, str], *, ns: str = "default", **extra: Any
    ) -> None:
        self.config_maps[ns, name] = {
            "metadata": {"name": name, "namespace": ns},
            "data": data,
            **extra,
        }

    def add_secret(
        self, name: str, data: dict[str, str | bytes], *, ns: str = "default", type_: str = "Opaque"
    ) -> None:
        self.secrets[ns, name] = {
            "metadata": {"name": name, "namespace": ns},
            "type": type_,
            "data": {k: b64(v) for k, v in data.items()},
        }

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("configmap", namespace, name))
        return copy.deepcopy(self.config_maps.get((namespace, name)))

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("secret", namespace, name))
        return copy.deepcopy(self.secrets.get((namespace, name)))

    async def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str],
        expiration_seconds: int,
        pod: Pod | None = None,
    ) -> str:
        self.token_requests.append(
            {
                "namespace": namespace,
                "service_account": service_account,
                "audiences": audiences,
                "expiration_seconds": expiration_seconds,
                "pod_uid": pod["metadata"]["uid"] if pod else None,
            }
        )
        return f"token-{len(self.token_requests)}-for-{service_account}"


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.add_config_map("cfg", {"foo": "bar", "dollar": "a$(B)c", "bad key": "x", "1st": "y"})
    c.add_secret("creds", {"password": "s3cret", "user": "admin"})
    return c


def make_pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "job-abc",
            "namespace": "default",
            "uid": UID,
            "resourceVersion": "42",
            "labels": {"app": "demo", "job-name": "job"},
            "annotations": {
                "team": 'a "quoted"\nvalue',
                "kubectl.kubernetes.io/last-applied-configuration": "{...huge...}",
            },
            "ownerReferences": [{"kind": "Job", "name": "job", "uid": "x"}],
        },
        "spec": {
            "nodeName": "vnode",
            "serviceAccountName": "my-sa",
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "schedulerName": "default-scheduler",
            "priority": 0,
            "containers": list(containers) or [main()],
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def main(**fields: Any) -> dict[str, Any]:
    return {"name": "main", "image": "busybox", "command": ["sh", "-c", "true"], **fields}


async def build(pod: dict[str, Any], cluster: FakeCluster, **options: Any) -> StaticPod:
    return await build_static_pod(pod, cluster, ManifestOptions(**options))


def env_of(static: StaticPod, container: int = 0) -> dict[str, Any]:
    out = {}
    for var in static.manifest["spec"]["containers"][container].get("env", []):
        out[var["name"]] = var.get("value", var.get("valueFrom"))
    return out


def files_of(static: StaticPod) -> dict[str, VolumeFile]:
    return {f.path: f for f in static.files}


# -- the pod as a whole ------------------------------------------------------------------


async def test_metadata_keeps_name_namespace_labels_and_the_api_uid(cluster: FakeCluster) -> None:
    static = await build(make_pod(), cluster)
    manifest = static.manifest
    assert (manifest["apiVersion"], manifest["kind"]) == ("v1", "Pod")
    meta = manifest["metadata"]
    assert meta["name"] == "job-abc"
    assert meta["namespace"] == "default"
    assert meta["uid"] == UID
    assert meta["labels"] == {"app": "demo", "job-name": "job"}
    assert meta["annotations"][POD_UID_ANNOTATION] == UID
    assert meta["annotations"]["team"] == 'a "quoted"\nvalue'
    assert "kubectl.kubernetes.io/last-applied-configuration" not in meta["annotations"]
    assert set(meta) == {"name", "namespace", "uid", "labels", "annotations"}
    assert "status" not in manifest


async def test_api_only_fields_are_dropped_and_the_rest_kept(cluster: FakeCluster) -> None:
    container = main(
        args=["x"],
        workingDir="/w",
        ports=[{"containerPort": 8080, "protocol": "TCP"}],
        resources={"limits": {"cpu": "1"}},
        readinessProbe={"httpGet": {"path": "/", "port": 8080}},
        livenessProbe={"exec": {"command": ["true"]}},
        securityContext={"runAsUser": 1000},
        lifecycle={"preStop": {"exec": {"command": ["true"]}}},
        imagePullPolicy="IfNotPresent",
    )
    pod = make_pod(
        container,
        restartPolicy="Never",
        terminationGracePeriodSeconds=5,
        activeDeadlineSeconds=600,
        dnsPolicy="ClusterFirst",
        affinity={"nodeAffinity": {}},
        nodeSelector={"a": "b"},
        priorityClassName="high",
        readinessGates=[{"conditionType": "x"}],
        automountServiceAccountToken=False,
        overhead={"cpu": "100m"},
    )
    original = copy.deepcopy(pod)
    spec = (await build(pod, cluster)).manifest["spec"]
    for gone in (
        "nodeName",
        "serviceAccountName",
        "tolerations",
        "schedulerName",
        "priority",
        "affinity",
        "nodeSelector",
        "priorityClassName",
        "readinessGates",
        "automountServiceAccountToken",
        "overhead",
    ):
        assert gone not in spec, gone
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 5
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["hostNetwork"] is True
    kept = spec["containers"][0]
    for name in ("args", "workingDir", "resources", "readinessProbe", "livenessProbe"):
        assert kept[name] == container[name]
    assert kept["securityContext"] == {"runAsUser": 1000}
    assert kept["lifecycle"] == container["lifecycle"]
    # host networking publishes the container port on the VM
    assert kept["ports"] == [{"containerPort": 8080, "protocol": "TCP", "hostPort": 8080}]
    assert pod == original, "the API pod must not be modified"


async def test_the_cni_bridge_keeps_the_pods_own_network(cluster: FakeCluster) -> None:
    pod = make_pod(main(ports=[{"containerPort": 80, "hostPort": 8080}]))
    spec = (await build(pod, cluster, host_network=False)).manifest["spec"]
    assert "hostNetwork" not in spec
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "hostPort": 8080}]


async def test_a_port_mapping_needs_the_cni_bridge(cluster: FakeCluster) -> None:
    pod = make_pod(main(ports=[{"containerPort": 80, "hostPort": 8080}]))
    with pytest.raises(InvalidPod, match="maps hostPort 8080 to containerPort 80"):
        await build(pod, cluster)


@pytest.mark.parametrize(
    ("field", "value"),
    [("runtimeClassName", "gvisor"), ("resourceClaims", [{"name": "gpu"}])],
)
async def test_fields_that_would_change_the_pods_meaning_fail_it(
    cluster: FakeCluster, field: str, value: Any
) -> None:
    with pytest.raises(InvalidPod, match=f"spec.{field} cannot be honoured"):
        await build(make_pod(**{field: value}), cluster)


async def test_init_containers_are_converted_too(cluster: FakeCluster) -> None:
    init = {
        **main(),
        "name": "init",
        "env": [{"name": "FOO", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "foo"}}}],
    }
    spec = (await build(make_pod(initContainers=[init]), cluster)).manifest["spec"]
    assert spec["initContainers"][0]["env"] == [{"name": "FOO", "value": "bar"}]


# -- env ---------------------------------------------------------------------------------


def ref(kind: str, name: str, key: str, **extra: Any) -> dict[str, Any]:
    return {kind: {"name": name, "key": key, **extra}}


async def test_env_from_config_map_and_secret_keys(cluster: FakeCluster) -> None:
    pod = make_pod(
        main(
            env=[
                {"name": "PLAIN", "value": "$(FOO)-x"},
                {"name": "FOO", "valueFrom": ref("configMapKeyRef", "cfg", "foo")},
                {"name": "PW", "valueFrom": ref("secretKeyRef", "creds", "password")},
            ]
        )
    )
    static = await build(pod, cluster)
    assert env_of(static) == {"PLAIN": "$(FOO)-x", "FOO": "bar", "PW": "s3cret"}
    assert static.has_secret_env


async def test_resolved_values_are_protected_from_expansion(cluster: FakeCluster) -> None:
    pod = make_pod(main(env=[{"name": "D", "valueFrom": ref("configMapKeyRef", "cfg", "dollar")}]))
    static = await build(pod, cluster)
    # the VM kubelet turns $$ back into $, so the container sees a$(B)c as the real one would
    assert env_of(static) == {"D": "a$$(B)c"}
    assert not static.has_secret_env


async def test_a_missing_config_map_or_key_fails_like_the_kubelet(cluster: FakeCluster) -> None:
    pod = make_pod(main(env=[{"name": "X", "valueFrom": ref("configMapKeyRef", "nope", "foo")}]))
    with pytest.raises(InvalidPod) as caught:
        await build(pod, cluster)
    assert caught.value.message == 'configmap "nope" not found'
    assert caught.value.pod_reason == "CreateContainerConfigError"
    pod = make_pod(main(env=[{"name": "X", "valueFrom": ref("configMapKeyRef", "cfg", "nokey")}]))
    with pytest.raises(InvalidPod, match="couldn't find key nokey in ConfigMap default/cfg"):
        await build(pod, cluster)
    pod = make_pod(main(env=[{"name": "X", "valueFrom": ref("secretKeyRef", "nope", "k")}]))
    with pytest.raises(InvalidPod, match='secret "nope" not found'):
        await build(pod, cluster)
    pod = make_pod(main(env=[{"name": "X", "valueFrom": ref("secretKeyRef", "creds", "k")}]))
    with pytest.raises(InvalidPod, match="couldn't find key k in Secret default/creds"):
        await build(pod, cluster)


async def test_optional_refs_leave_the_variable_out(cluster: FakeCluster) -> None:
    pod = make_pod(
        main(
            env=[
                {"name": "A", "valueFrom": ref("configMapKeyRef", "nope", "x", optional=True)},
                {"name": "B", "valueFrom": ref("configMapKeyRef", "cfg", "x", optional=True)},
                {"name": "C", "valueFrom": ref("secretKeyRef", "nope", "x", optional=True)},
                {"name": "D", "valueFrom": ref("secretKeyRef", "creds", "x", optional=True)},
                {"name": "E", "value": "e"},
            ]
        )
    )
    static = await build(pod, cluster)
    assert env_of(static) == {"E": "e"}
    assert not static.has_secret_env


async def test_env_from_with_prefix_skips_invalid_names_with_a_warning(
    cluster: FakeCluster,
) -> None:
    pod = make_pod(
        main(
            envFrom=[
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "creds"}, "prefix": "DB_"},
            ],
            env=[{"name": "foo", "value": "override"}],
        )
    )
    static = await build(pod, cluster)
    names = [v["name"] for v in static.manifest["spec"]["containers"][0]["env"]]
    # envFrom first (each source's keys sorted), then env, so later entries win as in the kubelet
    assert names == ["dollar", "foo", "DB_password", "DB_user", "foo"]
    assert static.manifest["spec"]["containers"][0]["env"][-1] == {
        "name": "foo",
        "value": "override",
    }
    assert "envFrom" not in static.manifest["spec"]["containers"][0]
    assert env_of(static)["dollar"] == "a$$(B)c"
    assert static.has_secret_env
    assert static.warnings == (
        "Keys [1st, bad key] from the EnvFrom configMap default/cfg were skipped since they "
        "are considered invalid environment variable names.",
    )


async def test_env_from_a_missing_source(cluster: FakeCluster) -> None:
    pod = make_pod(main(envFrom=[{"configMapRef": {"name": "nope", "optional": True}}]))
    assert env_of(await build(pod, cluster)) == {}
    pod = make_pod(main(envFrom=[{"secretRef": {"name": "nope"}}]))
    with pytest.raises(InvalidPod, match='secret "nope" not found'):
        await build(pod, cluster)


def field_ref(path: str) -> dict[str, Any]:
    return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}


async def test_field_refs_resolve_to_the_api_pod(cluster: FakeCluster) -> None:
    paths = {
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "APP": "metadata.labels['app']",
        "NOLABEL": "metadata.labels['missing']",
        "TEAM": "metadata.annotations['team']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "HOST_IP": "status.hostIP",
        "POD_IP": "status.podIP",
        "POD_IPS": "status.podIPs",
    }
    pod = make_pod(main(env=[{"name": k, "valueFrom": field_ref(v)} for k, v in paths.items()]))
    static = await build(pod, cluster)
    assert env_of(static) == {
        "NAME": "job-abc",
        "NS": "default",
        "UID": UID,
        "APP": "demo",
        "NOLABEL": "",
        "TEAM": 'a "quoted"\nvalue',
        "NODE": "vnode",
        "SA": "my-sa",
        "HOST_IP": HOST_IP_PLACEHOLDER,
        "POD_IP": HOST_IP_PLACEHOLDER,
        "POD_IPS": HOST_IP_PLACEHOLDER,
    }
    assert static.needs_host_ip


async def test_on_the_cni_bridge_the_vm_kubelet_resolves_the_pod_ip(cluster: FakeCluster) -> None:
    pod = make_pod(
        main(
            env=[
                {"name": "IP", "valueFrom": field_ref("status.podIP")},
                {"name": "H", "valueFrom": field_ref("status.hostIP")},
            ]
        )
    )
    static = await build(pod, cluster, host_network=False)
    assert env_of(static) == {"IP": field_ref("status.podIP"), "H": HOST_IP_PLACEHOLDER}
    no_host_ip = make_pod(main(env=[{"name": "IP", "valueFrom": field_ref("status.podIP")}]))
    assert not (await build(no_host_ip, cluster, host_network=False)).needs_host_ip


async def test_unknown_field_paths_fail(cluster: FakeCluster) -> None:
    pod = make_pod(main(env=[{"name": "X", "valueFrom": field_ref("metadata.labels")}]))
    with pytest.raises(InvalidPod, match=r"fieldPath 'metadata\.labels' is not supported in env"):
        await build(pod, cluster)


def resource_ref(
    resource: str, divisor: str | None = None, container: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"resource": resource}
    if divisor:
        out["divisor"] = divisor
    if container:
        out["containerName"] = container
    return {"resourceFieldRef": out}


async def test_resource_field_refs_with_divisors(cluster: FakeCluster) -> None:
    side = {**main(), "name": "side", "resources": {"limits": {"memory": "256Mi"}}}
    env = {
        "CPU_M": resource_ref("limits.cpu", "1m"),
        "CPU": resource_ref("requests.cpu"),
        "MEM_MI": resource_ref("limits.memory", "1Mi"),
        "MEM": resource_ref("requests.memory"),
        "NO_REQ": resource_ref("requests.ephemeral-storage"),
        "SIDE": resource_ref("limits.memory", "1Mi", "side"),
    }
    resources = {
        "requests": {"cpu": "250m", "memory": "1000"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }
    pod = make_pod(
        main(env=[{"name": k, "valueFrom": v} for k, v in env.items()], resources=resources), side
    )
    assert env_of(await build(pod, cluster)) == {
        "CPU_M": "500",
        "CPU": "1",
        "MEM_MI": "1024",
        "MEM": "1000",
        "NO_REQ": "0",
        "SIDE": "256",
    }


async def test_an_unset_limit_reads_as_allocatable(cluster: FakeCluster) -> None:
    env = [
        {"name": "CPU", "valueFrom": resource_ref("limits.cpu")},
        {"name": "MEM", "valueFrom": resource_ref("limits.memory", "1Mi")},
    ]
    pod = make_pod(main(env=env))
    static = await build(pod, cluster, allocatable={"cpu": "2", "memory": "8Gi"})
    assert env_of(static) == {"CPU": "2", "MEM": "8192"}
    # without the VM's shape the VM kubelet resolves it
    static = await build(pod, cluster)
    assert env_of(static) == {
        "CPU": resource_ref("limits.cpu"),
        "MEM": resource_ref("limits.memory", "1Mi"),
    }


async def test_the_api_server_address_can_be_given_to_containers(cluster: FakeCluster) -> None:
    pod = make_pod(main(env=[{"name": "KUBERNETES_SERVICE_PORT", "value": "8443"}]))
    static = await build(pod, cluster, kubernetes_service=("10.0.0.2", 443))
    env = static.manifest["spec"]["containers"][0]["env"]
    assert env[:2] == [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "10.0.0.2"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": "443"},
    ]
    # the pod's own value comes later and wins
    assert env_of(static)["KUBERNETES_SERVICE_PORT"] == "8443"


# -- volumes -------------------------------------------------------------------------------


def with_volume(volume: dict[str, Any], mount: str = "/mnt/v", **spec: Any) -> dict[str, Any]:
    container = main(volumeMounts=[{"name": volume["name"], "mountPath": mount}])
    return make_pod(container, volumes=[volume], **spec)


async def test_config_map_volume_becomes_files_and_a_read_only_host_path(
    cluster: FakeCluster,
) -> None:
    cluster.add_config_map("bin", {"text": "hello"}, binaryData={"blob": b64(b"\x00\x01")})
    static = await build(with_volume({"name": "cfg", "configMap": {"name": "bin"}}), cluster)
    spec = static.manifest["spec"]
    assert spec["volumes"] == [
        {
            "name": "cfg",
            "hostPath": {"path": "/var/lib/vnode/volumes/cfg", "type": "DirectoryOrCreate"},
        }
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "cfg", "mountPath": "/mnt/v", "readOnly": True}
    ]
    assert files_of(static) == {
        "/var/lib/vnode/volumes/cfg/blob": VolumeFile(
            "/var/lib/vnode/volumes/cfg/blob", b"\x00\x01", 0o644
        ),
        "/var/lib/vnode/volumes/cfg/text": VolumeFile(
            "/var/lib/vnode/volumes/cfg/text", b"hello", 0o644
        ),
    }


async def test_config_map_items_modes_and_default_mode(cluster: FakeCluster) -> None:
    volume = {
        "name": "cfg",
        "configMap": {
            "name": "cfg",
            "defaultMode": 0o400,
            "items": [
                {"key": "foo", "path": "conf/foo.txt"},
                {"key": "dollar", "path": "d", "mode": 0o755},
            ],
        },
    }
    static = await build(with_volume(volume), cluster, volumes_dir="/vol")
    assert {(f.path, f.content, f.mode) for f in static.files} == {
        ("/vol/cfg/conf/foo.txt", b"bar", 0o400),
        ("/vol/cfg/d", b"a$(B)c", 0o755),
    }


async def test_config_map_volume_errors_and_optional(cluster: FakeCluster) -> None:
    with pytest.raises(InvalidPod) as caught:
        await build(with_volume({"name": "cfg", "configMap": {"name": "nope"}}), cluster)
    assert (
        caught.value.message
        == 'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found'
    )
    volume = {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "nokey", "path": "x"}]}}
    with pytest.raises(InvalidPod, match="configmap references non-existent config key: nokey"):
        await build(with_volume(volume), cluster)
    # optional: an empty directory, still mounted
    static = await build(
        with_volume({"name": "cfg", "configMap": {"name": "nope", "optional": True}}), cluster
    )
    assert static.files == ()
    assert static.manifest["spec"]["volumes"][0]["hostPath"]["type"] == "DirectoryOrCreate"
    volume = {
        "name": "cfg",
        "configMap": {
            "name": "cfg",
            "optional": True,
            "items": [{"key": "nokey", "path": "x"}, {"key": "foo", "path": "f"}],
        },
    }
    assert [f.content for f in (await build(with_volume(volume), cluster)).files] == [b"bar"]


async def test_item_paths_cannot_leave_the_volume(cluster: FakeCluster) -> None:
    volume = {
        "name": "cfg",
        "configMap": {"name": "cfg", "items": [{"key": "foo", "path": "../../etc/passwd"}]},
    }
    with pytest.raises(InvalidPod, match="must be relative"):
        await build(with_volume(volume), cluster)


async def test_secret_volume_files_are_sensitive_and_stay_out_of_the_manifest(
    cluster: FakeCluster,
) -> None:
    volume = {
        "name": "sec",
        "secret": {
            "secretName": "creds",
            "items": [{"key": "password", "path": "pw", "mode": 0o400}],
        },
    }
    static = await build(with_volume(volume), cluster)
    assert files_of(static) == {
        "/run/vnode/volumes/sec/pw": VolumeFile(
            "/run/vnode/volumes/sec/pw", b"s3cret", 0o400, sensitive=True
        )
    }
    # on the VM's tmpfs, like the kubelet's own secret volumes
    assert static.manifest["spec"]["volumes"][0]["hostPath"]["path"] == "/run/vnode/volumes/sec"
    assert "s3cret" not in json.dumps(static.manifest)
    assert b64("s3cret") not in json.dumps(static.manifest)
    assert not static.has_secret_env
    with pytest.raises(InvalidPod, match='volume "sec" : secret "nope" not found'):
        await build(with_volume({"name": "sec", "secret": {"secretName": "nope"}}), cluster)
    volume = {
        "name": "sec",
        "secret": {"secretName": "creds", "items": [{"key": "k", "path": "k"}]},
    }
    with pytest.raises(InvalidPod, match="secret references non-existent secret key: k"):
        await build(with_volume(volume), cluster)
    static = await build(
        with_volume({"name": "sec", "secret": {"secretName": "nope", "optional": True}}), cluster
    )
    assert static.files == ()


async def test_fs_group_owns_the_files_and_makes_them_group_readable(cluster: FakeCluster) -> None:
    volume = {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}}
    static = await build(with_volume(volume, securityContext={"fsGroup": 2000}), cluster)
    assert {(f.mode, f.gid) for f in static.files} == {(0o440, 2000)}


async def test_downward_api_volume(cluster: FakeCluster) -> None:
    volume = {
        "name": "info",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                {
                    "path": "mem",
                    "mode": 0o600,
                    "resourceFieldRef": {
                        "containerName": "main",
                        "resource": "limits.memory",
                        "divisor": "1Mi",
                    },
                },
            ]
        },
    }
    pod = with_volume(volume)
    pod["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi"}}
    static = await build(pod, cluster)
    got = {f.path.rsplit("/", 1)[1]: (f.content, f.mode) for f in static.files}
    assert got == {
        "labels": (b'app="demo"\njob-name="job"', 0o644),
        "annotations": (
            b'kubectl.kubernetes.io/last-applied-configuration="{...huge...}"\n'
            b'team="a \\"quoted\\"\\nvalue"',
            0o644,
        ),
        "name": (b"job-abc", 0o644),
        "app": (b"demo", 0o644),
        "mem": (b"64", 0o600),
    }
    assert (
        static.manifest["spec"]["volumes"][0]["hostPath"]["path"] == "/var/lib/vnode/volumes/info"
    )


async def test_downward_api_volume_refuses_status_fields(cluster: FakeCluster) -> None:
    volume = {
        "name": "info",
        "downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]},
    }
    with pytest.raises(InvalidPod, match="not supported in a downwardAPI volume"):
        await build(with_volume(volume), cluster)


def kube_api_access(expiration: int = 3607) -> dict[str, Any]:
    """The projected volume the ServiceAccount admission plugin adds."""
    return {
        "name": "kube-api-access-x7k2p",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": expiration, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


async def test_the_default_token_volume_gets_a_minted_token(cluster: FakeCluster) -> None:
    cluster.add_config_map("kube-root-ca.crt", {"ca.crt": "-----BEGIN CERTIFICATE-----\n"})
    pod = with_volume(kube_api_access(), mount="/var/run/secrets/kubernetes.io/serviceaccount")
    static = await build(pod, cluster)
    base = "/run/vnode/volumes/kube-api-access-x7k2p"
    files = files_of(static)
    assert files[f"{base}/token"] == VolumeFile(
        f"{base}/token", b"token-1-for-my-sa", 0o644, sensitive=True
    )
    assert files[f"{base}/ca.crt"].content == b"-----BEGIN CERTIFICATE-----\n"
    assert files[f"{base}/namespace"].content == b"default"
    assert not files[f"{base}/namespace"].sensitive
    assert cluster.token_requests == [
        {
            "namespace": "default",
            "service_account": "my-sa",
            "audiences": [],
            "expiration_seconds": 3607,
            "pod_uid": UID,
        }
    ]
    mount = static.manifest["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {
        "name": "kube-api-access-x7k2p",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    assert "token-1" not in json.dumps(static.manifest)


async def test_a_projected_token_with_audience_and_other_sources(cluster: FakeCluster) -> None:
    volume = {
        "name": "tok",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "path": "vault/token",
                        "audience": "vault",
                        "expirationSeconds": 7200,
                    }
                },
                {"secret": {"name": "creds", "items": [{"key": "user", "path": "user"}]}},
                {
                    "configMap": {
                        "name": "cfg",
                        "items": [{"key": "foo", "path": "foo", "mode": 0o600}],
                    }
                },
            ]
        },
    }
    pod = with_volume(volume)
    del pod["spec"]["serviceAccountName"]
    static = await build(pod, cluster)
    assert {
        (f.path.rsplit("tok/", 1)[1], f.content, f.mode, f.sensitive) for f in static.files
    } == {
        ("vault/token", b"token-1-for-default", 0o644, True),
        ("user", b"admin", 0o644, True),
        ("foo", b"bar", 0o600, False),
    }
    assert cluster.token_requests[0]["audiences"] == ["vault"]
    assert cluster.token_requests[0]["expiration_seconds"] == 7200


async def test_projected_sources_vnode_cannot_serve_fail(cluster: FakeCluster) -> None:
    volume = {
        "name": "b",
        "projected": {"sources": [{"clusterTrustBundle": {"signerName": "x", "path": "b"}}]},
    }
    with pytest.raises(InvalidPod, match="projected source \\['clusterTrustBundle'\\]"):
        await build(with_volume(volume), cluster)


async def test_with_tokens_off_the_default_volume_and_its_mounts_go(cluster: FakeCluster) -> None:
    cluster.add_config_map("kube-root-ca.crt", {"ca.crt": "x"})
    pod = make_pod(
        main(
            volumeMounts=[
                {
                    "name": "kube-api-access-x7k2p",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                },
                {"name": "scratch", "mountPath": "/tmp"},
            ]
        ),
        volumes=[kube_api_access(), {"name": "scratch", "emptyDir": {}}],
    )
    static = await build(pod, cluster, service_account_tokens=False)
    assert static.manifest["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    assert static.manifest["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "scratch", "mountPath": "/tmp"}
    ]
    assert static.files == ()
    assert cluster.token_requests == []
    volume = {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}
    with pytest.raises(InvalidPod, match='volume "tok" asks for a service-account token'):
        await build(with_volume(volume), cluster, service_account_tokens=False)


async def test_empty_dir_is_kept(cluster: FakeCluster) -> None:
    volume = {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
    static = await build(with_volume(volume), cluster)
    assert static.manifest["spec"]["volumes"] == [volume]
    assert static.manifest["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "scratch", "mountPath": "/mnt/v"}
    ]


async def test_host_paths_only_under_the_allowed_list(cluster: FakeCluster) -> None:
    allowed = ("/var/lib/nvidia", "/dev/fuse")
    for path in ("/var/lib/nvidia", "/var/lib/nvidia/lib64", "/dev/fuse"):
        volume = {"name": "h", "hostPath": {"path": path}}
        static = await build(with_volume(volume), cluster, allowed_host_paths=allowed)
        assert static.manifest["spec"]["volumes"] == [volume]
    for path in ("/", "/etc", "/var/lib/nvidia-evil", "/var/lib/nvidia/../../../etc"):
        with pytest.raises(InvalidPod, match=f"hostPath '{path}' is not available on a vnode VM"):
            await build(
                with_volume({"name": "h", "hostPath": {"path": path}}),
                cluster,
                allowed_host_paths=allowed,
            )
    with pytest.raises(InvalidPod, match="allowed host paths: none are allowed"):
        await build(with_volume({"name": "h", "hostPath": {"path": "/tmp"}}), cluster)


@pytest.mark.parametrize(
    ("kind", "source"),
    [
        ("persistentVolumeClaim", {"claimName": "data"}),
        ("nfs", {"server": "nfs", "path": "/"}),
        ("csi", {"driver": "x"}),
        ("ephemeral", {"volumeClaimTemplate": {}}),
        ("gitRepo", {"repository": "https://example.invalid/r.git"}),
        ("gcePersistentDisk", {"pdName": "d"}),
        ("image", {"reference": "busybox"}),
    ],
)
async def test_unsupported_volumes_fail_the_pod_naming_the_volume(
    cluster: FakeCluster, kind: str, source: dict[str, Any]
) -> None:
    with pytest.raises(InvalidPod) as caught:
        await build(with_volume({"name": "data", kind: source}), cluster)
    assert caught.value.message.startswith(
        f'volume "data" is a {kind} volume, which a vnode VM cannot mount'
    )
    assert caught.value.pod_reason == "FailedMount"


# -- image pull secrets ------------------------------------------------------------------------


async def test_pull_secrets_become_the_kubelets_credentials_file(cluster: FakeCluster) -> None:
    auth = {"auths": {"registry.example": {"auth": b64("u:p")}}}
    cluster.add_secret(
        "pull", {".dockerconfigjson": json.dumps(auth)}, type_="kubernetes.io/dockerconfigjson"
    )
    cluster.add_secret("legacy", {".dockercfg": json.dumps({"old.example": {"auth": b64("a:b")}})})
    pod = make_pod(imagePullSecrets=[{"name": "pull"}, {"name": "legacy"}, {"name": "missing"}])
    static = await build(pod, cluster)
    assert "imagePullSecrets" not in static.manifest["spec"]
    (credentials,) = static.files
    assert (credentials.path, credentials.mode, credentials.sensitive) == (
        "/var/lib/kubelet/config.json",
        0o600,
        True,
    )
    assert json.loads(credentials.content) == {
        "auths": {"registry.example": {"auth": b64("u:p")}, "old.example": {"auth": b64("a:b")}}
    }
    assert static.warnings == (
        "Unable to retrieve some image pull secrets (missing); attempting to pull the image "
        "may not succeed.",
    )


# -- reads and options ---------------------------------------------------------------------------


async def test_each_object_is_read_once(cluster: FakeCluster) -> None:
    env = [{"name": n, "valueFrom": ref("configMapKeyRef", "cfg", "foo")} for n in ("A", "B")]
    pod = make_pod(
        main(env=env, envFrom=[{"configMapRef": {"name": "cfg"}}]),
        volumes=[{"name": "v", "configMap": {"name": "cfg"}}],
    )
    await build(pod, cluster)
    assert cluster.reads == [("configmap", "default", "cfg")]


def test_options_from_settings() -> None:
    settings = GCESettings(
        cni_bridge=True, allowed_host_paths=("/data",), service_account_tokens=False
    )
    options = ManifestOptions.from_settings(settings, allocatable={"cpu": "4"})
    assert options.host_network is False
    assert options.allowed_host_paths == ("/data",)
    assert options.service_account_tokens is False
    assert options.allocatable == {"cpu": "4"}


# -- the reference kubelet's case f --------------------------------------------------------------


@pytest.mark.parametrize("case", ["cmvol", "secretvol", "sa", "projtoken", "cmenv"])
async def test_what_the_standalone_kubelet_cannot_run_is_resolved(
    cluster: FakeCluster, case: str
) -> None:
    """shared/reference/kubelet case f: these manifests hang or fail on a standalone kubelet."""
    pod = yaml.safe_load((REFERENCE_MANIFESTS / f"{case}.yaml").read_text())
    pod["metadata"]["uid"] = UID
    cluster.add_config_map("my-config", {"foo": "from-config"})
    cluster.add_secret("my-secret", {"k": "v"})
    static = await build(pod, cluster)
    text = json.dumps(static.manifest)
    for unsupported in (
        "configMap",
        "secretName",
        "projected",
        "serviceAccountToken",
        "configMapKeyRef",
        "serviceAccountName",
    ):
        assert unsupported not in text, unsupported
    for volume in static.manifest["spec"].get("volumes", []):
        assert set(volume) == {"name", "hostPath"}
    if case == "cmenv":
        assert env_of(static) == {"FOO": "from-config"}
    if case in ("cmvol", "secretvol", "projtoken"):
        assert static.files


async def test_annotations_file_quotes_like_go(cluster: FakeCluster) -> None:
    volume = {
        "name": "info",
        "downwardAPI": {
            "items": [{"path": "a", "fieldRef": {"fieldPath": "metadata.annotations"}}]
        },
    }
    pod = with_volume(volume)
    pod["metadata"]["annotations"] = {"b": "tab\there", "a": "caf\u00e9 \x01\x7f\\"}
    (file,) = (await build(pod, cluster)).files
    assert file.content == 'a="café \\x01\\x7f\\\\"\nb="tab\\there"'.encode()
