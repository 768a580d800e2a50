"""Golden cases for SPEC §6.1; each expected value is worked out by hand in the comment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal as D

import polars as pl
import pytest

from billing_pipeline.pricing import ChargeRow, InvoiceLine, PricedMonth, price_month
from billing_pipeline.ratecards import RateCard

Card = Callable[..., RateCard]
JAN = date(2026, 1, 1)


def row(day: str, code: str, quantity: str | int, basis: str | None = None) -> ChargeRow:
    return ChargeRow(
        date.fromisoformat(day), code, D(quantity), None if basis is None else D(basis)
    )


def brief(priced: PricedMonth) -> list[tuple[object, ...]]:
    """(code, quantity, unit_rate, amount, tier) per line, in line order."""
    return [(ln.charge_code, ln.quantity, ln.unit_rate, ln.amount, ln.tier) for ln in priced.lines]


def only(priced: PricedMonth) -> InvoiceLine:
    (line,) = priced.lines
    return line


PER_UNIT = """
- effective_from: 2026-01-01
  charges:
    PICK_ORDER: {model: per_unit, rate: "2.65", gl_account: "4030", description: Order pick}
"""


def test_per_unit_sums_days(card: Card) -> None:
    priced = price_month(
        card(PER_UNIT),
        JAN,
        [
            row("2026-01-03", "PICK_ORDER", 10),
            row("2026-01-03", "PICK_ORDER", 5),
            row("2026-01-20", "PICK_ORDER", 1),
        ],
    )
    line = only(priced)
    # 10 + 5 + 1 = 16 picks x 2.65 = 42.40
    assert (line.quantity, line.unit_rate, line.amount) == (16, D("2.65"), D("42.40"))
    assert (line.first_date, line.last_date) == (date(2026, 1, 3), date(2026, 1, 20))
    assert (line.line_no, line.description, line.gl_account, line.category) == (
        1,
        "Order pick",
        "4030",
        "handling",
    )
    assert (line.basis_amount, line.tier, line.version, line.adjusts) == (None, None, JAN, None)
    assert priced.total == D("42.40") and priced.unpriced == {}


GRADUATED = """
- effective_from: 2026-01-01
  charges:
    PICK_ADD_UNIT: {model: graduated, gl_account: "4030", tiers: [
      {up_to: 100, rate: "0.65"}, {up_to: 500, rate: "0.60"}, {up_to: null, rate: "0.55"}]}
"""


def test_graduated_straddling_tiers(card: Card) -> None:
    priced = price_month(
        card(GRADUATED),
        JAN,
        [row("2026-01-05", "PICK_ADD_UNIT", 400), row("2026-01-25", "PICK_ADD_UNIT", 250)],
    )
    # 650 units: 100 x 0.65 = 65.00; (500 - 100) x 0.60 = 240.00; (650 - 500) x 0.55 = 82.50
    assert brief(priced) == [
        ("PICK_ADD_UNIT", 100, D("0.65"), D("65.00"), 1),
        ("PICK_ADD_UNIT", 400, D("0.60"), D("240.00"), 2),
        ("PICK_ADD_UNIT", 150, D("0.55"), D("82.50"), 3),
    ]
    assert priced.total == D("387.50")  # 65.00 + 240.00 + 82.50
    assert all(
        ln.days == (date(2026, 1, 5), date(2026, 1, 25)) and ln.first_date == date(2026, 1, 5)
        for ln in priced.lines
    )


def test_graduated_quantity_exactly_on_up_to_stays_in_that_tier(card: Card) -> None:
    priced = price_month(card(GRADUATED), JAN, [row("2026-01-05", "PICK_ADD_UNIT", 100)])
    # up_to is inclusive: all 100 in tier 1, 100 x 0.65 = 65.00, and no empty tier-2 line
    assert brief(priced) == [("PICK_ADD_UNIT", 100, D("0.65"), D("65.00"), 1)]
    priced = price_month(card(GRADUATED), JAN, [row("2026-01-05", "PICK_ADD_UNIT", 500)])
    # 100 x 0.65 = 65.00 + 400 x 0.60 = 240.00
    assert brief(priced) == [
        ("PICK_ADD_UNIT", 100, D("0.65"), D("65.00"), 1),
        ("PICK_ADD_UNIT", 400, D("0.60"), D("240.00"), 2),
    ]


def test_graduated_fractional_quantity_across_a_boundary(card: Card) -> None:
    priced = price_month(card(GRADUATED), JAN, [row("2026-01-05", "PICK_ADD_UNIT", "100.5")])
    # 100 x 0.65 = 65.00; 0.5 x 0.60 = 0.30
    assert brief(priced) == [
        ("PICK_ADD_UNIT", 100, D("0.65"), D("65.00"), 1),
        ("PICK_ADD_UNIT", D("0.5"), D("0.60"), D("0.30"), 2),
    ]


VOLUME = GRADUATED.replace("graduated", "volume")


@pytest.mark.parametrize(
    ("quantity", "rate", "amount", "tier"),
    [
        (100, "0.65", "65.00", 1),  # on up_to 100: tier 1, 100 x 0.65
        (101, "0.60", "60.60", 2),  # whole 101 at tier 2: 101 x 0.60
        (500, "0.60", "300.00", 2),  # 500 x 0.60
        (650, "0.55", "357.50", 3),  # 650 x 0.55
    ],
)
def test_volume_prices_the_whole_quantity_at_one_tier(
    card: Card, quantity: int, rate: str, amount: str, tier: int
) -> None:
    priced = price_month(card(VOLUME), JAN, [row("2026-01-05", "PICK_ADD_UNIT", quantity)])
    assert brief(priced) == [("PICK_ADD_UNIT", quantity, D(rate), D(amount), tier)]


PACKAGE = """
- effective_from: 2026-01-01
  charges:
    DISPOSAL_UNIT: {model: package, rate: "15.00", package_size: 100, gl_account: "4060"}
