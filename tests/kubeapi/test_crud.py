"""Create, read, update, list and delete through the official client, as a real cluster answers.

Metadata the server owns (uid, resourceVersion, creationTimestamp, generation,
generateName, managedFields), namespaces that must exist, optimistic concurrency, the
defaults a real v1.33 server applies (reference captures ``06-…``), paging and the list
resourceVersion rules (``04-errors``).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import RunningKubeAPI, reference

pytestmark = pytest.mark.kubeapi(controllers=False)

POD = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def pod(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    body["spec"].update(spec)
    return body


def status_of(e: ApiException) -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads(e.body)
    return loaded


def test_create_sets_server_owned_metadata(k8s: Any, kubeapi: RunningKubeAPI) -> None:
    v1 = client.CoreV1Api(k8s)
    first = v1.create_namespaced_pod("default", POD)
    second = v1.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}})
    assert uuid.UUID(first.metadata.uid).version == 4
    assert isinstance(first.metadata.resource_version, str)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.generation == 1
    assert second.metadata.generation is None  # only kinds with a generation carry one
    raw = kubeapi.request("GET", "/api/v1/namespaces/default/pods/web").json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw["metadata"]["creationTimestamp"])
    entry = raw["metadata"]["managedFields"][0]
    assert entry["operation"] == "Update" and entry["fieldsType"] == "FieldsV1"
    assert entry["manager"] == k8s.user_agent.split("/")[0]
    assert "f:spec" in entry["fieldsV1"]
    made = kubeapi.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ua"}, "data": {"a": "b"}},
    )
    assert made.json()["metadata"]["managedFields"][0]["manager"] == "vnode-tests"


def test_generate_name_adds_five_characters(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    made = v1.create_namespaced_config_map("default", {"metadata": {"generateName": "cfg-"}})
    assert re.fullmatch(r"cfg-[bcdfghjklmnpqrstvwxz2456789]{5}", made.metadata.name)
    assert made.metadata.generate_name == "cfg-"


def test_namespace_must_exist(kubeapi: RunningKubeAPI) -> None:
    expected = reference("04-errors/404-create-in-missing-namespace.json")["response"]["body"]
    got = kubeapi.request(
        "POST",
        "/api/v1/namespaces/nosuchns/pods",
        {"apiVersion": "v1", "kind": "Pod", **pod("ref-err")},
    )
    assert got.status == 404
    assert got.json() == expected


def test_system_namespaces_and_their_defaults(k8s: Any, kubeapi: RunningKubeAPI) -> None:
    v1 = client.CoreV1Api(k8s)
    names = {n.metadata.name for n in v1.list_namespace().items}
    assert {"default", "kube-system", "kube-node-lease", "kube-public"} <= names
    ns = v1.read_namespace("default")
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "default"
    v1.create_namespace({"metadata": {"name": "team-a"}})
    ca = v1.read_namespaced_config_map("kube-root-ca.crt", "team-a")
    assert ca.data["ca.crt"] == (kubeapi.state_dir / "pki" / "ca.crt").read_text()
    assert v1.read_namespaced_service_account("default", "team-a").metadata.name == "default"


def test_create_existing_is_409_already_exists(kubeapi: RunningKubeAPI) -> None:
    expected = reference("04-errors/409-create-existing-pod-AlreadyExists.json")
    body = expected["request"]["body"]
    assert kubeapi.request("POST", "/api/v1/namespaces/default/pods", body).status == 201
    got = kubeapi.request("POST", "/api/v1/namespaces/default/pods", body)
    assert got.status == 409
    assert got.json() == expected["response"]["body"]


def test_stale_put_is_409_conflict(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "ref-err"}})
    cm.data = {"a": "1"}
    v1.replace_namespaced_config_map("ref-err", "default", cm)  # cm still carries the old RV
    cm.data = {"a": "2"}
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_config_map("ref-err", "default", cm)
    assert e.value.status == 409
    assert status_of(e.value)["message"] == (
        'Operation cannot be fulfilled on configmaps "ref-err": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert status_of(e.value)["details"] == {"name": "ref-err", "kind": "configmaps"}


def test_put_without_change_keeps_resource_version(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    cm = v1.create_namespaced_config_map(
        "default", {"metadata": {"name": "same"}, "data": {"a": "1"}}
    )
    again = v1.replace_namespaced_config_map("same", "default", cm)
    assert again.metadata.resource_version == cm.metadata.resource_version


def test_crud_on_every_stored_kind(k8s: Any, kubeapi: RunningKubeAPI) -> None:
    v1 = client.CoreV1Api(k8s)
    coord = client.CoordinationV1Api(k8s)
    batch = client.BatchV1Api(k8s)
    events = client.EventsV1Api(k8s)
    ns = "default"
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    v1.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    v1.create_namespaced_service_account(ns, {"metadata": {"name": "sa"}})
    v1.create_namespaced_event(
        ns,
        {
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": ns},
            "reason": "R",
            "message": "m",
        },
    )
    events.create_namespaced_event(
        ns,
        {
            "metadata": {"name": "e2"},
            "eventTime": "2026-11-23T20:13:06.001057Z",
            "reportingController": "x",
            "reportingInstance": "y",
            "action": "A",
            "reason": "R",
            "type": "Normal",
            "regarding": {"kind": "Pod", "name": "x"},
        },
    )
    coord.create_namespaced_lease(
        ns, {"metadata": {"name": "l"}, "spec": {"holderIdentity": "n", "leaseDurationSeconds": 40}}
    )
    batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "m", "image": "busybox"}],
                    }
                }
            },
        },
    )
    v1.create_node({"metadata": {"name": "n1"}})
    v1.create_namespace({"metadata": {"name": "ns1"}})
    v1.create_namespaced_pod(ns, POD)

    cm = v1.read_namespaced_config_map("c", ns)
    cm.data["k"] = "w"
    assert v1.replace_namespaced_config_map("c", ns, cm).data == {"k": "w"}
    assert v1.read_namespaced_secret("s", ns).type == "Opaque"
    assert v1.read_namespaced_secret("s", ns).data == {"k": "dg=="}
    lease = coord.read_namespaced_lease("l", ns)
    lease.spec.holder_identity = "m"
    assert coord.replace_namespaced_lease("l", ns, lease).spec.holder_identity == "m"
    assert {e.metadata.name for e in v1.list_namespaced_event(ns).items} >= {"e", "e2"}
    # Read raw: the client's EventsV1Event model rejects the null eventTime that core/v1
    # Events show through events.k8s.io/v1 (on a real server as well).
    viewed = kubeapi.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events").json()
    assert {e["metadata"]["name"] for e in viewed["items"]} >= {"e", "e2"}
    assert batch.read_namespaced_job("j", ns).spec.backoff_limit == 6
    assert v1.read_node("n1").metadata.name == "n1"
    assert [p.metadata.name for p in v1.list_pod_for_all_namespaces().items] == ["web"]

    v1.delete_namespaced_config_map("c", ns)
    v1.delete_namespaced_secret("s", ns)
    v1.delete_namespaced_service_account("sa", ns)
    v1.delete_namespaced_event("e", ns)
    events.delete_namespaced_event("e2", ns)
    coord.delete_namespaced_lease("l", ns)
    batch.delete_namespaced_job("j", ns, propagation_policy="Background")
    v1.delete_node("n1")
    v1.delete_namespace("ns1")
    v1.delete_namespaced_pod("web", ns)  # unscheduled: removed at once
    for read in (
        lambda: v1.read_namespaced_config_map("c", ns),
        lambda: v1.read_namespaced_secret("s", ns),
        lambda: coord.read_namespaced_lease("l", ns),
        lambda: batch.read_namespaced_job("j", ns),
        lambda: v1.read_node("n1"),
        lambda: v1.read_namespace("ns1"),
        lambda: v1.read_namespaced_pod("web", ns),
    ):
        with pytest.raises(ApiException) as e:
            read()
        assert e.value.status == 404


def _strip_volume_suffix(obj: Any) -> Any:
    import json

    text = json.dumps(obj)
    return json.loads(re.sub(r"kube-api-access-[a-z0-9]{5}", "kube-api-access-XXXXX", text))


def _upstream(spec: dict[str, Any]) -> dict[str, Any]:
    """The reference server's spec without its OpenShift-only projected source."""
    for vol in spec.get("volumes", []):
        sources = vol.get("projected", {}).get("sources")
        if sources:
            vol["projected"]["sources"] = [
                s
                for s in sources
                if s.get("configMap", {}).get("name") != "openshift-service-ca.crt"
            ]
    return spec


