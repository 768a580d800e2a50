"""Pricing one client-month exactly as SPEC §6.1 says; see the package docstring for choices."""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

import polars as pl

from billing_pipeline.decimals import round_quantity
from billing_pipeline.pricing.model import ChargeRow, InvoiceLine, PricedMonth
from billing_pipeline.ratecards.model import ChargeSpec, RateCard, Version, last_day_of_month

# Far more digits than any quantity x rate can have, so products and sums are exact; and
# a quotient by at most 31 days repeats with a period far shorter than this, so rounding
# the average to 6 places after the division is exact too.
_PRECISION = 200
_ROUNDING = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
_ZERO = Decimal(0)
_Round = Callable[[Decimal], Decimal]


@dataclass
class DayTotal:
    """One charge code's charges on one day, summed: all pricing needs of them (SPEC §6.1
    step 1), so a day's totals can be kept instead of its lines (charges_cache.py)."""

    quantity: Decimal = _ZERO
    basis: Decimal = _ZERO
    rows: int = 0


# charge code -> activity date -> totals
DailyTotals = dict[str, dict[date, DayTotal]]


@dataclass
class _Run:
    """Days of one code priced per day at one rate (or markup): one invoice line."""

    spec: ChargeSpec
    version: date
    quantity: Decimal = _ZERO
    basis: Decimal = _ZERO
    days: list[date] = field(default_factory=list)


def price_month(
    card: RateCard, month: date, charges: Iterable[ChargeRow] | pl.DataFrame
) -> PricedMonth:
    """Price one billing month of one client.

    ``charges`` is an iterable of ``ChargeRow`` or a polars DataFrame with the columns
    activity_date, charge_code, quantity and (optionally) basis. Every row must fall in
    ``month``: a row of another month is a caller bug and raises ``ValueError``. Unpriced
    rows are counted in ``unpriced`` and the priced rest is still priced; the caller must not
    issue the invoice while ``unpriced`` is non-empty (SPEC §5).
    """
    month = month.replace(day=1)
    with localcontext() as ctx:
        ctx.prec = _PRECISION  # the sums too: more digits than the default 28 can hold
        if isinstance(charges, pl.DataFrame):
            daily = daily_totals(charges, month)
        else:
            daily = _daily(charges, month)
    return price_totals(card, month, daily)


