"""GCE settings: defaults that work, and one clear sentence for each setting that cannot."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vnode.errors import ConfigError
from vnode.settings import GCESettings, Settings, validate_gce

GOOD = GCESettings(project="my-project", zones=("us-central1-a", "us-central1-b"))


def test_defaults() -> None:
    gce = Settings().gce
    assert gce == GCESettings()
    assert gce.machine_families == ("e2", "n2")
    assert gce.image == "projects/cos-cloud/global/images/family/cos-stable"
    assert gce.boot_disk_min_gb == 10
    assert gce.max_run_duration_seconds == 4 * 3600
    assert gce.delete_delay_seconds == 60
    assert not gce.external_ip
    assert not gce.spot
    assert {s.rsplit("/", 1)[1] for s in gce.scopes} == {
        "logging.write",
        "monitoring.write",
        "devstorage.read_only",
    }
    validate_gce(GOOD)
    validate_gce(GCESettings(), in_use=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"project": ""}, "needs a project"),
        ({"project": "My_Project"}, "invalid GCE project ID"),
        ({"zones": ()}, "needs at least one zone"),
        ({"zones": ("us-central1",)}, "invalid zone 'us-central1'"),
        ({"machine_families": ()}, "at least one machine family"),
        ({"gpu_families": ("G2",)}, "invalid machine family 'G2'"),
        ({"kubelet_overhead_cpu": "a quarter"}, "invalid kubelet CPU overhead"),
        ({"kubelet_overhead_memory": "512MB"}, "invalid kubelet memory overhead"),
        ({"boot_disk_min_gb": 8}, "at least 10 GB"),
        ({"boot_disk_headroom_gb": -1}, "headroom cannot be negative"),
        ({"max_run_duration_seconds": 10}, "between 30 s and 10368000 s"),
        ({"delete_delay_seconds": -1}, "deletion delay cannot be negative"),
        ({"status_period": 0}, "VM status period must be a positive number"),
        ({"machine_types_ttl_seconds": 0}, "cache lifetime must be a positive number"),
        ({"network_tags": ("Vnode",)}, "invalid network tag 'Vnode'"),
        ({"allowed_host_paths": ("data",)}, "must be absolute"),
        ({"compute_endpoint": "127.0.0.1:8080"}, "expected an http(s) URL"),
    ],
)
def test_invalid_settings(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_gce(dataclasses.replace(GOOD, **change))
    assert message in caught.value.message


def test_a_domain_scoped_project_is_valid() -> None:
    validate_gce(dataclasses.replace(GOOD, project="example.com:my-project"))
