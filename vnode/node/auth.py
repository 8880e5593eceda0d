"""Who may call vnode's kubelet API, decided the way a real kubelet decides it.

The kubelet API hands out pod logs (and, on a real kubelet, shells in containers), so it
authenticates and authorizes every request exactly like a kubelet running with
``--anonymous-auth=false --authentication-token-webhook --authorization-mode=Webhook``:

- **Authentication.** A client certificate is verified by TLS itself against
  ``--client-ca-file`` (the server's SSL context requests one and rejects any other CA at
  the handshake); its subject gives the user (CN) and groups (O). Otherwise a bearer
  token is sent to the API server in a ``TokenReview``. Nothing at all, or a token the API
  server does not vouch for, is 401 with the body ``Unauthorized``.
- **Authorization.** Each request becomes ``SubjectAccessReview`` questions about the
  Node object, with the kubelet's mapping (v1.33, ``KubeletFineGrainedAuthz`` on):
  ``/stats/*`` asks for ``nodes/stats``, ``/metrics/*`` for ``nodes/metrics``,
  ``/logs/*`` for ``nodes/log``, ``/checkpoint/*`` for ``nodes/checkpoint``; ``/pods``
  (and ``/runningpods/``), ``/healthz``, ``/configz`` and ``/statusz`` first ask for
  their own subresource and then for ``nodes/proxy``; everything else (``/containerLogs``,
  ``/exec``, ...) asks for ``nodes/proxy``. The verb comes from the HTTP method
  (``GET`` get, ``POST`` create, ...). The first allowed answer wins; otherwise 403 with the
  kubelet's text, e.g.
  ``Forbidden (user=u, verb=get, resource=nodes, subresource(s)=[pods proxy])``.
- **Caching**, as the kubelet's webhook defaults: a token's review for 2 minutes, an
  allowed decision for 5 minutes, a denied one for 30 seconds, in bounded LRU caches
  so that a flood of distinct tokens cannot grow memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web

from vnode.certs import peer_identity
from vnode.clock import Clock, SystemClock
from vnode.errors import Forbidden, Unauthorized, VnodeError
from vnode.node.cluster import ApiError, request_json

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

AUTHENTICATED = "system:authenticated"

# The kubelet's webhook cache lifetimes (KubeletConfiguration defaults).
AUTHN_TTL = 120.0
AUTHZ_ALLOWED_TTL = 300.0
AUTHZ_DENIED_TTL = 30.0
# The API server answers a kubelet's reviews quickly or not at all; do not hang a request.
REVIEW_TIMEOUT = 10.0
CACHE_SIZE = 4096

# HTTP method -> API verb (kubelet server/auth.go); any other method asks with verb "".
VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

# Paths whose own subresource is asked before nodes/proxy (fine-grained authorization).
_FINE_GRAINED = (
    ("/pods", "pods"),
    ("/healthz", "healthz"),
    ("/configz", "configz"),
    ("/statusz", "statusz"),
    ("/runningpods/", "pods"),
)
# Paths with a subresource of their own and no nodes/proxy fallback.
_DEDICATED = (
    ("/stats/", "stats"),
    ("/metrics", "metrics"),
    ("/logs/", "log"),
    ("/checkpoint", "checkpoint"),
)


@dataclass(frozen=True)
class User:
    """An authenticated caller, as ``user.Info``: name, groups, uid and extra."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    def review_spec(self) -> dict[str, Any]:
        """The subject part of a SubjectAccessReview spec."""
        spec: dict[str, Any] = {"user": self.name, "groups": list(self.groups)}
        if self.uid:
            spec["uid"] = self.uid
        if self.extra:
            spec["extra"] = {k: list(v) for k, v in self.extra}
        return spec


