"""`vnode render` as a user runs it: files or stdin in, YAML/JSON or cloud-init out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from vnode.gce import naming
from vnode.gce.render import PLACEHOLDER_UID

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_SCRIPT = ROOT / ".ci" / "cloud-init-schema"
ZONE = "us-central1-a"

POD = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Pod
    metadata: {name: hello, namespace: team}
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: [sh, -c, "echo hi"]
        resources: {requests: {cpu: "1", memory: 2Gi}}
    """
)


def render(
    *argv: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VNODE_", "KUBE"))}
    return subprocess.run(
        [sys.executable, "-m", "vnode.cli", "render", *argv],
        cwd=ROOT, env={**base, **(env or {})}, input=stdin, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def pod_file(tmp_path: Path) -> Path:
    path = tmp_path / "pod.yaml"
    path.write_text(POD)
    return path


def test_a_pod_renders_as_yaml_with_zone_request_id_and_instance(pod_file: Path) -> None:
    done = render(str(pod_file), "--zone", ZONE, "--node-name", "burst")
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert list(doc) == ["zone", "requestId", "instance"]
    assert doc["zone"] == ZONE
    assert doc["requestId"] == naming.request_id(PLACEHOLDER_UID, ZONE)
    instance = doc["instance"]
    assert instance["name"] == naming.vm_name(PLACEHOLDER_UID)
    assert instance["labels"]["vnode-node"] == "burst"
    assert instance["labels"]["vnode-namespace"] == "team"
    user_data = next(i["value"] for i in instance["metadata"]["items"] if i["key"] == "user-data")
    assert user_data.startswith("#cloud-config\n")
    assert "      value: |\n        #cloud-config\n" in done.stdout  # readable, not escaped
    assert "placeholders for what exists only at create time" in done.stderr
    assert "built-in offline catalogue" in done.stderr


def test_json_output_and_only_the_instance(pod_file: Path) -> None:
    whole = render(str(pod_file), "--zone", ZONE, "-o", "json")
    assert whole.returncode == 0, whole.stderr
    only = render(str(pod_file), "--zone", ZONE, "--output", "json", "--only", "instance")
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout) == json.loads(whole.stdout)["instance"]


def test_stdin_environment_settings_and_a_gpu_pod() -> None:
    gpu = POD.replace('{requests: {cpu: "1", memory: 2Gi}}', '{limits: {nvidia.com/gpu: "2"}}')
    done = render("-", "--only", "instance", stdin=gpu,
                  env={"VNODE_ZONE": ZONE, "VNODE_SPOT": "true"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    instance = yaml.safe_load(done.stdout)
    assert instance["machineType"].startswith(f"zones/{ZONE}/machineTypes/g2-")
    assert instance["scheduling"]["provisioningModel"] == "SPOT"
    assert instance["scheduling"]["onHostMaintenance"] == "TERMINATE"


def test_a_pod_with_a_pvc_exits_1_with_the_reason_the_pod_would_get(tmp_path: Path) -> None:
    path = tmp_path / "claimed.yaml"
    path.write_text(POD + "  volumes:\n  - {name: data, persistentVolumeClaim: {claimName: d}}\n")
    done = render(str(path), "--zone", ZONE)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        'vnode render: the pod cannot run on a vnode VM: FailedMount: volume "data" is a '
        "persistentVolumeClaim volume"
    )


def test_a_jobs_pod_template_with_its_configmap_from_a_file(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        textwrap.dedent(
            """\
            apiVersion: batch/v1
            kind: Job
            metadata: {name: crunch}
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers:
                  - name: main
                    image: busybox
                    command: [sh, -c, "echo $MODE"]
                    envFrom: [{configMapRef: {name: settings}}]
            """
        )
    )
    missing = render(str(job), "--zone", ZONE)
    assert missing.returncode == 1
    assert 'configmap "settings" not found' in missing.stderr
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "ConfigMap", "metadata": {"name": "settings"},
         "data": {"MODE": "fast"}}]}))  # fmt: skip
    done = render(str(job), "--zone", ZONE, "-f", str(config), "--only", "user-data")
    assert done.returncode == 0, done.stderr
    staged = next(
        e for e in yaml.safe_load(done.stdout)["write_files"] if e["path"] == "/etc/vnode/pod.yaml"
    )
    manifest = yaml.safe_load(staged["content"])
    assert manifest["metadata"]["name"] == "crunch-rendered"
    assert {"name": "MODE", "value": "fast"} in manifest["spec"]["containers"][0]["env"]


def test_machine_types_from_a_file(pod_file: Path, tmp_path: Path) -> None:
    types = tmp_path / "types.json"
    types.write_text(json.dumps([
        {"name": "n2-standard-8", "guestCpus": 8, "memoryMb": 32768, "isSharedCpu": False,
         "maximumPersistentDisksSizeGb": "263168"}]))  # fmt: skip
    done = render(str(pod_file), "--zone", "us-east1-b", "--machine-family", "n2",
                  "--no-allow-custom-machine-types", "--machine-types", str(types),
                  "--only", "instance")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        yaml.safe_load(done.stdout)["machineType"] == "zones/us-east1-b/machineTypes/n2-standard-8"
    )
    assert "offline catalogue" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        ([], POD, "vnode render: error: give the zone(s) vnode places VMs in: --zone"),
        (["--zone", "nowhere"], POD, "vnode render: error: invalid zone 'nowhere'"),
        (["--zone", ZONE], "kind: ConfigMap\nmetadata: {name: x}\n", "holds no Pod"),
        (["--zone", ZONE], "a: [b\n", "vnode render: error: stdin is not valid YAML or JSON"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], stdin: str, message: str) -> None:
    done = render("-", *argv, stdin=stdin)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(600)
def test_the_user_data_passes_cloud_init_schema(pod_file: Path, tmp_path: Path) -> None:
    done = render(str(pod_file), "--zone", ZONE, "--only", "user-data", "--cni-bridge")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "user-data.yaml"
    path.write_text(done.stdout)
    run = subprocess.run(["bash", str(SCHEMA_SCRIPT), str(path)], capture_output=True,
                         text=True, check=False, timeout=600)  # fmt: skip
    if run.returncode == 3:  # the same rule as tests/gce/test_bootstrap.py
        message = f"cloud-init schema tool unavailable: {run.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Valid cloud-config: {path}" in run.stdout
