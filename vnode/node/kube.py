"""Connections to the Kubernetes API server, and raw JSON requests over them.

vnode talks to the API server through the official asyncio client (``kubernetes.aio``)
but mostly with plain JSON dictionaries: building the generated models costs more than
the request, and raw objects pass straight to providers and back. :func:`request` is the
one place that turns an HTTP answer into a dict or an :class:`ApiError`.

The Lease must never wait behind pod traffic, so the runner opens a second, independent
client for it (:func:`connect` again: its own connection pool and its own sockets).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubernetes.aio import client, config

from vnode import __version__
from vnode.errors import ConfigError, VnodeError
from vnode.settings import KubeSettings

ApiClient = client.ApiClient

DEFAULT_KUBECONFIG = Path("~/.kube/config")
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
# Requests that hang are worse than requests that fail: the callers retry.
DEFAULT_TIMEOUT = 30.0


class ApiError(VnodeError):
    """A non-2xx answer from the API server, carrying its ``Status`` body.

    ``status`` is the HTTP code, ``reason`` the Status reason (``NotFound``, ``Conflict``,
    ...). 429 and 5xx are retryable; the rest describe the request, not the moment.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.body = body
        self.retry_after = retry_after
        self.http_status = status
        self.retryable = status == 429 or status >= 500

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"


def _kubeconfig(settings: KubeSettings) -> str | None:
    """Which kubeconfig to load; None means the in-cluster service account."""
    if settings.kubeconfig is not None:
        return str(settings.kubeconfig)
    if os.environ.get(IN_CLUSTER_ENV):
        return None
    default = DEFAULT_KUBECONFIG.expanduser()
    if not default.exists():
        raise ConfigError(
            "no Kubernetes configuration: give --kubeconfig (or KUBECONFIG), run in a "
            f"cluster, or create {default}"
        )
    return str(default)


def _user_agent(purpose: str) -> str:
    # The API server names managedFields after the part before the first "/".
    return f"vnode/{__version__} ({purpose})"


async def connect(settings: KubeSettings, *, purpose: str = "main") -> Any:
    """An ApiClient configured from the kubeconfig, else in-cluster, else ~/.kube/config.

    Each call returns an independent client with its own connection pool; close it with
    ``await api.close()``. Raises ConfigError when no configuration can be loaded.
    """
    kubeconfig = _kubeconfig(settings)
    configuration = type.__call__(client.Configuration)
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
    except Exception as e:  # the loaders raise ConfigException, OSError, YAML errors...
        source = kubeconfig or "the in-cluster service account"
        raise ConfigError(f"cannot load the Kubernetes configuration from {source}: {e}") from e
    api = client.ApiClient(configuration=configuration)
    api.user_agent = _user_agent(purpose)
    return api


def path(
    api_version: str, plural: str, name: str = "", *, namespace: str = "", subresource: str = ""
) -> str:
    """The REST path of a collection or object.

    ``path("v1", "nodes", "n1", subresource="status")`` is ``/api/v1/nodes/n1/status``.
    """
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    if subresource:
        base += f"/{subresource}"
    return base


async def request(
    api: Any,
    method: str,
    resource_path: str,
    *,
    query: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - passed to the client as its own timeout
) -> dict[str, Any]:
    """Send one request and return the decoded JSON answer; raise ApiError for non-2xx."""
    params = list(query.items()) if isinstance(query, Mapping) else list(query or [])
    method_, url, headers, body_, post = await api.param_serialize(
        method=method,
        resource_path=resource_path,
        query_params=params or None,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = await api.call_api(
        method_,
        url,
        header_params=headers,
        body=body_,
        post_params=post,
        _request_timeout=timeout,
        _preload_content=False,
    )
    raw = await response.read()
    if response.status >= 400:
        raise _error(response.status, raw, response.headers)
    if not raw:
        return {}
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def _error(status: int, raw: bytes, headers: Mapping[str, str]) -> ApiError:
    body: Any = None
    reason = ""
    message = raw.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError):
        body = json.loads(raw)
    if isinstance(body, dict):
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or message)
    retry_after: float | None = None
    if (value := headers.get("Retry-After")) is not None:
        try:
            retry_after = float(value)
        except ValueError:
            retry_after = None
    return ApiError(status, reason or _REASONS.get(status, "Unknown"), message, body, retry_after)


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
