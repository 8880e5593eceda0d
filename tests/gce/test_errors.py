"""Every Compute failure lands in exactly one vnode.errors class (no I/O).

The exceptions are the official client's own types, shaped as the REST transport builds
them from the real error bodies (``errors[].reason``, ``ErrorInfo`` reasons); finished
operations carry their errors in ``error.errors[].code``.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc

from vnode.errors import InvalidPod, NotFound, QuotaExceeded, Retryable
from vnode.gce.instances import classify, operation_error, transient


def api_error(cls: type[gexc.GoogleAPICallError], reason: str, message: str = "m") -> Any:
    return cls(message, errors=[{"message": message, "domain": "global", "reason": reason}])


@pytest.mark.parametrize(
    ("err", "retry_now"),
    [
        (api_error(gexc.TooManyRequests, "rateLimitExceeded"), True),
        (api_error(gexc.ServiceUnavailable, "backendError"), True),
        (api_error(gexc.InternalServerError, "backendError"), True),
        (api_error(gexc.Forbidden, "rateLimitExceeded"), True),  # Compute's older answer
        (api_error(gexc.Forbidden, "userRateLimitExceeded"), True),
        (requests.ConnectionError("reset"), True),
        (requests.Timeout("slow"), True),
        (api_error(gexc.Forbidden, "forbidden"), False),
        (api_error(gexc.BadRequest, "invalid"), False),
        (api_error(gexc.NotFound, "notFound"), False),
    ],
)
def test_what_is_retried_at_once(err: BaseException, retry_now: bool) -> None:
    assert transient(err) is retry_now


def test_exhausted_transient_errors_are_retryable() -> None:
    err = classify(api_error(gexc.TooManyRequests, "rateLimitExceeded", "slow down"), "x")
    assert isinstance(err, Retryable) and "429" in err.message and "slow down" in err.message
    assert isinstance(classify(requests.ConnectionError("reset"), "x"), Retryable)


def test_bad_request_is_invalid_pod_with_the_api_message() -> None:
    err = classify(api_error(gexc.BadRequest, "invalid", "Invalid value for field 'x'"), "x")
    assert isinstance(err, InvalidPod)
    assert "Invalid value for field 'x'" in err.message


def test_quota_on_the_call_is_quota_exceeded() -> None:
    err = classify(api_error(gexc.Forbidden, "quotaExceeded", "Quota 'CPUS' exceeded"), "x")
    assert isinstance(err, QuotaExceeded) and err.pod_reason == "QuotaExceeded"


def test_not_found_and_permission() -> None:
    assert isinstance(classify(api_error(gexc.NotFound, "notFound"), "x"), NotFound)
    # Missing IAM: not the pod's fault, and fixable: retried with Events, not a failure.
    assert isinstance(classify(api_error(gexc.Forbidden, "forbidden"), "x"), Retryable)


def op(code: str, status: int, message: str = "why") -> dict[str, Any]:
    return {
        "status": "DONE",
        "http_error_status_code": status,
        "error": {"errors": [{"code": code, "message": message}]},
    }


def test_operation_errors() -> None:
    assert operation_error({"status": "DONE"}, "x") is None
    for code in ("ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"):
        assert isinstance(operation_error(op(code, 503), "x"), QuotaExceeded)
    assert isinstance(operation_error(op("QUOTA_EXCEEDED", 403), "x"), QuotaExceeded)
    assert operation_error(op("RESOURCE_ALREADY_EXISTS", 409), "x") is None
    invalid = operation_error(op("INVALID_FIELD_VALUE", 400, "bad image"), "x")
    assert isinstance(invalid, InvalidPod) and "bad image" in invalid.message
    assert isinstance(operation_error(op("INTERNAL_ERROR", 500), "x"), Retryable)
