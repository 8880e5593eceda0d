"""The Compute emulator through the official client and raw HTTP: bodies, rules, lists.

Every refusal is checked for the real API's answer: HTTP code, ``errors[].reason`` and
message, because that is what vnode's error classification keys on.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from tests.sandbox.compute_harness import (
    IMAGE,
    PROJECT,
    ZONE,
    RunningCompute,
    instance_body,
    running_compute,
)
from vnode.sandbox.compute.validation import validate_response


@pytest.fixture
def compute(tmp_path: Path) -> Iterator[RunningCompute]:
    with running_compute(tmp_path) as rc:
        yield rc


def raw(rc: RunningCompute, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """One plain HTTP request to the emulator (to send what the typed client cannot)."""
    url = urlsplit(rc.endpoint)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, payload


def raw_body(name: str = "raw-vm", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "machineType": f"zones/{ZONE}/machineTypes/e2-standard-2",
        "disks": [{"boot": True, "initializeParams": {"sourceImage": IMAGE}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
    }
    body.update(extra)
    return body


INSTANCES = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances"


def insert_and_wait(rc: RunningCompute, body: compute_v1.Instance, zone: str = ZONE) -> Any:
    op = rc.instances().insert(project=PROJECT, zone=zone, instance_resource=body)
    return rc.operations().wait(project=PROJECT, zone=zone, operation=op.name)


# -- insert, get, delete -------------------------------------------------------------------


def test_insert_returns_a_zonal_operation_and_the_instance_runs_on_loopback(
    compute: RunningCompute,
) -> None:
    ops = compute.operations()
    op = compute.instances().insert(
        project=PROJECT, zone=ZONE, instance_resource=instance_body("vm-1")
    )
    first = ops.get(project=PROJECT, zone=ZONE, operation=op.name)
    assert first.name.startswith("operation-")
    assert first.kind == "compute#operation"
    assert first.operation_type == "insert"
    assert first.target_link.endswith(f"/projects/{PROJECT}/zones/{ZONE}/instances/vm-1")
    assert first.self_link.endswith(f"/zones/{ZONE}/operations/{op.name}")
    assert first.zone.endswith(f"/zones/{ZONE}")

    done = ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.progress == 100
    assert not done.error.errors

    vm = compute.instances().get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert vm.status == "RUNNING"
    assert vm.kind == "compute#instance"
    assert vm.machine_type.endswith(f"/zones/{ZONE}/machineTypes/e2-standard-2")
    ip = ipaddress.ip_address(vm.network_interfaces[0].network_i_p)
    assert ip in ipaddress.ip_network("127.0.0.0/8")
    assert not vm.network_interfaces[0].access_configs  # no external IP unless asked
    assert vm.network_interfaces[0].network.endswith("/global/networks/default")
    assert vm.disks[0].boot
    assert vm.disks[0].disk_size_gb == 20
    assert vm.id == int(first.target_id)
    # The numeric id works wherever the name does.
    assert compute.instances().get(project=PROJECT, zone=ZONE, instance=str(vm.id)).name == "vm-1"


def test_internal_ips_are_unique_and_access_configs_only_when_requested(
    compute: RunningCompute,
) -> None:
    insert_and_wait(compute, instance_body("plain"))
    insert_and_wait(
        compute,
        instance_body(
            "public",
            network_interfaces=[
                {
                    "network": "global/networks/default",
                    "access_configs": [{"type_": "ONE_TO_ONE_NAT"}],
                }
            ],
        ),
    )
    plain = compute.instances().get(project=PROJECT, zone=ZONE, instance="plain")
    public = compute.instances().get(project=PROJECT, zone=ZONE, instance="public")
    assert plain.network_interfaces[0].network_i_p != public.network_interfaces[0].network_i_p
    nat = public.network_interfaces[0].access_configs[0]
    assert nat.name == "External NAT"
    assert ipaddress.ip_address(nat.nat_i_p) in ipaddress.ip_network("127.0.0.0/8")


def test_delete_removes_the_instance_and_a_missing_one_is_not_found(
    compute: RunningCompute,
) -> None:
    insert_and_wait(compute, instance_body("doomed"))
    op = compute.instances().delete(project=PROJECT, zone=ZONE, instance="doomed")
    assert op.operation_type == "delete"
    done = compute.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert done.status == compute_v1.Operation.Status.DONE
    with pytest.raises(gexc.NotFound) as e:
        compute.instances().get(project=PROJECT, zone=ZONE, instance="doomed")
    assert e.value.errors[0]["reason"] == "notFound"
    with pytest.raises(gexc.NotFound) as e:
        compute.instances().delete(project=PROJECT, zone=ZONE, instance="doomed")
    assert e.value.errors[0]["message"] == (
        f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/doomed' was not found"
    )


def test_duplicate_name_is_already_exists(compute: RunningCompute) -> None:
    insert_and_wait(compute, instance_body("twin"))
    with pytest.raises(gexc.Conflict) as e:
        compute.instances().insert(
            project=PROJECT, zone=ZONE, instance_resource=instance_body("twin")
        )
    assert e.value.errors[0]["reason"] == "alreadyExists"
    assert "instances/twin' already exists" in e.value.errors[0]["message"]


# -- requestId ---------------------------------------------------------------------------


def insert_request(name: str, rid: str) -> compute_v1.InsertInstanceRequest:
    return compute_v1.InsertInstanceRequest(
        project=PROJECT, zone=ZONE, instance_resource=instance_body(name), request_id=rid
    )


def test_request_id_makes_insert_idempotent(compute: RunningCompute) -> None:
    rid = str(uuid.uuid4())
    client = compute.instances()
    first = client.insert(request=insert_request("once", rid))
    compute.operations().wait(project=PROJECT, zone=ZONE, operation=first.name)
    again = client.insert(request=insert_request("once", rid))
    assert again.name == first.name
    assert len([i for i in compute.emulator.instances if i["name"] == "once"]) == 1
    # Without the request ID the same body is a second, conflicting insert.
    with pytest.raises(gexc.Conflict):
        client.insert(project=PROJECT, zone=ZONE, instance_resource=instance_body("once"))
    # The same holds for deletes: a retried delete returns the first operation.
    rid2 = str(uuid.uuid4())
    delete = compute_v1.DeleteInstanceRequest(
        project=PROJECT, zone=ZONE, instance="once", request_id=rid2
    )
    d1 = client.delete(request=delete)
    compute.operations().wait(project=PROJECT, zone=ZONE, operation=d1.name)
    d2 = client.delete(request=delete)
    assert d2.name == d1.name


@pytest.mark.parametrize("rid", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_request_id_must_be_a_nonzero_uuid(compute: RunningCompute, rid: str) -> None:
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(request=insert_request("rid", rid))
    assert e.value.errors[0]["reason"] == "invalid"
    assert "requestId" in e.value.errors[0]["message"]


# -- body validation -----------------------------------------------------------------------


def test_unknown_field_is_refused_by_the_front_end(compute: RunningCompute) -> None:
    status, body = raw(
        compute, "POST", INSTANCES, raw_body(colour="blue", scheduling={"preemptable": True})
    )
    assert status == 400
    err = body["error"]
    assert err["code"] == 400
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["message"] == (
        "Invalid JSON payload received. Unknown name \"colour\" at 'instance_resource': "
        "Cannot find field.\n"
        'Invalid JSON payload received. Unknown name "preemptable" at '
        "'instance_resource.scheduling': Cannot find field."
    )
    assert err["errors"][0]["reason"] == "badRequest"
    assert err["errors"][0]["domain"] == "global"
    violations = err["details"][0]["fieldViolations"]
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert [v["field"] for v in violations] == [
        "instance_resource",
        "instance_resource.scheduling",
    ]
    assert compute.emulator.instances == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"canIpForward": "yes"},
            "Invalid value at 'instance_resource.can_ip_forward' (TYPE_BOOL), \"yes\"",
        ),
        ({"name": 7}, "Invalid value at 'instance_resource.name' (TYPE_STRING), 7"),
        (
            {"disks": [{"initializeParams": {"diskSizeGb": "big", "sourceImage": IMAGE}}]},
            "Invalid value at 'instance_resource.disks[0].initialize_params.disk_size_gb' "
            '(TYPE_INT64), "big"',
        ),
        (
            {"labels": ["a"]},
            "Invalid JSON payload received. Unknown name \"labels\" at 'instance_resource': "
            "Proto field is not repeating, cannot start list.",
        ),
    ],
)
def test_wrong_json_types_are_refused(
    compute: RunningCompute, extra: dict[str, Any], message: str
) -> None:
    status, body = raw(compute, "POST", INSTANCES, raw_body(**extra))
    assert status == 400
    assert body["error"]["message"] == message
    assert body["error"]["status"] == "INVALID_ARGUMENT"


def test_bad_enum_value_is_invalid(compute: RunningCompute) -> None:
    body = instance_body("enum", scheduling={"provisioning_model": "CHEAP"})
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(project=PROJECT, zone=ZONE, instance_resource=body)
    assert e.value.errors[0]["reason"] == "invalid"
    assert e.value.errors[0]["message"].startswith(
        "Invalid value for field 'resource.scheduling.provisioningModel': 'CHEAP'."
    )


def test_missing_name_is_required(compute: RunningCompute) -> None:
    body = raw_body()
    del body["name"]
    status, answer = raw(compute, "POST", INSTANCES, body)
    assert status == 400
    assert answer["error"]["errors"] == [
        {
            "message": "Required field 'resource.name' not specified",
            "domain": "global",
            "reason": "required",
        }
    ]


@pytest.mark.parametrize(
    "name", ["Upper", "1starts-with-digit", "ends-with-dash-", "under_score", "x" * 64]
)
def test_names_follow_rfc1035(compute: RunningCompute, name: str) -> None:
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(
            project=PROJECT, zone=ZONE, instance_resource=instance_body(name)
        )
    assert e.value.errors[0]["message"] == (
        f"Invalid value for field 'resource.name': '{name}'. "
        "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'"
    )
    assert e.value.errors[0]["reason"] == "invalid"


def test_a_63_character_name_is_fine(compute: RunningCompute) -> None:
    name = "a" + "b" * 61 + "c"
    done = insert_and_wait(compute, instance_body(name))
    assert not done.error.errors


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"Owner": "x"}, "Label key 'Owner' violates format constraints."),
        ({"1st": "x"}, "Label key '1st' violates format constraints."),
        ({"k" * 64: "x"}, "violates format constraints"),
        ({"owner": "Big Value"}, "Label value 'Big Value' violates format constraints."),
        ({"owner": "v" * 64}, "violates format constraints"),
        ({f"k{i}": "v" for i in range(65)}, "Too many labels"),
    ],
)
def test_label_rules(compute: RunningCompute, labels: dict[str, str], fragment: str) -> None:
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(
            project=PROJECT, zone=ZONE, instance_resource=instance_body("lbl", labels=labels)
        )
    assert e.value.errors[0]["message"].startswith("Invalid value for field 'resource.labels': ''.")
    assert fragment in e.value.errors[0]["message"]


def test_label_refusal_carries_the_error_info_detail(compute: RunningCompute) -> None:
    status, body = raw(compute, "POST", INSTANCES, raw_body(labels={"owner": "Team-A"}))
    assert status == 400
    (detail,) = body["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert detail["reason"] == "INVALID_FIELD_VALUE"
    assert detail["domain"] == "compute.googleapis.com"
    assert detail["metadata"]["field"] == "resource.labels"
    assert detail["metadata"]["reason"].startswith("Label value 'Team-A' violates format")


def test_valid_labels_are_kept_with_a_fingerprint(compute: RunningCompute) -> None:
    labels = {"vnode-node": "n1", "vnode-pod-uid": "0f3c-11", "empty": "", "ünï": "ç_ö"}
    insert_and_wait(compute, instance_body("labelled", labels=labels))
    vm = compute.instances().get(project=PROJECT, zone=ZONE, instance="labelled")
    assert dict(vm.labels) == labels
    assert vm.label_fingerprint


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([{"key": "user-data", "value": "x" * 262145}], "is too large: maximum size 262144"),
        (
            [{"key": f"k{i}", "value": "x" * 200000} for i in range(3)],
            "The total size of all metadata keys and values must be at most 524288 bytes",
        ),
        ([{"key": "bad key", "value": "x"}], "'resource.metadata.items[0].key': 'bad key'"),
        ([{"key": "k" * 129, "value": "x"}], "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'"),
        ([{"key": "a", "value": "1"}, {"key": "a", "value": "2"}], "Duplicate metadata key"),
    ],
)
def test_metadata_limits(
    compute: RunningCompute, items: list[dict[str, str]], fragment: str
) -> None:
    body = instance_body("meta", metadata={"items": items})
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(project=PROJECT, zone=ZONE, instance_resource=body)
    assert fragment in e.value.errors[0]["message"]
    assert e.value.errors[0]["reason"] == "invalid"


def test_metadata_at_the_limit_is_accepted(compute: RunningCompute) -> None:
    items = [{"key": "user-data", "value": "x" * 262144}, {"key": "podspec", "value": "{}"}]
    insert_and_wait(compute, instance_body("meta-ok", metadata={"items": items}))
    vm = compute.emulator.instance("meta-ok")
    assert vm is not None
    assert [i["key"] for i in vm["metadata"]["items"]] == ["user-data", "podspec"]
    assert vm["metadata"]["fingerprint"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"tags": {"items": ["vnode", "Bad_Tag"]}},
            "'resource.tags.items[1]': 'Bad_Tag'. Must be a match of regex",
        ),
        (
            {"disks": [{"boot": True, "initialize_params": {"source_image": "cos stable"}}]},
            "'resource.disks[0].initializeParams.sourceImage': 'cos stable'. The URL is malformed.",
        ),
        (
            {
                "disks": [
                    {"boot": True, "initialize_params": {"source_image": IMAGE, "disk_size_gb": 5}}
                ]
            },
            "Requested disk size cannot be smaller than the image size (10 GB)",
        ),
        ({"disks": []}, "'resource.disks': ''. Boot disk must be specified."),
        ({"network_interfaces": []}, "Network interface must be specified."),
    ],
)
def test_tags_images_disks_and_interfaces(
    compute: RunningCompute, change: dict[str, Any], fragment: str
) -> None:
    body = instance_body("shape")
    for field, value in change.items():
        setattr(body, field, value)
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(project=PROJECT, zone=ZONE, instance_resource=body)
    assert fragment in e.value.errors[0]["message"]


def test_images_by_family_name_or_url_are_accepted(compute: RunningCompute) -> None:
    for i, image in enumerate(
        [
            "projects/cos-cloud/global/images/cos-121-18867-90-4",
            "https://www.googleapis.com/compute/v1/projects/cos-cloud/global/images/family/cos-121-lts",
            "global/images/my-image",
        ]
    ):
        disks = [{"boot": True, "initialize_params": {"source_image": image}}]
        assert not insert_and_wait(compute, instance_body(f"img-{i}", disks=disks)).error.errors


def test_unknown_query_parameter_and_unknown_zone(compute: RunningCompute) -> None:
    status, body = raw(compute, "GET", INSTANCES + "?colour=blue")
    assert status == 400
    assert 'Unknown name "colour": Cannot bind query parameter' in body["error"]["message"]
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().get(project=PROJECT, zone="mars-north1-a", instance="x")
    assert e.value.errors[0]["message"] == (
        "Invalid value for field 'zone': 'mars-north1-a'. Unknown zone."
    )


def test_unknown_machine_type_and_zone_mismatch(compute: RunningCompute) -> None:
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(
            project=PROJECT,
            zone=ZONE,
            instance_resource=instance_body("mt", machine_type=f"zones/{ZONE}/machineTypes/z9"),
        )
    assert "Machine type with name 'z9' does not exist in zone" in e.value.errors[0]["message"]
    with pytest.raises(gexc.BadRequest):
        compute.instances().insert(
            project=PROJECT,
            zone=ZONE,
            instance_resource=instance_body(
                "mt", machine_type="zones/us-central1-b/machineTypes/e2-small"
            ),
        )


def test_preemptible_with_automatic_restart_is_the_real_refusal(compute: RunningCompute) -> None:
    scheduling = {"preemptible": True, "automatic_restart": True}
    with pytest.raises(gexc.BadRequest) as e:
        compute.instances().insert(
            project=PROJECT,
            zone=ZONE,
            instance_resource=instance_body("pre", scheduling=scheduling),
        )
    assert e.value.errors[0]["message"] == (
        "Invalid value for field 'resource.scheduling.preemptible': 'true'. "
        "Scheduling must have preemptible be false when AutomaticRestart is true."
    )


def test_spot_and_run_duration_rules(compute: RunningCompute) -> None:
    bad = [
        {"provisioning_model": "SPOT", "on_host_maintenance": "MIGRATE"},
        {"provisioning_model": "SPOT", "automatic_restart": True},
        {"max_run_duration": {"seconds": 3600}},  # no termination action
        {"max_run_duration": {"seconds": 5}, "instance_termination_action": "DELETE"},
    ]
    for scheduling in bad:
        with pytest.raises(gexc.BadRequest):
            compute.instances().insert(
                project=PROJECT,
                zone=ZONE,
                instance_resource=instance_body("spot", scheduling=scheduling),
            )
    insert_and_wait(
        compute,
        instance_body(
            "spot",
            scheduling={
                "provisioning_model": "SPOT",
                "instance_termination_action": "DELETE",
                "max_run_duration": {"seconds": 3600},
            },
        ),
    )
    vm = compute.instances().get(project=PROJECT, zone=ZONE, instance="spot")
    assert vm.scheduling.on_host_maintenance == "TERMINATE"  # Spot defaults
    assert vm.scheduling.automatic_restart is False
    assert vm.scheduling.max_run_duration.seconds == 3600


# -- lists ---------------------------------------------------------------------------------


def test_list_by_label_filter_with_paging(compute: RunningCompute) -> None:
    for i in range(5):
        insert_and_wait(compute, instance_body(f"n1-pod-{i}", labels={"vnode-node": "n1"}))
    for i in range(2):
        insert_and_wait(compute, instance_body(f"n2-pod-{i}", labels={"vnode-node": "n2"}))
    request = compute_v1.ListInstancesRequest(
        project=PROJECT, zone=ZONE, filter='labels.vnode-node = "n1"', max_results=2
    )
    pager = compute.instances().list(request=request)
    pages = list(pager.pages)
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [i.name for p in pages for i in p.items] == [f"n1-pod-{i}" for i in range(5)]
    assert not pages[-1].next_page_token

    def listed(text: str) -> list[str]:
        req = compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter=text)
        return [i.name for i in compute.instances().list(request=req)]

    assert listed("name = n2-pod-1") == ["n2-pod-1"]
    assert listed("status != TERMINATED") == sorted(
        [f"n1-pod-{i}" for i in range(5)] + ["n2-pod-0", "n2-pod-1"]
    )
    assert listed('(labels.vnode-node = "n2") (name = "n2-pod-0")') == ["n2-pod-0"]
    assert listed("(name = n1-pod-0) OR (name = n2-pod-0)") == ["n1-pod-0", "n2-pod-0"]
    assert listed("name eq n2-.*") == ["n2-pod-0", "n2-pod-1"]
    assert listed('labels.vnode-node = "n3"') == []
    ordered = compute.instances().list(
        request=compute_v1.ListInstancesRequest(
            project=PROJECT, zone=ZONE, order_by="creationTimestamp desc", max_results=3
        )
    )
    assert [i.name for i in ordered][:2] == ["n2-pod-1", "n2-pod-0"]


def test_aggregated_list_covers_every_zone(compute: RunningCompute) -> None:
    insert_and_wait(compute, instance_body("here", labels={"vnode-node": "n1"}))
    insert_and_wait(
        compute,
        instance_body(
            "there",
            labels={"vnode-node": "n1"},
            machine_type="zones/europe-west4-a/machineTypes/e2-standard-2",
        ),
        zone="europe-west4-a",
    )
    request = compute_v1.AggregatedListInstancesRequest(
        project=PROJECT, filter='labels.vnode-node = "n1"', max_results=1
    )
    found = {
        scope: [i.name for i in scoped.instances]
        for scope, scoped in compute.instances().aggregated_list(request=request)
        if scoped.instances
    }
    assert found == {"zones/us-central1-a": ["here"], "zones/europe-west4-a": ["there"]}
    status, body = raw(compute, "GET", f"/compute/v1/projects/{PROJECT}/aggregated/instances")
    assert status == 200
    empty = body["items"]["zones/us-central1-b"]["warning"]
    assert empty["code"] == "NO_RESULTS_ON_PAGE"


def test_set_labels_checks_the_fingerprint(compute: RunningCompute) -> None:
    insert_and_wait(compute, instance_body("relabel", labels={"a": "1"}))
    client = compute.instances()
    vm = client.get(project=PROJECT, zone=ZONE, instance="relabel")
    op = client.set_labels(
        project=PROJECT,
        zone=ZONE,
        instance="relabel",
        instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
            labels={"a": "2", "b": "3"}, label_fingerprint=vm.label_fingerprint
        ),
    )
    assert op.operation_type == "setLabels"
    compute.operations().wait(project=PROJECT, zone=ZONE, operation=op.name)
    after = client.get(project=PROJECT, zone=ZONE, instance="relabel")
    assert dict(after.labels) == {"a": "2", "b": "3"}
    assert after.label_fingerprint != vm.label_fingerprint
    with pytest.raises(gexc.PreconditionFailed) as e:
        client.set_labels(
            project=PROJECT,
            zone=ZONE,
            instance="relabel",
            instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                labels={"a": "3"}, label_fingerprint=vm.label_fingerprint
            ),
        )
    assert e.value.errors[0]["reason"] == "conditionNotMet"


# -- conformance of what the emulator answers ---------------------------------------------


def test_responses_conform_to_the_discovery_document(compute: RunningCompute) -> None:
    insert_and_wait(
        compute,
        instance_body(
            "conform",
            labels={"vnode-node": "n1"},
            metadata={"items": [{"key": "podspec", "value": "{}"}]},
            service_accounts=[{"email": "default", "scopes": ["https://x/logging.write"]}],
        ),
    )
    base = f"/compute/v1/projects/{PROJECT}"
    checks = {
        "Instance": f"{INSTANCES}/conform",
        "InstanceList": INSTANCES,
        "InstanceAggregatedList": f"{base}/aggregated/instances",
        "OperationList": f"{base}/zones/{ZONE}/operations",
        "MachineType": f"{base}/zones/{ZONE}/machineTypes/g2-standard-4",
        "MachineTypeList": f"{base}/zones/{ZONE}/machineTypes",
        "MachineTypeAggregatedList": f"{base}/aggregated/machineTypes?maxResults=5",
    }
    for schema_name, path in checks.items():
        status, body = raw(compute, "GET", path)
        assert status == 200, (path, body)
        assert validate_response(schema_name, body) == [], schema_name
    status, body = raw(compute, "GET", f"{base}/zones/{ZONE}/operations")
    for op in body["items"]:
        assert validate_response("Operation", op) == []
    vm = compute.emulator.instance("conform")
    assert vm is not None
    assert vm["serviceAccounts"][0]["email"].endswith("-compute@developer.gserviceaccount.com")


def test_return_partial_success_is_tolerated_on_lists(compute: RunningCompute) -> None:
    status, body = raw(compute, "GET", INSTANCES + "?returnPartialSuccess=true&maxResults=10")
    assert status == 200
    assert body["kind"] == "compute#instanceList"


def test_unknown_paths_answer_404_json(compute: RunningCompute) -> None:
    status, body = raw(compute, "GET", f"/compute/v1/projects/{PROJECT}/global/networks")
    assert status == 404
    assert body["error"]["code"] == 404
