"""The parent's reading of Lua numbers (batch.floats_to_decimal): whole numbers in bulk,
plain fractions through polars' text of the float, the rest one by one; all must give what
SPEC §5 says, the shortest decimal (Python's repr) rounded half-up to 6 places."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from billing_pipeline.decimals import round_quantity, shortest_decimal
from billing_pipeline.rules.batch import floats_to_decimal


def _reference(values: list[float]) -> list[Decimal]:
    return [round_quantity(shortest_decimal(v)) for v in values]


# quantities and bases below 1e32 (charge() refuses more); the ranges where the text is plain,
# where it has more than 6 places, and where it has an exponent all come up
finite = st.floats(min_value=-1e31, max_value=1e31, allow_nan=False, allow_infinity=False)
cents = st.integers(min_value=0, max_value=10**9).map(lambda n: n / 100)  # 7.42-like costs
tiny = st.floats(min_value=1e-12, max_value=1e-3)


@given(st.lists(st.one_of(finite, cents, tiny), max_size=40))
def test_every_number_reads_as_its_shortest_decimal_rounded(values: list[float]) -> None:
    column = pl.Series(values, dtype=pl.Float64)
    assert floats_to_decimal(column).to_list() == _reference(values)


def test_numbers_by_hand() -> None:
    values = [7.42, 0.1, 0.30000000000000004, 2.675, 1e-7, 0.0000015, 1e16, 0.1234565, 3.0]
    assert floats_to_decimal(pl.Series(values)).to_list() == [
        Decimal("7.42"),
        Decimal("0.1"),
        Decimal("0.3"),  # 0.30000000000000004 half-up to 6 places
        Decimal("2.675"),  # not 2.67499999999999982236431605997495353221893310546875
        Decimal("0"),  # 1e-7 rounds to nothing at 6 places
        Decimal("0.000002"),  # 0.0000015 half-up
        Decimal(10) ** 16,
        Decimal("0.123457"),  # 0.1234565 half-up, read as written, not as its binary value
        Decimal("3"),
    ]


def test_none_stays_none_and_repeats_read_alike() -> None:
    column = pl.Series([float("nan"), 7.42, 7.42, float("nan"), 0.5])
    assert floats_to_decimal(column).to_list() == [
        None,
        Decimal("7.42"),
        Decimal("7.42"),
        None,
        Decimal("0.5"),
    ]
