"""Label and field selectors against the grammar, messages and fields of a v1.33 server.

Expected error texts are the ones the real server answered (reference captures
``04-errors/400-bad-*``), or the upstream validation messages where no capture exists.
"""

from __future__ import annotations

from typing import Any

import pytest

from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.selectors import (
    label_selector_from_spec,
    parse_field_selector,
    parse_label_selector,
)
from vnode.sandbox.kubeapi.status import StatusError

PODS = resources.by_kind("", "Pod")
NODES = resources.by_kind("", "Node")
EVENTS = resources.by_kind("", "Event")
NEW_EVENTS = resources.by_kind("events.k8s.io", "Event")
CONFIGMAPS = resources.by_kind("", "ConfigMap")
SECRETS = resources.by_kind("", "Secret")
JOBS = resources.by_kind("batch", "Job")
NAMESPACES = resources.by_kind("", "Namespace")


def _label_error(text: str) -> StatusError:
    with pytest.raises(StatusError) as info:
        parse_label_selector(text)
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    return info.value


def _field_error(text: str, res: resources.Resource) -> StatusError:
    with pytest.raises(StatusError) as info:
        parse_field_selector(text, res)
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    return info.value


# --- label selectors: the captured error messages -------------------------------------


def test_unclosed_set_is_the_captured_message() -> None:
    err = _label_error("app in (a")
    assert err.message == "unable to parse requirement: found '', expected: ',' or ')'"
    body = err.body()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "unable to parse requirement: found '', expected: ',' or ')'",
        "reason": "BadRequest",
        "code": 400,
    }


def test_triple_equals_is_the_captured_message() -> None:
    err = _label_error("a===b")
    assert err.message == "unable to parse requirement: found '=', expected: identifier"


