"""Writing and reading amounts in report files: exact decimals, currency decimals kept."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from billing_pipeline.decimals import places, plain
from billing_pipeline.ratecards import minor_units

DEFAULT_MINOR_UNITS = 2


def currency_minor_units(currency: str | None) -> int:
    """The currency's decimals; 2 when it is unknown (a ledger row of a client we never billed)."""
    found = minor_units(currency) if currency else None
    return DEFAULT_MINOR_UNITS if found is None else found


def money_text(value: Decimal | None, minor: int) -> str:
    """At least the currency's decimals, more only when the value carries them.

    A ledger amount booked with more places than the currency has is shown as booked, not
    rounded: rounding it would hide the very difference reconciliation is there to find.
    """
    if value is None:
        return ""
    if value == 0:
        value = abs(value)  # never "-0.00"
    if places(value) <= minor:
        return plain(value.quantize(Decimal(1).scaleb(-minor)))
    return plain(value.normalize())


def parse_amount(text: str) -> Decimal:
    """A plain decimal amount; raises ValueError on anything else (no commas, no NaN)."""
    cleaned = text.strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {text!r}") from None
    if not value.is_finite() or "e" in cleaned.lower():
        raise ValueError(f"not a plain decimal amount: {text!r}")
    return value
