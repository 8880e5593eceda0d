"""Kubernetes resource quantities (``100m``, ``1.5Gi``, ``2e3``) as exact numbers.

The scheduler and the Job controller compare requests with allocatable amounts; doing
that on floats would let ``0.1 + 0.2`` CPUs disagree with ``300m``, so quantities are
parsed into :class:`~fractions.Fraction` and rounded up only at the end, the way the
real scheduler rounds with ``MilliValue()`` and ``Value()``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

# A number, then one of: a binary suffix, an exponent, a decimal suffix. "1E" is exa, "1E3"
# an exponent: trying the exponent first keeps that distinction.
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?[0-9]+)|(?P<dec>[numkMGTPE]?))$"
)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


def parse(text: str | int | float) -> Fraction:
    """The exact value of a quantity; numbers pass through (JSON may carry ``"cpu": 2``)."""
    if isinstance(text, bool):
        raise QuantityError(f"quantities must match the regular expression: {text!r}")
    if isinstance(text, int | float):
        return Fraction(text)
    m = _QUANTITY.match(text.strip())
    if not m:
        raise QuantityError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )
    value = Fraction(m.group("num"))
    if m.group("bin"):
        return value * Fraction(1024 ** _BINARY[m.group("bin")])
    if m.group("exp") is not None:
        return _scaled(value, int(m.group("exp")))
    return _scaled(value, _DECIMAL[m.group("dec") or ""])


def _scaled(value: Fraction, exponent: int) -> Fraction:
    scale = Fraction(10 ** abs(exponent))
    return value * scale if exponent >= 0 else value / scale


def milli_value(text: str | int | float) -> int:
    """Thousandths, rounded up (CPU is compared in millicores)."""
    return math.ceil(parse(text) * 1000)


def value(text: str | int | float) -> int:
    """Whole units, rounded up (memory in bytes, pods, extended resources)."""
    return math.ceil(parse(text))
