"""Injected faults in the Compute emulator, as the official client meets them.

Rate limits and backend errors surface as the client's typed exceptions with the real
reasons; stockouts and quota end the insert operation with the real error codes, which is
where vnode has to read them (``error.errors`` of the awaited operation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from tests.sandbox.compute_harness import (
    PROJECT,
    ZONE,
    RunningCompute,
    instance_body,
    running_compute,
)


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    with running_compute(tmp_path) as rc:
        yield rc


def insert(
    rc: RunningCompute, name: str, machine_type: str = "e2-standard-2", zone: str = ZONE
) -> compute_v1.Operation:
    body = instance_body(name, machine_type=f"zones/{zone}/machineTypes/{machine_type}")
    op = rc.instances().insert(project=PROJECT, zone=zone, instance_resource=body)
    return rc.operations().wait(project=PROJECT, zone=zone, operation=op.name)


def test_rate_limit_and_backend_errors_surface_as_client_exceptions(
    compute: RunningCompute,
) -> None:
    faults = compute.emulator.faults
    faults.fail_next("instances.insert", code=429, retry_after=3)
    faults.fail_next("compute.instances.insert", code=503)
    client = compute.instances()
    body = instance_body("flaky")
    with pytest.raises(gexc.TooManyRequests) as limited:
        client.insert(project=PROJECT, zone=ZONE, instance_resource=body)
    assert limited.value.code == 429
    assert limited.value.errors[0]["reason"] == "rateLimitExceeded"
    assert limited.value.response.headers["Retry-After"] == "3"
    assert limited.value.response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    with pytest.raises(gexc.ServiceUnavailable) as unavailable:
        client.insert(project=PROJECT, zone=ZONE, instance_resource=body)
    assert unavailable.value.errors[0]["reason"] == "backendError"
    # The script is spent: the next call goes through, and nothing was created before.
    assert compute.emulator.instances == []
    op = client.insert(project=PROJECT, zone=ZONE, instance_resource=body)
    compute.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert faults.call_count("instances.insert") == 3
    assert faults.call_count("*") >= 4  # the inserts and the operation wait


def test_scripted_errors_count_down_per_method(compute: RunningCompute) -> None:
    faults = compute.emulator.faults
    faults.fail_next("instances.list", 2, code=503)
    request = compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE)
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            compute.instances().list(request=request, retry=None)
    # Other methods are untouched while the list script runs, and the list recovers.
    compute.machine_types().get(project=PROJECT, zone=ZONE, machine_type="e2-small")
    assert list(compute.instances().list(request=request, retry=None)) == []
    faults.fail_next("zoneOperations.get", code=500, reason="internalError", message="boom")
    with pytest.raises(gexc.InternalServerError) as e:
        compute.operations().get(project=PROJECT, zone=ZONE, operation="x", retry=None)
    assert e.value.errors[0] == {"message": "boom", "domain": "global", "reason": "internalError"}


def test_older_403_rate_limit_and_method_names_checked(compute: RunningCompute) -> None:
    faults = compute.emulator.faults
    faults.fail_next("instances.delete", code=403)
    with pytest.raises(gexc.Forbidden) as e:
        compute.instances().delete(project=PROJECT, zone=ZONE, instance="x")
    assert e.value.errors[0] == {
        "message": "Rate Limit Exceeded",
        "domain": "usageLimits",
        "reason": "rateLimitExceeded",
    }
    with pytest.raises(ValueError, match="unknown Compute API method"):
        faults.fail_next("instances.create")
    with pytest.raises(ValueError):
        faults.latency(1, "instance.get")


def test_latency_delays_answers(compute: RunningCompute) -> None:
    compute.emulator.faults.latency(1.0, "instances.get")
    with pytest.raises(requests.exceptions.Timeout):
        compute.instances().get(project=PROJECT, zone=ZONE, instance="x", timeout=0.1, retry=None)
    compute.emulator.faults.latency(0, "instances.get")
    with pytest.raises(gexc.NotFound):
        compute.instances().get(project=PROJECT, zone=ZONE, instance="x", retry=None)


def test_zone_stockout_ends_the_insert_operation(compute: RunningCompute) -> None:
    faults = compute.emulator.faults
    faults.stockout(ZONE)
    done = insert(compute, "no-room")
    assert done.status == compute_v1.Operation.Status.DONE
    (error,) = done.error.errors
    assert error.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert error.message == (
        f"The zone 'projects/{PROJECT}/zones/{ZONE}' does not have enough resources available "
        "to fulfill the request.  Try a different zone, or try again later."
    )
    assert done.http_error_status_code == 503
    assert done.http_error_message == "SERVICE UNAVAILABLE"
    assert compute.emulator.instance("no-room") is None
    # Another zone has room; the stocked-out zone recovers when the stockout ends.
    other = insert(compute, "elsewhere", zone="us-central1-b")
    assert not other.error.errors
    faults.clear_stockout(ZONE)
    assert not insert(compute, "no-room").error.errors
    faults.stockout(ZONE, count=1)
    assert insert(compute, "once-unlucky").error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert not insert(compute, "then-lucky").error.errors


def test_cpu_quota_ends_the_insert_operation(compute: RunningCompute) -> None:
    compute.emulator.faults.quota("CPUS", 4, region="us-central1")
    assert not insert(compute, "fits").error.errors  # 2 of 4 CPUs
    done = insert(compute, "too-big", machine_type="e2-standard-4")
    (error,) = done.error.errors
    assert error.code == "QUOTA_EXCEEDED"
    assert error.message == "Quota 'CPUS' exceeded.  Limit: 4.0 in region us-central1."
    quota = error.error_details[0].quota_info
    assert quota.metric_name == "compute.googleapis.com/cpus"
    assert quota.limit == 4
    assert quota.dimensions["region"] == "us-central1"
    assert done.http_error_status_code == 403
    assert compute.emulator.instance("too-big") is None
    # N2 counts against N2_CPUS and another region has its own quota.
    assert not insert(compute, "n2-ok", machine_type="n2-standard-4").error.errors
    eu = insert(compute, "eu-ok", machine_type="e2-standard-4", zone="europe-west4-a")
    assert not eu.error.errors


def test_gpu_quota(compute: RunningCompute) -> None:
    compute.emulator.faults.quota("NVIDIA_L4_GPUS", 1)
    scheduling = {"on_host_maintenance": "TERMINATE"}
    body = instance_body(
        "gpu", machine_type=f"zones/{ZONE}/machineTypes/g2-standard-24", scheduling=scheduling
    )
    op = compute.instances().insert(project=PROJECT, zone=ZONE, instance_resource=body)
    done = compute.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert done.error.errors[0].message == (
        "Quota 'NVIDIA_L4_GPUS' exceeded.  Limit: 1.0 in region us-central1."
    )
