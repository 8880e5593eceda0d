"""List paging: ``maxResults``, ``pageToken`` and ``nextPageToken``.

Tokens carry the sort key of the last item returned, not an offset, so a VM deleted or
created between two pages never makes another VM vanish from a listing (vnode treats a
VM missing from its listing as lost).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from vnode.sandbox.compute.errors import ComputeError, invalid_field

MAX_RESULTS = 500


def max_results(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_RESULTS
    n = int(raw)  # already checked to be an integer by query validation
    if n < 0 or n > MAX_RESULTS:
        raise invalid_field(
            "maxResults", raw, f"Must be greater than or equal to 0 and at most {MAX_RESULTS}."
        )
    return n or MAX_RESULTS


def _encode(key: tuple[Any, ...], context: str) -> str:
    raw = json.dumps({"k": list(key), "c": context}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, context: str) -> tuple[Any, ...]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["c"] != context:
            raise ValueError("token from another listing")
        return tuple(data["k"])
    except (ValueError, KeyError, TypeError):
        raise ComputeError(
            400, f"Invalid value for field 'pageToken': '{token}'. Invalid page token.", "invalid"
        ) from None


def page(
    items: list[dict[str, Any]],
    key: Callable[[dict[str, Any]], tuple[Any, ...]],
    descending: bool,
    *,
    limit: int,
    token: str | None,
    context: str,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``items`` in order, and the token for the next page (None at the end).

    ``context`` ties a token to the listing (scope, filter, order) it came from.
    """
    ordered = sorted(items, key=key, reverse=descending)
    if token:
        after = _decode(token, context)
        if descending:
            ordered = [i for i in ordered if list(key(i)) < list(after)]
        else:
            ordered = [i for i in ordered if list(key(i)) > list(after)]
    chunk = ordered[:limit]
    next_token = _encode(key(chunk[-1]), context) if len(ordered) > limit else None
    return chunk, next_token


def list_body(
    kind: str, ident: str, self_link: str, items: list[dict[str, Any]], token: str | None
) -> dict[str, Any]:
    """A zonal list answer; ``items`` is left out when empty, as the API does."""
    body: dict[str, Any] = {"kind": kind, "id": ident, "selfLink": self_link}
    if items:
        body["items"] = items
    if token:
        body["nextPageToken"] = token
    return body


def aggregated_body(
    *,
    kind: str,
    field: str,
    ident: str,
    self_link: str,
    zones: list[str],
    items: list[dict[str, Any]],
    token: str | None,
) -> dict[str, Any]:
    """An aggregated list answer: every zone scope, empty ones with a NO_RESULTS_ON_PAGE warning."""
    scopes: dict[str, Any] = {}
    for zone in zones:
        scope = f"zones/{zone}"
        in_scope = [i for i in items if i["zone"].rsplit("/", 1)[-1] == zone]
        if in_scope:
            scopes[scope] = {field: in_scope}
        else:
            scopes[scope] = {
                "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}],
                }
            }
    body: dict[str, Any] = {"kind": kind, "id": ident, "items": scopes, "selfLink": self_link}
    if token:
        body["nextPageToken"] = token
    return body
