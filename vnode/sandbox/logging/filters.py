"""The Logging query language, as far as vnode and its tests use it, compiled to a predicate.

Grammar (the documented one, trimmed to what is implemented)::

    query      = conj
    conj       = disj { ["AND"] disj }          juxtaposition is AND
    disj       = neg { "OR" neg }               OR binds tighter than AND, as documented
    neg        = ("NOT" | "-") neg | primary
    primary    = "(" conj ")" | comparison | value    a bare value searches every field
    comparison = path op value                  op: = != < <= > >= : =~ !~
    value      = string | word | "(" value-expression ")"
    path       = segment { "." segment }        a segment is a word or a quoted string

Only upper-case AND/OR/NOT are operators. String comparisons ignore case, as in the
real service, except regular expressions. ``timestamp`` and ``receiveTimestamp`` compare
as instants (RFC 3339 values), ``severity`` by its level (names or numbers), other
fields as numbers when both sides are numbers, else as strings. ``field:*`` tests
presence. Anything else is refused with :class:`FilterError`, which the emulator turns
into INVALID_ARGUMENT carrying the message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SEVERITIES = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
MAX_FILTER_LENGTH = 20_000
_OPS = ("!=", "<=", ">=", "=~", "!~", "=", "<", ">", ":")
_WORD_STOP = set(' \t\r\n()"=!<>:')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:\d{2})$"
)
_TOP_FIELDS = {
    "logName",
    "resource",
    "labels",
    "timestamp",
    "receiveTimestamp",
    "severity",
    "insertId",
    "textPayload",
    "jsonPayload",
    "trace",
    "spanId",
}
_SNAKE = {
    "log_name": "logName",
    "insert_id": "insertId",
    "text_payload": "textPayload",
    "json_payload": "jsonPayload",
    "receive_timestamp": "receiveTimestamp",
}


class FilterError(ValueError):
    """A filter the service refuses; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Fields:
    """The searchable view of one stored entry."""

    log_name: str
    resource_type: str
    resource_labels: dict[str, str]
    labels: dict[str, str]
    timestamp_ns: int
    receive_ns: int
    severity: int
    insert_id: str
    text_payload: str | None
    json_payload: dict[str, Any] | None
    trace: str = ""
    span_id: str = ""


Predicate = Callable[[Fields], bool]


def parse_timestamp_ns(text: str) -> int:
    """RFC 3339 (any offset, up to nine fractional digits) -> nanoseconds since the epoch."""
    import calendar

    m = _RFC3339.match(text.strip())
    if m is None:
        raise FilterError(f"invalid timestamp {text!r}: expected RFC 3339")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = int((m.group(7) or "").ljust(9, "0"))
    zone = m.group(8)
    seconds = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + frac


@functools.lru_cache(maxsize=256)
def _timestamp_cached(text: str) -> int:
    return parse_timestamp_ns(text)


