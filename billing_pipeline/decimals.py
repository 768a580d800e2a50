"""Exact decimal reading shared by events, Lua charges and rate cards.

The contract reads a JSON or Lua number "by its shortest decimal representation": Python's
``repr`` of a float is exactly that (David Gay's shortest round-trip), so 0.1 reads as 0.1,
never as 0.1000000000000000055...
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

MAX_PLACES = 6
QUANTUM = Decimal(1).scaleb(-MAX_PLACES)  # 0.000001
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# No amount, rate or quantity has a hundred digits; "1e999999999" would overflow the decimal
# context in later arithmetic (normalize, quantize) instead of being refused here.
MAX_MAGNITUDE = 100


class DecimalError(ValueError):
    """A value that is not an acceptable decimal; the message says why."""


def shortest_decimal(number: float | int) -> Decimal:
    """A JSON/Lua number as the decimal it was written as (shortest round-trip form)."""
    if isinstance(number, bool):
        raise DecimalError(f"not a number: {number!r}")
    if isinstance(number, int):
        return Decimal(number)
    if not math.isfinite(number):
        raise DecimalError(f"not a finite number: {number!r}")
    return Decimal(repr(number))


def parse_decimal(value: object, *, max_places: int | None = MAX_PLACES) -> Decimal:
    """Read a decimal given as a string or a number, refusing NaN, infinities and excess places.

    Strings must be plain decimals (``"7.42"``, ``"-3"``, ``"1e3"``); a comma or other text is
    refused rather than guessed at.
    """
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.match(text):
            raise DecimalError(f'not a decimal: "{value}"')
        try:
            result = Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid text
            raise DecimalError(f'not a decimal: "{value}"') from exc
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = shortest_decimal(value)
    else:
        raise DecimalError(f"not a decimal: {value!r}")
    exponent = result.as_tuple().exponent
    if not (
        isinstance(exponent, int)
        and -MAX_MAGNITUDE <= exponent <= MAX_MAGNITUDE
        and -MAX_MAGNITUDE <= result.adjusted() <= MAX_MAGNITUDE
    ):
        raise DecimalError(f"out of range (more than {MAX_MAGNITUDE} digits): {value}")
    if max_places is not None and places(result) > max_places:
        raise DecimalError(f"more than {max_places} decimal places: {value}")
    return result


def places(value: Decimal) -> int:
    """Decimal places actually used (trailing zeros do not count): 1.50 has 1, 1E+3 has 0."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# Enough digits to quantize anything parse_decimal admits to six places: the default
# context's 28 raised InvalidOperation for a value of 10^22 or more (charge() admits up to
# 10^32, which the charges' Decimal(38, 6) holds).
_QUANTIZE = Context(prec=MAX_MAGNITUDE + MAX_PLACES + 1)


def round_quantity(value: Decimal) -> Decimal:
    """Half-up to six places, the rule for quantities a Lua rule hands over as numbers."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_UP, context=_QUANTIZE)


def plain(value: Decimal) -> str:
    """Write a decimal plainly: no exponent, no thousands separators, trailing zeros kept."""
    return f"{value:f}"
