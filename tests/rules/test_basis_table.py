"""The parent's reading of charge() bases (batch.basis_table): plain decimal strings are cast
by polars in one call, the rest read one by one; both must give what parse_decimal gives."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing_pipeline.decimals import parse_decimal, round_quantity, shortest_decimal
from billing_pipeline.rules.batch import RawResult, basis_table


def _reference(bases: list[float | str]) -> list[Decimal | None]:
    """SPEC §5 value by value: a number by its shortest decimal, a string as written, each
    rounded half-up to 6 places."""
    return [None] + [
        round_quantity(shortest_decimal(b) if isinstance(b, float) else parse_decimal(b))
        for b in bases
    ]


# what charge() lets through as a basis string: >= 0, at most 6 places, below 1e32, in any
# notation its check accepts (exponents, a sign, surrounding spaces, a bare point)
_digits = st.integers(min_value=0, max_value=10**31 - 1)
_places = st.integers(min_value=0, max_value=6)


@st.composite
def basis_strings(draw) -> str:
    text = format(Decimal(draw(_digits)).scaleb(-draw(_places)), "f")  # e.g. "123.4500"
    form = draw(st.sampled_from(["plain", "exp", "signed", "spaced", "point", "zeros"]))
    if form == "exp":
        return format(Decimal(text), "e")  # "1.234500e+2"
    if form == "signed":
        return "+" + text
    if form == "spaced":
        return " " + text + " "
    if form == "point":  # "5." or ".5"
        return text + "." if "." not in text else text.removeprefix("0")
    if form == "zeros":
        return "00" + text
    return text


bases = st.lists(
    st.one_of(
        basis_strings(),
        st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False),
    ),
    max_size=30,
)


@given(bases)
def test_every_basis_reads_as_parse_decimal_reads_it(values: list[float | str]) -> None:
    assert basis_table(RawResult(bases=values)).to_list() == _reference(values)


def test_label_costs_and_other_forms_by_hand() -> None:
    table = basis_table(RawResult(bases=["7.42", 3.5, "1e3", " 5", ".5", "5.", "12.123456"]))
    assert table.to_list() == [
        None,
        Decimal("7.42"),
        Decimal("3.5"),
        Decimal("1000"),
        Decimal("5"),
        Decimal("0.5"),
        Decimal("5"),
        Decimal("12.123456"),
    ]
    assert basis_table(RawResult(bases=[])).to_list() == [None]


def test_a_basis_of_10_to_the_22_or_more_is_read_not_refused() -> None:
    # charge() admits a basis below 10^32; the decimal module's default 28 digits could not
    # quantize one of 10^22 or more to 6 places, so the client-month failed
    big = ["10000000000000000000000", "1e25", "99999999999999999999999999999999.5"]
    assert basis_table(RawResult(bases=[*big, 1e25])).to_list()[1:] == [
        Decimal(10) ** 22,
        Decimal(10) ** 25,
        Decimal("99999999999999999999999999999999.5"),
        Decimal(10) ** 25,
    ]
