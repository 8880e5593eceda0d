"""Label and field selectors, parsed and matched the way the real API server does.

Clients learn the selector grammar from the server's answers: a selector the real server
rejects must be rejected here with the same message (kubectl prints it verbatim), and a
field the real server cannot select on must fail instead of silently matching nothing.
Label selectors follow the apimachinery grammar (``=``, ``==``, ``!=``, ``in``, ``notin``,
``key``, ``!key``, ``>``, ``<``) including its key/value validation; field selectors
support ``=``, ``==`` and ``!=`` on the fields each kind exposes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vnode.sandbox.kubeapi.resources import Resource
from vnode.sandbox.kubeapi.status import bad_request

# ---------------------------------------------------------------------------------------
# Name and value validation (the messages are the real server's, double spaces included)

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def qualified_name_errors(value: str) -> list[str]:
    """Why ``value`` is not a qualified name (label key); empty when it is one."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append(
                    "prefix part "
                    + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
                )
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append(
            "name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """Why ``value`` is not a label value; empty when it is one."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errs


def _invalid(field: str, value: str, detail: str) -> str:
    # Go's field.Error for ErrorTypeInvalid with a string value.
    return f"{field}: Invalid value: {_go_quote(value)}: {detail}"


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Label selectors


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector. ``operator`` uses apimachinery's spelling:
    ``=``, ``==``, ``!=``, ``in``, ``notin``, ``exists``, ``!``, ``gt``, ``lt``."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op in ("=", "==", "in"):
            return present and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        if op in ("gt", "lt"):
            if not present or len(self.values) != 1:
                return False
            try:
                have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            except ValueError:
                return False
            return have > want if op == "gt" else have < want
        return False

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return "!" + self.key
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        sym = {"gt": ">", "lt": "<"}.get(self.operator, self.operator)
        return f"{self.key}{sym}{self.values[0] if self.values else ''}"


def _parse_int64(text: str) -> int:
    # strconv.ParseInt(s, 10, 64): optional sign, decimal digits only.
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements. No requirements matches everything, unless the
    selector is ``nothing`` (a nil selector in an object spec selects no object)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# Tokens of the label selector lexer.
_END, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)
_KEYWORDS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_SPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n or text[i] == "\x00":
            items.append((_END, ""))
            return items
        if text[i] in _SPECIAL:
            # Longest run of symbols that is still a known operator ("!=" but "!" + "(").
            best: tuple[int, str] | None = None
            j = i
            while j < n and text[j] in _SPECIAL:
                candidate = text[i : j + 1]
                if candidate in _KEYWORDS:
                    best = (_KEYWORDS[candidate], candidate)
                elif best is not None:
                    break
                j += 1
            assert best is not None  # every single symbol is itself a token
            items.append(best)
            i += len(best[1])
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _SPACE and text[j] != "\x00":
            j += 1
        word = text[i:j]
        items.append((_KEYWORDS.get(word, _ID), word))
        i = j


