"""Raw JSON calls to the API server, and the ClusterReader a provider resolves pods with.

vnode/node talks to the API server through the official ``kubernetes.aio`` client, but
below its generated models: requests carry plain dicts and answers are decoded straight
from JSON. Pods cross the Provider boundary as raw dicts anyway; building model trees
only to turn them back into dicts would cost more than the rest of the work, and the
models drop fields they do not know. The client still does what matters: TLS, the
kubeconfig's credentials (token refresh included) and connection pooling.

A non-2xx answer becomes :class:`ApiError`, carrying the HTTP status and the API
``Status`` body, with ``retryable`` set for 429, 5xx and broken connections, so callers
decide from the class and the code, never from message text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from vnode.errors import VnodeError
from vnode.provider import Pod

DEFAULT_TIMEOUT = 30.0
"""Seconds for one ordinary request; watches pass their own."""


class ApiError(VnodeError):
    """The API server answered with an error (or could not be reached: ``status`` 0)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}
        self.reason = str(self.body.get("reason") or "")
        self.retry_after = retry_after
        self.retryable = status in {0, 429} or status >= 500

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


def path(*parts: str) -> str:
    """An API path from segments, each quoted (names never contain '/', but be safe)."""
    return "/" + "/".join(quote(p, safe="") for p in parts)


async def request(
    api_client: Any,
    method: str,
    resource_path: str,
    *,
    query: Mapping[str, str | int | bool] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    request_timeout: float = DEFAULT_TIMEOUT,
) -> aiohttp.ClientResponse:
    """Send one request through ``api_client``; the caller reads (or streams) the answer.

    Raises :class:`ApiError` for a non-2xx status (the body is read and released) and
    for connection trouble.
    """
    try:
        method, url, headers, payload, _ = await api_client.param_serialize(
            method=method,
            resource_path=resource_path,
            query_params=list((query or {}).items()) or None,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        rest = await api_client.call_api(
            method,
            url,
            header_params=headers,
            body=payload,
            _request_timeout=aiohttp.ClientTimeout(total=request_timeout),
            _preload_content=False,
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise ApiError(0, f"{method} {resource_path}: {type(e).__name__}: {e}") from e
    response: aiohttp.ClientResponse = rest.response
    if response.status < 300:
        return response
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raw = str(e).encode()
    finally:
        response.release()
    status_body: dict[str, Any] | None = None
    try:
        decoded = json.loads(raw)
        if isinstance(decoded, dict):
            status_body = decoded
    except ValueError:
        pass
    message = str((status_body or {}).get("message") or raw[:200].decode(errors="replace"))
    retry_after: float | None = None
    if (value := response.headers.get("Retry-After")) is not None:
        try:
            retry_after = float(value)
        except ValueError:
            retry_after = None
    raise ApiError(
        response.status,
        f"{method} {resource_path}: {response.status} {message}",
        body=status_body,
        retry_after=retry_after,
    )


async def request_json(
    api_client: Any,
    method: str,
    resource_path: str,
    *,
    query: Mapping[str, str | int | bool] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    request_timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """:func:`request`, with the answer decoded as a JSON object."""
    response = await request(
        api_client,
        method,
        resource_path,
        query=query,
        body=body,
        content_type=content_type,
        request_timeout=request_timeout,
    )
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError) as e:
        raise ApiError(0, f"{method} {resource_path}: reading the answer: {e}") from e
    finally:
        response.release()
    decoded = json.loads(raw) if raw else {}
    if not isinstance(decoded, dict):
        raise ApiError(0, f"{method} {resource_path}: the answer is not a JSON object")
    return decoded


class ApiClusterReader:
    """:class:`vnode.provider.ClusterReader` over the API server."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    async def _get_or_none(self, *parts: str) -> dict[str, Any] | None:
        try:
            return await request_json(self._api, "GET", path(*parts))
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none("api", "v1", "namespaces", namespace, "configmaps", name)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none("api", "v1", "namespaces", namespace, "secrets", name)

    async def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str],
        expiration_seconds: int,
        pod: Pod | None = None,
    ) -> str:
        """A service-account token from the TokenRequest API, bound to ``pod`` if given."""
        spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": expiration_seconds}
        if pod is not None:
            spec["boundObjectRef"] = {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            }
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        answer = await request_json(
            self._api,
            "POST",
            path("api", "v1", "namespaces", namespace, "serviceaccounts", service_account, "token"),
            body=body,
        )
        token = answer.get("status", {}).get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(0, f"TokenRequest for {namespace}/{service_account} returned no token")
        return token
