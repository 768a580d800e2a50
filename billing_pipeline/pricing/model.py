"""Inputs and outputs of pricing: charge rows in, invoice lines out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class ChargeRow:
    """One charge a rule emitted (SPEC §4.1 charges), as far as pricing needs it."""

    activity_date: date
    charge_code: str
    quantity: Decimal
    basis: Decimal | None = None


@dataclass(frozen=True)
class InvoiceLine:
    line_no: int
    charge_code: str
    description: str
    gl_account: str
    category: str  # handling, storage, shipping, value_added, fees
    model: str  # a rate card model, or "minimum"
    quantity: Decimal
    unit_rate: Decimal | None  # None for cost_plus
    basis_amount: Decimal | None  # cost_plus only
    amount: Decimal  # rounded to the currency's minor unit
    first_date: date | None  # activity behind the line; None for flat and minimum lines
    last_date: date | None
    tier: int | None  # 1-based tier of graduated and volume lines
    version: date  # effective_from of the rate card version that priced the line
    adjusts: str | None = None  # reserved: the invoice and charge an adjustment corrects
    # The activity dates whose charges of this code make the line (sorted): the charges
    # behind a line are exactly (charge_code, activity_date in days). Empty for flat and
    # minimum lines. Needed because per-day lines of two rates can interleave in time.
    days: tuple[date, ...] = ()


@dataclass
class PricedMonth:
    client_id: str
    month: date  # first day of the billing month
    currency: str
    minor_units: int
    lines: list[InvoiceLine] = field(default_factory=list)
    # charge code -> number of charge rows no version prices; any entry blocks the invoice
    unpriced: dict[str, int] = field(default_factory=dict)
    total: Decimal = Decimal(0)

    @property
    def period(self) -> str:
        return f"{self.month:%Y-%m}"
