"""Kubernetes resource quantities (``250m``, ``1.5Gi``, ``2e3``) as exact numbers.

Machine sizing adds CPU and memory amounts from many containers and compares them with
machine shapes; floats would let ``0.1 + 0.2`` CPUs disagree with ``300m`` at a boundary.
Quantities are therefore parsed into :class:`~fractions.Fraction` and rounded up only
when a whole number is needed, the way Kubernetes rounds with ``MilliValue()`` and
``Value()``. The grammar is the API server's: a signed decimal number followed by a
binary suffix (``Ki`` .. ``Ei``), a decimal SI suffix (``n u m k M G T P E``) or an
exponent (``e3``, ``E-2``); a lone ``E`` is exa, ``E`` followed by digits an exponent.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))$"
)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


def parse(text: str | int | float) -> Fraction:
    """The exact value of ``text``. Plain numbers pass through (JSON may carry ``2``)."""
    if isinstance(text, bool):
        raise QuantityError(f"{text!r} is not a quantity")
    if isinstance(text, int | float):
        return Fraction(text)
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(f"{text!r} is not a quantity (e.g. 2, 500m, 1.5Gi, 1e3)")
    number = Fraction(match["number"])
    if match["binary"]:
        return number * (1 << _BINARY[match["binary"]])
    if match["exponent"] is not None:
        return _scale(number, int(match["exponent"]))
    return _scale(number, _DECIMAL[match["decimal"] or ""])


def _scale(number: Fraction, exponent: int) -> Fraction:
    return number * Fraction(10) ** exponent


def milli_value(text: str | int | float) -> int:
    """Thousandths of the value, rounded up (CPU is counted in millicores)."""
    return math.ceil(parse(text) * 1000)


def value(text: str | int | float) -> int:
    """The value in whole units, rounded up (bytes of memory, GPUs)."""
    return math.ceil(parse(text))
