"""How decimals are written in the invoice files (SPEC §7: plainly, no exponent)."""

from __future__ import annotations

from decimal import Decimal

from billing_pipeline.decimals import places, plain


def _no_negative_zero(value: Decimal) -> Decimal:
    return abs(value) if value == 0 else value


def money(amount: Decimal, minor_units: int) -> str:
    """An amount with exactly the currency's decimals: USD 12.50, JPY 1500, KWD 1.250."""
    return plain(_no_negative_zero(amount.quantize(Decimal(1).scaleb(-minor_units))))


def quantity(value: Decimal) -> str:
    """A quantity without meaningless trailing zeros: 3.500000 -> 3.5, 100 -> 100."""
    return plain(_no_negative_zero(value.normalize()))


def rate(value: Decimal) -> str:
    """A rate as the rate card wrote it (30.00 stays 30.00, 0.65 stays 0.65)."""
    return plain(_no_negative_zero(value))


def basis(value: Decimal, minor_units: int) -> str:
    """A cost basis: at least the currency's decimals, more only when it carries them."""
    if places(value) <= minor_units:
        return money(value, minor_units)
    return quantity(value)
