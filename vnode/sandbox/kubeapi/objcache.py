"""The latest copy of each object of one kind, for a controller to read without copying.

Listing through the store deep-copies every object, which made controllers that look
at all pods on every pass quadratic in bursts. A controller instead feeds this cache
from the store changes it is woken by (and from its own writes, so it reads them back
at once); a newer resourceVersion always wins, so replaying a change is harmless.
Objects handed out are shared: callers must not modify them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vnode.sandbox.kubeapi.wakeup import Change


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class ObjectCache:
    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}  # by uid
        self._gone: dict[str, int] = {}  # uid -> resourceVersion of its deletion

    def reset(self, objects: list[dict[str, Any]]) -> None:
        self._objects = {o["metadata"].get("uid", ""): o for o in objects}
        self._gone = {}

    def put(self, obj: dict[str, Any]) -> None:
        uid = obj["metadata"].get("uid", "")
        if uid in self._gone and self._gone[uid] >= _rv(obj):
            return  # an older state of something already deleted
        current = self._objects.get(uid)
        if current is None or _rv(obj) >= _rv(current):
            self._objects[uid] = obj

    def drop(self, obj: dict[str, Any]) -> None:
        uid = obj["metadata"].get("uid", "")
        self._objects.pop(uid, None)
        self._gone[uid] = _rv(obj)
        if len(self._gone) > 10_000:  # deletions older than the window no longer matter
            for old in list(self._gone)[:5_000]:
                del self._gone[old]

    def apply(self, change: Change) -> None:
        if change.type == "DELETED":
            self.drop(change.new)
        else:
            self.put(change.new)

    def get(self, uid: str) -> dict[str, Any] | None:
        return self._objects.get(uid)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._objects.values()))

    def __len__(self) -> int:
        return len(self._objects)
