"""``pods/binding`` and ``pods/eviction``: the two ways a pod's placement changes.

Binding is how a scheduler assigns a pod to a node: the only way to set ``spec.nodeName``
after creation (an update that changes it is 422). It answers ``201`` with a bare
``Status`` of ``Success`` and sets ``PodScheduled=True``; binding an assigned pod again
is a 409 naming the node (reference ``07-scheduler/04*``).

Eviction is a graceful delete that first marks the pod with a ``DisruptionTarget``
condition, as the real server does since disruption conditions went GA. No
PodDisruptionBudgets exist in the sandbox, so an eviction is never refused.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from vnode.clock import Clock, rfc3339
from vnode.sandbox.kubeapi import resources
from vnode.sandbox.kubeapi.status import (
    StatusError,
    bad_request,
    conflict,
    invalid,
    method_not_allowed,
)

PODS = resources.by_kind("", "Pod")

_SUCCESS_CREATED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Success",
    "code": 201,
}


def _json_response(status: int, body: dict[str, Any]) -> web.Response:
    text = json.dumps(body, separators=(",", ":")) + "\n"
    return web.Response(status=status, body=text.encode(), content_type="application/json")


def set_condition(pod: dict[str, Any], condition: dict[str, Any], now: str) -> None:
    """Replace (or add) the pod condition of ``condition['type']``; the transition time
    moves only when the status changes, like the API server's UpdatePodCondition."""
    status = pod.setdefault("status", {})
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    new = {"type": condition["type"], "status": condition["status"], "lastProbeTime": None}
    for i, old in enumerate(conditions):
        if old.get("type") == condition["type"]:
            same = old.get("status") == condition["status"]
            new["lastTransitionTime"] = old.get("lastTransitionTime") if same else now
            new.update({k: v for k, v in condition.items() if k in ("reason", "message") and v})
            conditions[i] = new
            return
    new["lastTransitionTime"] = now
    new.update({k: v for k, v in condition.items() if k in ("reason", "message") and v})
    conditions.append(new)


def _assign_conflict(pod: dict[str, Any], name: str) -> StatusError | None:
    if pod["metadata"].get("deletionTimestamp"):
        return conflict(
            "pods/binding", name, why=f"pod {name} is being deleted, cannot be assigned to a host"
        )
    assigned = (pod.get("spec") or {}).get("nodeName")
    if assigned:
        return conflict(
            "pods/binding", name, why=f'pod {name} is already assigned to node "{assigned}"'
        )
    return None


def bind(
    store: Any,
    clock: Clock,
    pod: dict[str, Any],
    node_name: str,
    *,
    annotations: dict[str, str] | None = None,
    uid: str = "",
) -> dict[str, Any]:
    """Assign ``pod`` to ``node_name``; StatusError 404/409 as the binding endpoint."""
    namespace = pod["metadata"]["namespace"]
    name = pod["metadata"]["name"]
    current = store.get(PODS, namespace, name)
    if uid and current["metadata"].get("uid") != uid:
        raise conflict(
            "pods/binding",
            name,
            why=(
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {current['metadata'].get('uid')}"
            ),
        )
    error = _assign_conflict(current, name)
    if error is not None:
        raise error
    now = rfc3339(clock.now())

    def assign(obj: dict[str, Any]) -> None:
        late = _assign_conflict(obj, name)
        if late is not None:
            raise late
        obj.setdefault("spec", {})["nodeName"] = node_name
        if annotations:
            obj["metadata"].setdefault("annotations", {}).update(annotations)
        set_condition(obj, {"type": "PodScheduled", "status": "True"}, now)

    # The store's "binding" write is the only one allowed to set spec.nodeName.
    result: dict[str, Any] = store.mutate(PODS, namespace, name, assign, subresource="binding")
    return result


async def _read_json(request: web.Request, kind: str, version: str) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as e:
        raise bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: {e}'
        ) from None
    if not isinstance(body, dict):
        raise bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: not an object'
        )
    return body


async def handle_binding(  # noqa: PLR0917 (the SubresourceHandler signature)
    api: Any, request: web.Request, res: resources.Resource, namespace: str, name: str, user: Any
) -> web.StreamResponse:
    """``POST pods/{name}/binding``."""
    if request.method != "POST":
        raise method_not_allowed()
    body = await _read_json(request, "Binding", "v1")
    meta = body.get("metadata") or {}
    if meta.get("name", "") != name:
        raise bad_request("name in URL does not match name in Binding object")
    target = body.get("target") or {}
    causes: list[tuple[str, str, str]] = []
    kind = target.get("kind") or ""
    if kind and kind != "Node":
        causes.append(
            (
                "FieldValueNotSupported",
                f'Unsupported value: "{kind}": supported values: "Node", "<empty>"',
                "target.kind",
            )
        )
    if not target.get("name"):
        causes.append(("FieldValueRequired", "Required value", "target.name"))
    if causes:
        raise invalid("Binding", name, causes)
    pod = api.store.get(PODS, namespace, name)
    bind(
        api.store,
        api.clock,
        pod,
        target["name"],
        annotations=meta.get("annotations") or None,
        uid=meta.get("uid") or "",
    )
    return _json_response(201, _SUCCESS_CREATED)


async def handle_eviction(  # noqa: PLR0917 (the SubresourceHandler signature)
    api: Any, request: web.Request, res: resources.Resource, namespace: str, name: str, user: Any
) -> web.StreamResponse:
    """``POST pods/{name}/eviction`` (policy/v1 Eviction): a graceful delete."""
    if request.method != "POST":
        raise method_not_allowed()
    body = await _read_json(request, "Eviction", "v1")
    if (body.get("metadata") or {}).get("name", "") != name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions") or {}
    dry_run = bool(options.get("dryRun")) or "dryRun" in request.query
    api.store.get(PODS, namespace, name)  # 404 before anything else
    if not dry_run:
        now = rfc3339(api.clock.now())
        api.store.mutate(
            PODS,
            namespace,
            name,
            lambda pod: set_condition(
                pod,
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting",
                },
                now,
            ),
            subresource="status",
        )
    grace = options.get("gracePeriodSeconds")
    api.store.delete(
        PODS,
        namespace,
        name,
        grace_period_seconds=grace if isinstance(grace, int) else None,
        preconditions=options.get("preconditions") or None,
        dry_run=dry_run,
    )
    return _json_response(201, _SUCCESS_CREATED)
