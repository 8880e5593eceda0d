"""Who is calling, and may they: the emulator's authenticators and authorizers.

vnode will meet a real control plane whose API server runs ``--authorization-mode=Node,RBAC``
with the NodeRestriction admission plugin; everything vnode does as its node identity must
therefore be something a kubelet may do there, or the sandbox would hide the bug. This
module is a small, honest stand-in for that chain, answering with the real wording
(``shared/reference/kube-apiserver`` facts C4, E6, E7 and ``04-errors/40x-*``):

- authentication: a verified TLS client certificate (CN = user, O = groups) wins over a
  bearer token; a bearer token must be a service-account JWT this cluster signed (RS256,
  the sandbox ``sa.key``) whose service account (and bound pod) still exist; no
  credentials at all is ``system:anonymous``; a bad token is 401 ``Unauthorized``;
- authorization, in the real order: ``system:masters`` may do anything; the Node
  authorizer gives ``system:node:<name>`` what a kubelet gets (its Node, its Lease, the
  pods bound to it and what they reference, events, token and access reviews); then a
  minimal RBAC: the built-in ``system:basic-user``, ``system:discovery`` and
  ``system:public-info-viewer`` bindings, plus whatever bindings a test adds with
  :meth:`Auth.bind`. Nothing else is granted, so a service account may do nothing
  unless bound;
- the name-only NodeRestriction checks (a node may not modify another Node, delete pods or
  write the status of pods not bound to it; token requests must be bound to its pods);
- the create-only review kinds (TokenReview, SubjectAccessReview,
  LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview,
  SelfSubjectReview) and ``serviceaccounts/<name>/token`` (TokenRequest).

Not modelled: NodeRestriction's checks that need the request body (a kubelet creating
only mirror pods, its own Node and Lease names on create, taint and label changes);
the real server's short cache of successful token authentications; legacy
Secret-based tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vnode.certs import peer_identity
from vnode.clock import Clock, parse_time, rfc3339
from vnode.sandbox.kubeapi import protobuf, resources
from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.status import StatusError, method_not_allowed

if TYPE_CHECKING:
    from vnode.sandbox.kubeapi.pki import ClusterPKI
    from vnode.sandbox.kubeapi.store import Store

Obj = dict[str, Any]

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
SA_PREFIX = "system:serviceaccount:"
NODE_LEASE_NAMESPACE = "kube-node-lease"

# Extra keys the real authenticators attach (authentication.kubernetes.io/...).
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
NODE_NAME = "authentication.kubernetes.io/node-name"
NODE_UID = "authentication.kubernetes.io/node-uid"

# go-jose's default clock-skew leeway, used for exp/nbf and "deleted before" checks.
_LEEWAY = dt.timedelta(seconds=60)
# A pod-bound token requested for exactly this long (what kubelets ask for) is silently
# extended to a year, with a ``warnafter`` claim (--service-account-extend-token-expiration).
_WARN_ONLY_EXPIRATION = 3607
_EXTENDED_EXPIRATION = 365 * 24 * 3600
_MIN_EXPIRATION = 600
_MAX_EXPIRATION = 1 << 32


@dataclass(frozen=True)
class User:
    """An authenticated (or anonymous) identity, as ``user.Info`` in the real server."""

    name: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)

    def info(self) -> Obj:
        """The ``UserInfo`` shape of TokenReview/SelfSubjectReview status."""
        out: Obj = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in sorted(self.extra.items())}
        return out


ANONYMOUS = User("system:anonymous", (UNAUTHENTICATED,))


def node_name_of(user: User) -> str | None:
    """The node a kubelet identity speaks for (the Node authorizer's NodeIdentity)."""
    if NODES_GROUP in user.groups and user.name.startswith(NODE_PREFIX):
        return user.name[len(NODE_PREFIX) :]
    return None


# ---------------------------------------------------------------------------------- RBAC
@dataclass(frozen=True)
class PolicyRule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subject:
    kind: str  # "User", "Group" or "ServiceAccount"
    name: str
    namespace: str = ""  # ServiceAccount only


@dataclass(frozen=True)
class Binding:
    """A ClusterRoleBinding (``namespace`` empty) or RoleBinding with its role's rules inline."""

    name: str
    role: str
    rules: tuple[PolicyRule, ...]
    subjects: tuple[Subject, ...]
    namespace: str = ""
    role_kind: str = "ClusterRole"


_DISCOVERY_URLS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
)
_PUBLIC_INFO_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")

# The bootstrap bindings every cluster has, in the lister's (alphabetical) order.
DEFAULT_BINDINGS: tuple[Binding, ...] = (
    Binding(
        "system:basic-user",
        "system:basic-user",
        (
            PolicyRule(("create",), ("authentication.k8s.io",), ("selfsubjectreviews",)),
            PolicyRule(
                ("create",),
                ("authorization.k8s.io",),
                ("selfsubjectaccessreviews", "selfsubjectrulesreviews"),
            ),
        ),
        (Subject("Group", AUTHENTICATED),),
    ),
    Binding(
        "system:discovery",
        "system:discovery",
        (PolicyRule(("get",), non_resource_urls=_DISCOVERY_URLS),),
        (Subject("Group", AUTHENTICATED),),
    ),
    Binding(
        "system:public-info-viewer",
        "system:public-info-viewer",
        (PolicyRule(("get",), non_resource_urls=_PUBLIC_INFO_URLS),),
        (Subject("Group", AUTHENTICATED), Subject("Group", UNAUTHENTICATED)),
    ),
)


@dataclass(frozen=True)
class Attributes:
    """One authorization question (``authorizer.Attributes``)."""

    user: User
    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    field_selector: str = ""


def _field_terms(text: str) -> list[tuple[str, str, str]]:
    """Field selector terms (field, op, value); a malformed term matches nothing here."""
    out: list[tuple[str, str, str]] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        for op, canonical in (("!=", "!="), ("==", "="), ("=", "=")):
            if op in term:
                key, _, value = term.partition(op)
                out.append((key.strip(), canonical, value.strip()))
                break
    return out


def _rule_allows(rule: PolicyRule, a: Attributes) -> bool:
    if "*" not in rule.verbs and a.verb not in rule.verbs:
        return False
    if not a.resource_request:
        return any(
            url in ("*", a.path) or (url.endswith("*") and a.path.startswith(url[:-1]))
            for url in rule.non_resource_urls
        )
    if "*" not in rule.api_groups and a.group not in rule.api_groups:
        return False
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if not any(
        r in ("*", combined) or (a.subresource and r == f"*/{a.subresource}")
        for r in rule.resources
    ):
        return False
    return not rule.resource_names or a.name in rule.resource_names


