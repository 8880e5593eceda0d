"""The HTTP face of the emulator: JSON answers, error bodies, and what every call goes
through before its handler (injected latency and errors, query-parameter checks, the zone).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from vnode.sandbox.compute import catalogue, errors, validation
from vnode.sandbox.compute.errors import ComputeError, invalid_field
from vnode.sandbox.compute.faults import Faults

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[dict[str, Any]]]
RawHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Accepted on lists although the current discovery document no longer names it.
_TOLERATED_QUERY = {"returnPartialSuccess"}


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        charset="UTF-8",
        headers=headers,
    )


def endpoint(faults: Faults, resource: str, method: str, handler: Handler) -> RawHandler:
    """Wrap ``handler`` as the API method ``resource.method`` (e.g. ``instances.insert``)."""
    name = f"{resource}.{method}"

    async def serve(request: web.Request) -> web.StreamResponse:
        delay = faults.delay_for(name)
        if delay > 0:
            await asyncio.sleep(delay)
        scripted = faults.take_error(name)
        if scripted is not None:
            err = errors.for_fault(
                scripted.code, scripted.reason, scripted.message, request.match_info["project"]
            )
            if scripted.retry_after is not None:
                err.headers["Retry-After"] = f"{scripted.retry_after:g}"
            raise err
        query = {k: v for k, v in request.query.items() if k not in _TOLERATED_QUERY}
        validation.validate_query(resource, method, query)
        zone = request.match_info.get("zone")
        if zone is not None and zone not in catalogue.ZONES:
            raise invalid_field("zone", zone, "Unknown zone.")
        return json_response(await handler(request))

    return serve


@web.middleware
async def error_middleware(request: web.Request, handler: RawHandler) -> web.StreamResponse:
    """Every failure leaves as the API's JSON error body, never as an HTML page."""
    try:
        return await handler(request)
    except ComputeError as e:
        return json_response(e.body(), e.code, e.headers or None)
    except web.HTTPNotFound:
        err = ComputeError(404, f"The requested URL {request.path} was not found.", "notFound")
        return json_response(err.body(), 404)
    except web.HTTPMethodNotAllowed:
        err = ComputeError(405, f"Method {request.method} is not allowed.", "badRequest")
        return json_response(err.body(), 405)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("compute emulator failed on %s %s", request.method, request.path)
        return json_response(errors.internal_error().body(), 500)


async def read_body(request: web.Request, resource: str, method: str) -> dict[str, Any]:
    """The request body as JSON, checked against the method's request schema."""
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as e:
        raise errors.bad_request_payload([("", f"Invalid JSON payload received. {e}.")]) from None
    validation.validate_body(resource, method, body)
    if not isinstance(body, dict):  # validate_body refuses these already
        raise errors.bad_request_payload([("", "Invalid JSON payload received.")])
    return body