def compile_filter(text: str) -> Predicate:
    """The predicate of ``text``; the empty filter matches everything."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter longer than {MAX_FILTER_LENGTH} characters")
    parser = _Parser(text)
    parser.skip()
    if parser.done():
        return lambda _e: True
    pred = parser.conj()
    parser.skip()
    if not parser.done():
        raise parser.error("unexpected input")
    return pred


# -- values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Value:
    text: str
    quoted: bool


# A value expression is a tree of values joined by AND/OR/NOT; comparing a field with
# it distributes the comparison over the leaves.
_ValueExpr = tuple[str, Any]


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _field_getter(path: tuple[str, ...]) -> Callable[[Fields], Any]:
    head = _SNAKE.get(path[0], path[0])
    rest = path[1:]
    if head not in _TOP_FIELDS:
        raise FilterError(f"unknown field {'.'.join(path)!r}")
    simple: dict[str, Callable[[Fields], Any]] = {
        "logName": lambda e: e.log_name,
        "timestamp": lambda e: e.timestamp_ns,
        "receiveTimestamp": lambda e: e.receive_ns,
        "severity": lambda e: e.severity,
        "insertId": lambda e: e.insert_id,
        "textPayload": lambda e: e.text_payload,
        "trace": lambda e: e.trace or None,
        "spanId": lambda e: e.span_id or None,
    }
    if head in simple:
        if rest:
            raise FilterError(f"field {head!r} has no subfield {'.'.join(rest)!r}")
        return simple[head]
    if head == "labels":
        if len(rest) != 1:
            raise FilterError('labels takes one key: labels.KEY or labels."KEY"')
        key = rest[0]
        return lambda e: e.labels.get(key)
    if head == "resource":
        if rest == ("type",):
            return lambda e: e.resource_type
        if len(rest) == 2 and rest[0] == "labels":
            key = rest[1]
            return lambda e: e.resource_labels.get(key)
        raise FilterError(f"unknown field {'.'.join(path)!r}")

    # jsonPayload.a.b...
    def json_get(e: Fields) -> Any:
        node: Any = e.json_payload
        for part in rest:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    return json_get


def _compare(op: str, actual: Any, want: _Value, kind: str) -> bool:
    """One comparison of a present field value with one literal."""
    if op == ":" and want.text == "*" and not want.quoted:
        return True  # presence; the caller already knows the field exists
    if kind == "time":
        target: Any = _timestamp_cached(want.text)
        left: Any = actual
    elif kind == "severity":
        level = SEVERITIES.get(want.text.upper())
        if level is None:
            number = _as_number(want.text)
            if number is None:
                raise FilterError(f"invalid severity {want.text!r}")
            level = int(number)
        target, left = level, actual
    else:
        if isinstance(actual, bool):
            actual = "true" if actual else "false"
        if isinstance(actual, dict | list):
            return op in ("!=",) if op != ":" else want.text.lower() in str(actual).lower()
        a_num = _as_number(str(actual)) if not isinstance(actual, int | float) else actual
        w_num = _as_number(want.text)
        if op in ("<", "<=", ">", ">=") and a_num is not None and w_num is not None:
            left, target = a_num, w_num
        elif op in ("=~", "!~"):
            try:
                found = re.search(want.text, str(actual)) is not None
            except re.error as err:
                raise FilterError(f"invalid regular expression {want.text!r}: {err}") from err
            return found if op == "=~" else not found
        else:
            left, target = str(actual).lower(), want.text.lower()
            if op == ":":
                return target in left
    if op in ("=", ":"):
        return bool(left == target)
    if op == "!=":
        return bool(left != target)
    if op == "<":
        return bool(left < target)
    if op == "<=":
        return bool(left <= target)
    if op == ">":
        return bool(left > target)
    if op == ">=":
        return bool(left >= target)
    raise FilterError(f"operator {op!r} does not apply here")


def _eval_value(expr: _ValueExpr, test: Callable[[_Value], bool]) -> bool:
    kind, arg = expr
    if kind == "leaf":
        return test(arg)
    if kind == "not":
        return not _eval_value(arg, test)
    if kind == "and":
        return all(_eval_value(x, test) for x in arg)
    return any(_eval_value(x, test) for x in arg)


def _leaves(expr: _ValueExpr) -> list[_Value]:
    kind, arg = expr
    if kind == "leaf":
        return [arg]
    if kind == "not":
        return _leaves(arg)
    return [v for x in arg for v in _leaves(x)]


def _comparison(path: tuple[str, ...], op: str, value: _ValueExpr) -> Predicate:
    get = _field_getter(path)
    head = _SNAKE.get(path[0], path[0])
    kind = (
        "time"
        if head in ("timestamp", "receiveTimestamp")
        else "severity"
        if head == "severity"
        else "plain"
    )
    # Check the literals once, now, so a bad one is a filter error, not a quiet mismatch.
    for leaf in _leaves(value):
        if kind == "time" and not (op == ":" and leaf.text == "*"):
            parse_timestamp_ns(leaf.text)
        if (
            kind == "severity"
            and leaf.text.upper() not in SEVERITIES
            and _as_number(leaf.text) is None
        ):
            raise FilterError(f"invalid severity {leaf.text!r}")
        if op in ("=~", "!~"):
            try:
                re.compile(leaf.text)
            except re.error as err:
                raise FilterError(f"invalid regular expression {leaf.text!r}: {err}") from err

    def pred(e: Fields) -> bool:
        actual = get(e)
        if actual is None:
            # A missing field matches only "not equal" (and nothing else).
            return op in ("!=", "!~")
        return _eval_value(value, lambda v: _compare(op, actual, v, kind))

    return pred


def _global(value: _ValueExpr) -> Predicate:
    """A bare value: some field of the entry holds it (as a substring, ignoring case)."""

    def haystack(e: Fields) -> str:
        parts = [e.log_name, e.resource_type, e.insert_id, e.text_payload or ""]
        parts += list(e.labels.values()) + list(e.resource_labels.values())
        if e.json_payload:
            parts.append(str(e.json_payload))
        return "\n".join(parts).lower()

    def pred(e: Fields) -> bool:
        text = haystack(e)
        return _eval_value(value, lambda v: v.text.lower() in text)

    return pred


# -- the parser ------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> FilterError:
        near = self.text[self.pos : self.pos + 20]
        return FilterError(
            f"Unparseable filter: {what} at column {self.pos + 1}"
            + (f" near {near!r}" if near else " (end of filter)")
        )

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek_keyword(self, word: str) -> bool:
        self.skip()
        end = self.pos + len(word)
        if self.text[self.pos : end] != word:
            return False
        return end >= len(self.text) or self.text[end].isspace() or self.text[end] in "()"

    def eat_keyword(self, word: str) -> bool:
        if self.peek_keyword(word):
            self.pos += len(word)
            return True
        return False

    def at_term_start(self) -> bool:
        self.skip()
        if self.done() or self.text[self.pos] == ")":
            return False
        return not (self.peek_keyword("AND") or self.peek_keyword("OR"))

    # expressions
    def conj(self) -> Predicate:
        parts = [self.disj()]
        while True:
            if self.eat_keyword("AND"):
                if not self.at_term_start():
                    raise self.error("expected an expression after AND")
                parts.append(self.disj())
            elif self.at_term_start():
                parts.append(self.disj())
            else:
                break
        if len(parts) == 1:
            return parts[0]
        return lambda e: all(p(e) for p in parts)

    def disj(self) -> Predicate:
        parts = [self.neg()]
        while self.eat_keyword("OR"):
            if not self.at_term_start():
                raise self.error("expected an expression after OR")
            parts.append(self.neg())
        if len(parts) == 1:
            return parts[0]
        return lambda e: any(p(e) for p in parts)

    def neg(self) -> Predicate:
        self.skip()
        dash = (
            self.pos + 1 < len(self.text)
            and self.text[self.pos] == "-"
            and not self.text[self.pos + 1].isspace()
            and not self.text[self.pos + 1].isdigit()
        )
        if dash or self.eat_keyword("NOT"):
            if dash:
                self.pos += 1
            inner = self.neg()
            return lambda e: not inner(e)
        return self.primary()

    def primary(self) -> Predicate:
        self.skip()
        if self.done():
            raise self.error("expected an expression")
        if self.text[self.pos] == "(":
            self.pos += 1
            inner = self.conj()
            self.skip()
            if self.done() or self.text[self.pos] != ")":
                raise self.error("expected ')'")
            self.pos += 1
            return inner
        start = self.pos
        first = self.atom()
        path = [first]
        while True:
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self.pos += 1
                path.append(self.atom())
            else:
                break
        self.skip()
        op = self.operator()
        if op is None:
            self.pos = start
            return _global(self.value_expr())
        if any(not seg.text for seg in path):
            raise self.error("empty field name")
        names = tuple(seg.text for seg in path)
        self.skip()
        return _comparison(names, op, self.value_expr())

    def operator(self) -> str | None:
        for op in _OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        return None

    # values
    def atom(self) -> _Value:
        """A quoted string or a bare word (a path segment or a value)."""
        if self.done():
            raise self.error("expected a value")
        if self.text[self.pos] == '"':
            return _Value(self.string(), True)
        start = self.pos
        while (
            self.pos < len(self.text)
            and self.text[self.pos] not in _WORD_STOP
            and self.text[self.pos] != "."
        ):
            self.pos += 1
        if self.pos == start:
            raise self.error("expected a name or a value")
        return _Value(self.text[start : self.pos], False)

    def word_value(self) -> _Value:
        """A bare value may hold dots (``1.5``, ``a.b``) where a path segment may not."""
        if self.text[self.pos] == '"':
            return _Value(self.string(), True)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _WORD_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.error("expected a value")
        word = self.text[start : self.pos]
        if word in ("AND", "OR", "NOT"):
            self.pos = start
            raise self.error(f"expected a value, found {word}")
        return _Value(word, False)

    def string(self) -> str:
        assert self.text[self.pos] == '"'
        self.pos += 1
        out: list[str] = []
        while True:
            if self.done():
                raise self.error("unterminated string")
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                self.pos += 1
                if self.done():
                    raise self.error("unterminated string")
                esc = self.text[self.pos]
                out.append(_ESCAPES.get(esc, esc))
                self.pos += 1
                continue
            out.append(ch)
            self.pos += 1

    def value_expr(self) -> _ValueExpr:
        self.skip()
        if self.done():
            raise self.error("expected a value")
        if self.text[self.pos] == "(":
            self.pos += 1
            expr = self.value_conj()
            self.skip()
            if self.done() or self.text[self.pos] != ")":
                raise self.error("expected ')'")
            self.pos += 1
            return expr
        return ("leaf", self.word_value())

    def value_conj(self) -> _ValueExpr:
        parts = [self.value_disj()]
        while True:
            if self.eat_keyword("AND") or self.at_term_start():
                parts.append(self.value_disj())
            else:
                break
        return parts[0] if len(parts) == 1 else ("and", parts)

    def value_disj(self) -> _ValueExpr:
        parts = [self.value_neg()]
        while self.eat_keyword("OR"):
            parts.append(self.value_neg())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def value_neg(self) -> _ValueExpr:
        if self.eat_keyword("NOT"):
            return ("not", self.value_neg())
        return self.value_expr()