def _subject_matches(s: Subject, user: User, binding_namespace: str) -> bool:
    if s.kind == "User":
        return s.name == user.name
    if s.kind == "Group":
        return s.name in user.groups
    if s.kind == "ServiceAccount":
        return user.name == f"{SA_PREFIX}{s.namespace or binding_namespace}:{s.name}"
    return False


def _describe_subject(s: Subject, binding_namespace: str) -> str:
    if s.kind == "ServiceAccount":
        return f'{s.kind} "{s.name}/{s.namespace or binding_namespace}"'
    return f'{s.kind} "{s.name}"'


def _describe_binding(b: Binding, s: Subject) -> str:
    if b.namespace:
        return (
            f'RoleBinding "{b.name}/{b.namespace}" of {b.role_kind} "{b.role}" to '
            f"{_describe_subject(s, b.namespace)}"
        )
    return (
        f'ClusterRoleBinding "{b.name}" of {b.role_kind} "{b.role}" to {_describe_subject(s, "")}'
    )


# ------------------------------------------------------------------------------ messages
def forbidden(a: Attributes, reason: str = "") -> StatusError:
    """The 403 the real server sends (``ForbiddenStatusError`` + ``NewForbidden``)."""
    if not a.resource_request:
        msg = f'User "{a.user.name}" cannot {a.verb} path "{a.path}"'
    else:
        shown = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        msg = (
            f'User "{a.user.name}" cannot {a.verb} resource "{shown}" in API group '
            f'"{a.group}" {scope}'
        )
    if reason:
        msg = f"{msg}: {reason}"
    err = _forbidden(a.group, a.resource, a.name, msg)
    # The authorization filter's 403 (not admission's) also says nosniff.
    err.headers["X-Content-Type-Options"] = "nosniff"
    return err


