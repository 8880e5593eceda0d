"""The COS boot document: its content, its scripts run for real, and cloud-init's schema."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.refdata import REFERENCE
from vnode.certs import CertificateAuthority
from vnode.errors import ConfigError, InvalidPod
from vnode.gce import bootstrap as b
from vnode.gce.manifest import HOST_IP_PLACEHOLDER, VolumeFile

REPO = Path(__file__).resolve().parents[2]
SCHEMA_SCRIPT = REPO / ".ci" / "cloud-init-schema"
NODE = "vnode-7ef32c7e665e1532"
SHA = "0" * 64


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    client_ca = CertificateAuthority.create("vnode-client-ca")
    serving = client_ca.issue(NODE, server_names=[NODE], server=True)
    return {
        "client_ca_pem": client_ca.cert_pem.decode(),
        "serving_cert_pem": serving.cert_pem.decode(),
        "serving_key_pem": serving.key_pem.decode(),
    }


@pytest.fixture
def options(pki: dict[str, str]) -> b.BootstrapOptions:
    return b.BootstrapOptions(node_name=NODE, **pki)


def pod(name: str = "job-abc", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a", "uid": "0f3c-11"},
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "main", "image": "busybox", "command": ["echo", "hi"]}],
            **spec,
        },
    }


def cloud_config(result: b.BootstrapResult) -> dict[str, Any]:
    text = result.user_data
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    return config


def written(result: b.BootstrapResult) -> dict[str, dict[str, Any]]:
    entries = cloud_config(result)["write_files"]
    paths = [e["path"] for e in entries]
    assert len(paths) == len(set(paths)), "a path is written twice"
    return {e["path"]: e for e in entries}


def content(result: b.BootstrapResult, path: str) -> bytes:
    return b.decode_write_file(written(result)[path])


def text(result: b.BootstrapResult, path: str) -> str:
    return content(result, path).decode()


def unit(result: b.BootstrapResult, name: str) -> str:
    return text(result, f"{b.UNIT_DIR}/{name}")


def directives(unit_text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit_text.splitlines() if line.startswith(key + "=")]


# -- metadata ---------------------------------------------------------------------------


def test_metadata_items_for_instances_insert(options: b.BootstrapOptions) -> None:
    result = b.render(options, pod())
    assert list(result.metadata) == ["user-data", "google-logging-enabled", "cos-update-strategy"]
    assert result.metadata["google-logging-enabled"] == "true"
    assert result.metadata["cos-update-strategy"] == "update_disabled"
    assert result.items()[0] == {"key": "user-data", "value": result.user_data}
    assert result.warnings == ()
    assert result.secrets == ("the kubelet serving key",)
    no_updates = dataclasses.replace(options, disable_os_updates=False)
    assert "cos-update-strategy" not in b.render(no_updates, pod()).metadata


def test_render_is_deterministic(options: b.BootstrapOptions) -> None:
    files = [VolumeFile("/var/lib/vnode/volumes/cfg/big", b"x" * 20000, 0o644)]
    assert b.render(options, pod(), files) == b.render(options, pod(), files)


# -- kubelet -----------------------------------------------------------------------------


def test_kubelet_config_is_a_locked_down_standalone_kubelet(
    options: b.BootstrapOptions, pki: dict[str, str]
) -> None:
    result = b.render(options, pod())
    config = yaml.safe_load(text(result, b.KUBELET_CONFIG_PATH))
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert config["kind"] == "KubeletConfiguration"
    assert config["staticPodPath"] == "/etc/kubernetes/manifests"
    assert config["fileCheckFrequency"] == "5s"
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": False},
        "x509": {"clientCAFile": b.CLIENT_CA_PATH},
    }
    assert config["authorization"] == {"mode": "AlwaysAllow"}
    assert config["readOnlyPort"] == 0
    assert config["port"] == 10250
    assert config["cgroupDriver"] == "systemd"
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert config["cgroupsPerQOS"] is False
    assert config["enforceNodeAllocatable"] == []
    assert config["failSwapOn"] is False
    assert set(config["evictionHard"].values()) == {"0%"}
    assert config["imageGCHighThresholdPercent"] == 100
    assert "clusterDNS" not in config and "clusterDomain" not in config
    # The TLS files the config names are written, the key readable by root only.
    assert text(result, config["tlsCertFile"]) == pki["serving_cert_pem"]
    assert text(result, config["tlsPrivateKeyFile"]) == pki["serving_key_pem"]
    assert text(result, b.CLIENT_CA_PATH) == pki["client_ca_pem"]
    files = written(result)
    assert files[config["tlsPrivateKeyFile"]]["permissions"] == "0600"
    assert files[config["tlsCertFile"]]["permissions"] == "0644"


def test_kubelet_config_agrees_with_the_reference_where_it_should() -> None:
    """shared/reference/kubelet/kubelet-config.scrubbed.yaml ran a real standalone kubelet;
    vnode keeps its paths and runtime and turns off what it left open."""
    reference = REFERENCE / "kubelet/kubelet-config.scrubbed.yaml"
    real = yaml.safe_load(reference.read_text())
    ours = b.kubelet_config(
        b.BootstrapOptions(
            node_name=NODE, client_ca_pem="-----BEGIN C", serving_cert_pem="-----BEGIN C",
            serving_key_pem="-----BEGIN K",
        )
    )  # fmt: skip
    for key in ("apiVersion", "kind", "port", "staticPodPath", "fileCheckFrequency"):
        assert ours[key] == real[key], key
    assert ours["containerRuntimeEndpoint"] == real["containerRuntimeEndpoint"]
    assert set(ours) >= {k for k in real if k not in ("failCgroupV1", "podLogsDir")}
    assert real["authentication"]["anonymous"]["enabled"] is True
    assert ours["authentication"]["anonymous"]["enabled"] is False
    assert real["readOnlyPort"] == 10255 and ours["readOnlyPort"] == 0


def test_kubelet_unit_runs_cos_kubelet_under_the_instance_name(
    options: b.BootstrapOptions,
) -> None:
    result = b.render(options, pod())
    kubelet = unit(result, b.KUBELET_UNIT)
    [exec_start] = directives(kubelet, "ExecStart")
    assert exec_start == (
        f"/usr/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml "
        f"--hostname-override={NODE} --v=2"
    )
    assert "%" not in kubelet  # no systemd specifier: the node name is fixed in advance
    requires = directives(kubelet, "Requires")[0].split()
    assert set(requires) == {"containerd.service", b.MANIFEST_UNIT}
    after = directives(kubelet, "After")[0].split()
    assert {b.FIREWALL_UNIT, b.MANIFEST_UNIT, "containerd.service"} <= set(after)
    assert directives(kubelet, "Restart") == ["always"]
    assert f"{b.UNIT_DIR}/{b.KUBELET_FETCH_UNIT}" not in written(result)


def test_pinned_kubelet_is_fetched_checked_and_required(options: b.BootstrapOptions) -> None:
    url = "https://dl.k8s.io/release/v1.33.13/bin/linux/amd64/kubelet?x=%41"
    digest = hashlib.sha256(b"kubelet").hexdigest()
    pinned = dataclasses.replace(options, kubelet=b.PinnedDownload(url, digest))
    result = b.render(pinned, pod())
    fetch = unit(result, b.KUBELET_FETCH_UNIT)
    assert directives(fetch, "Type") == ["oneshot"]
    # A literal % must be doubled in a unit, or systemd reads a specifier.
    assert directives(fetch, "ExecStart") == [
        f"{b.FETCH_SCRIPT} {url.replace('%', '%%')} {digest} {b.PINNED_KUBELET}"
    ]
    kubelet = unit(result, b.KUBELET_UNIT)
    assert directives(kubelet, "ExecStart")[0].startswith(b.PINNED_KUBELET + " --config=")
    # Requires + After: a failed check leaves the kubelet unstarted.
    assert b.KUBELET_FETCH_UNIT in directives(kubelet, "Requires")[0].split()
    assert b.KUBELET_FETCH_UNIT in directives(kubelet, "After")[0].split()
    # /var is noexec on COS; /var/lib/google is one of its executable paths.
    assert b.PINNED_KUBELET.startswith("/var/lib/google/")


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "ftp://example/kubelet", "sha256": SHA},
        {"url": "https://example/kube let", "sha256": SHA},
        {"url": "https://example/$(reboot)", "sha256": SHA},
        {"url": "https://example/kubelet", "sha256": "abc"},
        {"url": "https://example/kubelet", "sha256": SHA.upper().replace("0", "A")},
    ],
)
def test_pinned_download_refuses_what_cannot_be_checked(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        b.PinnedDownload(**bad)


def test_fetch_script_installs_only_the_matching_sha256(
    options: b.BootstrapOptions, tmp_path: Path
) -> None:
    """The boot script itself, run here against a local file."""
    script = tmp_path / "fetch-verified.sh"
    script.write_bytes(content(b.render(options, pod()), b.FETCH_SCRIPT))
    script.chmod(0o755)
    release = tmp_path / "release" / "kubelet"
    release.parent.mkdir()
    release.write_bytes(b"\x7fELF pretend kubelet")
    good = hashlib.sha256(release.read_bytes()).hexdigest()
    dest = tmp_path / "bin" / "kubelet"

    bad = subprocess.run(
        [script, release.as_uri(), "1" * 64, dest], capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0
    assert "does not have SHA-256" in bad.stderr
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the download was removed too

    ok = subprocess.run(
        [script, release.as_uri(), good, dest], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert dest.read_bytes() == release.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in dest.parent.iterdir()] == ["kubelet"]

    missing = subprocess.run(
        [script, (tmp_path / "nothing").as_uri(), good, tmp_path / "bin" / "other"],
        capture_output=True,
        check=False,
    )
    assert missing.returncode != 0
    assert not (tmp_path / "bin" / "other").exists()


# -- the pod ------------------------------------------------------------------------------


def test_manifest_is_staged_and_moved_in_by_a_unit(options: b.BootstrapOptions) -> None:
    the_pod = pod(volumes=[{"name": "v", "hostPath": {"path": "/var/lib/vnode/volumes/v"}}])
    result = b.render(options, the_pod)
    files = written(result)
    assert yaml.safe_load(text(result, b.STAGED_MANIFEST_PATH)) == the_pod
    assert files[b.STAGED_MANIFEST_PATH]["permissions"] == "0600"
    # Nothing is written into the manifest folder directly.
    assert not [p for p in files if p.startswith(b.MANIFEST_DIR + "/")]
    manifest_unit = unit(result, b.MANIFEST_UNIT)
    assert directives(manifest_unit, "ExecStart") == [
        f"{b.INSTALL_MANIFEST_SCRIPT} {b.STAGED_MANIFEST_PATH} {b.MANIFEST_DIR} {b.MANIFEST_NAME}"
    ]
    assert directives(manifest_unit, "Before") == [b.KUBELET_UNIT]


def test_install_manifest_script_substitutes_the_host_ip_atomically(
    options: b.BootstrapOptions, tmp_path: Path
) -> None:
    the_pod = pod()
    the_pod["spec"]["containers"][0]["env"] = [{"name": "HOST_IP", "value": HOST_IP_PLACEHOLDER}]
    result = b.render(options, the_pod)
    script = tmp_path / "install-manifest.sh"
    script.write_bytes(content(result, b.INSTALL_MANIFEST_SCRIPT))
    script.chmod(0o755)
    staged = tmp_path / "pod.yaml"
    staged.write_bytes(content(result, b.STAGED_MANIFEST_PATH))
    folder = tmp_path / "manifests"

    run = subprocess.run(
        [script, staged, folder, b.MANIFEST_NAME],
        env={**os.environ, "VNODE_HOST_IP": "10.128.0.7"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert [p.name for p in folder.iterdir()] == [b.MANIFEST_NAME]  # no dotfile left behind
    installed = (folder / b.MANIFEST_NAME).read_text()
    assert yaml.safe_load(installed)["spec"]["containers"][0]["env"] == [
        {"name": "HOST_IP", "value": "10.128.0.7"}
    ]
    assert (folder / b.MANIFEST_NAME).stat().st_mode & 0o077 == 0
    assert installed == b.install_manifest(staged.read_text(), "10.128.0.7")


def test_missing_pod_name_is_invalid(options: b.BootstrapOptions) -> None:
    with pytest.raises(InvalidPod, match=r"metadata\.name"):
        b.render(options, {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}})


def test_volume_files_keep_bytes_modes_and_groups(options: b.BootstrapOptions) -> None:
    binary = bytes(range(256)) * 4
    large = ("line of a config file\n" * 2000).encode()
    files = [
        VolumeFile("/var/lib/vnode/volumes/cfg/app.conf", b"a: 1\nb: two\n", 0o644),
        VolumeFile("/var/lib/vnode/volumes/keys/blob", binary, 0o400, sensitive=True),
        VolumeFile("/var/lib/vnode/volumes/cfg/large.txt", large, 0o640, gid=2000),
        VolumeFile("/var/lib/vnode/volumes/cfg/crlf", b"a\r\nb\r\n", 0o644),
        VolumeFile("/var/lib/kubelet/config.json", b'{"auths": {}}', 0o600, sensitive=True),
    ]
    result = b.render(options, pod(), files)
    entries = written(result)
    for f in files:
        assert content(result, f.path) == f.content, f.path
        assert entries[f.path]["permissions"] == f"0{f.mode:o}"
    assert "encoding" not in entries["/var/lib/vnode/volumes/cfg/app.conf"]  # readable text
    assert entries["/var/lib/vnode/volumes/keys/blob"]["encoding"] == "b64"
    assert entries["/var/lib/vnode/volumes/cfg/crlf"]["encoding"] == "b64"  # YAML would fold CR
    assert entries["/var/lib/vnode/volumes/cfg/large.txt"]["encoding"] == "gz+b64"
    assert len(entries["/var/lib/vnode/volumes/cfg/large.txt"]["content"]) < len(large) // 10
    runcmd = cloud_config(result)["runcmd"]
    assert ["chgrp", "2000", "/var/lib/vnode/volumes/cfg/large.txt"] in runcmd
    assert runcmd.index(["chgrp", "2000", "/var/lib/vnode/volumes/cfg/large.txt"]) < len(runcmd) - 1
    assert result.secrets == ("the kubelet serving key", "2 file(s) from Secrets or tokens")
    secret_env = b.render(options, pod(), files, secret_manifest=True)
    assert "Secret values in the pod's env" in secret_env.secrets


def test_volume_file_paths_must_be_clean(options: b.BootstrapOptions) -> None:
    for path in ("relative/file", "/var/lib/vnode/volumes/../../../etc/shadow"):
        with pytest.raises(InvalidPod, match="clean absolute path"):
            b.render(options, pod(), [VolumeFile(path, b"x", 0o644)])
    for path in (b.SERVING_KEY_PATH, f"{b.UNIT_DIR}/{b.KUBELET_UNIT}", b.FETCH_SCRIPT):
        with pytest.raises(InvalidPod, match="vnode's own"):
            b.render(options, pod(), [VolumeFile(path, b"x", 0o644)])
    twice = [VolumeFile("/var/lib/vnode/volumes/a/x", b"1", 0o644)] * 2
    with pytest.raises(InvalidPod, match="written twice"):
        b.render(options, pod(), twice)


def test_decode_write_file_refuses_what_cloud_init_would_not_read() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        b.decode_write_file({"path": "/x", "content": "x", "encoding": "rot13"})
    with pytest.raises(ValueError, match="bad b64"):
        b.decode_write_file({"path": "/x", "content": "not base64!", "encoding": "b64"})


# -- network ------------------------------------------------------------------------------


def test_firewall_opens_tcp_10250_and_nothing_else(options: b.BootstrapOptions) -> None:
    result = b.render(dataclasses.replace(options, cni_bridge=True), pod())
    firewall = unit(result, b.FIREWALL_UNIT)
    [rule] = directives(firewall, "ExecStart")
    assert rule == (
        "/bin/sh -c '/sbin/iptables -w -C INPUT -p tcp --dport 10250 -j ACCEPT || "
        "/sbin/iptables -w -A INPUT -p tcp --dport 10250 -j ACCEPT'"
    )
    others = [p for p in written(result) if p.startswith(b.UNIT_DIR) and "firewall" not in p]
    for path in others:
        assert "iptables" not in text(result, path), path


def test_cni_bridge_only_when_enabled(options: b.BootstrapOptions) -> None:
    plain = b.render(options, pod())
    assert b.CNI_CONFIG_PATH not in written(plain)
    plugins = b.PinnedDownload("https://example.test/cni-plugins.tgz", SHA)
    result = b.render(dataclasses.replace(options, cni_bridge=True, cni_plugins=plugins), pod())
    conflist = json.loads(text(result, "/etc/cni/net.d/10-vnode-bridge.conflist"))
    bridge = conflist["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["bridge"] == "kubelet0"
    assert bridge["hairpinMode"] is True
    assert bridge["ipMasq"] is True
    assert bridge["isGateway"] is True
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall"]
    fetch = unit(result, b.CNI_PLUGINS_UNIT)
    starts = directives(fetch, "ExecStart")
    assert (
        starts[0] == f"{b.FETCH_SCRIPT} https://example.test/cni-plugins.tgz {SHA} {b.CNI_ARCHIVE}"
    )
    assert starts[-1] == f"/bin/tar -xzf {b.CNI_ARCHIVE} -C /home/kubernetes/bin"
    assert b.CNI_PLUGINS_UNIT in directives(unit(result, b.KUBELET_UNIT), "Requires")[0]


# -- container logs -----------------------------------------------------------------------


def test_fluent_bit_tails_cri_files_and_labels_each_line(options: b.BootstrapOptions) -> None:
    result = b.render(options, pod())
    conf = text(result, f"{b.FLUENT_BIT_DIR}/fluent-bit.conf")
    sections = _sections(conf)
    [tail] = sections["INPUT"]
    assert tail["Name"] == ["tail"]
    assert tail["Path"] == ["/var/log/pods/*/*/*.log"]
    assert tail["multiline.parser"] == ["cri"]
    assert tail["Tag"] == ["vnode_containers"]
    assert tail["Read_from_Head"] == ["On"]
    parser, modify, nest = sections["FILTER"]
    assert parser["Name"] == ["parser"] and parser["Parser"] == ["vnode_pod_log_path"]
    renames = dict(r.split() for r in modify["Rename"])
    assert renames == {
        "log": "message",
        "namespace": "vnode.dev/namespace",
        "pod": "vnode.dev/pod",
        "pod_uid": "vnode.dev/pod-uid",
        "container": "vnode.dev/container",
        "restart_count": "vnode.dev/restart-count",
        "stream": "vnode.dev/stream",
    }
    assert set(renames.values()) - {"message"} == set(b.LOG_LABELS)
    assert nest["Operation"] == ["nest"]
    assert nest["Nest_under"] == ["logging.googleapis.com/labels"]
    [out] = sections["OUTPUT"]
    assert out["Name"] == ["stackdriver"]
    assert out["Resource"] == ["gce_instance"]
    assert out["Match"] == ["vnode_containers"]
    parsers = text(result, f"{b.FLUENT_BIT_DIR}/parsers.conf")
    assert f"Regex   {b.log_path_regex(NODE)}\n" in parsers
    fluent = unit(result, b.FLUENT_BIT_UNIT)
    [run] = directives(fluent, "ExecStart")
    assert run.startswith("/usr/bin/docker run --rm --name vnode-fluent-bit --network host ")
    assert "-v /var/log:/var/log:ro" in run
    assert f"{b.DEFAULT_FLUENT_BIT_IMAGE} -c {b.FLUENT_BIT_DIR}/fluent-bit.conf" in run
    assert b.FLUENT_BIT_UNIT in cloud_config(result)["runcmd"][-1]


def test_log_name_is_configurable_and_logging_can_be_off(options: b.BootstrapOptions) -> None:
    named = b.render(dataclasses.replace(options, log_name="batch_logs"), pod())
    conf = _sections(text(named, f"{b.FLUENT_BIT_DIR}/fluent-bit.conf"))
    assert conf["INPUT"][0]["Tag"] == ["batch_logs"]
    assert conf["OUTPUT"][0]["Match"] == ["batch_logs"]
    with pytest.raises(ConfigError):
        dataclasses.replace(options, log_name="bad name")
    off = b.render(dataclasses.replace(options, logging=False), pod())
    assert not [p for p in written(off) if "fluent-bit" in p]
    assert b.FLUENT_BIT_UNIT not in cloud_config(off)["runcmd"][-1]
    assert off.metadata["google-logging-enabled"] == "true"  # the journal still ships


@pytest.mark.parametrize(
    ("path", "labels"),
    [
        # The layout of shared/reference/kubelet/cri-logs/*.layout.txt (node standalone-node).
        (
            "/var/log/pods/default_echo-never-standalone-node_7ef32c7e665e1532fff5640af221c2b8"
            "/echo/0.log",
            {
                "namespace": "default",
                "pod": "echo-never",
                "uid": "7ef32c7e665e1532fff5640af221c2b8",
                "container": "echo",
                "restart": "0",
            },
        ),
        (
            "/var/log/pods/default_crashloop-standalone-node_c8dfd62bec272e62e96cff2cffabc408"
            "/crash/2.log",
            {
                "namespace": "default",
                "pod": "crashloop",
                "uid": "c8dfd62bec272e62e96cff2cffabc408",
                "container": "crash",
                "restart": "2",
            },
        ),
        # A pod whose own name ends like a node name still loses only the real suffix.
        (
            "/var/log/pods/kube-x_web-node-1-standalone-node_abc-123/side-car/11.log",
            {
                "namespace": "kube-x",
                "pod": "web-node-1",
                "uid": "abc-123",
                "container": "side-car",
                "restart": "11",
            },
        ),
    ],
)
def test_log_labels_from_the_kubelets_file_layout(path: str, labels: dict[str, str]) -> None:
    assert b.log_labels(path, "standalone-node", "stderr") == {
        "vnode.dev/namespace": labels["namespace"],
        "vnode.dev/pod": labels["pod"],
        "vnode.dev/pod-uid": labels["uid"],
        "vnode.dev/container": labels["container"],
        "vnode.dev/restart-count": labels["restart"],
        "vnode.dev/stream": "stderr",
    }


def test_log_labels_ignore_other_files() -> None:
    pod_dir = "/var/log/pods/default_echo-never-other-node_7ef3"
    assert b.log_labels(f"{pod_dir}/echo/0.log", "standalone-node", "stdout") is None
    assert b.log_labels("/var/log/containers/x.log", "standalone-node", "stdout") is None
    assert b.log_labels(f"{pod_dir}/echo/0.log.gz", "other-node", "stdout") is None


def test_fluent_bit_and_python_regexes_are_one_pattern() -> None:
    onig = b.log_path_regex(NODE)
    assert b.log_path_regex(NODE, python=True).replace("(?P<", "(?<") == onig


# -- runcmd and limits -----------------------------------------------------------------------


def test_runcmd_reloads_systemd_then_starts_the_units(options: b.BootstrapOptions) -> None:
    runcmd = cloud_config(b.render(options, pod()))["runcmd"]
    assert runcmd[0] == ["systemctl", "daemon-reload"]
    assert runcmd[-1] == [
        "systemctl", "start", "--no-block", b.FIREWALL_UNIT, b.FLUENT_BIT_UNIT, b.KUBELET_UNIT,
    ]  # fmt: skip
    # Every unit started or required is written.
    units = {p.rsplit("/", 1)[1] for p in written(b.render(options, pod())) if "systemd" in p}
    assert set(runcmd[-1][3:]) <= units


def test_metadata_near_and_over_gce_limits(options: b.BootstrapOptions) -> None:
    noise = hashlib.shake_256(b"incompressible").digest(150 * 1024)
    near = b.render(options, pod(), [VolumeFile("/var/lib/vnode/volumes/d/blob", noise, 0o644)])
    assert len(near.user_data) > 0.75 * b.MAX_VALUE_BYTES
    assert any("close to GCE's 262144" in w for w in near.warnings)
    too_big = hashlib.shake_256(b"incompressible").digest(200 * 1024)
    with pytest.raises(InvalidPod, match="over GCE's limit of 262144 bytes per value"):
        b.render(options, pod(), [VolumeFile("/var/lib/vnode/volumes/d/blob", too_big, 0o644)])


def test_options_are_checked(pki: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="instance name"):
        b.BootstrapOptions(node_name="Not_A_VM", **pki)
    with pytest.raises(ConfigError, match="PEM"):
        b.BootstrapOptions(node_name=NODE, **{**pki, "serving_key_pem": "secret"})


# -- cloud-init's own schema ------------------------------------------------------------------


def variants(options: b.BootstrapOptions) -> dict[str, b.BootstrapResult]:
    files = [
        VolumeFile("/var/lib/vnode/volumes/cfg/app.conf", b"a: 1\n", 0o644, gid=1000),
        VolumeFile("/var/lib/vnode/volumes/keys/blob", bytes(range(256)), 0o400, sensitive=True),
        VolumeFile("/var/lib/vnode/volumes/cfg/big", b"abc\n" * 5000, 0o644),
    ]
    pinned = b.PinnedDownload("https://dl.k8s.io/v1.33.13/kubelet", SHA)
    return {
        "minimal": b.render(options, pod()),
        "volumes": b.render(options, pod("with-volumes"), files, secret_manifest=True),
        "everything": b.render(
            dataclasses.replace(
                options,
                kubelet=pinned,
                cni_bridge=True,
                cni_plugins=b.PinnedDownload("https://example.test/cni.tgz", SHA),
                log_name="custom_log",
            ),
            pod("multi", initContainers=[{"name": "init", "image": "busybox"}]),
            files,
        ),
        "no-logging": b.render(dataclasses.replace(options, logging=False), pod()),
    }


def run_schema(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        ["bash", str(SCHEMA_SCRIPT), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if run.returncode == 3:
        message = f"cloud-init schema tool unavailable: {run.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must be able to install it
        pytest.skip(message)
    return run


@pytest.mark.timeout(600)
def test_user_data_passes_cloud_init_schema(options: b.BootstrapOptions, tmp_path: Path) -> None:
    paths = []
    for name, result in variants(options).items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(result.user_data)
        paths.append(path)
    run = run_schema(paths)
    assert run.returncode == 0, run.stdout + run.stderr
    for path in paths:
        assert f"Valid cloud-config: {path}" in run.stdout


@pytest.mark.timeout(600)
def test_schema_script_rejects_a_broken_document(
    options: b.BootstrapOptions, tmp_path: Path
) -> None:
    """The validator really validates: an octal number where cloud-init wants a string."""
    config = cloud_config(b.render(options, pod()))
    config["write_files"][0]["permissions"] = 0o644
    config["write_files"][0]["contents"] = "typo"
    broken = tmp_path / "broken.yaml"
    broken.write_text("#cloud-config\n" + yaml.safe_dump(config))
    run = run_schema([broken])
    assert run.returncode == 1
    assert "permissions" in run.stdout + run.stderr
    assert "contents" in run.stdout + run.stderr


def _sections(conf: str) -> dict[str, list[dict[str, list[str]]]]:
    """A classic fluent-bit config as {SECTION: [{key: [values]}]} (keys may repeat)."""
    out: dict[str, list[dict[str, list[str]]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = {}
            out.setdefault(line[1:-1], []).append(current)
            continue
        assert current is not None, line
        key, _, value = line.partition(" ")
        current.setdefault(key, []).append(value.strip())
    return out


def test_read_user_data_gives_back_what_the_vm_boots_from(
    options: b.BootstrapOptions, pki: dict[str, str]
) -> None:
    files = [VolumeFile("/var/lib/vnode/volumes/keys/blob", bytes(range(256)), 0o400)]
    the_pod = pod()
    result = b.render(dataclasses.replace(options, log_name="batch_logs"), the_pod, files)
    view = b.read_user_data(result.user_data)
    assert view.node_name == NODE
    assert view.log_name == "batch_logs"
    assert view.kubelet_config == b.kubelet_config(options)
    assert yaml.safe_load(view.staged_manifest) == the_pod
    assert view.files["/var/lib/vnode/volumes/keys/blob"] == bytes(range(256))
    assert view.files[b.SERVING_KEY_PATH].decode() == pki["serving_key_pem"]
    quiet = b.read_user_data(b.render(dataclasses.replace(options, logging=False), pod()).user_data)
    assert quiet.log_name is None
    with pytest.raises(ValueError, match="cloud-config"):
        b.read_user_data("#!/bin/sh\necho hi\n")
    with pytest.raises(ValueError, match="does not write"):
        b.read_user_data("#cloud-config\nwrite_files: []\n")


def test_log_records_join_partial_lines_like_the_cri_parser() -> None:
    """Case h of shared/reference/kubelet/cri-logs: a 16 KiB P chunk with its F tail, an
    interleaved stderr line, and output that ended without a newline (a last P)."""
    x = "x" * 16384
    text = (
        "2026-11-23T20:02:17.211465045Z stdout F to-stdout\n"
        f"2026-11-23T20:02:17.211515991Z stdout P {x}\n"
        "2026-11-23T20:02:17.211570221Z stdout F -tail-after-16KiB\n"
        "2026-11-23T20:02:17.211572975Z stdout F short\n"
        "2026-11-23T20:02:17.211587487Z stderr F to-stderr\n"
        "2026-11-23T20:02:17.214103621Z stdout P abc\n"
    )
    reference = REFERENCE / "kubelet/cri-logs/h-partial.p__0.log"
    if reference.exists():
        assert reference.read_text() == text
    path = "/var/log/pods/default_partial-standalone-node_848fbe82092f2c8a2dff2fabd892813b/p/0.log"
    records = b.log_records(path, text, "standalone-node")
    assert [(r.timestamp, r.message, r.labels[b.LABEL_STREAM]) for r in records] == [
        ("2026-11-23T20:02:17.211465045Z", "to-stdout", "stdout"),
        ("2026-11-23T20:02:17.211515991Z", x + "-tail-after-16KiB", "stdout"),
        ("2026-11-23T20:02:17.211572975Z", "short", "stdout"),
        ("2026-11-23T20:02:17.211587487Z", "to-stderr", "stderr"),
        ("2026-11-23T20:02:17.214103621Z", "abc", "stdout"),
    ]
    assert records[0].labels == {
        "vnode.dev/namespace": "default",
        "vnode.dev/pod": "partial",
        "vnode.dev/pod-uid": "848fbe82092f2c8a2dff2fabd892813b",
        "vnode.dev/container": "p",
        "vnode.dev/restart-count": "0",
        "vnode.dev/stream": "stdout",
    }
    assert b.log_records("/elsewhere.log", text, "standalone-node")[0].labels == {}
