"""An in-memory stand-in for ``vnode.node.kube.request``, for unit tests on fake time.

It keeps objects by path with a resourceVersion counter and answers like the API server
where vnode relies on it: 404 NotFound, 409 AlreadyExists on create, 409 Conflict on a
PUT with a stale resourceVersion, ``/status`` PUTs that change only the status (and main
PUTs that ignore it). Tests inject failures and look at the calls it received.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from vnode.node import kube


@dataclass
class Call:
    method: str
    path: str
    body: Any


@dataclass
class FakeKube:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    rv: int = 0
    # Injected failures: each entry is consumed by the next matching call.
    failures: list[tuple[str, str, Exception]] = field(default_factory=list)
    # Called before each request is answered (e.g. to change an object concurrently).
    before: Callable[[Call], None] | None = None

    def fail(self, method: str, path_part: str, error: Exception, times: int = 1) -> None:
        self.failures.extend([(method, path_part, error)] * times)

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for c in self.calls if c.method == method and path_part in c.path)

    def put_object(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` at ``path`` as if someone else had written it."""
        self.rv += 1
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(self.rv)
        self.objects[path] = obj
        return copy.deepcopy(obj)

    async def request(
        self,
        api: Any,
        method: str,
        path: str,
        *,
        query: Any = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 0,  # noqa: ASYNC109 - the signature of kube.request
    ) -> dict[str, Any]:
        call = Call(method, path, copy.deepcopy(body))
        self.calls.append(call)
        if self.before is not None:
            self.before(call)
        for i, (m, part, error) in enumerate(self.failures):
            if m == method and part in path:
                del self.failures[i]
                raise error
        if method == "GET":
            if path not in self.objects:
                raise not_found(path)
            return copy.deepcopy(self.objects[path])
        if method == "POST":
            target = f"{path}/{body['metadata']['name']}"
            if target in self.objects:
                raise kube.api_error(409, "AlreadyExists", f"{target} already exists")
            obj = copy.deepcopy(body)
            obj.setdefault("metadata", {})["uid"] = str(uuid.uuid4())
            return self.put_object(target, obj)
        if method == "PUT":
            status_only = path.endswith("/status")
            target = path.removesuffix("/status") if status_only else path
            if target not in self.objects:
                raise not_found(target)
            stored = self.objects[target]
            sent_rv = body.get("metadata", {}).get("resourceVersion")
            if sent_rv and sent_rv != stored["metadata"]["resourceVersion"]:
                raise kube.api_error(409, "Conflict", "the object has been modified")
            if status_only:
                new = copy.deepcopy(stored)
                new["status"] = copy.deepcopy(body.get("status"))
            else:
                new = copy.deepcopy(body)
                if "status" in stored:
                    new["status"] = copy.deepcopy(stored["status"])
                new["metadata"]["uid"] = stored["metadata"]["uid"]
            return self.put_object(target, new)
        raise AssertionError(f"unexpected {method} {path}")


def not_found(path: str) -> kube.ApiError:
    return kube.api_error(404, "NotFound", f"{path} not found")


def install(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    """Route every ``kube.request`` of the test through a new FakeKube."""
    fake = FakeKube()
    monkeypatch.setattr(kube, "request", fake.request)
    return fake
