"""The Helm chart: it lints, renders, keeps least privilege, and speaks `vnode run`'s language.

Rendering and linting go through helm-python-sdk (Helm's own Go engine, no helm binary),
so what is asserted here is what `helm template` / `helm install` would produce. The
container's arguments are fed to vnode's own parser, so a flag the chart passes that
vnode does not know (or reads differently) fails here, not in a user's cluster.
"""

from __future__ import annotations

import base64
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from vnode import cli
from vnode.gce.pki import VnodePKI
from vnode.settings import Settings, Taint, validate

CHART = Path(__file__).resolve().parents[2] / "charts" / "vnode"
RELEASE = "vnode"
NAMESPACE = "vnode-system"
DEFAULT_TAINT = "virtual-kubelet.io/provider=gce:NoSchedule"

# Values that switch on every branch of the templates.
FULL: dict[str, Any] = {
    "logLevel": "debug",
    "serviceAccount": {"gcpServiceAccount": "vnode@my-project.iam.gserviceaccount.com"},
    "node": {
        "name": "burst-1",
        "taints": [
            {"key": "virtual-kubelet.io/provider", "value": "gce", "effect": "NoSchedule"},
            {"key": "example.com/batch", "effect": "NoExecute"},
        ],
        "labels": {"team": "ml", "example.com/tier": "batch"},
        "capacity": {"cpu": 64, "memory": "256Gi", "nvidia.com/gpu": "8"},
        "region": "us-central1",
    },
    "gce": {
        "project": "my-project",
        "zones": ["us-central1-a", "us-central1-b"],
        "machineFamilies": ["n2", "e2"],
        "gpuFamilies": ["g2"],
        "network": "global/networks/batch",
        "subnetwork": "regions/us-central1/subnetworks/batch",
        "networkTags": ["vnode", "batch"],
        "serviceAccount": "vm@my-project.iam.gserviceaccount.com",
        "spot": True,
        "externalIP": True,
        "image": "projects/cos-cloud/global/images/family/cos-beta",
        "bootDiskType": "pd-ssd",
        "deleteDelaySeconds": 30,
        "maxRunDurationSeconds": 10368000,
        "cniBridge": True,
        "serviceAccountTokens": False,
        "allowedHostPaths": ["/var/cache/models"],
        "logName": "batch_containers",
    },
    "kubeletAPI": {
        "port": 10260,
        "clientCA": {"secret": "kubelet-client-ca", "key": "ca.pem"},
        "servingCertSecret": "vnode-serving",
    },
    "vmPKI": {"existingSecret": "vnode-ca"},
    "extraArgs": ["--workers=16"],
    "extraEnv": [{"name": "VNODE_STATUS_PERIOD", "value": "5"}],
    "podAnnotations": {"example.com/team": "ml"},
    "logFormat": "text",
    "metrics": {"port": 9100, "scrapeAnnotations": True},
}


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE) -> dict[str, str]:
    chart = helm.Chart.load(CHART)
    return chart.render(values or {}, name=name, namespace=NAMESPACE, is_install=True)