"""


@pytest.mark.parametrize(
    ("quantity", "packages", "amount"),
    [
        ("100", 1, "15.00"),  # 100 / 100 = 1 package
        ("101", 2, "30.00"),  # 101 / 100 = 1.01, rounded up to 2 packages x 15.00
        ("0.5", 1, "15.00"),  # a started package is a package
        ("250", 3, "45.00"),  # 2.5 -> 3 x 15.00
    ],
)
def test_package_rounds_up(card: Card, quantity: str, packages: int, amount: str) -> None:
    priced = price_month(card(PACKAGE), JAN, [row("2026-01-09", "DISPOSAL_UNIT", quantity)])
    assert brief(priced) == [("DISPOSAL_UNIT", packages, D("15.00"), D(amount), None)]


COST_PLUS = """
- effective_from: 2026-01-01
  charges:
    SHIP_LABEL: {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}
"""


def test_cost_plus_marks_up_the_summed_basis(card: Card) -> None:
    priced = price_month(
        card(COST_PLUS),
        JAN,
        [
            row("2026-01-02", "SHIP_LABEL", 1, "7.42"),
            row("2026-01-02", "SHIP_LABEL", 1, "8.10"),
            row("2026-01-30", "SHIP_LABEL", 1, "10.01"),
        ],
    )
    line = only(priced)
    # basis 7.42 + 8.10 + 10.01 = 25.53; 25.53 x 1.125 = 28.72125 -> 28.72
    assert (line.quantity, line.basis_amount, line.unit_rate, line.amount) == (
        3,
        D("25.53"),
        None,
        D("28.72"),
    )


STORAGE = """
- effective_from: 2026-01-01
  charges:
    STORAGE_PALLET: {{model: per_unit, aggregate: {aggregate}, rate: "30.00", gl_account: "4020"}}