def is_subpath(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it (the kubelet's isSubpath)."""
    prefix = prefix.rstrip("/")
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")


def subresources(path: str) -> list[str]:
    """The ``nodes/<subresource>`` questions asked for ``path``, in order."""
    out = [sub for prefix, sub in _FINE_GRAINED if is_subpath(path, prefix)][:1]
    dedicated = [sub for prefix, sub in _DEDICATED if is_subpath(path, prefix)]
    out.append(dedicated[0] if dedicated else "proxy")
    return out


def verb_of(method: str) -> str:
    return VERBS.get(method.upper(), "")


def forbidden_message(user: User, verb: str, subs: list[str]) -> str:
    """The kubelet's 403 body (Go's ``%v`` of a string slice: ``[a b]``), newline included."""
    return (
        f"Forbidden (user={user.name}, verb={verb}, resource=nodes, "
        f"subresource(s)=[{' '.join(subs)}])\n"
    )


class AuthorizationError(VnodeError):
    """A SubjectAccessReview could not be answered: 500, as the kubelet answers."""

    http_status = 500


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A bounded LRU map whose entries expire on the given clock's monotonic time."""

    def __init__(self, clock: Clock, size: int = CACHE_SIZE) -> None:
        self._clock = clock
        self._size = size
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if self._clock.monotonic() >= expires:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float) -> None:
        self._items[key] = (self._clock.monotonic() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class KubeletAuth:
    """Authenticates and authorizes kubelet API requests. See the module docstring.

    ``api_client`` is a ``kubernetes.aio`` ApiClient (its identity must be allowed to
    create TokenReviews and SubjectAccessReviews, as a node identity is);
    ``client_ca_file`` is only recorded here: TLS verifies certificates against it (see
    :meth:`client_ca`).
    """

    def __init__(
        self,
        api_client: Any,
        client_ca_file: Path | None,
        node_name: str,
        *,
        clock: Clock | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.api = api_client
        self.client_ca_file = client_ca_file
        self.node_name = node_name
        clock = clock or SystemClock()
        self._tokens: TTLCache[str, User] = TTLCache(clock, cache_size)
        self._decisions: TTLCache[tuple[Hashable, ...], bool] = TTLCache(clock, cache_size)
        self.token_reviews = 0  # reviews actually sent (the caches' effect is observable)
        self.access_reviews = 0

    @property
    def token_cache_size(self) -> int:
        return len(self._tokens)

    @property
    def decision_cache_size(self) -> int:
        return len(self._decisions)

    # --------------------------------------------------------------- authentication
    async def authenticate(self, request: web.Request) -> User:
        """The caller: a verified client certificate, else a bearer token, else 401."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        identity = peer_identity(ssl_object)
        if identity is not None:
            cn, orgs = identity
            if cn:
                return User(cn, (*orgs, AUTHENTICATED))
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            user = await self.review_token(token)
            if user is not None:
                return user
        raise Unauthorized("Unauthorized")

    async def review_token(self, token: str) -> User | None:
        """The user the API server says ``token`` belongs to, or None (cached 2 minutes)."""
        key = hashlib.sha256(token.encode()).hexdigest()  # keep no raw tokens around
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        self.token_reviews += 1
        try:
            review = await request_json(
                self.api, "POST", TOKEN_REVIEWS, body=body, request_timeout=REVIEW_TIMEOUT
            )
        except ApiError as e:
            # The kubelet answers 401 when its authenticator fails; the reason goes to the log.
            log.warning("TokenReview failed, refusing the request: %s", e)
            return None
        status = review.get("status") or {}
        if not status.get("authenticated"):
            # Refusals are not cached: a token minted a moment ago may be good next time.
            why = status.get("error") or "not authenticated"
            log.info("bearer token refused by TokenReview: %s", why)
            return None
        info = status.get("user") or {}
        extra = tuple(
            sorted((str(k), tuple(v or ())) for k, v in (info.get("extra") or {}).items())
        )
        user = User(
            str(info.get("username", "")),
            tuple(info.get("groups") or ()),
            str(info.get("uid", "")),
            extra,
        )
        self._tokens.put(key, user, AUTHN_TTL)
        return user

    # ---------------------------------------------------------------- authorization
    async def authorize(self, user: User, request: web.Request) -> None:
        """Raise Forbidden (403) unless one of the path's subresources is allowed."""
        verb = verb_of(request.method)
        subs = subresources(request.path)
        for sub in subs:
            if await self.allowed(user, verb, sub):
                return
        log.info("kubelet API: %s may not %s nodes/%s", user.name, verb, ",".join(subs))
        raise Forbidden(forbidden_message(user, verb, subs))

    async def allowed(self, user: User, verb: str, subresource: str) -> bool:
        """One SubjectAccessReview about this Node (cached 5 min allowed / 30 s denied)."""
        key = (user, verb, subresource)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                **user.review_spec(),
                "resourceAttributes": {
                    "namespace": "",
                    "verb": verb,
                    "group": "",
                    "version": "v1",
                    "resource": "nodes",
                    "subresource": subresource,
                    "name": self.node_name,
                },
            },
        }
        self.access_reviews += 1
        try:
            review = await request_json(
                self.api, "POST", SUBJECT_ACCESS_REVIEWS, body=body, request_timeout=REVIEW_TIMEOUT
            )
        except ApiError as e:
            log.warning("SubjectAccessReview failed: %s", e)
            raise AuthorizationError(
                f"Authorization error (user={user.name}, verb={verb}, resource=nodes, "
                f"subresource={subresource})"
            ) from e
        status = review.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        self._decisions.put(key, allowed, AUTHZ_ALLOWED_TTL if allowed else AUTHZ_DENIED_TTL)
        return allowed
