"""Kubernetes ``Status`` errors, shaped exactly as the real API server sends them.

Every failure inside the emulator is raised as :class:`StatusError` and rendered once by
the HTTP layer, so a bad request always gets a real Status body, never a crash or a hang.
"""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    def __init__(
        self,
        code: int,
        reason: str | None,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name is not None:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(plural: str, name: str, group: str = "") -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    return StatusError(
        404, "NotFound", f'{qualified} "{name}" not found', details=_details(name, group, plural)
    )


def already_exists(plural: str, name: str, group: str = "") -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    return StatusError(
        409,
        "AlreadyExists",
        f'{qualified} "{name}" already exists',
        details=_details(name, group, plural),
    )


def conflict(plural: str, name: str, group: str = "", why: str | None = None) -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
        details=_details(name, group, plural),
    )


def invalid(
    kind: str, name: str, causes: list[tuple[str, str, str]], group: str = ""
) -> StatusError:
    """422 Invalid; ``causes`` are (reason, message, field) like ``FieldValueRequired``."""
    parts = [f"{field}: {message}" for _, message, field in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(name, group, kind)
    details["causes"] = [{"reason": r, "message": m, "field": f} for r, m, f in causes]
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message, details={})


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")