def test_open_set_on_a_watch_is_the_captured_message() -> None:
    err = _label_error("a in (")
    assert err.message == "unable to parse requirement: found '', expected: ',', ')' or identifier"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        ("=b", "found '=', expected: !, identifier, or 'end of string'"),
        ("a in a", "unable to parse requirement: found 'a' expected: '('"),
        ("a (b)", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("c in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
        ("c in (x,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
    ],
)
def test_grammar_errors(text: str, message: str) -> None:
    assert _label_error(text).message == message


def test_invalid_key_is_rejected_with_the_validation_message() -> None:
    err = _label_error("-a=b")
    assert err.message == (
        'unable to parse requirement: <nil>: Invalid value: "-a": name part must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
        "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_invalid_value_is_rejected_with_the_validation_message() -> None:
    err = _label_error("a=-x")
    assert err.message == (
        'unable to parse requirement: values[0][a]: Invalid value: "-x": a valid label must '
        "be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
        "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    )


def test_prefixed_keys_are_validated() -> None:
    assert parse_label_selector("example.com/app=web").matches({"example.com/app": "web"})
    assert "prefix part" in _label_error("Bad_Prefix/app=web").message
    assert "a qualified name" in _label_error("a/b/c=d").message
    assert "no more than 63 characters" in _label_error("a" * 64 + "=b").message


def test_non_integer_gt_value_is_rejected() -> None:
    assert _label_error("a>x").message == (
        'unable to parse requirement: values[0]: Invalid value: "x": '
        "for 'Gt', 'Lt' operators, the value must be an integer"
    )


# --- label selectors: matching ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", None, True),
        ("", {"a": "b"}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app=web", None, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app in (web, db)", {"app": "db"}, True),
        ("app in (web,db)", {"app": "cache"}, False),
        ("app in (web)", {}, False),
        ("app notin (web,db)", {"app": "cache"}, True),
        ("app notin (web,db)", {}, True),
        ("app notin (web,db)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("app", {"x": "y"}, False),
        ("!app", {"x": "y"}, True),
        ("!app", {"app": "web"}, False),
        ("app=", {"app": ""}, True),
        ("app=", {"app": "x"}, False),
        ("app in ()", {"app": ""}, True),
        ("app in (x,)", {"app": ""}, True),
        ("tier>3", {"tier": "4"}, True),
        ("tier>3", {"tier": "3"}, False),
        ("tier<3", {"tier": "-1"}, True),
        ("tier<3", {"tier": "x"}, False),
        ("tier<3", {}, False),
        ("app=web,tier in (fe),!legacy", {"app": "web", "tier": "fe"}, True),
        ("app=web,tier in (fe),!legacy", {"app": "web", "tier": "fe", "legacy": "1"}, False),
        ("  app = web ,  env  ", {"app": "web", "env": "x"}, True),
        # "in" and "notin" read as plain words where a key or value is expected.
        ("in=notin", {"in": "notin"}, True),
        ("x in (in, notin)", {"x": "notin"}, True),
    ],
)
def test_label_matching(text: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_requirements_are_exposed_sorted_by_key() -> None:
    sel = parse_label_selector("z=1,a in (y,x),!m")
    assert [(r.key, r.operator, r.values) for r in sel.requirements] == [
        ("a", "in", ("x", "y")),
        ("m", "!", ()),
        ("z", "=", ("1",)),
    ]
    assert str(sel) == "a in (x,y),!m,z=1"


# --- label selectors from object specs -------------------------------------------------


def test_spec_selector_combines_labels_and_expressions() -> None:
    sel = label_selector_from_spec(
        {
            "matchLabels": {"batch.kubernetes.io/job-name": "pi"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "zone", "operator": "NotIn", "values": ["z"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    good = {"batch.kubernetes.io/job-name": "pi", "tier": "a", "owner": "me"}
    assert sel.matches(good)
    assert not sel.matches({**good, "legacy": "1"})
    assert not sel.matches({**good, "zone": "z"})
    assert not sel.matches({**good, "tier": "c"})
    assert not sel.matches({k: v for k, v in good.items() if k != "owner"})


def test_spec_selector_empty_matches_all_and_none_matches_nothing() -> None:
    assert label_selector_from_spec({}).matches({"a": "b"})
    assert label_selector_from_spec({}).matches(None)
    assert not label_selector_from_spec(None).matches({"a": "b"})
    assert not label_selector_from_spec(None).matches(None)


def test_spec_selector_rejects_bad_operators_and_values() -> None:
    with pytest.raises(StatusError) as info:
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
    assert info.value.message == '"Gt" is not a valid label selector operator'
    with pytest.raises(StatusError) as info:
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "In"}]})
    assert "values set can't be empty" in info.value.message
    with pytest.raises(StatusError) as info:
        label_selector_from_spec({"matchLabels": {"a": "-bad"}})
    assert "a valid label must be an empty string" in info.value.message


# --- field selectors --------------------------------------------------------------------


def _pod(**overrides: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "nodeName": "vk-node",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
        },
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "podIP": "10.0.0.5"},
    }
    for path, value in overrides.items():
        section, key = path.split("__")
        pod[section][key] = value
    return pod


def test_unsupported_pod_field_is_the_captured_message() -> None:
    assert _field_error("spec.foo=bar", PODS).message == "field label not supported: spec.foo"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("metadata.name=web", True),
        ("metadata.name==web", True),
        ("metadata.name!=web", False),
        ("metadata.namespace=default", True),
        ("spec.nodeName=vk-node", True),
        ("spec.nodeName=other", False),
        ("spec.host=vk-node", True),
        ("spec.restartPolicy=Always", True),
        ("spec.schedulerName=default-scheduler", True),
        ("spec.serviceAccountName=default", True),
        ("spec.hostNetwork=false", True),
        ("status.phase=Running", True),
        ("status.podIP=10.0.0.5", True),
        ("status.nominatedNodeName=", True),
        ("spec.nodeName=vk-node,status.phase!=Succeeded,status.phase!=Failed", True),
        ("status.phase!=Succeeded,status.phase!=Running", False),
    ],
)
def test_pod_field_matching(text: str, expected: bool) -> None:
    assert parse_field_selector(text, PODS).matches(_pod()) is expected


