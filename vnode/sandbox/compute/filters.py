"""The list ``filter`` language of the Compute API.

vnode lists its VMs with filters such as ``labels.vnode-node = "n1"`` and finds
preemptions with ``operationType = "compute.instances.preempted"``; the forms it may send
are all documented for ``instances.list``: ``=``, ``!=``, ``<``, ``>``, ``<=``, ``>=``,
``:`` (substring, ``:*`` for presence), ``eq``/``ne`` (RE2 regular expressions matching
the whole value), parenthesised expressions joined by ``AND``, ``OR`` or juxtaposition
(an implicit AND), ``NOT``/``-`` negation and nested fields (``scheduling.preemptible``).
As in the Google filter grammar, ``OR`` binds tighter than ``AND``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vnode.sandbox.compute.errors import ComputeError, invalid_field

Predicate = Callable[[dict[str, Any]], bool]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OPS = ("<=", ">=", "!=", "=", "<", ">", ":")


class FilterSyntaxError(Exception):
    pass


@dataclass
class _Parser:
    text: str
    pos: int = 0

    def parse(self) -> Predicate:
        pred = self._conjunction()
        self._ws()
        if self.pos != len(self.text):
            raise FilterSyntaxError(f"unexpected {self.text[self.pos :]!r}")
        return pred

    def _ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _keyword(self, word: str) -> bool:
        self._ws()
        end = self.pos + len(word)
        if self.text[self.pos : end] == word and (
            end == len(self.text) or self.text[end].isspace() or self.text[end] == "("
        ):
            self.pos = end
            return True
        return False

    def _at_end(self) -> bool:
        self._ws()
        return self.pos >= len(self.text) or self.text[self.pos] == ")"

    def _conjunction(self) -> Predicate:
        parts = [self._disjunction()]
        while not self._at_end():
            self._keyword("AND")
            parts.append(self._disjunction())
        if len(parts) == 1:
            return parts[0]
        return lambda obj: all(p(obj) for p in parts)

    def _disjunction(self) -> Predicate:
        parts = [self._unary()]
        while self._keyword("OR"):
            parts.append(self._unary())
        if len(parts) == 1:
            return parts[0]
        return lambda obj: any(p(obj) for p in parts)

    def _unary(self) -> Predicate:
        self._ws()
        if self._keyword("NOT") or self.text.startswith("-", self.pos):
            if self.text.startswith("-", self.pos):
                self.pos += 1
            inner = self._unary()
            return lambda obj: not inner(obj)
        return self._primary()

    def _primary(self) -> Predicate:
        self._ws()
        if self.text.startswith("(", self.pos):
            self.pos += 1
            inner = self._conjunction()
            self._ws()
            if not self.text.startswith(")", self.pos):
                raise FilterSyntaxError("missing )")
            self.pos += 1
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        m = _FIELD.match(self.text, self.pos)
        if m is None:
            raise FilterSyntaxError(f"expected a field at {self.pos}")
        field_path = m.group(0)
        self.pos = m.end()
        self._ws()
        op = None
        for candidate in _OPS:
            if self.text.startswith(candidate, self.pos):
                op = candidate
                self.pos += len(candidate)
                break
        if op is None:
            for word in ("eq", "ne"):
                if self._keyword(word):
                    op = word
                    break
        if op is None:
            raise FilterSyntaxError(f"expected an operator after {field_path}")
        self._ws()
        value = self._value()
        return _comparison(field_path, op, value)

    def _value(self) -> str:
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            quote = self.text[self.pos]
            out = []
            i = self.pos + 1
            while i < len(self.text) and self.text[i] != quote:
                if self.text[i] == "\\" and i + 1 < len(self.text):
                    i += 1
                out.append(self.text[i])
                i += 1
            if i >= len(self.text):
                raise FilterSyntaxError("unterminated string")
            self.pos = i + 1
            return "".join(out)
        start = self.pos
        while (
            self.pos < len(self.text)
            and not self.text[self.pos].isspace()
            and self.text[self.pos] != ")"
        ):
            self.pos += 1
        if start == self.pos:
            raise FilterSyntaxError("expected a value")
        return self.text[start : self.pos]


def _leaves(obj: Any, parts: list[str]) -> Iterator[Any]:
    """Every value at the dotted path, fanning out over lists (any element may match)."""
    if isinstance(obj, list):
        for item in obj:
            yield from _leaves(item, parts)
        return
    if not parts:
        yield obj
        return
    if not isinstance(obj, dict):
        return
    # Map keys may themselves contain dots only in theory; label keys never do.
    head, rest = parts[0], parts[1:]
    if head in obj:
        yield from _leaves(obj[head], rest)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _equal(leaf: Any, value: str) -> bool:
    a, b = _number(leaf), _number(value)
    if a is not None and b is not None and not isinstance(leaf, str):
        return a == b
    return _text(leaf) == value


def _ordered(leaf: Any, op: str, value: str) -> bool:
    a, b = _number(leaf), _number(value)
    left: Any = a if a is not None and b is not None else _text(leaf)
    right: Any = b if a is not None and b is not None else value
    return bool(
        {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
    )


def _comparison(field_path: str, op: str, value: str) -> Predicate:
    parts = field_path.split(".")
    if op in ("eq", "ne"):
        try:
            pattern = re.compile(value)
        except re.error as e:
            raise FilterSyntaxError(str(e)) from e

        def regex(obj: dict[str, Any]) -> bool:
            hit = any(pattern.fullmatch(_text(v)) for v in _leaves(obj, parts) if v is not None)
            return hit if op == "eq" else not hit

        return regex
    if op == ":" and value == "*":
        return lambda obj: any(v is not None for v in _leaves(obj, parts))

    def compare(obj: dict[str, Any]) -> bool:
        leaves = [v for v in _leaves(obj, parts) if v is not None]
        if op == "=":
            return any(_equal(v, value) for v in leaves)
        if op == "!=":
            return not any(_equal(v, value) for v in leaves)
        if op == ":":
            return any(value in v if isinstance(v, str) else _equal(v, value) for v in leaves)
        return any(_ordered(v, op, value) for v in leaves)

    return compare


def parse_filter(text: str) -> Predicate:
    """A predicate over resource dicts; a malformed filter is the real API's 400."""
    if not text.strip():
        return lambda obj: True
    try:
        return _Parser(text).parse()
    except FilterSyntaxError:
        raise invalid_field("filter", text, "Invalid list filter expression.") from None


def order_key(order_by: str) -> tuple[Callable[[dict[str, Any]], tuple[Any, ...]], bool]:
    """Sort key and descending flag for ``orderBy``; only the documented orders exist."""
    spec = " ".join(order_by.split())
    if spec in ("", "name", "name asc"):
        return (lambda obj: (obj.get("name", ""),)), False
    if spec == "creationTimestamp desc":
        return (lambda obj: (obj.get("creationTimestamp", ""), obj.get("name", ""))), True
    raise ComputeError(
        400,
        f"Invalid value for field 'orderBy': '{order_by}'. Sorting is supported only on "
        "'name' and 'creationTimestamp desc'.",
        "invalid",
    )
