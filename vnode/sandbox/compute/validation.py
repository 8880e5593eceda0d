"""Check request bodies and query parameters against the Compute v1 discovery document.

The discovery document that google-api-python-client ships is the published contract of
the API; checking against it (rather than against a hand-written list of fields) means a
field vnode misspells, a number sent as an object or an enum value that does not exist is
refused here exactly where the real API would refuse it.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from vnode.sandbox.compute.errors import ComputeError, bad_request_payload, invalid_field

Schema = dict[str, Any]

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_GLOBAL_PARAMS = {"$alt", "$fields", "$prettyPrint", "$callback", "$.xgafv"}


@functools.cache
def discovery() -> dict[str, Any]:
    """The Compute v1 discovery document (loaded once; it is several megabytes)."""
    path = resources.files("googleapiclient") / "discovery_cache" / "documents" / "compute.v1.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def method(resource: str, name: str) -> dict[str, Any]:
    m: dict[str, Any] = discovery()["resources"][resource]["methods"][name]
    return m


def schema(name: str) -> Schema:
    s: Schema = discovery()["schemas"][name]
    return s


def snake(name: str) -> str:
    """Proto field name of a JSON name (``networkIP`` -> ``network_i_p``, as the protos say)."""
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def body_root(resource: str, name: str) -> str:
    """The proto name of a method's body field (``Instance`` -> ``instance_resource``)."""
    ref = method(resource, name)["request"]["$ref"]
    return snake(ref[0].lower() + ref[1:]) + "_resource"


class _Checker:
    def __init__(self) -> None:
        self.payload: list[tuple[str, str]] = []  # front-end (proto parse) violations
        self.semantic: list[ComputeError] = []  # Compute's own refusals (enums)

    def check(self, value: Any, sch: Schema, proto: str, api: str) -> None:
        if "$ref" in sch:
            sch = schema(sch["$ref"])
        if value is None:
            return  # JSON null means "unset" to the proto parser
        typ = sch.get("type")
        if typ == "object" or (typ is None and "properties" in sch):
            self._object(value, sch, proto, api)
        elif typ == "array":
            self._array(value, sch, proto, api)
        elif typ == "string":
            self._string(value, sch, proto, api)
        elif typ == "integer":
            self._integer(value, sch, proto)
        elif typ == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                self._bad_value(proto, "TYPE_DOUBLE", value)
            elif isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    self._bad_value(proto, "TYPE_DOUBLE", value)
        elif typ == "boolean" and not isinstance(value, bool):
            self._bad_value(proto, "TYPE_BOOL", value)
        # "any" and untyped schemas accept everything.

    def _object(self, value: Any, sch: Schema, proto: str, api: str) -> None:
        if isinstance(value, list):
            leaf = proto.rsplit(".", 1)[-1]
            parent = proto.rsplit(".", 1)[0] if "." in proto else proto
            self.payload.append(
                (
                    proto,
                    f"Invalid JSON payload received. Unknown name \"{leaf}\" at '{parent}': "
                    "Proto field is not repeating, cannot start list.",
                )
            )
            return
        if not isinstance(value, dict):
            self._bad_value(proto, _type_url(sch), value)
            return
        props: dict[str, Schema] = sch.get("properties", {})
        extra = sch.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                self.check(item, props[key], f"{proto}.{snake(key)}", f"{api}.{key}")
            elif extra is not None:
                self.check(item, extra, f"{proto}[{key}]", f"{api}.{key}")
            else:
                self.payload.append(
                    (
                        proto,
                        f"Invalid JSON payload received. Unknown name \"{key}\" at '{proto}': "
                        "Cannot find field.",
                    )
                )

    def _array(self, value: Any, sch: Schema, proto: str, api: str) -> None:
        if not isinstance(value, list):
            item = sch.get("items", {})
            self._bad_value(proto, _type_url(item), value)
            return
        for i, item in enumerate(value):
            self.check(item, sch.get("items", {}), f"{proto}[{i}]", f"{api}[{i}]")

    def _string(self, value: Any, sch: Schema, proto: str, api: str) -> None:
        fmt = sch.get("format")
        if fmt in _INT_RANGES:
            self._integer(value, sch, proto)
            return
        if isinstance(value, dict):
            leaf = proto.rsplit(".", 1)[-1]
            self.payload.append(
                (
                    proto,
                    f'Invalid JSON payload received. Unknown name "{leaf}" at '
                    f"'{proto.rsplit('.', 1)[0]}': Starting an object on a scalar field.",
                )
            )
            return
        if not isinstance(value, str):
            self._bad_value(proto, "TYPE_STRING", value)
            return
        if fmt == "byte":
            bare = value.rstrip("=")
            if not re.fullmatch(r"[A-Za-z0-9+/_-]*", bare) or len(bare) % 4 == 1:
                self._bad_value(proto, "TYPE_BYTES", value)
            return
        enum = sch.get("enum")
        if enum and value not in enum and not _output_only(sch):
            self.semantic.append(invalid_field(api, value, f"Must be one of {_one_of(enum)}."))

    def _integer(self, value: Any, sch: Schema, proto: str) -> None:
        fmt = sch.get("format", "int32")
        kind = "TYPE_" + fmt.upper()
        if isinstance(value, bool):
            self._bad_value(proto, kind, value)
            return
        number: int | None = None
        numeric = isinstance(value, int | float) and float(value).is_integer()
        if numeric or (isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip())):
            number = int(value)
        low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
        if number is None or not low <= number <= high:
            self._bad_value(proto, kind, value)

    def _bad_value(self, proto: str, kind: str, value: Any) -> None:
        self.payload.append((proto, f"Invalid value at '{proto}' ({kind}), {json.dumps(value)}"))