class _LabelParser:
    """Recursive descent over the token list; ``in``/``notin`` read as identifiers
    wherever a value or key is expected, exactly like the upstream parser."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[min(self.pos, len(self.items) - 1)]
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def take(self, values: bool = True) -> tuple[int, str]:
        item = self.peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok in (_ID, _NOT):
                reqs.append(self.requirement())
                tok, lit = self.take()
                if tok == _END:
                    return reqs
                if tok == _COMMA:
                    tok2, lit2 = self.peek()
                    if tok2 not in (_ID, _NOT):
                        raise ValueError(f"found '{lit2}', expected: identifier after ','")
                    continue
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            if tok == _END:
                return reqs
            raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        try:
            return self._requirement()
        except ValueError as e:
            raise ValueError(f"unable to parse requirement: {e}") from None

    def _requirement(self) -> Requirement:
        negate = False
        tok, lit = self.take()
        if tok == _NOT:
            negate = True
            tok, lit = self.take()
        if tok != _ID:
            raise ValueError(f"found '{lit}', expected: identifier")
        key = lit
        errs = qualified_name_errors(key)
        if errs:
            # The upstream parser validates the key with an unset field path.
            raise ValueError(_invalid("<nil>", key, "; ".join(errs)))
        nxt, _ = self.peek()
        if negate or nxt in (_END, _COMMA):
            return self._build(key, "!" if negate else "exists", [])
        op_tok, op_lit = self.take(values=False)
        ops = {_IN: "in", _NOTIN: "notin", _EQ: "=", _DEQ: "==", _NEQ: "!=", _GT: "gt", _LT: "lt"}
        if op_tok not in ops:
            raise ValueError(f"found '{op_lit}', expected: in, notin, =, ==, !=, gt, lt")
        op = ops[op_tok]
        values = self._set_values() if op in ("in", "notin") else self._exact_value()
        return self._build(key, op, values)

    def _exact_value(self) -> list[str]:
        tok, _ = self.peek()
        if tok in (_END, _COMMA):
            return [""]
        tok, lit = self.take()
        if tok == _ID:
            return [lit]
        raise ValueError(f"found '{lit}', expected: identifier")

    def _set_values(self) -> list[str]:
        tok, lit = self.take()
        if tok != _OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok in (_ID, _COMMA):
            values = self._identifier_list()
            if self.take()[0] != _CLOSE:
                raise ValueError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self.take()
            return [""]
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifier_list(self) -> list[str]:
        found: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok == _ID:
                found.add(lit)
                tok2, lit2 = self.peek()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return sorted(found)
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                # "(,a", "a,,b" and "a,)" each contribute the empty value.
                if not found:
                    found.add("")
                tok2, _ = self.peek()
                if tok2 == _CLOSE:
                    found.add("")
                    return sorted(found)
                if tok2 == _COMMA:
                    self.take()
                    found.add("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    @staticmethod
    def _build(key: str, op: str, values: list[str]) -> Requirement:
        errs: list[str] = []
        if op in ("gt", "lt"):
            for i, v in enumerate(values):
                try:
                    _parse_int64(v)
                except ValueError:
                    errs.append(
                        _invalid(
                            f"values[{i}]",
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    )
        for i, v in enumerate(values):
            verrs = label_value_errors(v)
            if verrs:
                errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(verrs)))
        if errs:
            raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
        return Requirement(key, op, tuple(values))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a ``labelSelector`` query value; 400 BadRequest with the real message."""
    try:
        reqs = _LabelParser(text).parse()
    except ValueError as e:
        raise bad_request(str(e)) from None
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


