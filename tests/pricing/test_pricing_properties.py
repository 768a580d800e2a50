"""Properties of pricing that hold for any charges (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.pricing import ChargeRow, price_month
from billing_pipeline.ratecards import ChargeSpec, Minimum, RateCard, Tier, Version

JAN = date(2026, 1, 1)


def make_card(versions: list[Version], rounding: str = "half_up") -> RateCard:
    return RateCard(
        client_id="prop",
        name="Property Co.",
        currency="USD",
        minor_units=2,
        timezone="UTC",
        rounding=rounding,
        rules="default.lua",
        versions=tuple(sorted(versions, key=lambda v: v.effective_from)),
        sha256="0" * 64,
        path=Path("prop.yaml"),
    )


def spec(code: str, model: str, **kw: object) -> ChargeSpec:
    return ChargeSpec(
        code=code, model=model, gl_account="4000", description=code, category="handling", **kw
    )  # type: ignore[arg-type]


def cents_up_to(n: int) -> st.SearchStrategy[D]:
    return st.integers(min_value=0, max_value=n).map(lambda k: D(k).scaleb(-2))


cents = cents_up_to(500)


@st.composite
def graduated_tiers(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=60), max_size=4)))
    rates = draw(st.lists(cents, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    bounded = [Tier(D(b), r) for b, r in zip(bounds, rates, strict=False)]
    return (*bounded, Tier(None, rates[-1]))


@given(
    tiers=graduated_tiers(),
    daily=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=5),
)
def test_graduated_amount_is_the_sum_of_each_units_tier_rate(
    tiers: tuple[Tier, ...], daily: list[int]
) -> None:
    card = make_card(
        [Version(JAN, charges={"PICK_ADD_UNIT": spec("PICK_ADD_UNIT", "graduated", tiers=tiers)})]
    )
    rows = [ChargeRow(JAN + timedelta(days=i), "PICK_ADD_UNIT", D(q)) for i, q in enumerate(daily)]
    priced = price_month(card, JAN, rows)

    def rate_of_unit(k: int) -> D:  # unit k (1-based) falls in the first tier with up_to >= k
        return next(t.rate for t in tiers if t.up_to is None or k <= t.up_to)

    expected = sum((rate_of_unit(k) for k in range(1, sum(daily) + 1)), D(0))
    assert sum((ln.amount for ln in priced.lines), D(0)) == expected
    assert sum((ln.quantity for ln in priced.lines), D(0)) == sum(daily)
    assert [ln.tier for ln in priced.lines] == sorted(ln.tier for ln in priced.lines)


MIXED = make_card(
    [
        Version(
            JAN,
            charges={
                "PICK_ORDER": spec("PICK_ORDER", "per_unit", rate=D("2.65")),
                "PICK_ADD_UNIT": spec(
                    "PICK_ADD_UNIT",
                    "graduated",
                    tiers=(Tier(D(10), D("0.65")), Tier(None, D("0.555"))),
                ),
                "STORAGE_BIN": spec(
                    "STORAGE_BIN",
                    "volume",
                    aggregate="average",
                    tiers=(Tier(D(5), D("2.5")), Tier(None, D("2.125"))),
                ),
                "STORAGE_PALLET": spec(
                    "STORAGE_PALLET", "per_unit", aggregate="max", rate=D("30.333")
                ),
                "DISPOSAL_UNIT": spec("DISPOSAL_UNIT", "package", rate=D("15"), package_size=D(7)),
                "SHIP_LABEL": spec("SHIP_LABEL", "cost_plus", markup_pct=D("12.5")),
                "ACCOUNT_MGMT": spec("ACCOUNT_MGMT", "flat", amount=D("250.00")),
            },
            minimums=(Minimum("MIN_ALL", "all", D("900.00"), "Minimum", "4000"),),
        ),
        Version(
            date(2026, 1, 16),
            charges={
                "PICK_ORDER": spec("PICK_ORDER", "per_unit", rate=D("2.755")),
                "SHIP_LABEL": spec("SHIP_LABEL", "cost_plus", markup_pct=D("7.25")),
                "STORAGE_PALLET": spec(
                    "STORAGE_PALLET", "per_unit", aggregate="last", rate=D("31.5")
                ),
                "ACCOUNT_MGMT": spec("ACCOUNT_MGMT", "flat", amount=D("275.00")),
                # the monthly codes stay priced in the closing version, or they'd be unpriced
                "PICK_ADD_UNIT": spec(
                    "PICK_ADD_UNIT",
                    "graduated",
                    tiers=(Tier(D(12), D("0.6")), Tier(None, D("0.5"))),
                ),
                "STORAGE_BIN": spec("STORAGE_BIN", "volume", tiers=(Tier(None, D("2.333")),)),
                "DISPOSAL_UNIT": spec("DISPOSAL_UNIT", "package", rate=D("14"), package_size=D(6)),
            },
            minimums=(Minimum("MIN_PICK", ("PICK_ORDER",), D("50.00"), "Minimum", "4000"),),
        ),
    ]
)

charge_rows = st.lists(
    st.builds(
        ChargeRow,
        activity_date=st.dates(min_value=JAN, max_value=date(2026, 1, 31)),
        charge_code=st.sampled_from(
            [
                "PICK_ORDER",
                "PICK_ADD_UNIT",
                "STORAGE_BIN",
                "STORAGE_PALLET",
                "DISPOSAL_UNIT",
                "SHIP_LABEL",
                "UNKNOWN",
            ]
        ),
        quantity=st.integers(min_value=0, max_value=10**6).map(lambda n: D(n).scaleb(-3)),
        basis=st.one_of(st.none(), cents_up_to(10**5)),
    ),
    max_size=30,
)


@given(rows=charge_rows, rounding=st.sampled_from(["half_up", "half_even"]))
def test_total_is_the_sum_of_the_lines(rows: list[ChargeRow], rounding: str) -> None:
    card = make_card(list(MIXED.versions), rounding)
    priced = price_month(card, JAN, rows)
    assert priced.total == sum((ln.amount for ln in priced.lines), D(0))
    assert all(ln.amount == ln.amount.quantize(D("0.01")) for ln in priced.lines)
    assert [ln.line_no for ln in priced.lines] == list(range(1, len(priced.lines) + 1))
    assert sum(priced.unpriced.values()) == sum(1 for r in rows if r.charge_code == "UNKNOWN")


@settings(max_examples=60)
@given(rows=charge_rows, data=st.data())
def test_pricing_does_not_depend_on_row_order(rows: list[ChargeRow], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(rows))
    first, second = price_month(MIXED, JAN, rows), price_month(MIXED, JAN, shuffled)
    assert first.lines == second.lines
    assert first.unpriced == second.unpriced
    assert first.total == second.total
