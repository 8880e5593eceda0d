"""Quantity parsing agrees with the API server's grammar and rounds up like it does."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vnode.gce import quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Fraction(1)),
        ("250m", Fraction(1, 4)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("+2", Fraction(2)),
        ("-1", Fraction(-1)),
        ("100n", Fraction(1, 10**7)),
        ("3u", Fraction(3, 10**6)),
        ("2k", Fraction(2000)),
        ("1M", Fraction(10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("1Ki", Fraction(1024)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("512Mi", Fraction(2**29)),
        ("2Ti", Fraction(2 * 2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("5e-1", Fraction(1, 2)),
        ("12E+2", Fraction(1200)),
        (" 2 ", Fraction(2)),
        (3, Fraction(3)),
        (0.5, Fraction(1, 2)),
    ],
)
def test_parse(text: str | int | float, expected: Fraction) -> None:
    assert quantity.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "1Kb", "1 Gi", "Gi", "1e", "1.2.3", "1mi", "--1", "1K"]
)
def test_parse_rejects_what_the_api_server_rejects(text: str) -> None:
    with pytest.raises(quantity.QuantityError, match="not a quantity"):
        quantity.parse(text)


def test_booleans_are_not_quantities() -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(True)


def test_sums_are_exact() -> None:
    assert quantity.parse("100m") + quantity.parse("200m") == quantity.parse("300m")
    assert quantity.parse("0.1") + quantity.parse("0.2") == quantity.parse("0.3")


@pytest.mark.parametrize(
    ("text", "milli", "whole"),
    [
        ("1", 1000, 1),
        ("250m", 250, 1),
        ("1.0001", 1001, 2),
        ("1n", 1, 1),
        ("0", 0, 0),
        ("2Ki", 2048000, 2048),
    ],
)
def test_rounding_up(text: str, milli: int, whole: int) -> None:
    assert quantity.milli_value(text) == milli
    assert quantity.value(text) == whole
