"""The `vnode` command line: flags and VNODE_* variables into Settings, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vnode import cli
from vnode.settings import DEFAULT_TAINT, NodeSettings, Settings, Taint

ROOT = Path(__file__).resolve().parent.parent


def settings(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = cli.build_parser()
    args = parser.parse_args(["run", *argv])
    return cli.settings_from(args, args.run_parser, env or {})


def test_defaults() -> None:
    s = settings([])
    assert s == Settings()
    assert s.node.taints == (DEFAULT_TAINT,)
    assert s.kubelet_api.port == 10250


def test_every_flag(tmp_path: Path) -> None:
    ca, cert, key, kubeconfig = (tmp_path / n for n in ("ca.crt", "tls.crt", "tls.key", "kc"))
    s = settings([
        "--provider", "tests.providers:FakeProvider", "--node-name", "burst-1",
        "--kubeconfig", str(kubeconfig), "--kubelet-address", "127.0.0.1",
        "--kubelet-port", "0", "--client-ca-file", str(ca),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--internal-ip", "10.0.0.7", "--taint", "a=b:NoExecute", "--taint", "c:NoSchedule",
        "--label", "team=ml", "--label", "tier=batch", "--capacity", "cpu=64",
        "--capacity", "nvidia.com/gpu=8", "--region", "europe-west4",
        "--zone", "europe-west4-a", "--provider-id", "vnode://x/burst-1", "--workers", "3",
        "--status-period", "2.5", "--node-status-period", "30", "--lease-duration", "20",
        "--lease-renew-interval", "5", "--lease-retry-interval", "0.5",
        "--node-check-period", "3", "--shutdown-timeout", "9",
    ])  # fmt: skip
    assert s.provider == "tests.providers:FakeProvider"
    assert s.node.name == "burst-1"
    assert s.kube.kubeconfig == kubeconfig
    assert (s.kubelet_api.address, s.kubelet_api.port) == ("127.0.0.1", 0)
    assert s.kubelet_api.client_ca_file == ca
    assert (s.kubelet_api.cert_file, s.kubelet_api.key_file) == (cert, key)
    assert s.node.internal_ip == "10.0.0.7"
    assert s.node.taints == (Taint("a", "b", "NoExecute"), Taint("c", "", "NoSchedule"))
    assert s.node.labels == {"team": "ml", "tier": "batch"}
    assert s.node.capacity == {**NodeSettings().capacity, "cpu": "64", "nvidia.com/gpu": "8"}
    assert (s.node.region, s.node.zone) == ("europe-west4", "europe-west4-a")
    assert s.node.provider_id == "vnode://x/burst-1"
    assert (s.pods.workers, s.pods.status_period) == (3, 2.5)
    assert (s.node.status_period, s.node.check_period) == (30, 3)
    assert (s.lease.duration_seconds, s.lease.renew_interval, s.lease.retry_interval) == (
        20, 5, 0.5,
    )  # fmt: skip
    assert s.shutdown_timeout == 9


def test_environment_variables() -> None:
    env = {
        "VNODE_PROVIDER": "tests.providers:FakeProvider",
        "VNODE_NODE_NAME": "from-env",
        "VNODE_CLIENT_CA_FILE": "/ca.crt",
        "VNODE_KUBELET_PORT": "10350",
        "VNODE_TAINT": "a:NoSchedule,b=c:NoExecute",
        "VNODE_LABEL": "x=1, y=2",
        "VNODE_CAPACITY": "pods=110",
        "VNODE_LEASE_RENEW_INTERVAL": "0.5",
        "VNODE_WORKERS": "2",
    }
    s = settings([], env)
    assert s.provider == "tests.providers:FakeProvider"
    assert s.node.name == "from-env"
    assert s.kubelet_api.client_ca_file == Path("/ca.crt")
    assert s.kubelet_api.port == 10350
    assert s.node.taints == (Taint("a", "", "NoSchedule"), Taint("b", "c", "NoExecute"))
    assert s.node.labels == {"x": "1", "y": "2"}
    assert s.node.capacity["pods"] == "110"
    assert s.lease.renew_interval == 0.5
    assert s.pods.workers == 2


def test_flags_win_over_the_environment() -> None:
    s = settings(["--node-name", "flag"], {"VNODE_NODE_NAME": "env"})
    assert s.node.name == "flag"


def test_kubeconfig_fallbacks() -> None:
    assert settings([], {"KUBECONFIG": "/k1"}).kube.kubeconfig == Path("/k1")
    both = {"KUBECONFIG": "/k1", "VNODE_KUBECONFIG": "/k2"}
    assert settings([], both).kube.kubeconfig == Path("/k2")
    assert settings(["--kubeconfig", "/k3"], both).kube.kubeconfig == Path("/k3")
    assert settings([], {}).kube.kubeconfig is None


def test_internal_ip_falls_back_to_the_pod_ip() -> None:
    assert settings([], {"VNODE_POD_IP": "10.4.0.9"}).node.internal_ip == "10.4.0.9"
    env = {"VNODE_POD_IP": "10.4.0.9", "VNODE_INTERNAL_IP": "10.9.9.9"}
    assert settings([], env).node.internal_ip == "10.9.9.9"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--taint", ""], {}),
        (["--no-default-taint"], {}),
        ([], {"VNODE_TAINT": ""}),
        ([], {"VNODE_NO_DEFAULT_TAINT": "true"}),
    ],
)
def test_the_default_taint_is_removable(argv: list[str], env: dict[str, str]) -> None:
    assert settings(argv, env).node.taints == ()


def test_no_default_taint_keeps_other_taints() -> None:
    s = settings(["--taint", "virtual-kubelet.io/provider=gce:NoSchedule", "--taint",
                  "x:NoSchedule", "--no-default-taint"])  # fmt: skip
    assert s.node.taints == (Taint("x", "", "NoSchedule"),)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--kubelet-port", "abc"], {}, "invalid --kubelet-port 'abc': expected an integer"),
        (["--kubelet-port", "70000"], {}, "invalid kubelet port 70000"),
        (["--taint", "nope"], {}, "invalid taint 'nope'"),
        (["--taint", "k=v:Sometimes"], {}, "invalid taint 'k=v:Sometimes'"),
        (["--label", "novalue"], {}, "invalid label 'novalue': expected key=value"),
        (["--label", "bad key=1"], {}, "invalid label 'bad key=1'"),
        (["--capacity", "cpu=lots"], {}, "'lots' is not a quantity"),
        (["--node-name", "Not_A_Name"], {}, "invalid node name 'Not_A_Name'"),
        (["--client-ca-file", "/nonexistent/ca.crt"], {}, "client CA file /nonexistent/ca.crt"),
        (["--tls-cert-file", "/etc/hostname"], {}, "give both --tls-cert-file and --tls-key-file"),
        (["--internal-ip", "not-an-ip"], {}, "invalid internal IP 'not-an-ip'"),
        (["--lease-renew-interval", "50"], {}, "must be shorter than the lease duration"),
        (["--lease-retry-interval", "0"], {}, "lease retry interval must be a positive"),
        (["--provider", "nocolon"], {}, "invalid provider 'nocolon'"),
        ([], {"VNODE_WORKERS": "0"}, "workers must be at least 1"),
        ([], {"VNODE_NO_DEFAULT_TAINT": "maybe"}, "invalid VNODE_NO_DEFAULT_TAINT='maybe'"),
        ([], {"VNODE_LOG_LEVEL": "chatty"}, "invalid log level 'chatty'"),
        (["--provider", "no_such_module_here:Provider"], {},
         "cannot import provider module 'no_such_module_here'"),
        (["--provider", "tests.providers:Nope"], {}, "has no 'Nope'"),
        (["--provider", "tests.providers:Script"], {}, "does not implement the Provider"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    ],
)  # fmt: skip
def test_invalid_settings_one_line_exit_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in [k for k in os.environ if k.startswith("VNODE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, err = run_main(["run", *argv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert lines[0].startswith(("vnode run: error: ", "vnode: error: "))


def vnode(*argv: str, env: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vnode.cli", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_without_any_kubernetes_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VNODE_", "KUBE"))}  # fmt: skip
    env["HOME"] = str(tmp_path)
    done = vnode("run", "--provider", "tests.providers:FakeProvider", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"vnode run: error: no Kubernetes configuration: give --kubeconfig (or KUBECONFIG), "
        f"run in a cluster, or create {tmp_path / '.kube/config'}"
    ]


def test_a_broken_kubeconfig(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    done = vnode("run", "--provider", "tests.providers:FakeProvider", "--kubeconfig", str(broken))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"vnode run: error: cannot load the Kubernetes configuration "
                               f"from {broken}")  # fmt: skip


def test_version_and_help_still_work() -> None:
    done = vnode("version")
    assert done.returncode == 0
    assert done.stdout.startswith("vnode ")
    for command in ("run", "sandbox"):
        done = vnode(command, "--help")
        assert done.returncode == 0
        assert "usage: vnode " + command in done.stdout
    done = vnode("run", "--help")
    assert "VNODE_<FLAG>" in done.stdout


def test_zones_region_and_gce_settings() -> None:
    s = settings([
        "--provider", "gce", "--project", "my-project", "--zone", "europe-west4-a",
        "--zone", "europe-west4-b", "--machine-family", "n2", "--spot", "--no-external-ip",
        "--vm-status-period", "5", "--boot-disk-min-gb", "20", "--network-tag", "a",
        "--network-tag", "b", "--no-service-account-tokens",
    ])  # fmt: skip
    assert s.node.zone == "europe-west4-a"
    assert s.node.region == "europe-west4"  # derived from the first zone
    gce = s.gce
    assert gce.project == "my-project"
    assert gce.zones == ("europe-west4-a", "europe-west4-b")
    assert gce.machine_families == ("n2",)
    assert gce.spot is True
    assert gce.external_ip is False
    assert gce.status_period == 5.0
    assert gce.boot_disk_min_gb == 20
    assert gce.network_tags == ("a", "b")
    assert gce.service_account_tokens is False
    assert gce.gpu_families == ("g2",)  # untouched fields keep their defaults


def test_gce_settings_from_the_environment() -> None:
    s = settings([], {
        "VNODE_PROJECT": "p-123456", "VNODE_ZONE": "us-central1-a,us-central1-f",
        "VNODE_COMPUTE_ENDPOINT": "http://127.0.0.1:8089", "VNODE_SPOT": "yes",
        "VNODE_CNI_BRIDGE": "false",
    })  # fmt: skip
    assert s.gce.project == "p-123456"
    assert s.gce.zones == ("us-central1-a", "us-central1-f")
    assert s.gce.compute_endpoint == "http://127.0.0.1:8089"
    assert (s.gce.spot, s.gce.cni_bridge) == (True, False)
    assert s.node.region == "us-central1"


def test_an_explicit_region_wins_and_other_zone_names_derive_none() -> None:
    assert settings(["--zone", "us-central1-a", "--region", "r"]).node.region == "r"
    assert settings(["--zone", "rack-7"]).node.region == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "gce"], "the GCE provider needs a project (--project or VNODE_PROJECT)"),
        (["--provider", "gce", "--project", "my-project"], "needs at least one zone"),
        (["--provider", "gce", "--project", "my-project", "--zone", "nowhere"],
         "invalid zone 'nowhere'"),
        (["--boot-disk-min-gb", "lots"], "invalid --boot-disk-min-gb 'lots': expected an integer"),
    ],
)  # fmt: skip
def test_invalid_gce_settings_one_line_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in [k for k in os.environ if k.startswith("VNODE_")]:
        monkeypatch.delenv(key)
    code, err = run_main(["run", *argv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vnode run: error: ")
    assert message in lines[0]


def test_help_documents_the_gce_flags_from_the_settings() -> None:
    done = vnode("run", "--help")
    assert "GCE provider (--provider gce):" in done.stdout
    assert "--project PROJECT" in done.stdout
    assert "--spot, --no-spot" in done.stdout
    assert "E2 is the cheapest general-purpose family" in " ".join(done.stdout.split())


def test_every_gce_setting_has_its_own_flag() -> None:
    """A new GCESettings field gets a flag; one colliding with a Node flag would not."""
    import dataclasses

    from vnode.settings import GCESettings

    parser = cli.build_parser()
    run = parser.parse_args(["run"]).run_parser
    group = next(g for g in run._action_groups if g.title == "GCE provider (--provider gce)")
    flags = {s for a in group._group_actions for s in a.option_strings}
    for f in dataclasses.fields(GCESettings):
        if f.name == "zones":  # shared with the Node's zone label on purpose
            continue
        assert cli._gce_flag(f.name) in flags, f"GCESettings.{f.name} has no flag of its own"
