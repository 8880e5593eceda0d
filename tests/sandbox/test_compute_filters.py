"""The Compute list filter language and paging, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from vnode.sandbox.compute.errors import ComputeError
from vnode.sandbox.compute.filters import order_key, parse_filter
from vnode.sandbox.compute.listing import max_results, page

VMS: list[dict[str, Any]] = [
    {
        "name": "vm-a",
        "status": "RUNNING",
        "labels": {"vnode-node": "n1", "vnode-pod": "p1"},
        "scheduling": {"preemptible": False, "automaticRestart": True},
        "networkInterfaces": [{"networkIP": "127.1.0.5"}],
        "creationTimestamp": "2026-01-01T00:00:01.000+00:00",
        "guestCpus": 4,
    },
    {
        "name": "vm-b",
        "status": "TERMINATED",
        "labels": {"vnode-node": "n1", "vnode-pod": "p2"},
        "scheduling": {"preemptible": True, "automaticRestart": False},
        "networkInterfaces": [{"networkIP": "127.1.0.6"}],
        "creationTimestamp": "2026-01-01T00:00:03.000+00:00",
        "guestCpus": 16,
    },
    {
        "name": "other",
        "status": "STAGING",
        "labels": {"vnode-node": "n2"},
        "scheduling": {"preemptible": False},
        "networkInterfaces": [{"networkIP": "127.1.0.7"}],
        "creationTimestamp": "2026-01-01T00:00:02.000+00:00",
        "guestCpus": 2,
    },
]


def names(text: str) -> list[str]:
    pred = parse_filter(text)
    return [vm["name"] for vm in VMS if pred(vm)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["vm-a", "vm-b", "other"]),
        ('labels.vnode-node = "n1"', ["vm-a", "vm-b"]),
        ("labels.vnode-node=n1", ["vm-a", "vm-b"]),
        ("labels.vnode-node = 'n2'", ["other"]),
        ("name = vm-a", ["vm-a"]),
        ("status != TERMINATED", ["vm-a", "other"]),
        ('(labels.vnode-node = "n1") (labels.vnode-pod = "p2")', ["vm-b"]),
        ('(labels.vnode-node = "n1") AND (status = "RUNNING")', ["vm-a"]),
        ("(name = vm-a) OR (name = other)", ["vm-a", "other"]),
        # OR binds tighter than AND in the Google filter grammar.
        ("(name = vm-a) OR (name = vm-b) AND (status = TERMINATED)", ["vm-b"]),
        ("NOT (status = RUNNING)", ["vm-b", "other"]),
        ("-labels.vnode-pod:*", ["other"]),
        ("labels.vnode-pod:*", ["vm-a", "vm-b"]),
        ("name : vm", ["vm-a", "vm-b"]),
        ("scheduling.preemptible = true", ["vm-b"]),
        ("scheduling.automaticRestart = false", ["vm-b"]),
        ("networkInterfaces.networkIP = 127.1.0.7", ["other"]),
        ("guestCpus > 3", ["vm-a", "vm-b"]),
        ("guestCpus <= 4", ["vm-a", "other"]),
        ('creationTimestamp > "2026-01-01T00:00:01.500+00:00"', ["vm-b", "other"]),
        ("name eq vm-.*", ["vm-a", "vm-b"]),
        ("name eq 'vm'", []),  # a regular expression must match the whole value
        ('name ne "vm-.*"', ["other"]),
        ("(name eq vm-.*) (status ne RUNNING)", ["vm-b"]),
        ('operationType = "compute.instances.preempted"', []),
    ],
)
def test_filter_forms(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize("text", ["name =", "(name = a", "= a", "name ~ a", 'name = "open'])
def test_malformed_filter_is_the_real_400(text: str) -> None:
    with pytest.raises(ComputeError) as e:
        parse_filter(text)
    body = e.value.body()["error"]
    assert body["code"] == 400
    assert body["errors"][0]["reason"] == "invalid"
    assert body["message"].startswith(f"Invalid value for field 'filter': '{text}'.")


def test_order_by_supports_the_documented_orders_only() -> None:
    key, desc = order_key("creationTimestamp desc")
    assert desc
    assert [v["name"] for v in sorted(VMS, key=key, reverse=desc)] == ["vm-b", "other", "vm-a"]
    key, desc = order_key("name")
    assert not desc
    assert [v["name"] for v in sorted(VMS, key=key)] == ["other", "vm-a", "vm-b"]
    with pytest.raises(ComputeError):
        order_key("guestCpus")


def test_paging_resumes_after_the_last_item_even_when_items_vanish() -> None:
    items = [{"name": f"vm-{i:02d}"} for i in range(7)]
    key, desc = order_key("")
    first, token = page(items, key, desc, limit=3, token=None, context="c")
    assert [i["name"] for i in first] == ["vm-00", "vm-01", "vm-02"]
    assert token
    # vm-01 is deleted between pages: the next page must not skip vm-03.
    rest = [i for i in items if i["name"] != "vm-01"]
    second, token = page(rest, key, desc, limit=3, token=token, context="c")
    assert [i["name"] for i in second] == ["vm-03", "vm-04", "vm-05"]
    third, token = page(rest, key, desc, limit=3, token=token, context="c")
    assert [i["name"] for i in third] == ["vm-06"]
    assert token is None


def test_page_token_from_another_listing_is_refused() -> None:
    items = [{"name": f"vm-{i}"} for i in range(4)]
    key, desc = order_key("")
    _, token = page(items, key, desc, limit=2, token=None, context="one")
    with pytest.raises(ComputeError) as e:
        page(items, key, desc, limit=2, token=token, context="two")
    assert e.value.code == 400
    with pytest.raises(ComputeError):
        page(items, key, desc, limit=2, token="not-a-token", context="one")


def test_max_results_bounds() -> None:
    assert max_results(None) == 500
    assert max_results("0") == 500
    assert max_results("7") == 7
    with pytest.raises(ComputeError):
        max_results("501")