@pytest.mark.parametrize(
    "capture", ["01-create-minimal-pod.json", "03-create-pod-more-defaulting.json"]
)
def test_pod_defaulting_matches_the_reference(kubeapi: RunningKubeAPI, capture: str) -> None:
    ref = reference(f"06-create-metadata-defaulting-status-patches-delete/{capture}")
    body = ref["request"]["body"]
    want = ref["response"]["body"]
    got = kubeapi.request("POST", "/api/v1/namespaces/default/pods", body)
    assert got.status == 201, got.raw
    obj = got.json()
    assert _strip_volume_suffix(obj["spec"]) == _strip_volume_suffix(_upstream(want["spec"]))
    assert obj["status"] == want["status"]
    assert obj["metadata"].get("labels") == want["metadata"].get("labels")
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields == want["metadata"]["managedFields"][0]["fieldsV1"]


def test_job_defaults_and_selector(k8s: Any) -> None:
    batch = client.BatchV1Api(k8s)
    job = batch.create_namespaced_job(
        "default",
        {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "m", "image": "busybox"}],
                    },
                }
            },
        },
    )
    spec = job.spec
    assert (spec.completions, spec.parallelism, spec.backoff_limit) == (1, 1, 6)
    assert spec.completion_mode == "NonIndexed" and spec.suspend is False
    assert spec.pod_replacement_policy == "TerminatingOrFailed"
    assert spec.manual_selector is None
    uid = job.metadata.uid
    assert spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert spec.template.metadata.labels == {
        "app": "x",
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "j",
        "controller-uid": uid,
        "job-name": "j",
    }