"""


def storage_days(month: date) -> list[ChargeRow]:
    # 3 on the 1st, 7 on the 10th (4 + 3, two rows), 5 on the 20th: sum 15, max 7, last 5
    ym = f"{month:%Y-%m}"
    return [
        row(f"{ym}-10", "STORAGE_PALLET", 4),
        row(f"{ym}-01", "STORAGE_PALLET", 3),
        row(f"{ym}-20", "STORAGE_PALLET", 5),
        row(f"{ym}-10", "STORAGE_PALLET", 3),
    ]


@pytest.mark.parametrize(
    ("aggregate", "month", "quantity", "amount"),
    [
        ("sum", JAN, "15", "450.00"),  # per day: 15 x 30.00
        ("max", JAN, "7", "210.00"),  # 7 x 30.00
        ("last", JAN, "5", "150.00"),  # the 20th: 5 x 30.00
        # 15 / 31 = 0.48387096.. -> 0.483871; x 30.00 = 14.51613 -> 14.52
        ("average", JAN, "0.483871", "14.52"),
        # 15 / 28 = 0.53571428.. -> 0.535714; x 30.00 = 16.07142 -> 16.07
        ("average", date(2026, 2, 1), "0.535714", "16.07"),
        # 15 / 30 = 0.5 exactly; x 30.00 = 15.00
        ("average", date(2026, 4, 1), "0.5", "15.00"),
        # leap February: 15 / 29 = 0.51724137.. -> 0.517241; x 30.00 = 15.51723 -> 15.52
        ("average", date(2028, 2, 1), "0.517241", "15.52"),
    ],
)
def test_aggregates(card: Card, aggregate: str, month: date, quantity: str, amount: str) -> None:
    priced = price_month(card(STORAGE.format(aggregate=aggregate)), month, storage_days(month))
    assert brief(priced) == [("STORAGE_PALLET", D(quantity), D("30.00"), D(amount), None)]
    line = only(priced)
    assert (line.first_date, line.last_date) == (month, month.replace(day=20))


def test_average_rounds_half_up_to_six_places(card: Card) -> None:
    priced = price_month(
        card(STORAGE.format(aggregate="average")),
        date(2026, 4, 1),
        [row("2026-04-01", "STORAGE_PALLET", "0.000015")],
    )
    # 0.000015 / 30 = 0.0000005 exactly: half-up to 6 places gives 0.000001 (half-even: 0)
    assert only(priced).quantity == D("0.000001")


def test_version_change_mid_month_per_day(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges: {PICK_ORDER: {model: per_unit, rate: "3.00", gl_account: "4030"}}
    - effective_from: 2026-01-16
      charges: {PICK_ORDER: {model: per_unit, rate: "2.00", gl_account: "4030"}}
    - effective_from: 2026-01-25
      charges: {PICK_ORDER: {model: per_unit, rate: "3.00", gl_account: "4030"}}
    """
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-20", "PICK_ORDER", 2),
            row("2026-01-05", "PICK_ORDER", 1),
            row("2026-01-15", "PICK_ORDER", 4),
            row("2026-01-28", "PICK_ORDER", 10),
        ],
    )
    # 3.00 applies on the 5th, 15th and 28th: 1 + 4 + 10 = 15 x 3.00 = 45.00 (one line per
    # distinct rate, though two versions gave it); 2.00 on the 20th: 2 x 2.00 = 4.00.
    # Ordered by the first date each rate applied: 3.00 (5th) before 2.00 (20th).
    assert brief(priced) == [
        ("PICK_ORDER", 15, D("3.00"), D("45.00"), None),
        ("PICK_ORDER", 2, D("2.00"), D("4.00"), None),
    ]
    first, second = priced.lines
    assert (first.first_date, first.last_date, first.version) == (
        date(2026, 1, 5),
        date(2026, 1, 28),
        JAN,
    )
    assert (second.first_date, second.version) == (date(2026, 1, 20), date(2026, 1, 16))
    # the rates interleave in time, so the days (not the date range) say which charges
    # make each line
    assert first.days == (date(2026, 1, 5), date(2026, 1, 15), date(2026, 1, 28))
    assert second.days == (date(2026, 1, 20),)
    assert [ln.line_no for ln in priced.lines] == [1, 2]