def price_totals(card: RateCard, month: date, daily: DailyTotals) -> PricedMonth:
    """``price_month`` from the charges' totals per code and day (``daily_totals``)."""
    month = month.replace(day=1)
    last = last_day_of_month(month)
    for code, days in daily.items():
        for day in days:
            if not month <= day <= last:
                raise ValueError(f"charge {code} of {day} is not in {month:%Y-%m}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _price(card, month, daily)


def _price(card: RateCard, month: date, daily: DailyTotals) -> PricedMonth:
    closing = card.closing_version(month)
    unpriced: dict[str, int] = defaultdict(int)
    runs: dict[tuple[object, ...], _Run] = {}
    pooled: dict[str, dict[date, Decimal]] = defaultdict(dict)

    for code in sorted(daily):
        for day, totals in sorted(daily[code].items()):
            version = card.version_on(day)
            spec = version.charges.get(code) if version else None
            if version is None:
                unpriced[code] += totals.rows
            elif spec is not None and spec.per_day:
                _add_to_run(runs, spec, version, day, totals)
            elif _monthly(closing, code):
                pooled[code][day] = totals.quantity
            else:
                unpriced[code] += totals.rows

    money = Decimal(1).scaleb(-card.minor_units)
    mode = _ROUNDING[card.rounding]

    def rounded(value: Decimal) -> Decimal:
        return value.quantize(money, rounding=mode)

    lines: list[InvoiceLine] = []
    for run in runs.values():
        lines.extend(_run_line(run, rounded))
    if closing is not None:
        for code, days in pooled.items():
            lines.extend(_pooled_lines(closing, closing.charges[code], days, month, rounded))
        if month >= card.first_effective.replace(day=1):
            lines.extend(_flat_lines(closing, rounded))
            lines.extend(_minimum_lines(closing, lines, rounded))

    lines.sort(key=_line_order)
    lines = [replace(line, line_no=i) for i, line in enumerate(lines, start=1)]
    total = sum((line.amount for line in lines), rounded(_ZERO))
    return PricedMonth(
        client_id=card.client_id,
        month=month,
        currency=card.currency,
        minor_units=card.minor_units,
        lines=lines,
        unpriced=dict(sorted(unpriced.items())),
        total=total,
    )


def _monthly(closing: Version | None, code: str) -> bool:
    spec = closing.charges.get(code) if closing else None
    return spec is not None and not spec.per_day and spec.model != "flat"


def _add_to_run(
    runs: dict[tuple[object, ...], _Run],
    spec: ChargeSpec,
    version: Version,
    day: date,
    totals: DayTotal,
) -> None:
    # One line per distinct rate (markup); equal rates with a different GL account or
    # description stay apart so revenue is never booked to the wrong account.
    price = spec.rate if spec.model == "per_unit" else spec.markup_pct
    key = (spec.code, spec.model, price, spec.description, spec.gl_account, spec.category)
    run = runs.get(key)
    if run is None:
        run = runs[key] = _Run(spec=spec, version=version.effective_from)
    run.quantity += totals.quantity
    run.basis += totals.basis
    run.days.append(day)


def _run_line(run: _Run, rounded: _Round) -> list[InvoiceLine]:
    spec = run.spec
    if run.quantity == 0:
        return []
    if spec.model == "cost_plus":
        assert spec.markup_pct is not None
        amount = rounded(run.basis * (1 + spec.markup_pct / 100))
        unit_rate, basis = None, run.basis
    else:
        assert spec.rate is not None
        amount = rounded(run.quantity * spec.rate)
        unit_rate, basis = spec.rate, None
    days = tuple(sorted(run.days))
    line = _line(spec, run.quantity, unit_rate, basis, amount, days[0], days[-1], None, run.version)
    return [replace(line, days=days)]


def _pooled_lines(
    closing: Version, spec: ChargeSpec, days: dict[date, Decimal], month: date, rounded: _Round
) -> list[InvoiceLine]:
    quantity = _aggregate(spec.aggregate, days, month)
    if quantity == 0:
        return []

    dates = tuple(sorted(days))

    def priced(qty: Decimal, rate: Decimal, tier: int | None = None) -> InvoiceLine:
        amount = rounded(qty * rate)
        line = _line(
            spec, qty, rate, None, amount, dates[0], dates[-1], tier, closing.effective_from
        )
        return replace(line, days=dates)

    if spec.model == "per_unit":
        assert spec.rate is not None
        return [priced(quantity, spec.rate)]
    if spec.model == "package":
        assert spec.rate is not None and spec.package_size is not None
        whole, rest = divmod(quantity, spec.package_size)
        return [priced(whole + (1 if rest else 0), spec.rate)]  # a started package counts
    if spec.model == "volume":
        for number, tier in enumerate(spec.tiers, start=1):
            if tier.up_to is None or quantity <= tier.up_to:
                return [priced(quantity, tier.rate, number)]
        raise AssertionError("validated tiers end unbounded")
    assert spec.model == "graduated"
    lines = []
    below = _ZERO  # the previous tier's up_to
    for number, tier in enumerate(spec.tiers, start=1):
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if top > below:
            lines.append(priced(top - below, tier.rate, number))
        if tier.up_to is None or quantity <= tier.up_to:
            break
        below = tier.up_to
    return lines


def _aggregate(aggregate: str, days: dict[date, Decimal], month: date) -> Decimal:
    if aggregate == "max":
        return max(days.values())
    if aggregate == "last":
        return days[max(days)]
    total = sum(days.values(), _ZERO)
    if aggregate == "average":
        return round_quantity(total / calendar.monthrange(month.year, month.month)[1])
    return total


def _flat_lines(closing: Version, rounded: _Round) -> list[InvoiceLine]:
    return [
        _line(
            spec,
            Decimal(1),
            spec.amount,
            None,
            rounded(spec.amount),
            None,
            None,
            None,
            closing.effective_from,
        )
        for spec in closing.charges.values()
        if spec.model == "flat" and spec.amount is not None
    ]


def _minimum_lines(
    closing: Version, lines: list[InvoiceLine], rounded: _Round
) -> list[InvoiceLine]:
    out = []
    for minimum in closing.minimums:
        covered = sum(
            (
                line.amount
                for line in lines
                if minimum.covers == "all" or line.charge_code in minimum.covers
            ),
            _ZERO,
        )
        if covered < minimum.amount:
            shortfall = rounded(minimum.amount - covered)
            out.append(
                InvoiceLine(
                    line_no=0,
                    charge_code=minimum.code,
                    description=minimum.description,
                    gl_account=minimum.gl_account,
                    category=minimum.category,
                    model="minimum",
                    quantity=Decimal(1),
                    # quantity x unit_rate = amount holds on every non cost_plus line
                    unit_rate=shortfall,
                    basis_amount=None,
                    amount=shortfall,
                    first_date=None,
                    last_date=None,
                    tier=None,
                    version=closing.effective_from,
                )
            )
    return out


def _line(
    spec: ChargeSpec,
    quantity: Decimal,
    unit_rate: Decimal | None,
    basis: Decimal | None,
    amount: Decimal,
    first: date | None,
    last: date | None,
    tier: int | None,
    version: date,
) -> InvoiceLine:
    return InvoiceLine(
        line_no=0,
        charge_code=spec.code,
        description=spec.description,
        gl_account=spec.gl_account,
        category=spec.category,
        model=spec.model,
        quantity=quantity,
        unit_rate=unit_rate,
        basis_amount=basis,
        amount=amount,
        first_date=first,
        last_date=last,
        tier=tier,
        version=version,
    )


def _line_order(line: InvoiceLine) -> tuple[object, ...]:
    # SPEC §6.1 item 8: minimums last; by code; tiers in order; per-day lines by first date.
    return (line.model == "minimum", line.charge_code, line.first_date or date.min, line.tier or 0)


def _daily(rows: Iterable[ChargeRow], month: date) -> DailyTotals:
    last = last_day_of_month(month)
    daily: DailyTotals = defaultdict(dict)
    for row in rows:
        if not month <= row.activity_date <= last:
            raise ValueError(
                f"charge {row.charge_code} of {row.activity_date} is not in {month:%Y-%m}"
            )
        day = daily[row.charge_code].setdefault(row.activity_date, DayTotal())
        day.quantity += _exact(row.quantity, "quantity")
        # A cost_plus charge without a basis marks up nothing: it adds 0, not an error.
        if row.basis is not None:
            day.basis += _exact(row.basis, "basis")
        day.rows += 1
    return daily


def _exact(value: object, what: str) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{what} is not finite: {value}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"{what} must be a Decimal (money is never a float), got {value!r}")