def test_node_create_adds_not_ready_taint(kubeapi: RunningKubeAPI) -> None:
    ref = reference("02-kubectl/fixtures/node-create.json")
    got = kubeapi.request("POST", "/api/v1/nodes", ref["request"]["body"])
    assert got.status == 201
    obj = got.json()
    want = ref["response"]["body"]
    assert obj["spec"] == want["spec"]
    assert obj["metadata"]["labels"] == want["metadata"]["labels"]
    assert obj["status"]["conditions"][0]["type"] == "Ready"
    assert "generation" not in obj["metadata"]


def test_main_resource_update_keeps_status_and_status_update_keeps_spec(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", pod("p", schedulerName="none"))
    current = v1.read_namespaced_pod("p", "default")
    current.status.phase = "Failed"
    current.metadata.labels = {"via": "main"}
    after = v1.replace_namespaced_pod("p", "default", current)
    assert after.status.phase == "Pending" and after.metadata.labels == {"via": "main"}
    after.status.phase = "Running"
    after.spec.active_deadline_seconds = 100
    after.metadata.labels = {"via": "status"}
    st = v1.replace_namespaced_pod_status("p", "default", after)
    assert st.status.phase == "Running"
    assert st.spec.active_deadline_seconds is None
    assert st.metadata.labels == {"via": "status"}


def test_generation_follows_spec_changes(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", pod("g"))
    p = v1.read_namespaced_pod("g", "default")
    p.spec.containers[0].image = "busybox:1.37"
    changed = v1.replace_namespaced_pod("g", "default", p)
    assert changed.metadata.generation == 2
    changed.metadata.labels = {"x": "y"}
    assert v1.replace_namespaced_pod("g", "default", changed).metadata.generation == 2


def test_list_pages_with_limit_and_continue(k8s: Any, kubeapi: RunningKubeAPI) -> None:
    v1 = client.CoreV1Api(k8s)
    for i in range(5):
        v1.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = v1.list_namespaced_config_map("default", limit=2, _continue=token, label_selector="")
        pages += 1
        names.extend(c.metadata.name for c in page.items)
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count >= 1
    assert names == ["c0", "c1", "c2", "c3", "c4", "kube-root-ca.crt"]
    assert pages == 3
    bad = reference("04-errors/400-list-bad-continue.json")
    got = kubeapi.request("GET", bad["request"]["url"])
    assert got.status == 400
    assert got.json() == bad["response"]["body"]


@pytest.mark.parametrize(
    "capture",
    [
        "410-list-rv-1-exact.json",
        "410-list-rv-1-with-limit-no-match.json",
        "422-list-rvmatch-without-rv.json",
    ],
)
def test_list_resource_version_rules(kubeapi: RunningKubeAPI, capture: str) -> None:
    ref = reference(f"04-errors/{capture}")
    got = kubeapi.request("GET", ref["request"]["url"])
    assert got.status == ref["response"]["status"]
    assert got.json() == ref["response"]["body"]


def test_list_in_the_future_is_504_and_past_is_current(kubeapi: RunningKubeAPI) -> None:
    got = kubeapi.request("GET", "/api/v1/namespaces/default/pods?resourceVersion=100583")
    assert got.status == 504
    body = got.json()
    current = kubeapi.api.store.resource_version
    assert body["message"] == f"Timeout: Too large resource version: 100583, current: {current}"
    assert body["details"]["retryAfterSeconds"] == 1
    assert got.header("Retry-After") == "1"
    ok = kubeapi.request("GET", "/api/v1/namespaces/default/pods?resourceVersion=1")
    assert ok.status == 200 and ok.json()["metadata"]["resourceVersion"] == str(current)


def test_list_with_label_and_field_selectors(k8s: Any) -> None:
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod(
        "default", {**pod("a", nodeName="n1"), "metadata": {"name": "a", "labels": {"app": "x"}}}
    )
    v1.create_namespaced_pod(
        "default", {**pod("b"), "metadata": {"name": "b", "labels": {"app": "y"}}}
    )
    by_label = v1.list_namespaced_pod("default", label_selector="app=x")
    assert [p.metadata.name for p in by_label.items] == ["a"]
    by_field = v1.list_namespaced_pod("default", field_selector="spec.nodeName=n1")
    assert [p.metadata.name for p in by_field.items] == ["a"]
    unbound = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=")
    assert [p.metadata.name for p in unbound.items] == ["b"]
    by_name = v1.list_namespaced_pod(
        "default", field_selector="metadata.name=b", label_selector="app in (x,y)"
    )
    assert [p.metadata.name for p in by_name.items] == ["b"]
    with pytest.raises(ApiException) as e:
        v1.list_namespaced_pod("default", field_selector="spec.foo=bar")
    assert e.value.status == 400
    assert status_of(e.value)["message"] == "field label not supported: spec.foo"


async def test_aio_client_crud(kubeapi: RunningKubeAPI) -> None:
    from kubernetes.aio import client as aclient
    from kubernetes.aio import config as aconfig

    api = await aconfig.new_client_from_config(str(kubeapi.kubeconfig))
    try:
        v1 = aclient.CoreV1Api(api)
        made = await v1.create_namespaced_config_map(
            "default", {"metadata": {"name": "aio"}, "data": {"a": "1"}}
        )
        got = await v1.read_namespaced_config_map("aio", "default")
        assert got.metadata.uid == made.metadata.uid
        got.data = {"a": "2"}
        replaced = await v1.replace_namespaced_config_map("aio", "default", got)
        assert int(replaced.metadata.resource_version) > int(made.metadata.resource_version)
        listed = await v1.list_namespaced_config_map("default")
        assert "aio" in {c.metadata.name for c in listed.items}
        await v1.delete_namespaced_config_map("aio", "default")
        with pytest.raises(aclient.ApiException) as e:
            await v1.read_namespaced_config_map("aio", "default")
        assert e.value.status == 404
    finally:
        await api.close()


def test_dry_run_create_stores_nothing(kubeapi: RunningKubeAPI) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}
    got = kubeapi.request("POST", "/api/v1/namespaces/default/configmaps?dryRun=All", body)
    assert got.status == 201
    assert got.json()["metadata"]["name"] == "dry"
    assert kubeapi.request("GET", "/api/v1/namespaces/default/configmaps/dry").status == 404


def test_events_v1_update_answers_in_its_own_view(kubeapi: RunningKubeAPI) -> None:
    base = "/apis/events.k8s.io/v1/namespaces/default/events"
    made = kubeapi.request(
        "POST",
        base,
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "ev"},
            "eventTime": "2026-11-23T20:13:06.001057Z",
            "reportingController": "x",
            "reportingInstance": "y",
            "action": "A",
            "reason": "R",
            "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p"},
            "note": "one",
        },
    ).json()
    made["note"] = "two"
    got = kubeapi.request("PUT", f"{base}/ev", made).json()
    assert got["apiVersion"] == "events.k8s.io/v1" and got["note"] == "two"
    core = kubeapi.request("GET", "/api/v1/namespaces/default/events/ev").json()
    assert core["message"] == "two"


def test_put_with_another_uid_is_409(kubeapi: RunningKubeAPI) -> None:
    base = "/api/v1/namespaces/default/configmaps"
    made = kubeapi.request(
        "POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}}
    ).json()
    real_uid = made["metadata"]["uid"]
    made["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    got = kubeapi.request("PUT", f"{base}/u", made)
    assert got.status == 409
    assert got.json()["message"] == (
        'Operation cannot be fulfilled on configmaps "u": Precondition failed: UID in '
        f"precondition: 00000000-0000-0000-0000-000000000000, UID in object meta: {real_uid}"
    )


def test_unknown_paths_are_plain_404(kubeapi: RunningKubeAPI) -> None:
    got = kubeapi.request("GET", "/no/such/path")
    assert got.status == 404
    assert got.raw == b"404 page not found\n"