def _forbidden(group: str, resource: str, name: str, err: str) -> StatusError:
    details: Obj = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource
    if not resource:
        message = f"forbidden: {err}"
    else:
        qualified = f"{resource}.{group}" if group else resource
        message = (
            f'{qualified} "{name}" is forbidden: {err}'
            if name
            else (f"{qualified} is forbidden: {err}")
        )
    return StatusError(403, "Forbidden", message, details=details)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def _go_strings(values: Iterable[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


class TokenInvalid(Exception):
    """A bearer token this cluster does not accept; ``str()`` is TokenReview's error."""


# ---------------------------------------------------------------------------- JWT bits
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _canonical(obj: Obj) -> bytes:
    # Go marshals the claim maps with sorted keys and no spaces.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------- Auth
class Auth:
    """Authentication and authorization for one emulated cluster."""

    def __init__(self, pki: ClusterPKI, store: Store, clock: Clock) -> None:
        self.pki = pki
        self.store = store
        self.clock = clock
        self.bindings: list[Binding] = list(DEFAULT_BINDINGS)
        key = serialization.load_pem_private_key(pki.sa_key_file.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{pki.sa_key_file}: service-account key must be RSA")
        self._sa_key = key
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # The key id the real server derives: base64url(sha256(PKIX public key)).
        self.key_id = _b64(hashlib.sha256(der).digest())

    # ------------------------------------------------------------------ credentials
    def issue_node_credentials(self, node_name: str) -> tuple[Path, Path]:
        """A kubelet client certificate (``CN=system:node:<node>, O=system:nodes``)."""
        return self.pki.issue_client(
            f"node-{node_name}", f"{NODE_PREFIX}{node_name}", (NODES_GROUP,)
        )

    def bind(self, binding: Binding) -> None:
        """Grant more: a ClusterRoleBinding/RoleBinding with its role's rules inline."""
        self.bindings = [
            b for b in self.bindings if (b.name, b.namespace) != (binding.name, binding.namespace)
        ]
        self.bindings.append(binding)
        self.bindings.sort(key=lambda b: (b.namespace != "", b.namespace, b.name))

    # --------------------------------------------------------------- authentication
    def authenticate(self, request: web.Request) -> User:
        """The caller: client certificate, else bearer token, else anonymous."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        identity = peer_identity(ssl_object)
        if identity is not None and ssl_object is not None:
            cn, orgs = identity
            der = ssl_object.getpeercert(binary_form=True) or b""
            groups = (*orgs, AUTHENTICATED)
            extra = {CREDENTIAL_ID: [f"X509SHA256={hashlib.sha256(der).hexdigest()}"]}
            return User(cn, groups, extra=extra)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            try:
                user, _ = self._authenticate_token(token, API_AUDIENCES)
            except TokenInvalid as exc:
                raise unauthorized() from exc
            return user
        return ANONYMOUS

    def review_token(self, token: str, audiences: list[str] | None = None) -> Obj:
        """A TokenReview ``status`` for ``token`` (the API audiences when none are given)."""
        try:
            user, auds = self._authenticate_token(token, tuple(audiences or API_AUDIENCES))
        except TokenInvalid as exc:
            return {"user": {}, "error": str(exc)}
        return {"authenticated": True, "user": user.info(), "audiences": auds}

    def _authenticate_token(self, token: str, audiences: tuple[str, ...]) -> tuple[User, list[str]]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("invalid bearer token")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenInvalid("invalid bearer token") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenInvalid("invalid bearer token")
        if claims.get("iss") != ISSUER:
            # Not ours: no authenticator claims it (a foreign issuer is not an error).
            raise TokenInvalid("invalid bearer token")

        def fail(why: str) -> TokenInvalid:
            return TokenInvalid(f"[invalid bearer token, {why}]")

        if header.get("alg") != "RS256":
            raise fail("go-jose/go-jose: unexpected signature algorithm in JWT; expected [RS256]")
        try:
            self._sa_key.public_key().verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise fail("go-jose/go-jose: error in cryptographic primitive") from exc
        aud = claims.get("aud")
        token_auds = [aud] if isinstance(aud, str) else [str(a) for a in aud or []]
        matched = [a for a in token_auds if a in audiences]
        if not matched:
            raise fail(
                f"token audiences {_go_strings(token_auds)} is invalid for the target "
                f"audiences {_go_strings(audiences)}"
            )
        now = self.clock.now()
        try:
            exp = claims.get("exp")
            nbf = claims.get("nbf")
            if isinstance(exp, int | float) and now > _from_unix(exp) + _LEEWAY:
                raise fail("service account token has expired")
            if isinstance(nbf, int | float) and now + _LEEWAY < _from_unix(nbf):
                raise fail("service account token is not valid yet")
        except (OverflowError, ValueError) as exc:
            raise fail(
                "service account token claims could not be validated due to "
                "unexpected validation error"
            ) from exc
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            raise fail(
                "service account token claims could not be validated due to "
                "unexpected private claim"
            )
        namespace = str(private.get("namespace", ""))
        sa_ref = private.get("serviceaccount") or {}
        pod_ref = private.get("pod")
        node_ref = private.get("node")
        deleted_before = now - _LEEWAY
        sa = self._find(
            resources.by_kind("", "ServiceAccount"), namespace, str(sa_ref.get("name", ""))
        )
        if sa is None:
            raise fail(f'serviceaccounts "{sa_ref.get("name", "")}" not found')
        if _deleted_before(sa, deleted_before):
            raise fail(f"service account {namespace}/{sa_ref.get('name')} has been deleted")
        if sa["metadata"]["uid"] != sa_ref.get("uid"):
            raise fail(
                f"service account UID ({sa['metadata']['uid']}) does not match claim "
                f"({sa_ref.get('uid')})"
            )
        extra: dict[str, list[str]] = {}
        if isinstance(pod_ref, dict):
            pod = self._find(resources.by_kind("", "Pod"), namespace, str(pod_ref.get("name")))
            if pod is None or _deleted_before(pod, deleted_before):
                raise fail("service account token has been invalidated")
            if pod["metadata"]["uid"] != pod_ref.get("uid"):
                raise fail(
                    f"pod UID ({pod['metadata']['uid']}) does not match service account "
                    f"pod ref claim ({pod_ref.get('uid')})"
                )
            extra[POD_NAME] = [str(pod_ref.get("name"))]
            extra[POD_UID] = [str(pod_ref.get("uid"))]
        if claims.get("jti"):
            extra[CREDENTIAL_ID] = [f"JTI={claims['jti']}"]
        if isinstance(node_ref, dict) and node_ref.get("name"):
            extra[NODE_NAME] = [str(node_ref["name"])]
            if node_ref.get("uid"):
                extra[NODE_UID] = [str(node_ref["uid"])]
        name = str(sa_ref.get("name"))
        user = User(
            f"{SA_PREFIX}{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
            uid=str(sa_ref.get("uid", "")),
            extra=extra,
        )
        return user, matched

    def _find(self, res: Resource, namespace: str, name: str) -> Obj | None:
        try:
            return self.store.get(res, namespace, name)
        except StatusError as exc:
            if exc.code == 404:
                return None
            raise

    # ---------------------------------------------------------------------- tokens
    def mint_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
        pod: Obj | None = None,
    ) -> str:
        """A signed service-account token, optionally bound to ``pod`` (and its node)."""
        token, _ = self._mint(
            namespace,
            service_account,
            audiences=audiences,
            expiration_seconds=expiration_seconds,
            pod=pod,
        )
        return token

    def _mint(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None,
        expiration_seconds: int,
        pod: Obj | None,
    ) -> tuple[str, dt.datetime]:
        sa = self.store.get(resources.by_kind("", "ServiceAccount"), namespace, service_account)
        now = self.clock.now().replace(microsecond=0)
        iat = int(now.timestamp())
        lifetime = expiration_seconds
        private: Obj = {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": sa["metadata"]["uid"]},
        }
        if pod is not None:
            private["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                node = self._find(resources.by_kind("", "Node"), "", node_name)
                private["node"] = {"name": node_name}
                if node is not None:
                    private["node"]["uid"] = node["metadata"]["uid"]
            if expiration_seconds == _WARN_ONLY_EXPIRATION:
                lifetime = _EXTENDED_EXPIRATION
                private["warnafter"] = iat + _WARN_ONLY_EXPIRATION
        claims: Obj = {
            "aud": list(audiences or API_AUDIENCES),
            "exp": iat + lifetime,
            "iat": iat,
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": iat,
            "sub": f"{SA_PREFIX}{namespace}:{service_account}",
        }
        header = {"alg": "RS256", "kid": self.key_id}
        signing_input = f"{_b64(_canonical(header))}.{_b64(_canonical(claims))}"
        signature = self._sa_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}", now + dt.timedelta(seconds=expiration_seconds)

    # ---------------------------------------------------------------- authorization
    def authorize(  # noqa: PLR0917 - the agreed interface is positional
        self,
        user: User,
        verb: str,
        res: Resource | None,
        namespace: str,
        name: str,
        subresource: str,
        path: str,
        *,
        field_selector: str = "",
    ) -> None:
        """Raise the real 403 unless ``user`` may do this (then NodeRestriction's checks).

        For list/watch, ``field_selector`` lets a kubelet read only its own pods and Node,
        and a ``metadata.name=X`` selector names the object, as in the real request info.
        """
        if res is None:
            a = Attributes(user, verb, False, path=path)
        else:
            if not name and verb in ("list", "watch"):
                name = next(
                    (
                        v
                        for f, op, v in _field_terms(field_selector)
                        if f == "metadata.name" and op == "="
                    ),
                    "",
                )
            a = Attributes(
                user,
                verb,
                True,
                res.group,
                res.plural,
                subresource,
                namespace if res.namespaced else "",
                name,
                path,
                field_selector,
            )
        allowed, reason = self.decide(a)
        if not allowed:
            raise forbidden(a, reason)
        node = node_name_of(user)
        if node is not None and res is not None:
            self._node_restriction(node, a)

    def rules_for(self, user: User, namespace: str) -> Obj:
        """A SelfSubjectRulesReview status: the rules each authorizer can list for ``user``."""
        resource_rules: list[Obj] = []
        non_resource_rules: list[Obj] = []
        errors: list[str] = []
        if MASTERS in user.groups:
            resource_rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            non_resource_rules.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        if node_name_of(user) is not None:
            # Its graph decides case by case; it cannot enumerate (nor does the real one).
            errors.append("node authorizer does not support user rule resolution")
        for b in self.bindings:
            if b.namespace and b.namespace != namespace:
                continue
            if not any(_subject_matches(s, user, b.namespace) for s in b.subjects):
                continue
            for rule in b.rules:
                if rule.non_resource_urls:
                    non_resource_rules.append(
                        {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
                    )
                    continue
                entry: Obj = {
                    "verbs": list(rule.verbs),
                    "apiGroups": list(rule.api_groups),
                    "resources": list(rule.resources),
                }
                if rule.resource_names:
                    entry["resourceNames"] = list(rule.resource_names)
                resource_rules.append(entry)
        status: Obj = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": bool(errors),
        }
        if errors:
            status["evaluationError"] = (
                errors[0] if len(errors) == 1 else ("[" + ", ".join(errors) + "]")
            )
        return status

    def decide(self, a: Attributes) -> tuple[bool, str]:
        """(allowed, reason) through the chain: privileged group, Node, RBAC."""
        if MASTERS in a.user.groups:
            return True, ""
        reasons: list[str] = []
        node = node_name_of(a.user)
        if node is not None:
            allowed, reason = self._node_authorizer(node, a)
            if allowed:
                return True, ""
            if reason:
                reasons.append(reason)
        elif a.user.name.startswith(NODE_PREFIX) and NODES_GROUP in a.user.groups:
            reasons.append(f'unknown node for user "{a.user.name}"')
        for b in self.bindings:
            if b.namespace and b.namespace != a.namespace:
                continue
            subject = next(
                (s for s in b.subjects if _subject_matches(s, a.user, b.namespace)), None
            )
            if subject is None:
                continue
            if any(_rule_allows(rule, a) for rule in b.rules):
                return True, f"RBAC: allowed by {_describe_binding(b, subject)}"
        return False, "\n".join(reasons)

    # The Node authorizer (``plugin/pkg/auth/authorizer/node``), as of v1.33 with
    # AuthorizeNodeWithSelectors on: reads are limited to objects related to the node.
    def _node_authorizer(self, node: str, a: Attributes) -> tuple[bool, str]:
        if not a.resource_request:
            return _node_static(a), ""
        gr = (a.group, a.resource)
        if gr in (("", "secrets"), ("", "configmaps")):
            if a.verb not in ("get", "list", "watch"):
                return False, "can only read resources of this type"
            if a.subresource:
                return False, "cannot read subresource"
            if not a.namespace:
                return False, "can only read namespaced object of this type"
            return self._related(
                node, a, lambda n, ns, name: self._referenced(n, ns, name, a.resource)
            )
        if gr == ("", "serviceaccounts"):
            if a.verb != "create" or not a.name:
                return False, "can only create tokens for individual service accounts"
            if a.subresource != "token":
                return False, "can only create token subresource of serviceaccount"
            return self._related(node, a, self._service_account_used)
        if gr == ("coordination.k8s.io", "leases"):
            if a.verb not in ("get", "create", "update", "patch", "delete"):
                return False, "can only get, create, update, patch, or delete a node lease"
            if a.namespace != NODE_LEASE_NAMESPACE:
                return False, (
                    f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
                )
            if a.verb != "create" and a.name != node:
                return False, "can only access node lease with the same name as the requesting node"
            return True, ""
        if gr == ("", "nodes"):
            if not a.subresource:
                if a.verb in ("create", "update", "patch"):
                    return True, ""
                if a.verb in ("get", "list", "watch"):
                    if a.name == node:
                        return True, ""
                    if not a.name:
                        return False, (
                            f"node '{node}' cannot read all nodes, only its own Node object"
                        )
                    return False, f"node '{node}' cannot read '{a.name}', only its own Node object"
            elif a.subresource == "status" and a.verb in ("update", "patch"):
                return True, ""
            return False, ""
        if gr == ("", "pods"):
            if not a.subresource:
                if a.verb == "get":
                    return self._related(node, a, self._pod_on)
                if a.verb in ("list", "watch"):
                    if ("spec.nodeName", "=", node) in _field_terms(a.field_selector):
                        return True, ""
                    if a.name:
                        return self._related(node, a, self._pod_on)
                    return False, "can only list/watch pods with spec.nodeName field selector"
                if a.verb in ("create", "delete"):
                    return True, ""
            elif (a.subresource, a.verb) in _NODE_POD_WRITES:
                return True, ""
            return False, ""
        return _node_static(a), ""

    def _related(
        self, node: str, a: Attributes, related: Callable[[str, str, str], bool]
    ) -> tuple[bool, str]:
        """The graph check: is the named object reachable from ``node``?"""
        if not a.name:
            return False, "No Object name found"
        if related(node, a.namespace, a.name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"

    def _node_pods(self, node: str, namespace: str) -> list[Obj]:
        pods, _ = self.store.list(
            resources.by_kind("", "Pod"), namespace, field_selector=f"spec.nodeName={node}"
        )
        return pods

    def _pod_on(self, node: str, namespace: str, name: str) -> bool:
        pod = self._find(resources.by_kind("", "Pod"), namespace, name)
        return pod is not None and (pod.get("spec") or {}).get("nodeName") == node

    def _service_account_used(self, node: str, namespace: str, name: str) -> bool:
        return any(
            ((p.get("spec") or {}).get("serviceAccountName") or "default") == name
            for p in self._node_pods(node, namespace)
        )

    def _referenced(self, node: str, namespace: str, name: str, kind: str) -> bool:
        return any(
            name in pod_references_by_kind(p)[kind] for p in self._node_pods(node, namespace)
        )

    def _node_restriction(self, node: str, a: Attributes) -> None:
        """NodeRestriction admission, for the checks that need only names."""
        if a.resource == "nodes" and a.group == "" and a.verb in ("update", "patch", "delete"):
            if a.name and a.name != node:
                raise _forbidden(
                    "", "nodes", a.name, f'node "{node}" is not allowed to modify node "{a.name}"'
                )
            return
        if a.resource != "pods" or a.group != "" or not a.name:
            return
        pod = self._find(resources.by_kind("", "Pod"), a.namespace, a.name)
        if pod is None:
            return  # the handler answers 404
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound == node:
            return
        if not a.subresource and a.verb == "delete":
            why = f'node "{node}" can only delete pods with spec.nodeName set to itself'
        elif a.subresource == "status" and a.verb in ("update", "patch"):
            why = (
                f'node "{node}" can only update pod status for pods with spec.nodeName set '
                "to itself"
            )
        elif a.subresource == "eviction" and a.verb == "create":
            why = f"node {node} can only evict pods with spec.nodeName set to itself"
        else:
            return
        raise _forbidden("", "pods", a.name, why)

    def admit(
        self,
        user: User,
        res: Resource,
        *,
        subresource: str,
        operation: str,
        obj: Obj | None,
        old: Obj | None = None,
    ) -> None:
        """NodeRestriction's checks that need the object: call before a write commits.

        ``operation`` is ``"create"`` or ``"update"`` (a patch is an update of the patched
        object); ``obj`` is the object as it would be stored, ``old`` the stored one.
        Only kubelet identities are restricted; anyone else passes.
        """
        node = node_name_of(user)
        if node is None or MASTERS in user.groups or obj is None:
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        gr = (res.group, res.plural)
        if gr == ("", "nodes"):
            _admit_node(node, name, operation, obj, old)
        elif gr == ("coordination.k8s.io", "leases") and name != node:
            raise _forbidden(
                res.group,
                res.plural,
                name,
                "can only access node lease with the same name as the requesting node",
            )
        elif gr == ("", "pods") and not subresource and operation == "create":
            _admit_mirror_pod(node, name, obj, self._find(resources.by_kind("", "Node"), "", node))
        elif gr == ("", "pods") and subresource == "status" and old is not None:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels != ((old.get("metadata") or {}).get("labels") or {}):
                raise _forbidden(
                    "", "pods", name, f'node "{node}" cannot update labels through pod status'
                )


def _admit_node(node: str, name: str, operation: str, obj: Obj, old: Obj | None) -> None:
    def deny(why: str) -> StatusError:
        return _forbidden("", "nodes", name, why)

    if name != node:
        raise deny(f'node "{node}" is not allowed to modify node "{name}"')
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if operation == "create":
        forbidden_labels = _forbidden_node_labels(labels, {})
        if forbidden_labels:
            raise deny(
                f'node "{node}" is not allowed to set the following labels: '
                + ", ".join(forbidden_labels)
            )
        return
    if old is None:
        return
    if ((obj.get("spec") or {}).get("taints") or []) != (
        (old.get("spec") or {}).get("taints") or []
    ):
        raise deny(f'node "{node}" is not allowed to modify taints')
    forbidden_labels = _forbidden_node_labels(
        labels, (old.get("metadata") or {}).get("labels") or {}
    )
    if forbidden_labels:
        raise deny("is not allowed to modify labels: " + ", ".join(forbidden_labels))


# Labels a kubelet may set on its own Node (``kubeletapis.IsKubeletLabel``).
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    }
)
_KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _label_namespace(key: str) -> str:
    prefix, slash, _ = key.partition("/")
    return prefix if slash else ""


def _under(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def _forbidden_node_labels(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """Changed labels a kubelet may not touch: node-restriction ones, unknown k8s ones."""
    changed = {k for k in set(new) | set(old) if new.get(k) != old.get(k)}
    out = []
    for key in changed:
        ns = _label_namespace(key)
        kubelet_label = key in _KUBELET_LABELS or any(
            _under(ns, d) for d in _KUBELET_LABEL_NAMESPACES
        )
        restricted = _under(ns, "node-restriction.kubernetes.io")
        kubernetes = _under(ns, "kubernetes.io") or _under(ns, "k8s.io")
        if restricted or (kubernetes and not kubelet_label):
            out.append(key)
    return sorted(out)


def _admit_mirror_pod(node: str, name: str, pod: Obj, node_obj: Obj | None) -> None:
    """A kubelet may create only mirror pods of its static pods, bound to itself."""

    def deny(why: str) -> StatusError:
        return _forbidden("", "pods", name, why)

    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if "kubernetes.io/config.mirror" not in (meta.get("annotations") or {}):
        raise deny(
            f'pod does not have "kubernetes.io/config.mirror" annotation, node "{node}" '
            "can only create mirror pods"
        )
    if spec.get("nodeName") != node:
        raise deny(f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = meta.get("ownerReferences") or []
    if len(owners) > 1:
        raise deny(
            f'node "{node}" can only create pods with a single owner reference set to itself'
        )
    if not owners:
        raise deny(f'node "{node}" can only create pods with an owner reference set to itself')
    owner = owners[0]
    if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node):
        raise deny(f'node "{node}" can only create pods with an owner reference set to itself')
    if not owner.get("controller"):
        raise deny(
            f'node "{node}" can only create pods with a controller owner reference set to itself'
        )
    if owner.get("blockOwnerDeletion"):
        raise deny(f'node "{node}" must not set blockOwnerDeletion on an owner reference')
    if node_obj is not None and owner.get("uid") != node_obj["metadata"]["uid"]:
        raise deny(
            f"node {node} UID mismatch: expected {owner.get('uid')} got "
            f"{node_obj['metadata']['uid']}"
        )
    if spec.get("serviceAccountName"):
        raise deny(f'node "{node}" can not create pods that reference a service account')
    refs = pod_references_by_kind(pod)
    for kind in ("secrets", "configmaps"):
        if refs[kind]:
            raise deny(f'node "{node}" can not create pods that reference {kind}')
    if any(v.get("persistentVolumeClaim") for v in spec.get("volumes") or []):
        raise deny(f'node "{node}" can not create pods that reference persistentvolumeclaims')


# Pod subresource writes a kubelet makes (NodeRestriction then limits them to its pods).
_NODE_POD_WRITES = frozenset({("status", "update"), ("status", "patch"), ("eviction", "create")})

# What the system:node ClusterRole grants, for the resources the Node authorizer does
# not subdivide (``NodeRules()`` in the bootstrap policy, trimmed to served kinds).
_NODE_RULES: tuple[PolicyRule, ...] = (
    PolicyRule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
    PolicyRule(
        ("create",),
        ("authorization.k8s.io",),
        ("subjectaccessreviews", "localsubjectaccessreviews"),
    ),
    PolicyRule(("get", "list", "watch"), ("",), ("services",)),
    PolicyRule(("create", "update", "patch"), ("", "events.k8s.io"), ("events",)),
    PolicyRule(("get",), ("",), ("endpoints",)),
    PolicyRule(("get", "list", "watch"), ("node.k8s.io",), ("runtimeclasses",)),
)


def _node_static(a: Attributes) -> bool:
    return any(_rule_allows(rule, a) for rule in _NODE_RULES)


def pod_references(pod: Obj) -> set[str]:
    """Names of the Secrets and ConfigMaps a pod uses (the Node authorizer's graph edges).

    One namespace, so one set serves both kinds; a kubelet may read what its pods mount,
    take from env/envFrom or pull images with.
    """
    refs = pod_references_by_kind(pod)
    return refs["secrets"] | refs["configmaps"]


def pod_references_by_kind(pod: Obj) -> dict[str, set[str]]:
    """``{"secrets": names, "configmaps": names}`` a pod references."""
    spec = pod.get("spec") or {}
    secrets: set[str] = {s.get("name", "") for s in spec.get("imagePullSecrets") or []}
    configmaps: set[str] = set()
    for vol in spec.get("volumes") or []:
        secrets.add((vol.get("secret") or {}).get("secretName", ""))
        configmaps.add((vol.get("configMap") or {}).get("name", ""))
        for src in (vol.get("projected") or {}).get("sources") or []:
            secrets.add((src.get("secret") or {}).get("name", ""))
            configmaps.add((src.get("configMap") or {}).get("name", ""))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            for env in c.get("env") or []:
                ref = env.get("valueFrom") or {}
                secrets.add((ref.get("secretKeyRef") or {}).get("name", ""))
                configmaps.add((ref.get("configMapKeyRef") or {}).get("name", ""))
            for src in c.get("envFrom") or []:
                secrets.add((src.get("secretRef") or {}).get("name", ""))
                configmaps.add((src.get("configMapRef") or {}).get("name", ""))
    secrets.discard("")
    configmaps.discard("")
    return {"secrets": secrets, "configmaps": configmaps}


def _from_unix(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _deleted_before(obj: Obj, when: dt.datetime) -> bool:
    ts = obj["metadata"].get("deletionTimestamp")
    return bool(ts) and parse_time(ts) < when


# ------------------------------------------------------------------------------ handlers
# The create-only kinds and serviceaccounts/token, dispatched by the server with the
# SubresourceHandler signature (name is "" for the create-only kinds).
def _manager(request: web.Request) -> str:
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0][:128] if agent else "unknown"


def _fields_v1(value: Any, *, with_dot: bool = True) -> Obj:
    """The FieldsV1 set of what a request body set (its non-empty fields)."""
    if not isinstance(value, dict):
        return {}
    out: Obj = {".": {}} if with_dot else {}
    for key in sorted(value):
        out[f"f:{key}"] = _fields_v1(value[key], with_dot=key != "boundObjectRef")
    return out


def _managed_fields(
    request: web.Request, api_version: str, spec: Obj, now: dt.datetime, subresource: str = ""
) -> list[Obj]:
    entry: Obj = {
        "manager": _manager(request),
        "operation": "Update",
        "apiVersion": api_version,
        "time": rfc3339(now),
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": _fields_v1(spec, with_dot=False)},
    }
    if subresource:
        entry["subresource"] = subresource
    return [entry]


async def _read_body(request: web.Request, kind: str) -> Obj:
    """The posted object; these kinds are create-only, so any other method is 405."""
    if request.method != "POST":
        raise method_not_allowed()
    raw = await request.read()
    if request.content_type == protobuf.CONTENT_TYPE:
        # kubectl's typed clients post these kinds as protobuf (and accept JSON back).
        try:
            return protobuf.decode(raw, kind)
        except (protobuf.DecodeError, UnicodeDecodeError) as exc:
            raise StatusError(
                400,
                "BadRequest",
                f"the object provided is unrecognized (must be of type {kind}): {exc}",
            ) from exc
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        why = (
            "unexpected end of JSON input"
            if "Expecting" in str(exc) and raw.strip()
            else (
                f"invalid character: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
        )
        snippet = raw[:30].decode(errors="replace")
        raise StatusError(
            400,
            "BadRequest",
            f"the object provided is unrecognized (must be of type {kind}): "
            f"couldn't get version/kind; json parse error: {why} ({snippet} ...)",
        ) from exc
    if not isinstance(body, dict):
        raise StatusError(
            400,
            "BadRequest",
            f"the object provided is unrecognized (must be of type {kind}): "
            "couldn't get version/kind; json parse error: json: cannot unmarshal "
            "array into Go value of type struct { APIVersion string "
            '"json:\\"apiVersion,omitempty\\""; Kind string '
            '"json:\\"kind,omitempty\\"" }',
        )
    return body


def _respond(obj: Obj, status: int = 201) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(obj, separators=(",", ":")).encode() + b"\n",
        content_type="application/json",
    )


def _auth_of(api: Any) -> Auth:
    auth: Auth = api.auth
    return auth


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


async def handle_token_review(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST tokenreviews: 201 whatever the verdict; only ``status`` differs (fact E6)."""
    body = await _read_body(request, "TokenReview")
    spec = _dict(body.get("spec"))
    token = str(spec.get("token") or "")
    if not token:
        raise StatusError(400, "BadRequest", "token is required for TokenReview in authentication")
    auth = _auth_of(api)
    clean: Obj = {"token": token}
    audiences = _strings(spec.get("audiences"))
    if audiences:
        clean["audiences"] = audiences
    meta = dict(body.get("metadata") or {})
    meta["creationTimestamp"] = None
    meta["managedFields"] = _managed_fields(request, res.api_version, clean, auth.clock.now())
    out = {
        "kind": "TokenReview",
        "apiVersion": res.api_version,
        "metadata": meta,
        "spec": clean,
        "status": auth.review_token(token, audiences or None),
    }
    return _respond(out)


_RESOURCE_ATTRS = (
    "namespace",
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "name",
    "fieldSelector",
    "labelSelector",
)
_NON_RESOURCE_ATTRS = ("path", "verb")


def _clean(value: Any, keys: tuple[str, ...]) -> Obj | None:
    if not isinstance(value, dict):
        return None
    return {k: value[k] for k in keys if value.get(k) not in (None, "", [], {})}


def _review_spec(spec: Obj, *, self_review: bool) -> Obj:
    out: Obj = {}
    ra = _clean(spec.get("resourceAttributes"), _RESOURCE_ATTRS)
    if ra is not None:
        out["resourceAttributes"] = ra
    nra = _clean(spec.get("nonResourceAttributes"), _NON_RESOURCE_ATTRS)
    if nra is not None:
        out["nonResourceAttributes"] = nra
    if not self_review:
        for key in ("user", "groups", "extra", "uid"):
            if spec.get(key) not in (None, "", [], {}):
                out[key] = spec[key]
    return out


def _review_invalid(
    spec: Obj, *, need_subject: bool, extra: list[tuple[str, str]] | None = None
) -> None:
    """``ValidateSubjectAccessReviewSpec`` (and any kind-specific causes after it)."""
    causes: list[tuple[str, str]] = []
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra is not None and nra is not None:
        causes.append(
            (
                "spec.nonResourceAttributes",
                f"Invalid value: {_go_value(nra)}: cannot be specified in combination "
                "with resourceAttributes",
            )
        )
    if ra is None and nra is None:
        causes.append(
            (
                "spec.resourceAttributes",
                'Invalid value: "null": exactly one of '
                "nonResourceAttributes or resourceAttributes must be specified",
            )
        )
    if need_subject and not spec.get("user") and not spec.get("groups"):
        causes.append(
            (
                "spec.user",
                'Invalid value: "": at least one of user or group must be specified',
            )
        )
    causes.extend(extra or [])
    if not causes:
        return
    parts = [f"{f}: {m}" for f, m in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    # The real registry builds the error from the internal object, whose Kind is empty.
    raise StatusError(
        422,
        "Invalid",
        f'.authorization.k8s.io "" is invalid: {summary}',
        details={
            "group": "authorization.k8s.io",
            "causes": [
                {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes
            ],
        },
    )


def _go_value(value: Obj) -> str:
    inner = ", ".join(f"{k[:1].upper()}{k[1:]}:{json.dumps(v)}" for k, v in value.items())
    return f"&authorization.NonResourceAttributes{{{inner}}}"


def _review_attributes(user: User, spec: Obj) -> Attributes:
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict):
        selector = ra.get("fieldSelector") or {}
        raw = str(selector.get("rawSelector", "")) if isinstance(selector, dict) else ""
        return Attributes(
            user,
            str(ra.get("verb", "")),
            True,
            str(ra.get("group", "")),
            str(ra.get("resource", "")),
            str(ra.get("subresource", "")),
            str(ra.get("namespace", "")),
            str(ra.get("name", "")),
            field_selector=raw,
        )
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(user, str(nra.get("verb", "")), False, path=str(nra.get("path", "")))


def _review_status(auth: Auth, a: Attributes) -> Obj:
    allowed, reason = auth.decide(a)
    out: Obj = {"allowed": allowed}
    if reason:
        out["reason"] = reason
    return out


async def handle_subject_access_review(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST subjectaccessreviews: may ``spec.user``/``groups`` do this? (fact E7)."""
    return await _subject_access_review(api, request, res, "")


async def handle_local_subject_access_review(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST namespaces/<ns>/localsubjectaccessreviews: a SAR confined to one namespace."""
    return await _subject_access_review(api, request, res, namespace)


async def _subject_access_review(
    api: Any, request: web.Request, res: Resource, namespace: str
) -> web.Response:
    kind = "LocalSubjectAccessReview" if namespace else "SubjectAccessReview"
    body = await _read_body(request, kind)
    spec = _dict(body.get("spec"))
    meta = dict(_dict(body.get("metadata")))
    extra_causes: list[tuple[str, str]] = []
    if namespace:
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise StatusError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        meta["namespace"] = namespace
        ra = spec.get("resourceAttributes")
        if isinstance(ra, dict) and ra.get("namespace", "") != namespace:
            value = json.dumps(ra.get("namespace", ""))
            extra_causes.append(
                (
                    "spec.resourceAttributes.namespace",
                    f"Invalid value: {value}: must match metadata.namespace",
                )
            )
        if spec.get("nonResourceAttributes") is not None:
            value = _go_value(_dict(spec["nonResourceAttributes"]))
            extra_causes.append(
                (
                    "spec.nonResourceAttributes",
                    f"Invalid value: {value}: disallowed on this kind of request",
                )
            )
    _review_invalid(spec, need_subject=True, extra=extra_causes)
    auth = _auth_of(api)
    extra = _dict(spec.get("extra"))
    subject = User(
        str(spec.get("user", "")),
        tuple(_strings(spec.get("groups"))),
        uid=str(spec.get("uid", "")),
        extra={k: _strings(v) for k, v in extra.items()},
    )
    clean = _review_spec(spec, self_review=False)
    meta["creationTimestamp"] = None
    meta["managedFields"] = _managed_fields(request, res.api_version, clean, auth.clock.now())
    out = {
        "kind": kind,
        "apiVersion": res.api_version,
        "metadata": meta,
        "spec": clean,
        "status": _review_status(auth, _review_attributes(subject, spec)),
    }
    return _respond(out)


async def handle_self_subject_access_review(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST selfsubjectaccessreviews: may the caller do this?"""
    body = await _read_body(request, "SelfSubjectAccessReview")
    spec = _dict(body.get("spec"))
    _review_invalid(spec, need_subject=False)
    auth = _auth_of(api)
    clean = _review_spec(spec, self_review=True)
    meta = dict(body.get("metadata") or {})
    meta["creationTimestamp"] = None
    meta["managedFields"] = _managed_fields(request, res.api_version, clean, auth.clock.now())
    out = {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": res.api_version,
        "metadata": meta,
        "spec": clean,
        "status": _review_status(auth, _review_attributes(user, spec)),
    }
    return _respond(out)


async def handle_self_subject_review(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST selfsubjectreviews (``kubectl auth whoami``): the caller's own user info."""
    await _read_body(request, "SelfSubjectReview")
    auth = _auth_of(api)
    out = {
        "kind": "SelfSubjectReview",
        "apiVersion": res.api_version,
        "metadata": {"creationTimestamp": rfc3339(auth.clock.now())},
        "status": {"userInfo": user.info()},
    }
    return _respond(out)


async def handle_self_subject_rules_review(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST selfsubjectrulesreviews (``kubectl auth can-i --list``): what may I do here?"""
    body = await _read_body(request, "SelfSubjectRulesReview")
    ns = str(_dict(body.get("spec")).get("namespace") or "")
    if not ns:
        raise StatusError(400, "BadRequest", "no namespace on request")
    out = {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": res.api_version,
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": _auth_of(api).rules_for(user, ns),
    }
    return _respond(out)


# A TokenRequest is an authentication.k8s.io/v1 object, though posted to a core path.
_TOKEN_REQUEST_API = "authentication.k8s.io/v1"


def _token_request_invalid(causes: list[tuple[str, str]]) -> StatusError:
    parts = [f"{f}: {m}" for f, m in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return StatusError(
        422,
        "Invalid",
        f'TokenRequest.authentication.k8s.io "" is invalid: {summary}',
        details={
            "group": "authentication.k8s.io",
            "kind": "TokenRequest",
            "causes": [
                {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes
            ],
        },
    )


async def handle_token_request(  # noqa: PLR0917 - the SubresourceHandler signature
    api: Any, request: web.Request, res: Resource, namespace: str, name: str, user: User
) -> web.Response:
    """POST serviceaccounts/<name>/token: mint a TokenRequest (fact E6)."""
    body = await _read_body(request, "TokenRequest")
    auth = _auth_of(api)
    meta_in = _dict(body.get("metadata"))
    if meta_in.get("name") and meta_in["name"] != name:
        raise _name_mismatch(
            name, "name", meta_in["name"], "must match the service account name if specified"
        )
    if meta_in.get("namespace") and meta_in["namespace"] != namespace:
        raise _name_mismatch(
            name,
            "namespace",
            meta_in["namespace"],
            "must match the service account namespace if specified",
        )
    spec_in = _dict(body.get("spec"))
    sa_res = resources.by_kind("", "ServiceAccount")
    auth.store.get(sa_res, namespace, name)  # 404 serviceaccounts "x" not found
    raw_exp = spec_in.get("expirationSeconds")
    seconds = 3600 if raw_exp is None else raw_exp
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise StatusError(
            400,
            "BadRequest",
            f'TokenRequest in version "v1" cannot be handled as a TokenRequest: '
            f"json: cannot unmarshal {type(seconds).__name__} into Go struct field "
            "TokenRequestSpec.spec.expirationSeconds of type int64",
        )
    if seconds < _MIN_EXPIRATION:
        raise _token_request_invalid(
            [
                (
                    "spec.expirationSeconds",
                    f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                )
            ]
        )
    if seconds > _MAX_EXPIRATION:
        raise _token_request_invalid(
            [
                (
                    "spec.expirationSeconds",
                    f"Invalid value: {seconds}: "
                    "may not specify a duration larger than 2^32 seconds",
                )
            ]
        )
    ref = spec_in.get("boundObjectRef") if isinstance(spec_in.get("boundObjectRef"), dict) else None
    node = node_name_of(user)
    if node is not None and MASTERS not in user.groups:
        _node_token_restriction(auth, node, namespace, name, ref)
    pod: Obj | None = None
    if ref is not None:
        pod = _bound_pod(auth, namespace, name, ref)
    audiences = _strings(spec_in.get("audiences")) or list(API_AUDIENCES)
    token, expires = auth._mint(
        namespace, name, audiences=audiences, expiration_seconds=seconds, pod=pod
    )
    now = auth.clock.now()
    meta: Obj = {"name": name, "namespace": namespace, "creationTimestamp": rfc3339(now)}
    if spec_in:  # a writer that set no field has no managedFields entry
        meta["managedFields"] = _managed_fields(request, _TOKEN_REQUEST_API, spec_in, now, "token")
    spec_out: Obj = {
        "audiences": audiences,
        "expirationSeconds": seconds,
        "boundObjectRef": None
        if ref is None
        else {k: ref[k] for k in ("kind", "apiVersion", "name", "uid") if ref.get(k)},
    }
    out = {
        "kind": "TokenRequest",
        "apiVersion": _TOKEN_REQUEST_API,
        "metadata": meta,
        "spec": spec_out,
        "status": {"token": token, "expirationTimestamp": rfc3339(expires)},
    }
    return _respond(out)


def _name_mismatch(name: str, key: str, value: str, why: str) -> StatusError:
    field_path = f"metadata.{key}"
    message = f'Invalid value: "{value}": {why}'
    return StatusError(
        422,
        "Invalid",
        f'TokenRequest.authentication.k8s.io "{name}" is invalid: {field_path}: {message}',
        details={
            "name": name,
            "group": "authentication.k8s.io",
            "kind": "TokenRequest",
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}],
        },
    )


def _bound_pod(auth: Auth, namespace: str, sa_name: str, ref: Mapping[str, Any]) -> Obj:
    api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
    group, _, version = api_version.rpartition("/")
    if group or kind != "Pod":
        raise StatusError(
            400, "BadRequest", f"cannot bind token to object of type {group}/{version}, Kind={kind}"
        )
    pod = auth.store.get(resources.by_kind("", "Pod"), namespace, str(ref.get("name", "")))
    if ((pod.get("spec") or {}).get("serviceAccountName") or "default") != sa_name:
        raise StatusError(
            400,
            "BadRequest",
            f'cannot bind token for serviceaccount "{sa_name}" '
            "to pod running with different serviceaccount name.",
        )
    uid = ref.get("uid")
    if uid and uid != pod["metadata"]["uid"]:
        pod_name = pod["metadata"]["name"]
        raise StatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on Pod "{pod_name}": the UID in the bound object '
            f"reference ({uid}) does not match the UID in record. The object might have been "
            "deleted and then recreated",
            details={"name": pod_name, "kind": "Pod"},
        )
    return pod


def _node_token_restriction(
    auth: Auth, node: str, namespace: str, sa_name: str, ref: Mapping[str, Any] | None
) -> None:
    """NodeRestriction: a kubelet's tokens must be bound to a pod running on it."""

    def deny(why: str) -> StatusError:
        return _forbidden("", "serviceaccounts", sa_name, why)

    if (
        ref is None
        or ref.get("apiVersion") != "v1"
        or ref.get("kind") != "Pod"
        or not ref.get("name")
    ):
        raise deny("node requested token not bound to a pod")
    if not ref.get("uid"):
        raise deny("node requested token with a pod binding without a uid")
    pod = auth.store.get(resources.by_kind("", "Pod"), namespace, str(ref["name"]))
    if ref["uid"] != pod["metadata"]["uid"]:
        raise deny(
            f"the UID in the bound object reference ({ref['uid']}) does not match the "
            "UID in record. The object might have been deleted and then recreated"
        )
    if (pod.get("spec") or {}).get("nodeName") != node:
        raise deny("node requested token bound to a pod scheduled on a different node")


# The server dispatches on these keys (plural, subresource); "" for the create-only kinds.
HANDLERS = {
    ("tokenreviews", ""): handle_token_review,
    ("subjectaccessreviews", ""): handle_subject_access_review,
    ("selfsubjectaccessreviews", ""): handle_self_subject_access_review,
    ("selfsubjectreviews", ""): handle_self_subject_review,
    ("localsubjectaccessreviews", ""): handle_local_subject_access_review,
    ("selfsubjectrulesreviews", ""): handle_self_subject_rules_review,
    ("serviceaccounts", "token"): handle_token_request,
}