def daily_totals(frame: pl.DataFrame, month: date) -> DailyTotals:
    """Charges (activity_date, charge_code, quantity and optionally basis) summed per code
    and day; every row must fall in ``month``."""
    # Summed inside polars: a client-month can hold millions of charge rows, and Decimal
    # columns sum exactly there.
    for column in ("quantity", "basis"):
        if column in frame.columns and frame.schema[column].is_float():
            raise TypeError(f"{column} must be a Decimal column (money is never a float)")
    aggregations = [pl.col("quantity").sum().alias("quantity"), pl.len().alias("rows")]
    if "basis" in frame.columns:
        aggregations.append(pl.col("basis").sum().alias("basis"))
    grouped = frame.group_by("charge_code", "activity_date").agg(aggregations)
    last = last_day_of_month(month)
    daily: DailyTotals = defaultdict(dict)
    for values in grouped.iter_rows():
        code, day, quantity, count = values[:4]
        basis = values[4] if len(values) > 4 else None
        if isinstance(day, str):
            day = date.fromisoformat(day)
        if not month <= day <= last:
            raise ValueError(f"charge {code} of {day} is not in {month:%Y-%m}")
        daily[code][day] = DayTotal(
            quantity=_exact(quantity, "quantity"),
            basis=_ZERO if basis is None else _exact(basis, "basis"),
            rows=count,
        )
    return daily