def _output_only(sch: Schema) -> bool:
    desc = str(sch.get("description", ""))
    return bool(sch.get("readOnly")) or desc.startswith(("[Output Only]", "Output only"))


def _type_url(sch: Schema) -> str:
    if "$ref" in sch:
        return f"type.googleapis.com/google.cloud.compute.v1.{sch['$ref']}"
    kind = str(sch.get("type", "message"))
    return "TYPE_" + {"integer": "INT32", "number": "DOUBLE"}.get(kind, kind.upper())


def _one_of(enum: list[str]) -> str:
    return "[" + ", ".join(v for v in enum if not v.endswith("_UNSPECIFIED")) + "]"


def validate_body(resource: str, name: str, body: Any) -> None:
    """Raise the real API's 400 for a body the method's request schema does not accept."""
    root = body_root(resource, name)
    ref = method(resource, name)["request"]["$ref"]
    checker = _Checker()
    checker.check(body, {"$ref": ref}, root, "resource")
    if checker.payload:
        raise bad_request_payload(checker.payload)
    if checker.semantic:
        raise checker.semantic[0]


def validate_response(schema_name: str, value: Any) -> list[str]:
    """Problems with a response body (tests use this to hold the emulator to the schema)."""
    checker = _Checker()
    checker.check(value, {"$ref": schema_name}, schema_name, schema_name)
    return [desc for _, desc in checker.payload] + [e.message for e in checker.semantic]


def validate_query(resource: str, name: str, query: dict[str, str]) -> None:
    """Unknown query parameters and badly typed ones are refused as the front end does."""
    params: dict[str, Schema] = method(resource, name)["parameters"]
    global_params: dict[str, Schema] = discovery()["parameters"]
    violations: list[tuple[str, str]] = []
    for key, value in query.items():
        spec = params.get(key) or global_params.get(key)
        if spec is None and (key in _GLOBAL_PARAMS or key.startswith("$")):
            continue
        if spec is None or spec.get("location") == "path":
            violations.append(
                (
                    key,
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                    f"parameter. Field '{key}' could not be found in request message.",
                )
            )
            continue
        checker = _Checker()
        if spec.get("type") == "boolean":
            if value not in ("true", "false", "True", "False", "1", "0"):
                checker.payload.append(
                    (key, f"Invalid value at '{snake(key)}' (TYPE_BOOL), \"{value}\"")
                )
        elif spec.get("type") == "integer":
            checker.check(value, spec, snake(key), key)
        violations += checker.payload
    if violations:
        raise bad_request_payload(violations)
