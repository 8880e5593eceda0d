"""Errors in the shapes the real Compute API answers with.

Two layers answer a request: the API front end, which parses JSON against the proto
(unknown names, wrong JSON types: ``status: INVALID_ARGUMENT`` with ``BadRequest`` field
violations, snake_case proto paths such as ``'instance_resource.scheduling'``), and Compute
itself (names, labels, enums, conflicts: ``errors[].reason`` of ``invalid``, ``required``,
``alreadyExists``, ``notFound``..., camelCase paths such as ``'resource.labels'``). Clients
key their handling on the HTTP code and ``errors[].reason``, so both are kept exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class ComputeError(Exception):
    """An HTTP error answer; ``body()`` is the JSON the real API would send."""

    code: int
    message: str
    reason: str
    domain: str = "global"
    status: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)
    extra_errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        errors = [{"message": self.message, "domain": self.domain, "reason": self.reason}]
        err: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": errors + self.extra_errors,
        }
        if self.status:
            err["status"] = self.status
        if self.details:
            err["details"] = self.details
        return {"error": err}


def invalid_field(path: str, value: str, why: str = "") -> ComputeError:
    """Compute's refusal of one field, with the ErrorInfo detail newer answers carry."""
    msg = f"Invalid value for field '{path}': '{value}'."
    if why:
        msg += f" {why}"
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "INVALID_FIELD_VALUE",
        "domain": "compute.googleapis.com",
        "metadata": {"field": path, "value": value, **({"reason": why} if why else {})},
    }
    return ComputeError(400, msg, "invalid", details=[info])


def required_field(path: str) -> ComputeError:
    return ComputeError(400, f"Required field '{path}' not specified", "required")


def not_found(resource: str) -> ComputeError:
    return ComputeError(404, f"The resource '{resource}' was not found", "notFound")


def already_exists(resource: str) -> ComputeError:
    return ComputeError(409, f"The resource '{resource}' already exists", "alreadyExists")


def condition_not_met(message: str) -> ComputeError:
    return ComputeError(412, message, "conditionNotMet")


def bad_request_payload(violations: list[tuple[str, str]]) -> ComputeError:
    """The front end's rejection of a body the proto parser cannot accept.

    ``violations`` are (proto field path, description) pairs; every one is reported, the
    message joins them one per line, as the front end does.
    """
    message = "\n".join(desc for _, desc in violations)
    return ComputeError(
        400,
        message,
        "badRequest",
        status="INVALID_ARGUMENT",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": path, "description": desc} for path, desc in violations
                ],
            }
        ],
    )


def rate_limited(project: str) -> ComputeError:
    message = (
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
        f"'compute.googleapis.com' for consumer 'project_number:{_project_number(project)}'."
    )
    return ComputeError(
        429,
        message,
        "rateLimitExceeded",
        status="RESOURCE_EXHAUSTED",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "compute.googleapis.com",
                    "quota_metric": "compute.googleapis.com/default",
                    "quota_limit": "defaultPerMinutePerProject",
                    "consumer": f"projects/{_project_number(project)}",
                },
            }
        ],
    )


def backend_error() -> ComputeError:
    return ComputeError(
        503, "The service is currently unavailable.", "backendError", status="UNAVAILABLE"
    )


def internal_error() -> ComputeError:
    return ComputeError(
        500,
        "Internal error. Please try again or contact Google Support.",
        "backendError",
        status="INTERNAL",
    )


def for_fault(code: int, reason: str | None, message: str | None, project: str) -> ComputeError:
    """The error a scripted fault produces: the real body for the code, unless told otherwise."""
    if code == 429 and reason is None and message is None:
        return rate_limited(project)
    if code == 503 and reason is None and message is None:
        return backend_error()
    if code == 500 and reason is None and message is None:
        return internal_error()
    if code == 403 and reason in (None, "rateLimitExceeded") and message is None:
        # What Compute answered for rate limits before it moved to 429.
        return ComputeError(403, "Rate Limit Exceeded", "rateLimitExceeded", domain="usageLimits")
    default_reason = {403: "rateLimitExceeded", 429: "rateLimitExceeded"}.get(code, "backendError")
    return ComputeError(
        code,
        message or "Injected failure.",
        reason or default_reason,
        status=STATUS_BY_CODE.get(code),
    )


def _project_number(project: str) -> int:
    # A stable number per project id, like the real consumer number.
    return int(sum(ord(c) * 31**i for i, c in enumerate(project)) % 10**12)


# Errors that end an operation rather than the HTTP call.


def stockout(project: str, zone: str) -> dict[str, Any]:
    return {
        "code": "ZONE_RESOURCE_POOL_EXHAUSTED",
        "message": (
            f"The zone 'projects/{project}/zones/{zone}' does not have enough resources "
            "available to fulfill the request.  Try a different zone, or try again later."
        ),
        "errorDetails": [
            {
                "help": {
                    "links": [
                        {
                            "description": "Troubleshooting documentation",
                            "url": "https://cloud.google.com/compute/docs/resource-error",
                        }
                    ]
                }
            },
        ],
    }


def quota_exceeded(metric: str, limit: float, region: str) -> dict[str, Any]:
    return {
        "code": "QUOTA_EXCEEDED",
        "message": f"Quota '{metric}' exceeded.  Limit: {float(limit)} in region {region}.",
        "errorDetails": [
            {
                "quotaInfo": {
                    "metricName": f"compute.googleapis.com/{metric.lower()}",
                    "limitName": f"{metric.replace('_', '-')}-per-project-region",
                    "dimensions": {"region": region},
                    "limit": float(limit),
                }
            },
            {
                "help": {
                    "links": [
                        {
                            "description": "Request a higher quota limit.",
                            "url": "https://cloud.google.com/compute/docs/quotas#requesting_additional_quota",
                        }
                    ]
                }
            },
        ],
    }
