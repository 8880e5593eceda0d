"""vnode's own exceptions, classified by what they mean rather than where they came from.

Every layer raises these (or subclasses) so that the decision "retry, fail the pod, or
answer the HTTP caller with code N" is made once, from the class, and never by parsing
messages. Each class carries the HTTP status the kubelet API answers with and the pod
``reason`` used when the error ends a pod.
"""

from __future__ import annotations


class VnodeError(Exception):
    """Base of every error vnode raises on purpose."""

    http_status: int = 500
    pod_reason: str = "ProviderFailed"
    retryable: bool = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.pod_reason = reason


class ConfigError(VnodeError):
    """Settings that cannot work; vnode stops at once with one clear line."""

    http_status = 500


class InvalidPod(VnodeError):
    """A pod vnode cannot run as written (unsupported volume, bad annotation, ...).

    Never retried: the pod ends Failed with this message.
    """

    http_status = 400
    pod_reason = "ProviderFailed"


class PodTooLarge(InvalidPod):
    """No machine the backend offers can hold the pod's requests."""

    pod_reason = "PodTooLarge"


class NotFound(VnodeError):
    """The thing asked for does not exist (a pod, a container, a VM)."""

    http_status = 404


class Unsupported(VnodeError):
    """The operation exists in the kubelet API but this provider does not offer it."""

    http_status = 501
    pod_reason = "Unsupported"


class Retryable(VnodeError):
    """A transient failure (429, 5xx, connection reset): try again with backoff."""

    http_status = 503
    retryable = True

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class QuotaExceeded(VnodeError):
    """The cloud refused for lack of quota or capacity (stockout).

    Not retried in the same place: the caller may try another zone, else the pod fails.
    """

    http_status = 503
    pod_reason = "QuotaExceeded"


class Unauthorized(VnodeError):
    """The caller of vnode's kubelet API is not authenticated."""

    http_status = 401


class Forbidden(VnodeError):
    """The caller of vnode's kubelet API is authenticated but not allowed."""

    http_status = 403