def test_version_change_mid_month_cost_plus_per_markup(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges: {SHIP_LABEL: {model: cost_plus, markup_pct: "10", gl_account: "4050"}}
    - effective_from: 2026-01-16
      charges: {SHIP_LABEL: {model: cost_plus, markup_pct: "20", gl_account: "4050"}}
    """
    priced = price_month(
        card(versions),
        JAN,
        [row("2026-01-02", "SHIP_LABEL", 1, "10.00"), row("2026-01-16", "SHIP_LABEL", 2, "30.00")],
    )
    # 10.00 x 1.10 = 11.00 (first 2nd); 30.00 x 1.20 = 36.00 (first 16th)
    assert [(ln.quantity, ln.basis_amount, ln.amount) for ln in priced.lines] == [
        (1, D("10.00"), D("11.00")),
        (2, D("30.00"), D("36.00")),
    ]


def test_version_change_mid_month_closing_version_prices_the_whole_month(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        STORAGE_PALLET: {model: per_unit, aggregate: max, rate: "30.00", gl_account: "4020"}
    - effective_from: 2026-01-16
      charges:
        STORAGE_PALLET: {model: per_unit, aggregate: max, rate: "31.50", gl_account: "4020"}
    """
    priced = price_month(
        card(versions),
        JAN,
        [row("2026-01-03", "STORAGE_PALLET", 10), row("2026-01-20", "STORAGE_PALLET", 8)],
    )
    # max over the month (10, on the 3rd, under the old version) x the closing rate 31.50
    line = only(priced)
    assert (line.quantity, line.unit_rate, line.amount, line.version) == (
        10,
        D("31.50"),
        D("315.00"),
        date(2026, 1, 16),
    )


def test_closing_version_tiers_apply_to_the_whole_month(card: Card) -> None:
    versions = GRADUATED + GRADUATED.replace("2026-01-01", "2026-01-20").replace('"0.65"', '"0.70"')
    priced = price_month(
        card(versions),
        JAN,
        [row("2026-01-05", "PICK_ADD_UNIT", 60), row("2026-01-25", "PICK_ADD_UNIT", 60)],
    )
    # 120 units under the closing version: 100 x 0.70 = 70.00; 20 x 0.60 = 12.00
    assert brief(priced) == [
        ("PICK_ADD_UNIT", 100, D("0.70"), D("70.00"), 1),
        ("PICK_ADD_UNIT", 20, D("0.60"), D("12.00"), 2),
    ]


def test_model_change_per_day_to_monthly_mid_month(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges: {STORAGE_PALLET: {model: per_unit, rate: "1.00", gl_account: "4020"}}
    - effective_from: 2026-01-16
      charges:
        STORAGE_PALLET: {model: per_unit, aggregate: max, rate: "30.00", gl_account: "4020"}
    """
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-10", "STORAGE_PALLET", 9),
            row("2026-01-17", "STORAGE_PALLET", 4),
            row("2026-01-18", "STORAGE_PALLET", 6),
        ],
    )
    # the 10th by its own per-day version: 9 x 1.00; the 17th and 18th pooled: max 6 x 30.00
    assert brief(priced) == [
        ("STORAGE_PALLET", 9, D("1.00"), D("9.00"), None),
        ("STORAGE_PALLET", 6, D("30.00"), D("180.00"), None),
    ]
    assert priced.unpriced == {}


def test_model_change_monthly_to_per_day_leaves_early_days_unpriced(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        STORAGE_PALLET: {model: per_unit, aggregate: max, rate: "30.00", gl_account: "4020"}
    - effective_from: 2026-01-16
      charges: {STORAGE_PALLET: {model: per_unit, rate: "1.00", gl_account: "4020"}}
    """
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-10", "STORAGE_PALLET", 9),
            row("2026-01-10", "STORAGE_PALLET", 1),
            row("2026-01-17", "STORAGE_PALLET", 4),
        ],
    )
    # The 10th's version prices monthly, but the closing version has no monthly price: unpriced
    # (2 rows). The 17th is per day: 4 x 1.00.
    assert brief(priced) == [("STORAGE_PALLET", 4, D("1.00"), D("4.00"), None)]
    assert priced.unpriced == {"STORAGE_PALLET": 2}


