"""Decoding the Kubernetes protobuf wire format for the few kinds clients post that way.

kubectl reads as JSON, but its typed clients *post* some kinds as
``application/vnd.kubernetes.protobuf`` (``kubectl auth can-i`` sends a
SelfSubjectAccessReview, ``kubectl create token`` a TokenRequest), accepting JSON back.
A real server decodes those bodies; so must the emulator, or those commands fail. This
module turns such a body into the JSON-shaped dict the handlers already take: the
``k8s\\x00`` magic, the ``runtime.Unknown`` envelope, then the object by a small
field-number schema of the kinds listed in :data:`SCHEMAS` (fields not listed are
skipped, as an old client's unknown fields would be). Answers still go out as JSON,
which these clients accept.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class DecodeError(ValueError):
    """The body is not a Kubernetes protobuf object this module can read."""


# A field: (json name, type), where type is "string", "int64", "bool", "strings"
# (repeated string), "map" (map<string,string>), "extra" (map<string, ExtraValue>),
# "time" (metav1.Time) or the name of another message in SCHEMAS.
Schema = dict[int, tuple[str, str]]

SCHEMAS: dict[str, Schema] = {
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
        8: ("fieldSelector", "FieldSelectorAttributes"),
        9: ("labelSelector", "LabelSelectorAttributes"),
    },
    "FieldSelectorAttributes": {1: ("rawSelector", "string")},
    "LabelSelectorAttributes": {1: ("rawSelector", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
        3: ("user", "string"),
        4: ("groups", "strings"),
        5: ("extra", "extra"),
        6: ("uid", "string"),
    },
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec")},
    "LocalSubjectAccessReview": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "SubjectAccessReviewSpec"),
    },
    "SelfSubjectAccessReview": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "SelfSubjectAccessReviewSpec"),
    },
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
    "SelfSubjectRulesReview": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "SelfSubjectRulesReviewSpec"),
    },
    "TokenReviewSpec": {1: ("token", "string"), 2: ("audiences", "strings")},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta")},
    "BoundObjectReference": {
        1: ("kind", "string"),
        2: ("apiVersion", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
    },
    "TokenRequestSpec": {
        1: ("audiences", "strings"),
        4: ("expirationSeconds", "int64"),
        3: ("boundObjectRef", "BoundObjectReference"),
    },
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
    # kubectl drain evicts through the typed client too.
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int64"),
        2: ("preconditions", "Preconditions"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "strings"),
    },
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "Binding": {1: ("metadata", "ObjectMeta"), 2: ("target", "ObjectReference")},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value): int for varints, bytes for length-delimited."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise DecodeError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise DecodeError("expected a string")
    return value.decode("utf-8")


def _pair(value: Any) -> tuple[str, Any]:
    key, val = "", b""
    for number, _, v in _fields(value):
        if number == 1:
            key = _text(v)
        elif number == 2:
            val = v
    return key, val


def _message(data: bytes, name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            continue
        key, kind = schema[number]
        if kind == "string":
            text = _text(value)
            if text:  # an unset optional string travels as ""; JSON would omit it
                out[key] = text
        elif kind == "int64":
            if wire != 0:
                raise DecodeError(f"{key}: expected a varint")
            out[key] = value - (1 << 64) if value >= 1 << 63 else value
        elif kind == "bool":
            out[key] = bool(value)
        elif kind == "strings":
            out.setdefault(key, []).append(_text(value))
        elif kind == "map":
            k, v = _pair(value)
            out.setdefault(key, {})[k] = _text(v) if v else ""
        elif kind == "extra":
            k, v = _pair(value)
            items = [_text(item) for n, _, item in _fields(v) if n == 1] if v else []
            out.setdefault(key, {})[k] = items
        else:
            out[key] = _message(value, kind)
    return out


def decode(body: bytes, kind: str) -> dict[str, Any]:
    """A protobuf-encoded object of ``kind`` as the dict its JSON form would parse to."""
    if not body.startswith(MAGIC):
        raise DecodeError("missing the k8s protobuf magic number")
    api_version = found_kind = ""
    raw = b""
    for number, _, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            for n, _, v in _fields(value):
                if n == 1:
                    api_version = _text(v)
                elif n == 2:
                    found_kind = _text(v)
        elif number == 2:
            raw = value
    if found_kind != kind:
        raise DecodeError(f"expected {kind}, got {found_kind or 'no kind'}")
    obj: dict[str, Any] = {"kind": found_kind, "apiVersion": api_version}
    obj.update(_message(raw, kind))
    return obj