_SPEC_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def label_selector_from_spec(spec: dict[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``) as a selector.

    ``None`` selects nothing and ``{}`` selects everything, as upstream.
    """
    if spec is None:
        return LabelSelector(nothing=True)
    reqs: list[Requirement] = []
    try:
        for key, value in sorted((spec.get("matchLabels") or {}).items()):
            reqs.append(_LabelParser._build(_checked_key(key), "=", [str(value)]))
        for expr in spec.get("matchExpressions") or []:
            op_name = expr.get("operator", "")
            if op_name not in _SPEC_OPERATORS:
                raise ValueError(f'"{op_name}" is not a valid label selector operator')
            op = _SPEC_OPERATORS[op_name]
            values = [str(v) for v in expr.get("values") or []]
            if op in ("in", "notin") and not values:
                raise ValueError(
                    "values: Invalid value: []: "
                    "for 'in', 'notin' operators, values set can't be empty"
                )
            if op in ("exists", "!") and values:
                raise ValueError(
                    "values: Invalid value: "
                    + _go_list(values)
                    + ": values set must be empty for exists and does not exist"
                )
            reqs.append(_LabelParser._build(_checked_key(expr.get("key", "")), op, values))
    except ValueError as e:
        raise bad_request(str(e)) from None
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def _checked_key(key: str) -> str:
    errs = qualified_name_errors(key)
    if errs:
        raise ValueError(_invalid("key", key, "; ".join(errs)))
    return key


def _go_list(values: list[str]) -> str:
    return "[" + ",".join(_go_quote(v) for v in values) + "]"


# ---------------------------------------------------------------------------------------
# Field selectors

FieldsFn = Callable[[dict[str, Any]], dict[str, str]]


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _meta_fields(obj: dict[str, Any], namespaced: bool) -> dict[str, str]:
    out = {"metadata.name": _s(_get(obj, "metadata", "name"))}
    if namespaced:
        out["metadata.namespace"] = _s(_get(obj, "metadata", "namespace"))
    return out


def _pod_fields(obj: dict[str, Any]) -> dict[str, str]:
    ips = _get(obj, "status", "podIPs") or []
    first_ip = _s(ips[0].get("ip")) if ips and isinstance(ips[0], Mapping) else ""
    # The storage derives status.podIP from podIPs[0]; a client that only set podIP
    # (a status patch written by hand) still expects it to select.
    pod_ip = first_ip or _s(_get(obj, "status", "podIP"))
    return {
        **_meta_fields(obj, True),
        "spec.nodeName": _s(_get(obj, "spec", "nodeName")),
        "spec.restartPolicy": _s(_get(obj, "spec", "restartPolicy")),
        "spec.schedulerName": _s(_get(obj, "spec", "schedulerName")),
        "spec.serviceAccountName": _s(_get(obj, "spec", "serviceAccountName")),
        "spec.hostNetwork": _bool(_get(obj, "spec", "hostNetwork")),
        "status.phase": _s(_get(obj, "status", "phase")),
        "status.podIP": pod_ip,
        "status.nominatedNodeName": _s(_get(obj, "status", "nominatedNodeName")),
    }


def _event_fields(obj: dict[str, Any]) -> dict[str, str]:
    # Both views of an Event share one storage; accept either shape.
    if "regarding" in obj or "note" in obj or "deprecatedSource" in obj:
        ref = obj.get("regarding") or {}
        reporting = _s(obj.get("reportingController"))
        component = _s(_get(obj, "deprecatedSource", "component"))
    else:
        ref = obj.get("involvedObject") or {}
        reporting = _s(obj.get("reportingComponent"))
        component = _s(_get(obj, "source", "component"))
    return {
        **_meta_fields(obj, True),
        "involvedObject.kind": _s(ref.get("kind")),
        "involvedObject.namespace": _s(ref.get("namespace")),
        "involvedObject.name": _s(ref.get("name")),
        "involvedObject.uid": _s(ref.get("uid")),
        "involvedObject.apiVersion": _s(ref.get("apiVersion")),
        "involvedObject.resourceVersion": _s(ref.get("resourceVersion")),
        "involvedObject.fieldPath": _s(ref.get("fieldPath")),
        "reason": _s(obj.get("reason")),
        "reportingComponent": reporting,
        "source": component or reporting,
        "type": _s(obj.get("type")),
    }


@dataclass(frozen=True)
class _FieldSupport:
    labels: Mapping[str, str]  # selector label -> field it selects
    unsupported: Callable[[str], str]  # the error message for any other label
    fields: FieldsFn


def _not_supported(label: str) -> str:
    return f"field label not supported: {label}"


def _default_unsupported(label: str) -> str:
    return f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def _identity(*labels: str) -> dict[str, str]:
    return {label: label for label in labels}


_EVENT_LABELS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
)

_SUPPORT: dict[tuple[str, str], _FieldSupport] = {
    ("", "Pod"): _FieldSupport(
        {
            **_identity(
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ),
            "spec.host": "spec.nodeName",  # what very old clients send
        },
        _not_supported,
        _pod_fields,
    ),
    ("", "Node"): _FieldSupport(
        _identity("metadata.name", "spec.unschedulable"),
        _not_supported,
        lambda o: {
            **_meta_fields(o, False),
            "spec.unschedulable": _bool(_get(o, "spec", "unschedulable")),
        },
    ),
    ("", "Namespace"): _FieldSupport(
        _identity("metadata.name", "status.phase"),
        _not_supported,
        lambda o: {**_meta_fields(o, False), "status.phase": _s(_get(o, "status", "phase"))},
    ),
    ("", "Secret"): _FieldSupport(
        _identity("metadata.name", "metadata.namespace", "type"),
        _not_supported,
        lambda o: {**_meta_fields(o, True), "type": _s(o.get("type"))},
    ),
    ("", "Event"): _FieldSupport(_identity(*_EVENT_LABELS), _not_supported, _event_fields),
    ("events.k8s.io", "Event"): _FieldSupport(
        {
            "reason": "reason",
            "regarding.kind": "involvedObject.kind",
            "regarding.namespace": "involvedObject.namespace",
            "regarding.name": "involvedObject.name",
            "regarding.uid": "involvedObject.uid",
            "regarding.apiVersion": "involvedObject.apiVersion",
            "regarding.resourceVersion": "involvedObject.resourceVersion",
            "regarding.fieldPath": "involvedObject.fieldPath",
            "reportingController": "reportingComponent",
            "source": "source",
            "type": "type",
            "metadata.namespace": "metadata.namespace",
            "metadata.name": "metadata.name",
        },
        _not_supported,
        _event_fields,
    ),
    ("batch", "Job"): _FieldSupport(
        _identity("metadata.name", "metadata.namespace", "status.successful"),
        lambda label: f'field label "{label}" not supported for batchv1.Job',
        lambda o: {
            **_meta_fields(o, True),
            "status.successful": str(int(_get(o, "status", "succeeded") or 0)),
        },
    ),
}


def _support_for(res: Resource) -> _FieldSupport:
    found = _SUPPORT.get((res.group, res.kind))
    if found is not None:
        return found
    return _FieldSupport(
        _identity("metadata.name", "metadata.namespace"),
        _default_unsupported,
        lambda o: _meta_fields(o, res.namespaced),
    )


def object_fields(res: Resource, obj: dict[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` (what the real storage indexes)."""
    return _support_for(res).fields(obj)


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of ``field op value`` terms (op ``=`` or ``!=``) over the
    selectable fields of one kind; ``requirements`` name fields after conversion
    (``regarding.name`` on events.k8s.io reads as ``involvedObject.name``)."""

    requirements: list[tuple[str, str, str]]
    fields_of: FieldsFn

    def matches(self, obj: dict[str, Any]) -> bool:
        if not self.requirements:
            return True
        have = self.fields_of(obj)
        for field, op, value in self.requirements:
            equal = have.get(field, "") == value
            if equal != (op == "="):
                return False
        return True

    def value_of(self, field: str) -> str | None:
        """The value an ``=`` term requires of ``field`` (e.g. ``spec.nodeName``), if any."""
        for f, op, v in self.requirements:
            if f == field and op == "=":
                return v
        return None

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{_escape(v)}" for f, op, v in self.requirements)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == ",":
            terms.append(text[start:i])
            start = i + 1
        i += 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    i, n = 0, len(term)
    while i < n:
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
        i += 1
    return None


def _unescape(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaping = False
    for ch in value:
        if escaping:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaping = False
        elif ch == "\\":
            escaping = True
        elif ch in ",=":
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaping:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str, res: Resource) -> FieldSelector:
    """Parse a ``fieldSelector`` query value for ``res``; 400 BadRequest on a bad term
    or a field the real server cannot select on for that kind."""
    support = _support_for(res)
    reqs: list[tuple[str, str, str]] = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        label, op, raw = split
        try:
            value = _unescape(raw)
        except ValueError as e:
            raise bad_request(str(e)) from None
        field = support.labels.get(label)
        if field is None:
            raise bad_request(support.unsupported(label))
        reqs.append((field, "!=" if op == "!=" else "=", value))
    return FieldSelector(reqs, support.fields)


__all__ = [
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "label_selector_from_spec",
    "label_value_errors",
    "object_fields",
    "parse_field_selector",
    "parse_label_selector",
    "qualified_name_errors",
]
