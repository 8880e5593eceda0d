"""Store listeners share one read-only copy of each write.

Every listener of one write gets the same ``new`` / ``old`` objects (copied once, not
once per listener), and those copies are not the store's own: later writes leave what
a listener kept unchanged, and the store's answers never alias them.
"""

from __future__ import annotations

from typing import Any

from vnode.clock import FakeClock
from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.store import Store

CONFIGMAPS = resources.by_kind("", "ConfigMap")


def test_listeners_share_one_copy_per_write() -> None:
    store = Store(FakeClock())
    heard: list[list[tuple[str, dict[str, Any], dict[str, Any] | None]]] = [[], []]
    for seen in heard:
        store.add_listener(lambda kind, res, new, old, seen=seen: seen.append((kind, new, old)))
    created = store.create(CONFIGMAPS, "default", {"metadata": {"name": "c"}, "data": {"k": "1"}})
    store.mutate(CONFIGMAPS, "default", "c", lambda o: o["data"].__setitem__("k", "2"))
    first, second = heard
    assert [k for k, _, _ in first] == ["ADDED", "MODIFIED"] == [k for k, _, _ in second]
    for (_, new_a, old_a), (_, new_b, old_b) in zip(first, second, strict=True):
        assert new_a is new_b and old_a is old_b  # one copy, shared
    # The copies are not the store's objects: later writes do not reach them.
    assert first[0][1]["data"] == {"k": "1"}
    assert first[1][2] is not None and first[1][2]["data"] == {"k": "1"}
    assert first[1][1]["data"] == {"k": "2"}
    assert first[0][1] is not created
    current = store.get(CONFIGMAPS, "default", "c")
    assert current == first[1][1] and current is not first[1][1]
