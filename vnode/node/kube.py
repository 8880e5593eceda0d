"""Connections to the Kubernetes API server, and raw JSON requests over them.

vnode talks to the API server through the official asyncio client (``kubernetes.aio``)
with plain JSON dictionaries (see :mod:`vnode.node.cluster` for the raw calls and their
:class:`ApiError`). This module decides where the client's configuration comes from.

The Lease must never wait behind pod traffic, so the runner opens a second, independent
client for it (:func:`connect` again: its own connection pool and its own sockets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubernetes.aio import client, config

from vnode import __version__
from vnode.errors import ConfigError
from vnode.node.cluster import DEFAULT_TIMEOUT, ApiError, request_json
from vnode.settings import KubeSettings

ApiClient = client.ApiClient
__all__ = ["ApiClient", "ApiError", "already_exists", "api_error", "connect", "path", "request"]

DEFAULT_KUBECONFIG = Path("~/.kube/config")
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"


def already_exists(error: ApiError) -> bool:
    """A create that lost a race: the object is there already (409 AlreadyExists)."""
    return error.status == 409 and error.reason == "AlreadyExists"


def api_error(status: int, reason: str, message: str) -> ApiError:
    """An ApiError as the API server would have sent it (for vnode's own give-ups)."""
    return ApiError(status, message, body={"kind": "Status", "reason": reason, "code": status,
                                           "message": message})  # fmt: skip


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
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - passed to the client as its own timeout
) -> dict[str, Any]:
    """Send one request and return the decoded JSON answer; raise ApiError for non-2xx.

    The Node and Lease keepers call the API only through this name, so their tests
    replace it with an in-memory API server.
    """
    return await request_json(
        api, method, resource_path, query=query, body=body, content_type=content_type,
        request_timeout=timeout,
    )  # fmt: skip