def test_code_added_mid_month_with_a_monthly_model_prices_every_day(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges: {PICK_ORDER: {model: per_unit, rate: "1", gl_account: "1"}}
    - effective_from: 2026-01-16
      charges:
        PICK_ORDER: {model: per_unit, rate: "1", gl_account: "1"}
        STORAGE_BIN: {model: per_unit, aggregate: sum, rate: "1", gl_account: "1"}
        STORAGE_SHELF: {model: per_unit, aggregate: last, rate: "2", gl_account: "1"}
    """
    priced = price_month(
        card(versions),
        JAN,
        [row("2026-01-05", "STORAGE_SHELF", 3), row("2026-01-05", "STORAGE_BIN", 3)],
    )
    # STORAGE_SHELF is monthly in the closing version, which governs the 5th too: 3 x 2 = 6.
    # STORAGE_BIN is per day (sum), and the 5th's version does not price it: unpriced.
    assert brief(priced) == [("STORAGE_SHELF", 3, D("2"), D("6.00"), None)]
    assert priced.unpriced == {"STORAGE_BIN": 1}


@pytest.mark.parametrize(
    ("rate", "half_up", "half_even"),
    [
        ("2.125", "2.13", "2.12"),  # exactly half a cent: up vs to the even 2
        ("2.135", "2.14", "2.14"),  # 3 is odd: both go to 4
        ("2.1251", "2.13", "2.13"),  # past the half: both up
    ],
)
def test_half_up_versus_half_even(card: Card, rate: str, half_up: str, half_even: str) -> None:
    versions = f"""
    - effective_from: 2026-01-01
      charges: {{PICK_ORDER: {{model: per_unit, rate: "{rate}", gl_account: "4030"}}}}
    """
    rows = [row("2026-01-05", "PICK_ORDER", 1)]
    assert only(price_month(card(versions), JAN, rows)).amount == D(half_up)
    even = card(versions, rounding="half_even")
    assert only(price_month(even, JAN, rows)).amount == D(half_even)


def test_rounding_is_once_per_line_not_per_day(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges: {PICK_ORDER: {model: per_unit, rate: "0.005", gl_account: "4030"}}
    """
    rows = [row(f"2026-01-{d:02d}", "PICK_ORDER", 1) for d in (1, 2, 3)]
    # 3 x 0.005 = 0.015 -> 0.02 (rounding each day would give 3 x 0.01 = 0.03)
    assert only(price_month(card(versions), JAN, rows)).amount == D("0.02")


def test_zero_decimal_currency(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        PICK_ORDER: {model: per_unit, rate: "12.5", gl_account: "4030"}
        ACCOUNT_MGMT: {model: flat, amount: "25000", gl_account: "4090"}
    """
    jpy = card(versions, currency="JPY")
    priced = price_month(jpy, JAN, [row("2026-01-05", "PICK_ORDER", 5)])
    # 5 x 12.5 = 62.5 yen -> 63 (half up to whole yen); flat 25000; total 25063
    assert [(ln.charge_code, ln.amount) for ln in priced.lines] == [
        ("ACCOUNT_MGMT", D("25000")),
        ("PICK_ORDER", D("63")),
    ]
    assert priced.total == D("25063") and priced.total.as_tuple().exponent == 0
    even = price_month(
        card(versions, currency="JPY", rounding="half_even"),
        JAN,
        [row("2026-01-05", "PICK_ORDER", 5)],
    )
    assert even.lines[1].amount == D("62")  # 62.5 -> the even 62


def test_three_decimal_currency(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        PICK_ORDER: {model: per_unit, rate: "0.12345", gl_account: "4030"}
        PACK_CARTON: {model: per_unit, rate: "0.125", gl_account: "4030"}
    """
    kwd = card(versions, currency="KWD")
    priced = price_month(
        kwd, JAN, [row("2026-01-05", "PICK_ORDER", 10), row("2026-01-05", "PACK_CARTON", 10)]
    )
    # 10 x 0.125 = 1.250 fils-exact; 10 x 0.12345 = 1.2345 -> 1.235 (half up to 3 places)
    assert [(ln.charge_code, ln.amount) for ln in priced.lines] == [
        ("PACK_CARTON", D("1.250")),
        ("PICK_ORDER", D("1.235")),
    ]
    assert priced.total == D("2.485")


MINIMUM = """
- effective_from: 2026-01-01
  charges:
    PICK_ORDER: {{model: per_unit, rate: "2.65", gl_account: "4030"}}
    PACK_CARTON: {{model: per_unit, rate: "1.10", gl_account: "4030"}}
    SHIP_LABEL: {{model: cost_plus, markup_pct: "0", gl_account: "4050"}}
    ACCOUNT_MGMT: {{model: flat, amount: "250.00", gl_account: "4090"}}
  minimums:
    - {{code: MIN_FULFILLMENT, covers: {covers}, amount: "{amount}", gl_account: "4030",
       description: Monthly fulfillment minimum}}
"""
ACTIVITY = [
    row("2026-01-05", "PICK_ORDER", 10),
    row("2026-01-06", "PACK_CARTON", 5),
    row("2026-01-07", "SHIP_LABEL", 1, "40.00"),
]


def test_minimum_not_met(card: Card) -> None:
    priced = price_month(
        card(MINIMUM.format(covers="[PICK_ORDER, PACK_CARTON]", amount="100.00")), JAN, ACTIVITY
    )
    # covered: 10 x 2.65 = 26.50 + 5 x 1.10 = 5.50 = 32.00 (shipping and the fee not covered)
    # shortfall 100.00 - 32.00 = 68.00, last line
    last = priced.lines[-1]
    assert (last.charge_code, last.model, last.quantity, last.amount) == (
        "MIN_FULFILLMENT",
        "minimum",
        1,
        D("68.00"),
    )
    assert (last.description, last.category, last.first_date, last.line_no) == (
        "Monthly fulfillment minimum",
        "fees",
        None,
        5,
    )
    # 250.00 + 5.50 + 26.50 + 40.00 + 68.00
    assert priced.total == D("390.00")


def test_minimum_met_exactly_adds_nothing(card: Card) -> None:
    priced = price_month(
        card(MINIMUM.format(covers="[PICK_ORDER, PACK_CARTON]", amount="32.00")), JAN, ACTIVITY
    )
    assert "MIN_FULFILLMENT" not in [ln.charge_code for ln in priced.lines]


def test_minimum_covering_all(card: Card) -> None:
    priced = price_month(card(MINIMUM.format(covers="all", amount="400.00")), JAN, ACTIVITY)
    # all lines: 250.00 + 5.50 + 26.50 + 40.00 = 322.00; 400.00 - 322.00 = 78.00
    assert priced.lines[-1].amount == D("78.00")
    assert priced.total == D("400.00")


def test_minimum_counts_rounded_line_amounts(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        PICK_ORDER: {model: per_unit, rate: "0.005", gl_account: "4030"}
        PACK_CARTON: {model: per_unit, rate: "0.005", gl_account: "4030"}
      minimums:
        - {code: MIN_F, covers: all, amount: "1.00", gl_account: "4030"}
    """
    rows = [row("2026-01-05", "PICK_ORDER", 1), row("2026-01-05", "PACK_CARTON", 1)]
    priced = price_month(card(versions), JAN, rows)
    # each line 0.005 -> 0.01; covered 0.02 (not round(0.010) = 0.01); 1.00 - 0.02 = 0.98
    assert priced.lines[-1].amount == D("0.98")


def test_minimum_applies_in_a_month_without_activity(card: Card) -> None:
    priced = price_month(card(MINIMUM.format(covers="all", amount="400.00")), JAN, [])
    # only the flat 250.00 covers: 400.00 - 250.00 = 150.00
    assert [(ln.charge_code, ln.amount) for ln in priced.lines] == [
        ("ACCOUNT_MGMT", D("250.00")),
        ("MIN_FULFILLMENT", D("150.00")),
    ]


FLAT = """
- effective_from: 2026-01-15
  charges:
    ACCOUNT_MGMT: {model: flat, amount: "250.00", gl_account: "4090",
                   description: Account management}
- effective_from: 2026-03-20
  charges:
    ACCOUNT_MGMT: {model: flat, amount: "300.00", gl_account: "4090",
                   description: Account management}
"""


def test_flat_fee_in_a_month_without_activity(card: Card) -> None:
    priced = price_month(card(FLAT), date(2026, 2, 1), [])
    line = only(priced)
    assert (line.charge_code, line.model, line.quantity, line.unit_rate, line.amount) == (
        "ACCOUNT_MGMT",
        "flat",
        1,
        D("250.00"),
        D("250.00"),
    )
    assert (line.first_date, line.last_date, line.days, line.category) == (None, None, (), "fees")
    assert priced.total == D("250.00")


def test_flat_fee_not_before_the_first_versions_month(card: Card) -> None:
    flat = card(FLAT)
    assert price_month(flat, date(2025, 12, 1), []).lines == []
    assert price_month(flat, date(2025, 12, 1), []).total == D("0.00")
    # the first version starts on the 15th: January still gets the whole fee (no proration)
    assert only(price_month(flat, JAN, [])).amount == D("250.00")


def test_flat_fee_comes_from_the_closing_version(card: Card) -> None:
    assert only(price_month(card(FLAT), date(2026, 3, 1), [])).amount == D("300.00")


def test_charges_before_the_first_version_are_unpriced(card: Card) -> None:
    versions = PER_UNIT.replace("2026-01-01", "2026-01-15")
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-10", "PICK_ORDER", 3),
            row("2026-01-10", "PICK_ORDER", 1),
            row("2026-01-14", "PICK_ORDER", 1),
            row("2026-01-15", "PICK_ORDER", 2),
        ],
    )
    # 3 rows on the 10th and 14th: unpriced; the 15th: 2 x 2.65 = 5.30
    assert priced.unpriced == {"PICK_ORDER": 3}
    assert brief(priced) == [("PICK_ORDER", 2, D("2.65"), D("5.30"), None)]
    assert priced.total == D("5.30")


def test_codes_the_card_does_not_price_are_counted_and_the_rest_priced(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        PICK_ORDER: {model: per_unit, rate: "2.65", gl_account: "4030"}
        ACCOUNT_MGMT: {model: flat, amount: "250.00", gl_account: "4090"}
    """
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-05", "PICK_ORDER", 1),
            row("2026-01-05", "MAT_BOX_S", 2),
            row("2026-01-06", "MAT_BOX_S", 1),
            row("2026-01-07", "KIT_BUILD", 1),
            row("2026-01-25", "ACCOUNT_MGMT", 1),
        ],
    )
    # rows are counted, not days; a flat-priced code emitted as a charge is unpriced too
    assert priced.unpriced == {"ACCOUNT_MGMT": 1, "KIT_BUILD": 1, "MAT_BOX_S": 2}
    # the priced rest: the flat fee and 1 x 2.65
    assert [(ln.charge_code, ln.amount) for ln in priced.lines] == [
        ("ACCOUNT_MGMT", D("250.00")),
        ("PICK_ORDER", D("2.65")),
    ]


def test_zero_quantity_lines_are_left_out(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        PICK_ORDER: {model: per_unit, rate: "2.65", gl_account: "4030"}
        STORAGE_BIN: {model: per_unit, aggregate: max, rate: "2.65", gl_account: "4030"}
        PICK_ADD_UNIT: {model: graduated, gl_account: "4030", tiers: [{up_to: null, rate: "1"}]}
        ACCOUNT_MGMT: {model: flat, amount: "0", gl_account: "4090"}
    """
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-05", "PICK_ORDER", 0),
            row("2026-01-05", "STORAGE_BIN", 0),
            row("2026-01-05", "PICK_ADD_UNIT", 0),
        ],
    )
    # the flat line stays, even at 0.00
    assert [(ln.charge_code, ln.amount) for ln in priced.lines] == [("ACCOUNT_MGMT", D("0.00"))]
    assert priced.unpriced == {}


def test_line_order(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges:
        SHIP_LABEL: {model: cost_plus, markup_pct: "10", gl_account: "4050"}
        PICK_ORDER: {model: per_unit, rate: "1.00", gl_account: "4030"}
        PICK_ADD_UNIT: {model: graduated, gl_account: "4030",
                        tiers: [{up_to: 10, rate: "0.50"}, {up_to: null, rate: "0.40"}]}
        ACCOUNT_MGMT: {model: flat, amount: "10.00", gl_account: "4090"}
        ZZ_LATE: {model: per_unit, rate: "1.00", gl_account: "4090"}
      minimums:
        - {code: MIN_B, covers: all, amount: "10000", gl_account: "4030"}
        - {code: MIN_A, covers: [PICK_ORDER], amount: "100", gl_account: "4030"}
    - effective_from: 2026-01-10
      charges:
        SHIP_LABEL: {model: cost_plus, markup_pct: "10", gl_account: "4050"}
        PICK_ORDER: {model: per_unit, rate: "1.50", gl_account: "4030"}
        PICK_ADD_UNIT: {model: graduated, gl_account: "4030",
                        tiers: [{up_to: 10, rate: "0.50"}, {up_to: null, rate: "0.40"}]}
        ACCOUNT_MGMT: {model: flat, amount: "10.00", gl_account: "4090"}
        ZZ_LATE: {model: per_unit, rate: "1.00", gl_account: "4090"}
      minimums:
        - {code: MIN_B, covers: all, amount: "10000", gl_account: "4030"}
        - {code: MIN_A, covers: [PICK_ORDER], amount: "100", gl_account: "4030"}
    """
    priced = price_month(
        card(versions),
        JAN,
        [
            row("2026-01-20", "ZZ_LATE", 1),
            row("2026-01-15", "PICK_ORDER", 1),
            row("2026-01-02", "PICK_ORDER", 1),
            row("2026-01-03", "PICK_ADD_UNIT", 15),
            row("2026-01-04", "SHIP_LABEL", 1, "5"),
        ],
    )
    # by code; tiers in tier order; per-day lines by first date; minimums last (by code)
    assert [(ln.line_no, ln.charge_code, ln.tier, ln.unit_rate) for ln in priced.lines] == [
        (1, "ACCOUNT_MGMT", None, D("10.00")),
        (2, "PICK_ADD_UNIT", 1, D("0.50")),
        (3, "PICK_ADD_UNIT", 2, D("0.40")),
        (4, "PICK_ORDER", None, D("1.00")),
        (5, "PICK_ORDER", None, D("1.50")),
        (6, "SHIP_LABEL", None, None),
        (7, "ZZ_LATE", None, D("1.00")),
        (8, "MIN_A", None, D("97.50")),  # 100 - (1.00 + 1.50)
        # all but minimums: 10.00 + 5.00 + 2.00 + 1.00 + 1.50 + 5.50 + 1.00 = 26.00
        (9, "MIN_B", None, D("9974.00")),  # 10000 - 26.00
    ]
    assert priced.total == D("26.00") + D("97.50") + D("9974.00")


def test_same_rate_with_another_gl_account_stays_a_separate_line(card: Card) -> None:
    versions = """
    - effective_from: 2026-01-01
      charges: {PICK_ORDER: {model: per_unit, rate: "1.00", gl_account: "4030"}}
    - effective_from: 2026-01-16
      charges: {PICK_ORDER: {model: per_unit, rate: "1.00", gl_account: "4031"}}
    """
    priced = price_month(
        card(versions),
        JAN,
        [row("2026-01-05", "PICK_ORDER", 1), row("2026-01-20", "PICK_ORDER", 2)],
    )
    assert [(ln.gl_account, ln.quantity) for ln in priced.lines] == [("4030", 1), ("4031", 2)]


def test_a_polars_frame_prices_like_rows(card: Card) -> None:
    rows = [*ACTIVITY, row("2026-01-07", "SHIP_LABEL", 1, "2.50"), row("2026-01-09", "NOPE", 1)]
    frame = pl.DataFrame(
        {
            "activity_date": [r.activity_date for r in rows],
            "charge_code": [r.charge_code for r in rows],
            "quantity": [r.quantity for r in rows],
            "basis": [r.basis for r in rows],
        },
        schema={
            "activity_date": pl.Date,
            "charge_code": pl.String,
            "quantity": pl.Decimal(38, 6),
            "basis": pl.Decimal(38, 6),
        },
    )
    rate_card = card(MINIMUM.format(covers="all", amount="400.00"))
    from_frame = price_month(rate_card, JAN, frame)
    from_rows = price_month(rate_card, JAN, rows)
    assert brief(from_frame) == brief(from_rows)
    assert from_frame.total == from_rows.total == D("400.00")
    assert from_frame.unpriced == from_rows.unpriced == {"NOPE": 1}


def test_frame_without_basis_column(card: Card) -> None:
    frame = pl.DataFrame(
        {"activity_date": [date(2026, 1, 5)], "charge_code": ["PICK_ORDER"], "quantity": [D("2")]},
        schema={"activity_date": pl.Date, "charge_code": pl.String, "quantity": pl.Decimal(38, 6)},
    )
    assert only(price_month(card(PER_UNIT), JAN, frame)).amount == D("5.30")


def test_rows_outside_the_month_and_floats_are_refused(card: Card) -> None:
    with pytest.raises(ValueError, match="not in 2026-01"):
        price_month(card(PER_UNIT), JAN, [row("2026-02-01", "PICK_ORDER", 1)])
    with pytest.raises(TypeError, match="never a float"):
        price_month(card(PER_UNIT), JAN, [ChargeRow(date(2026, 1, 5), "PICK_ORDER", 1.5)])  # type: ignore[arg-type]


def test_month_may_be_any_day_of_it(card: Card) -> None:
    priced = price_month(card(PER_UNIT), date(2026, 1, 17), [row("2026-01-05", "PICK_ORDER", 1)])
    assert priced.month == JAN and priced.period == "2026-01"


def test_frames_with_float_money_or_other_months_are_refused(card: Card) -> None:
    floats = pl.DataFrame(
        {"activity_date": [date(2026, 1, 5)], "charge_code": ["PICK_ORDER"], "quantity": [1.5]}
    )
    with pytest.raises(TypeError, match="never a float"):
        price_month(card(PER_UNIT), JAN, floats)
    february = pl.DataFrame(
        {"activity_date": [date(2026, 2, 1)], "charge_code": ["PICK_ORDER"], "quantity": [1]}
    )
    with pytest.raises(ValueError, match="not in 2026-01"):
        price_month(card(PER_UNIT), JAN, february)


def test_frame_counts_unpriced_rows_not_days(card: Card) -> None:
    frame = pl.DataFrame(
        {
            "activity_date": [date(2026, 1, 5)] * 3 + [date(2026, 1, 6)],
            "charge_code": ["NOPE"] * 3 + ["PICK_ORDER"],
            "quantity": [1, 2, 3, 4],  # integers are exact too
        }
    )
    priced = price_month(card(PER_UNIT), JAN, frame)
    assert priced.unpriced == {"NOPE": 3}
    assert only(priced).amount == D("10.60")  # 4 x 2.65
