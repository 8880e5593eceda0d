"""Boot pieces of the simulated VM: cloud-config, the kubelet unit and its configuration,
and the static pod a manifest becomes (held against the reference captures)."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
import yaml

from tests.sandbox.vm_harness import REFERENCE, Pki, kubelet_config, random_ip, user_data
from vnode.sandbox.vm import bootconfig, cloudinit
from vnode.sandbox.vm.bootconfig import KubeletBootError
from vnode.sandbox.vm.cloudinit import CloudConfigError
from vnode.sandbox.vm.podspec import go_json, static_pod
from vnode.sandbox.vm.timings import go_duration


def test_write_files_encodings_permissions_append_and_defer(tmp_path: Path) -> None:
    text = "#cloud-config\n" + yaml.safe_dump(
        {
            "write_files": [
                {"path": "/etc/late", "content": "second\n", "append": True, "defer": True},
                {"path": "/etc/late", "content": "first\n", "owner": "root:root"},
                {
                    "path": "/etc/b64",
                    "encoding": "b64",
                    "content": base64.b64encode(b"hi").decode(),
                },
                {
                    "path": "/etc/gz",
                    "encoding": "gzip+base64",
                    "content": base64.b64encode(gzip.compress(b"zipped")).decode(),
                    "permissions": "0600",
                },
                {"path": "/opt/../etc/empty"},
            ]
        }
    )
    config = cloudinit.parse(text)
    cloudinit.apply_write_files(tmp_path, config)
    assert (tmp_path / "etc/late").read_text() == "first\nsecond\n"
    assert (tmp_path / "etc/b64").read_bytes() == b"hi"
    assert (tmp_path / "etc/gz").read_bytes() == b"zipped"
    assert oct((tmp_path / "etc/gz").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "etc/b64").stat().st_mode & 0o777) == "0o644"
    assert (tmp_path / "etc/empty").read_bytes() == b""


@pytest.mark.parametrize(
    "text",
    [
        "#!/bin/bash\necho hi\n",
        "#cloud-config\nwrite_files: [{path: /x, source: {uri: 'http://example.com'}}]\n",
        "#cloud-config\nwrite_files: [{path: relative}]\n",
        "#cloud-config\nwrite_files: [{path: /x, encoding: rot13, content: a}]\n",
        "#cloud-config\n- a list\n",
    ],
)
def test_cloud_configs_the_vm_cannot_apply_are_refused(text: str) -> None:
    with pytest.raises(CloudConfigError):
        cloudinit.parse(text)


def _boot(tmp_path: Path, text: str, hostname: str = "vm-1", **kw: bool) -> bootconfig.KubeletSetup:
    config = cloudinit.parse(text)
    cloudinit.apply_write_files(tmp_path, config)
    return bootconfig.load(tmp_path, config, hostname, **kw)


def test_kubelet_found_from_the_started_unit(tmp_path: Path) -> None:
    pki = Pki.create(random_ip(), "vm-1")
    setup = _boot(tmp_path, user_data(pki, hostname="%H"))
    assert setup.node_name == "vm-1"  # %H is the hostname, the instance name
    assert setup.unit == "kubelet.service"
    assert setup.static_pod_path == tmp_path / "etc/kubernetes/manifests"
    assert setup.file_check_frequency == 5.0
    assert setup.client_ca_file == tmp_path / "etc/kubernetes/pki/ca.crt"
    assert not setup.anonymous and setup.read_only_port == 0 and setup.port == 10250


def test_flags_win_over_the_config_file(tmp_path: Path) -> None:
    pki = Pki.create(random_ip(), "x")
    text = user_data(pki, hostname="Custom-Name --anonymous-auth=true --read-only-port 10255")
    setup = _boot(tmp_path, text)
    assert setup.node_name == "custom-name"
    assert setup.anonymous and setup.read_only_port == 10255


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runcmd": []}, "no systemd unit is started"),
        ({"config": {"authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}}}},
         "no client provided, cannot use webhook authentication"),
        ({"config": {"authentication": {"webhook": {"enabled": False}}}},
         "no client provided, cannot use webhook authorization"),
        ({"config": {"kind": "Pod"}}, "want kind KubeletConfiguration"),
        ({"config": {"tlsCertFile": "/nope.crt"}}, "no such file"),
    ],
)  # fmt: skip
def test_a_kubelet_that_would_not_start_says_why(
    tmp_path: Path, change: dict, message: str
) -> None:
    pki = Pki.create(random_ip(), "x")
    config = kubelet_config()
    if "config" in change:
        for k, v in change["config"].items():
            if k in {"authentication", "authorization"}:
                config[k] = v
                config.setdefault("authorization", {}).pop("mode", None)
            else:
                config[k] = v
    text = user_data(pki, config=config, runcmd=change.get("runcmd"))
    with pytest.raises(KubeletBootError, match=message):
        _boot(tmp_path, text)


def test_unit_parsing_joins_continuations_and_finds_wrapped_kubelets() -> None:
    unit = bootconfig.parse_unit(
        "[Service]\nEnvironment=CFG=/etc/k.yaml\nExecStartPre=/bin/true\n"
        'ExecStart=/bin/bash -c "exec /home/kubernetes/bin/kubelet \\\n  --config=${CFG}"\n'
    )
    assert bootconfig.kubelet_argv(unit, "h") == [
        "/home/kubernetes/bin/kubelet",
        "--config=/etc/k.yaml",
    ]
    unit = bootconfig.parse_unit(
        "[Service]\nEnvironment=CFG=/etc/k.yaml\nExecStart=-/usr/bin/kubelet --config=${CFG}\n"
    )
    assert bootconfig.kubelet_argv(unit, "h") == ["/usr/bin/kubelet", "--config=/etc/k.yaml"]


def _captured_item(capture: str, name: str) -> dict:
    body = json.loads((REFERENCE / "pods" / capture).read_text())
    return next(i for i in body["items"] if i["metadata"]["name"] == name)


@pytest.mark.parametrize(
    ("manifest", "capture"),
    [
        ("echo-never.yaml", "a-echo-never.1-first-seen.10255.json"),
        ("multi.yaml", "d-multi.0-first-seen.10255.json"),
        ("cmvol.yaml", "f-unsupported.1-after-6s.10255.json"),
        ("secretvol.yaml", "f-unsupported.1-after-6s.10255.json"),
        ("sa.yaml", "f-unsupported.1-after-6s.10255.json"),
        ("projtoken.yaml", "f-unsupported.1-after-6s.10255.json"),
        ("cmenv.yaml", "f-unsupported.1-after-6s.10255.json"),
        ("partial.yaml", "h-partial.1-done.10255.json"),
    ],
)
def test_static_pod_metadata_and_defaulted_spec_match_the_capture(
    manifest: str, capture: str
) -> None:
    doc = yaml.safe_load((REFERENCE / "manifests" / manifest).read_text())
    seen = dt.datetime(2026, 11, 23, 19, 59, 50, 680976, tzinfo=dt.UTC)
    pod = static_pod(doc, node_name="standalone-node", source=f"/m/cap-{manifest}", seen=seen)
    want = _captured_item(capture, f"{doc['metadata']['name']}-standalone-node")
    # Same keys in the same order (Go struct order), same values.
    assert json.dumps(pod["spec"]) == json.dumps(want["spec"])
    meta = pod["metadata"]
    assert list(meta) == list(want["metadata"])
    assert meta["name"] == want["metadata"]["name"] and meta["namespace"] == "default"
    assert meta["creationTimestamp"] is None
    assert len(meta["uid"]) == 32 and int(meta["uid"], 16) >= 0
    ann = meta["annotations"]
    assert list(ann) == list(want["metadata"]["annotations"])
    assert ann["kubernetes.io/config.hash"] == meta["uid"]
    assert ann["kubernetes.io/config.seen"] == "2026-11-23T19:59:50.680976Z"
    assert ann["kubernetes.io/config.source"] == "file"
    again = static_pod(doc, node_name="standalone-node", source=f"/m/cap-{manifest}", seen=seen)
    assert again["metadata"]["uid"] == meta["uid"]  # deterministic
    other = static_pod(doc, node_name="other-node", source=f"/m/cap-{manifest}", seen=seen)
    assert other["metadata"]["uid"] != meta["uid"]


def test_empty_pod_list_is_byte_identical() -> None:
    auth = json.loads((REFERENCE / "auth.json").read_text())
    want = next(e for e in auth["exchanges"] if e["label"] == "anonymous-enabled.10250.pods")
    body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": None}
    assert go_json(body).decode() == want["response"]["body"]
    assert go_json({"c": "a<b>&c"}) == b'{"c":"a\\u003cb\\u003e\\u0026c"}\n'


def test_backoff_message_durations_print_like_go() -> None:
    assert go_duration(10) == "10s"
    assert go_duration(20) == "20s"
    assert go_duration(160) == "2m40s"
    assert go_duration(300) == "5m0s"
    assert go_duration(0.5) == "500ms"


async def test_units_start_dependencies_first_and_a_failed_requirement_stops_the_kubelet(
    tmp_path: Path,
) -> None:
    from vnode.sandbox.vm import units

    script = '#!/bin/sh\nmkdir -p "$2"\necho "$VNODE_HOST_IP" > "$2/ip"\ncat "$1" >> "$2/ip"\n'
    text = "#cloud-config\n" + yaml.safe_dump(
        {
            "write_files": [
                {"path": "/etc/vnode/step.sh", "permissions": "0755", "content": script},
                {"path": "/etc/vnode/in", "content": "staged\n"},
                {
                    "path": "/etc/systemd/system/prep.service",
                    "content": "[Unit]\nWants=net.service\n[Service]\nType=oneshot\n"
                    "ExecStart=/etc/vnode/step.sh /etc/vnode/in /etc/out\n"
                    "ExecStart=/bin/sh -c 'iptables -A INPUT -j ACCEPT'\n"
                    "ExecStart=/etc/vnode/step.sh https://example.com/x /etc/never\n",
                },
                {
                    "path": "/etc/systemd/system/broken.service",
                    "content": "[Service]\nType=oneshot\nExecStart=/etc/vnode/in\n",
                },
                {
                    "path": "/etc/systemd/system/k.service",
                    "content": "[Unit]\nRequires=containerd.service prep.service\n"
                    "[Service]\nExecStart=/usr/bin/kubelet\n",
                },
            ],
            "runcmd": [["systemctl", "start", "--no-block", "k.service"]],
        }
    )
    config = cloudinit.parse(text)
    cloudinit.apply_write_files(tmp_path, config)
    started = bootconfig.started_units(config)
    assert started == ["k.service"]
    order = await units.start_dependencies(tmp_path, started, "k.service", "127.9.9.9", "vm")
    assert [u.name for u in order] == ["prep.service", "k.service"]
    assert (tmp_path / "etc/out/ip").read_text() == "127.9.9.9\nstaged\n"
    assert not (tmp_path / "etc/never").exists()
    # A required unit whose command fails: the kubelet's dependency failed.
    k = tmp_path / "etc/systemd/system/k.service"
    k.write_text(k.read_text().replace("prep.service", "broken.service"))
    with pytest.raises(KubeletBootError, match=r"dependency failed for k\.service"):
        await units.start_dependencies(tmp_path, started, "k.service", "127.9.9.9", "vm")


def test_resources_default_requests_from_limits_and_print_as_quantities() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "r"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "command": ["true"],
                    "resources": {"limits": {"memory": "1Gi", "cpu": 2}, "requests": {"cpu": 0.5}},
                }
            ]
        },
    }
    seen = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pod = static_pod(doc, node_name="n", source="/m/r.yaml", seen=seen)
    c = pod["spec"]["containers"][0]
    assert c["resources"] == {
        "limits": {"cpu": "2", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    assert c["imagePullPolicy"] == "Always"  # no tag means :latest
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["metadata"]["namespace"] == "default"
