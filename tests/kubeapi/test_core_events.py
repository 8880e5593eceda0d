"""core/v1 and events.k8s.io/v1 Events: one storage, two views (reference ``10-events``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningKubeAPI, reference

pytestmark = pytest.mark.kubeapi(controllers=False)

SERVER_OWNED = ("uid", "resourceVersion", "creationTimestamp", "managedFields")


def _without_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k not in SERVER_OWNED}
    return {**obj, "metadata": meta}


def _post(kubeapi: RunningKubeAPI, capture: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ref = reference(f"10-events/{capture}")
    got = kubeapi.request(
        ref["request"]["method"],
        ref["request"]["url"],
        ref["request"]["body"],
        headers={"Content-Type": "application/json"},
    )
    assert got.status == ref["response"]["status"], got.raw
    body: dict[str, Any] = got.json()
    return body, ref["response"]["body"]


def test_core_event_and_its_events_v1_view(kubeapi: RunningKubeAPI) -> None:
    created, want = _post(kubeapi, "01-corev1-create.json")
    assert _without_server_fields(created) == _without_server_fields(want)
    ref_patch = reference("10-events/02-corev1-patch-count.json")
    patched = kubeapi.request(
        "PATCH",
        ref_patch["request"]["url"],
        ref_patch["request"]["body"],
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert _without_server_fields(patched.json()) == _without_server_fields(
        ref_patch["response"]["body"]
    )
    view = reference("10-events/03-corev1-as-eventsv1.json")
    got = kubeapi.request("GET", view["request"]["url"]).json()
    assert _without_server_fields(got) == _without_server_fields(view["response"]["body"])
    assert list(got) == list(view["response"]["body"])  # same field order


def test_events_v1_event_and_its_core_view(kubeapi: RunningKubeAPI) -> None:
    created, want = _post(kubeapi, "05-eventsv1-create.json")
    assert _without_server_fields(created) == _without_server_fields(want)
    view = reference("10-events/06-eventsv1-as-corev1.json")
    got = kubeapi.request("GET", view["request"]["url"]).json()
    assert _without_server_fields(got) == _without_server_fields(view["response"]["body"])
    assert list(got) == list(view["response"]["body"])


def test_minimal_core_event_gets_go_zero_values(kubeapi: RunningKubeAPI) -> None:
    created, want = _post(kubeapi, "08-corev1-create-minimal.json")
    assert created["metadata"]["name"].startswith("ref-web.")
    created["metadata"]["name"] = want["metadata"]["name"]
    assert _without_server_fields(created) == _without_server_fields(want)


def test_event_field_selector_as_kubectl_describe_sends_it(kubeapi: RunningKubeAPI) -> None:
    _post(kubeapi, "01-corev1-create.json")
    uid = "891bdee1-7fbb-4ba6-aca0-cc9ada3ea707"
    for selector in (
        f"involvedObject.uid={uid},involvedObject.name=ref-web,involvedObject.namespace=default",
        f"involvedObject.name=ref-web,involvedObject.namespace=default,involvedObject.uid={uid}",
    ):
        got = kubeapi.request("GET", f"/api/v1/namespaces/default/events?fieldSelector={selector}")
        assert [e["metadata"]["name"] for e in got.json()["items"]] == ["ref-web.18eac5b57e277600"]