def test_pod_without_phase_matches_empty_phase() -> None:
    pod = _pod()
    del pod["status"]["phase"]
    assert parse_field_selector("status.phase=", PODS).matches(pod)
    assert not parse_field_selector("status.phase=Pending", PODS).matches(pod)
    unbound = {"metadata": {"name": "x", "namespace": "default"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", PODS).matches(unbound)
    host = _pod(spec__hostNetwork=True)
    assert parse_field_selector("spec.hostNetwork=true", PODS).matches(host)


def test_describe_event_terms_in_any_order() -> None:
    event = {
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u-1"},
        "reason": "Scheduled",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
    }
    terms = [
        "involvedObject.name=web",
        "involvedObject.namespace=default",
        "involvedObject.uid=u-1",
    ]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        text = ",".join(terms[i] for i in order)
        assert parse_field_selector(text, EVENTS).matches(event)
    other = parse_field_selector("involvedObject.uid=u-2,involvedObject.name=web", EVENTS)
    assert not other.matches(event)
    assert parse_field_selector("source=default-scheduler,reason=Scheduled", EVENTS).matches(event)


def test_event_source_falls_back_to_reporting_controller() -> None:
    event = {"metadata": {"name": "e"}, "reportingComponent": "default-scheduler", "source": {}}
    assert parse_field_selector("source=default-scheduler", EVENTS).matches(event)
    assert parse_field_selector("reportingComponent=default-scheduler", EVENTS).matches(event)


def test_new_events_select_through_regarding() -> None:
    sel = parse_field_selector("regarding.name=web,reportingController=kubelet", NEW_EVENTS)
    assert ("involvedObject.name", "=", "web") in sel.requirements
    new_shape = {
        "metadata": {"name": "e", "namespace": "default"},
        "regarding": {"name": "web"},
        "reportingController": "kubelet",
    }
    core_shape = {
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"name": "web"},
        "reportingComponent": "kubelet",
    }
    assert sel.matches(new_shape)
    assert sel.matches(core_shape)
    assert (
        _field_error("involvedObject.name=web", NEW_EVENTS).message
        == "field label not supported: involvedObject.name"
    )


def test_other_kinds_fields() -> None:
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert parse_field_selector("spec.unschedulable=true", NODES).matches(node)
    assert not parse_field_selector("spec.unschedulable=false", NODES).matches(node)
    assert (
        _field_error("metadata.namespace=x", NODES).message
        == "field label not supported: metadata.namespace"
    )
    secret = {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}
    assert parse_field_selector("type=Opaque", SECRETS).matches(secret)
    ns = {"metadata": {"name": "default"}, "status": {"phase": "Active"}}
    assert parse_field_selector("status.phase=Active,metadata.name=default", NAMESPACES).matches(ns)
    job = {"metadata": {"name": "pi", "namespace": "d"}, "status": {"succeeded": 2}}
    assert parse_field_selector("status.successful=2", JOBS).matches(job)
    assert parse_field_selector("status.successful=0", JOBS).matches({"metadata": {"name": "j"}})
    assert (
        _field_error("status.succeeded=1", JOBS).message
        == 'field label "status.succeeded" not supported for batchv1.Job'
    )


def test_kinds_without_own_fields_use_the_default_message() -> None:
    cm = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {}}
    assert parse_field_selector("metadata.name=cfg", CONFIGMAPS).matches(cm)
    assert parse_field_selector("metadata.namespace!=kube-system", CONFIGMAPS).matches(cm)
    assert _field_error("data.x=1", CONFIGMAPS).message == (
        '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


def test_field_selector_syntax() -> None:
    assert _field_error("metadata.name", PODS).message == (
        "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    )
    escaped = parse_field_selector(r"metadata.name=a\,b\=c", PODS)
    assert escaped.requirements == [("metadata.name", "=", "a,b=c")]
    assert escaped.matches({"metadata": {"name": "a,b=c"}})
    assert "invalid escape sequence" in _field_error(r"metadata.name=a\x", PODS).message
    # a trailing comma is an empty term, which the server ignores
    assert parse_field_selector("metadata.name=web,", PODS).matches(_pod())


def test_field_selector_exposes_terms() -> None:
    sel = parse_field_selector("spec.nodeName=n1,metadata.name!=x", PODS)
    assert sel.value_of("spec.nodeName") == "n1"
    assert sel.value_of("metadata.name") is None
    assert not sel.empty
    assert parse_field_selector("", PODS).empty