def objects(values: dict[str, Any] | None = None, *, name: str = RELEASE) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path, text in sorted(render(values, name=name).items()):
        if path.endswith(".txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def one(objs: list[dict[str, Any]], kind: str, *, hook: bool = False) -> dict[str, Any]:
    found = [
        o
        for o in objs
        if o["kind"] == kind and ("helm.sh/hook" in o["metadata"].get("annotations", {})) == hook
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return c


def pod_volumes(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    return {v["name"]: v for v in pod["volumes"]}


def run_settings(args: list[str], env: dict[str, str] | None = None) -> Settings:
    """The Settings `vnode <args>` would run with (parsed by vnode itself)."""
    parser = cli.build_parser()
    parsed = parser.parse_args(args)
    return cli.settings_from(parsed, parsed.run_parser, env or {})


def valid_in_container(args: list[str], env: dict[str, str], root: Path) -> None:
    """vnode's own validation passes, with the pod's mounted files stood in under root."""
    for arg in args:
        _, _, value = arg.partition("=")
        if value.startswith("/etc/vnode/"):
            (root / value.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / value.lstrip("/")).write_text("stand-in for a mounted file\n")
    moved = [arg.replace("=/etc/vnode/", f"={root}/etc/vnode/") for arg in args]
    validate(run_settings(moved, env))


# -- lint and render -------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, FULL], ids=["defaults", "everything"])
def test_lints_clean(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is Helm's "info" (only "icon is recommended"); nothing worse.
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_renders_the_expected_objects() -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects())
    assert kinds == [
        ("ClusterRole", "vnode"),
        ("ClusterRoleBinding", "vnode"),
        ("Deployment", "vnode"),
        ("Pod", "vnode-test"),
        ("Role", "vnode-lease"),
        ("RoleBinding", "vnode-lease"),
        ("Secret", "vnode-vm-pki"),
        ("ServiceAccount", "vnode"),
    ]


def test_one_replica_recreated_never_rolled() -> None:
    deployment = one(objects(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_more_than_one_replica_fails_with_the_reason() -> None:
    with pytest.raises(helm.HelmRenderError, match="vnode has no leader election yet; run one"):
        render({"replicaCount": 2})


def test_zero_replicas_is_allowed() -> None:
    assert one(objects({"replicaCount": 0}), "Deployment")["spec"]["replicas"] == 0


# -- RBAC ------------------------------------------------------------------------------

CLUSTER_RULES = {
    ("", "nodes"): ["get", "list", "watch", "create", "update", "patch"],
    ("", "nodes/status"): ["update", "patch"],
    ("", "pods"): ["get", "list", "watch", "delete"],
    ("", "pods/status"): ["update", "patch"],
    ("", "events"): ["create", "patch"],
    ("events.k8s.io", "events"): ["create", "patch"],
    ("", "configmaps"): ["get"],
    ("", "secrets"): ["get"],
    ("", "serviceaccounts/token"): ["create"],
    ("authentication.k8s.io", "tokenreviews"): ["create"],
    ("authorization.k8s.io", "subjectaccessreviews"): ["create"],
}


def granted(rules: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in out, f"{group}/{resource} granted twice"
                out[(group, resource)] = rule["verbs"]
    return out


def rbac_objects(objs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (o for o in objs if o["apiVersion"].startswith("rbac.authorization.k8s.io/"))


def test_rbac_has_no_wildcard_and_no_cluster_admin() -> None:
    for obj in rbac_objects(objects(FULL)):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), (obj["metadata"]["name"], rule)
        if "roleRef" in obj:
            assert obj["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")
            assert obj["roleRef"]["name"].startswith("vnode")


def test_cluster_role_grants_exactly_what_a_kubelet_needs() -> None:
    role = one(objects(), "ClusterRole")
    assert granted(role["rules"]) == CLUSTER_RULES
    assert all("resourceNames" not in rule for rule in role["rules"])


def test_lease_rights_are_one_namespace_and_one_name() -> None:
    objs = objects({"node": {"name": "burst-1"}})
    role = one(objs, "Role")
    assert role["metadata"]["namespace"] == "kube-node-lease"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["burst-1"],
            "verbs": ["get", "update"],
        },
    ]
    binding = one(objs, "RoleBinding")
    assert binding["metadata"]["namespace"] == "kube-node-lease"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }


def test_bindings_name_vnodes_service_account() -> None:
    objs = objects()
    account = one(objs, "ServiceAccount")["metadata"]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert one(objs, kind)["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
        ]
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]


def test_every_rule_says_why() -> None:
    for template in ("clusterrole.yaml", "lease-role.yaml"):
        lines = (CHART / "templates" / template).read_text().splitlines()
        rule_lines = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
        assert rule_lines
        for i in rule_lines:
            assert lines[i - 1].strip().startswith("#"), f"{template}:{i + 1} has no reason"


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    assert list(rbac_objects(objects({"rbac": {"create": False}}))) == []


# -- the container ---------------------------------------------------------------------


def help_flags() -> tuple[set[str], str]:
    """The flags `vnode run --help` lists, and its whole text."""
    done = subprocess.run(
        [sys.executable, "-m", "vnode.cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout)), done.stdout


@pytest.mark.parametrize("values", [{}, FULL], ids=["defaults", "everything"])
def test_every_flag_and_variable_the_chart_passes_exists(values: dict[str, Any]) -> None:
    flags, text = help_flags()
    c = container(objects(values))
    assert c["args"][0] == "run"
    for arg in c["args"][1:]:
        assert arg.split("=", 1)[0] in flags, f"`vnode run` has no flag {arg!r}"
    known_env = {cli.env_name(flag) for flag in flags} | set(re.findall(r"VNODE_[A-Z_]+", text))
    for env in c["env"]:
        assert env["name"] in known_env, f"`vnode run` reads no {env['name']}"


def test_default_values_reach_vnode(tmp_path: Path) -> None:
    c = container(objects({"gce": {"project": "my-project", "zones": ["europe-west4-a"]}}))
    s = run_settings(c["args"], {"VNODE_POD_IP": "10.8.0.7"})
    valid_in_container(c["args"], {"VNODE_POD_IP": "10.8.0.7"}, tmp_path)
    assert s.provider == "gce"
    assert s.node.name == RELEASE
    assert s.node.taints == (Taint.parse(DEFAULT_TAINT),)
    assert s.node.internal_ip == "10.8.0.7"
    assert (s.node.zone, s.node.region) == ("europe-west4-a", "europe-west4")
    assert s.kubelet_api.port == 10250
    assert str(s.kubelet_api.client_ca_file) == "/etc/vnode/client-ca/ca.crt"
    assert s.kubelet_api.cert_file is None
    assert s.metrics.port == 9090
    assert cli.build_parser().parse_args(c["args"]).run_log_format == "json"
    assert s.gce.project == "my-project"
    assert s.gce.zones == ("europe-west4-a",)
    assert s.gce.ca_dir == "/var/lib/vnode/vm-pki"
    # Unset values leave vnode's own defaults alone.
    defaults = Settings().gce
    for field in ("machine_families", "network", "subnetwork", "network_tags", "image", "log_name"):
        assert getattr(s.gce, field) == getattr(defaults, field), field
    assert s.gce.delete_delay_seconds == defaults.delete_delay_seconds
    assert s.gce.max_run_duration_seconds == defaults.max_run_duration_seconds
    assert s.gce.spot is False
    assert s.gce.service_account_tokens is True


def test_every_value_reaches_vnode(tmp_path: Path) -> None:
    c = container(objects(FULL))
    s = run_settings(c["args"], {"VNODE_POD_IP": "10.8.0.7"})
    valid_in_container(c["args"], {"VNODE_POD_IP": "10.8.0.7"}, tmp_path)
    assert s.node.name == "burst-1"
    batch = Taint("example.com/batch", "", "NoExecute")
    assert s.node.taints == (Taint.parse(DEFAULT_TAINT), batch)
    assert s.node.labels == {"team": "ml", "example.com/tier": "batch"}
    assert {k: s.node.capacity[k] for k in ("cpu", "memory", "nvidia.com/gpu")} == {
        "cpu": "64",
        "memory": "256Gi",
        "nvidia.com/gpu": "8",
    }
    assert s.node.region == "us-central1"
    assert s.kubelet_api.port == 10260
    assert str(s.kubelet_api.client_ca_file) == "/etc/vnode/client-ca/ca.pem"
    assert str(s.kubelet_api.cert_file) == "/etc/vnode/serving/tls.crt"
    assert str(s.kubelet_api.key_file) == "/etc/vnode/serving/tls.key"
    assert s.pods.workers == 16
    assert s.metrics.port == 9100
    assert cli.build_parser().parse_args(c["args"]).run_log_format == "text"
    g = s.gce
    assert g.project == "my-project"
    assert g.zones == ("us-central1-a", "us-central1-b")
    assert g.machine_families == ("n2", "e2")
    assert g.gpu_families == ("g2",)
    assert g.network == "global/networks/batch"
    assert g.subnetwork == "regions/us-central1/subnetworks/batch"
    assert g.network_tags == ("vnode", "batch")
    assert g.service_account == "vm@my-project.iam.gserviceaccount.com"
    assert (g.spot, g.external_ip, g.cni_bridge) == (True, True, True)
    assert g.service_account_tokens is False
    assert g.image == "projects/cos-cloud/global/images/family/cos-beta"
    assert g.boot_disk_type == "pd-ssd"
    assert g.delete_delay_seconds == 30
    assert g.max_run_duration_seconds == 10368000  # an integer, not 1.0368e+07
    assert g.allowed_host_paths == ("/var/cache/models",)
    assert g.log_name == "batch_containers"
    assert {"name": "VNODE_STATUS_PERIOD", "value": "5"} in c["env"]


def test_no_taints_means_an_untainted_node() -> None:
    objs = objects({"node": {"taints": []}})
    assert run_settings(container(objs)["args"]).node.taints == ()
    assert "tolerations" not in one(objs, "Pod", hook=True)["spec"]


def test_node_address_is_the_pod_ip() -> None:
    env = {e["name"]: e for e in container(objects())["env"]}
    assert env["VNODE_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_ports_and_probes() -> None:
    c = container(objects({"kubeletAPI": {"port": 10260}}))
    assert c["ports"] == [
        {"name": "kubelet", "containerPort": 10260, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert run_settings(c["args"]).metrics.port == 9090
    # The metrics server's /healthz is plain HTTP and unauthenticated: the probes use it.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe


def test_without_metrics_the_probes_only_connect() -> None:
    c = container(objects({"metrics": {"enabled": False}}))
    assert [p["name"] for p in c["ports"]] == ["kubelet"]
    assert run_settings(c["args"]).metrics.port == -1  # vnode serves no metrics at all
    # The kubelet API refuses anonymous requests, so the probes only connect.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"] == {"port": "kubelet"}, probe


def test_scrape_annotations_follow_the_metrics_port() -> None:
    pod = one(objects(FULL), "Deployment")["spec"]["template"]["metadata"]
    assert pod["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["annotations"]["prometheus.io/port"] == "9100"
    assert pod["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["annotations"]["example.com/team"] == "ml"
    default = one(objects(), "Deployment")["spec"]["template"]["metadata"]
    assert not any(k.startswith("prometheus.io/") for k in default["annotations"])


def test_metrics_and_kubelet_ports_must_differ() -> None:
    message = r"metrics\.port and kubeletAPI\.port must differ"
    with pytest.raises(helm.HelmRenderError, match=message):
        render({"metrics": {"port": 10250}})


def test_security_context_is_restricted() -> None:
    objs = objects()
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(objs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # The read-only root leaves /tmp writable (a memory-backed, bounded emptyDir).
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["/tmp"]["name"] == "tmp"
    assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")


def test_image_tag_defaults_to_app_version_and_digest_pins() -> None:
    chart = helm.Chart.load(CHART)
    app_version = chart.metadata["appVersion"]
    assert container(objects())["image"] == f"vnode:{app_version}"
    digest = "sha256:" + "ab" * 32
    c = container(objects({"image": {"repository": "r.example/vnode", "digest": digest}}))
    assert c["image"] == f"r.example/vnode@{digest}"


def test_pod_placement_and_annotations_are_passed_through() -> None:
    values = {
        "nodeSelector": {"cloud.google.com/gke-nodepool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "priorityClassName": "system-cluster-critical",
        "resources": {"requests": {"cpu": "1"}},
    }
    deployment = one(objects(values), "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == values["nodeSelector"]
    assert pod["spec"]["tolerations"] == values["tolerations"]
    assert pod["spec"]["affinity"] == values["affinity"]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    # Helm merges maps: the cpu request replaces the default, the rest stays.
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }


# -- Workload Identity and certificates -------------------------------------------------


def test_workload_identity_annotation_when_set() -> None:
    account = "vnode@my-project.iam.gserviceaccount.com"
    sa = one(objects({"serviceAccount": {"gcpServiceAccount": account}}), "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": account}
    assert "annotations" not in one(objects(), "ServiceAccount")["metadata"]


def test_existing_service_account_is_used_as_is() -> None:
    objs = objects({"serviceAccount": {"create": False, "name": "vnode-gsa"}})
    assert [o for o in objs if o["kind"] == "ServiceAccount"] == []
    assert one(objs, "ClusterRoleBinding")["subjects"][0]["name"] == "vnode-gsa"


def test_client_ca_from_configmap_or_secret() -> None:
    volumes = pod_volumes(objects())
    assert volumes["client-ca"]["configMap"] == {
        "name": "kube-root-ca.crt",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    objs = objects(FULL)
    volumes = pod_volumes(objs)
    assert volumes["client-ca"]["secret"]["secretName"] == "kubelet-client-ca"
    assert volumes["serving"]["secret"]["secretName"] == "vnode-serving"
    # Without any client CA, vnode accepts bearer tokens only and gets no --client-ca-file.
    c = container(objects({"kubeletAPI": {"clientCA": {"configMap": ""}}}))
    assert not any(a.startswith("--client-ca-file") for a in c["args"])
    assert "client-ca" not in {m["name"] for m in c["volumeMounts"]}


def test_generated_vm_pki_is_what_vnode_loads(tmp_path: Path) -> None:
    secret = one(objects(), "Secret")
    files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert sorted(files) == [
        "client-ca.crt",
        "client-ca.key",
        "serving-ca.crt",
        "serving-ca.key",
        "vnode-client.crt",
        "vnode-client.key",
    ]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    pki = VnodePKI.load_or_create(tmp_path)
    # vnode used the chart's CAs as they are, creating nothing of its own.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    client = x509.load_pem_x509_certificate(files["vnode-client.crt"])
    client.verify_directly_issued_by(x509.load_pem_x509_certificate(files["client-ca.crt"]))
    assert pki.client_ca_pem.encode() == files["client-ca.crt"]
    serving = pki.serving_pair("vnode-abc")
    leaf = x509.load_pem_x509_certificate(serving.cert_pem)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(files["serving-ca.crt"]))
    # A full TLS handshake, in memory, as between vnode and a VM kubelet: vnode trusts the
    # serving CA, the VM kubelet trusts the client CA, both from the chart's Secret.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = serving.write(tmp_path, "vm-serving")
    server.load_cert_chain(cert, key)
    server.load_verify_locations(cafile=str(tmp_path / "client-ca.crt"))
    server.verify_mode = ssl.CERT_REQUIRED
    assert handshake(pki.ssl_context(), server, "vnode-abc") == "vnode"


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> str:
    """Run a TLS handshake through memory buffers; the client certificate's CN."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", c), ("server", s)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values()), "the TLS handshake did not complete"
    der = s.getpeercert(binary_form=True)
    assert der is not None
    cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value)


def test_existing_vm_pki_secret_is_mounted_not_created() -> None:
    objs = objects({"vmPKI": {"existingSecret": "vnode-ca"}})
    assert [o for o in objs if o["kind"] == "Secret"] == []
    volumes = pod_volumes(objs)
    assert volumes["vm-pki"]["secret"]["secretName"] == "vnode-ca"


# -- values and schema -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"node": {"taints": [{"key": "a", "effect": "Sometimes"}]}}, "/node/taints/0/effect"),
        ({"gce": {"zones": ["europe"]}}, "/gce/zones/0"),
        ({"gce": {"spot": "yes"}}, "/gce/spot"),
        ({"logLevel": "loud"}, "/logLevel"),
        ({"kubeletAPI": {"port": 70000}}, "/kubeletAPI/port"),
        ({"replicas": 1}, "additional properties 'replicas'"),
        ({"gce": {"zone": "us-central1-a"}}, "additional properties 'zone'"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        render(values)
    report = helm.lint(CHART, values)
    assert any(message in error for error in report["errors"])


@pytest.mark.parametrize("values", [{}, FULL], ids=["defaults", "everything"])
def test_schema_accepts_documented_values(values: dict[str, Any]) -> None:
    helm.Chart.load(CHART).validate_schema(values)


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        out.add(prefix + key)
        out |= schema_paths(sub, f"{prefix}{key}.")
    return out


def value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Keys of values.yaml, descending only where the schema describes the keys."""
    out: set[str] = set()
    for key, value in values.items():
        out.add(prefix + key)
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            out |= value_paths(value, sub, f"{prefix}{key}.")
    return out


def test_schema_and_values_describe_the_same_keys() -> None:
    chart = helm.Chart.load(CHART)
    schema = chart.schema
    assert schema is not None
    assert schema["additionalProperties"] is False
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert value_paths(defaults, schema) == schema_paths(schema)


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    schema = helm.Chart.load(CHART).schema
    assert schema is not None

    def walk(node: yaml.MappingNode, sub: dict[str, Any], path: str) -> Iterator[str]:
        for key_node, value_node in node.value:
            key = key_node.value
            child = sub.get("properties", {}).get(key, {})
            if isinstance(value_node, yaml.MappingNode) and "properties" in child:
                yield from walk(value_node, child, f"{path}{key}.")
            elif not lines[key_node.start_mark.line - 1].lstrip().startswith("#"):
                yield path + key

    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    assert list(walk(root, schema, "")) == []


# -- NOTES and the helm test -----------------------------------------------------------


def test_notes_tell_how_to_schedule_onto_the_node() -> None:
    notes = render({"gce": {"project": "my-project", "zones": ["us-central1-a"]}})[
        "vnode/templates/NOTES.txt"
    ]
    assert "key: virtual-kubelet.io/provider" in notes
    assert "value: gce" in notes
    assert "effect: NoSchedule" in notes
    assert DEFAULT_TAINT in notes
    assert "type: virtual-kubelet" in notes
    assert f"kubernetes.io/hostname: {RELEASE}" in notes
    assert "WARNING" not in notes
    # The example Job in the NOTES is a valid manifest with the toleration and selector.
    block = notes.split("2. Schedule a pod onto it", 1)[1].split("\n\n", 2)[1]
    job = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()
                                   if not line.strip().startswith("(")))  # fmt: skip
    spec = job["spec"]["template"]["spec"]
    assert spec["tolerations"] == [
        {
            "key": "virtual-kubelet.io/provider",
            "operator": "Equal",
            "value": "gce",
            "effect": "NoSchedule",
        }
    ]
    assert spec["nodeSelector"] == {"type": "virtual-kubelet", "kubernetes.io/hostname": RELEASE}


def test_notes_warn_when_project_or_zones_are_missing() -> None:
    notes = render()["vnode/templates/NOTES.txt"]
    assert "WARNING: gce.project and gce.zones must be set" in notes


def test_helm_test_pod_runs_on_the_virtual_node() -> None:
    pod = one(objects({"node": {"name": "burst-1"}}), "Pod", hook=True)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"type": "virtual-kubelet", "kubernetes.io/hostname": "burst-1"}
    assert spec["tolerations"] == [
        {
            "key": "virtual-kubelet.io/provider",
            "operator": "Equal",
            "value": "gce",
            "effect": "NoSchedule",
        }
    ]
    # The sandbox's VMs and real ones alike need an explicit command.
    assert spec["containers"][0]["command"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
