"""Pricing a client-month from its charges and rate card (SPEC §6.1), in exact decimals.

Decisions where the contract is silent:

- Which version governs a charge. A charge of day D is priced per day by D's version when
  that version prices its code per day (per_unit/sum, cost_plus). Otherwise the *closing*
  version governs it, and prices it only with a monthly model (per_unit with a non-sum
  aggregate, graduated, volume, package); all such days of the code are pooled into one
  period quantity. So, with a version change mid-month:
    per-day -> per-day: each day at its own rate (one line per distinct rate);
    per-day -> monthly: the early days per day, the later days pooled and priced monthly;
    monthly -> monthly, or not priced -> monthly: every day pooled under the closing version;
    monthly -> per-day, or anything -> not priced: the days left without a governing
    per-day or monthly price are *unpriced* (make such a change effective on a 1st).
  Charges dated before the first version are always unpriced.
- A charge row whose code is priced ``flat`` is unpriced: a flat fee is not driven by
  activity, so a rule emitting one is a mistake the analyst must see.
- Unpriced charges never stop pricing: the priced rows still make lines and ``unpriced``
  counts the rest (rows, by code); the caller blocks the invoice while it is non-empty.
- Per-day lines are split by rate *and* description, GL account and category, so a version
  that keeps a rate but moves it to another GL account still books revenue correctly. A
  per-day line's ``version`` is the version of its first day.
- A cost_plus row without a basis adds 0 to the basis. A line of quantity 0 is left out
  even when it is cost_plus with a basis (SPEC §6.1 item 7 read literally): the shipped
  rules emit SHIP_LABEL with quantity 1, so this only bites a rule that emits quantity 0.
- Minimum lines: quantity 1, ``unit_rate`` = amount = the shortfall, so that quantity x
  unit_rate = amount on every line but cost_plus. Flat lines: unit_rate = amount.
- Flat and minimum lines appear in every month from the first version's month on, whether
  or not there is activity; whether to issue an invoice for a month with only a minimum is
  the caller's call (SPEC §7 says: with charges or a flat fee).
- A row outside the month raises ``ValueError``; a float quantity or basis raises TypeError.
"""

from billing_pipeline.pricing.engine import (
    DailyTotals,
    DayTotal,
    daily_totals,
    price_month,
    price_totals,
)
from billing_pipeline.pricing.model import ChargeRow, InvoiceLine, PricedMonth

__all__ = [
    "ChargeRow",
    "DailyTotals",
    "DayTotal",
    "InvoiceLine",
    "PricedMonth",
    "daily_totals",
    "price_month",
    "price_totals",
]
