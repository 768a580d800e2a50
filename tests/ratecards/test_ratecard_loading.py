from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_pipeline.ratecards import (
    MINOR_UNITS,
    RateCardError,
    load_ratecard,
    load_ratecards,
    validate_files,
)

SPEC_EXAMPLE = """\
client_id: acme            # equals the file name stem
name: Acme Outdoor Co.
currency: USD              # ISO 4217; rounding to its minor unit (USD 2, JPY 0, ...)
timezone: America/New_York # IANA; defines activity dates and billing months
rounding: half_up          # half_up (default) or half_even
rules: acme.lua            # optional; default default.lua
versions:                  # one or more, each complete on its own (no inheritance)
  - effective_from: 2026-01-01   # inclusive activity date
    params: {heavy_lb: 50}       # free-form, handed to Lua as ctx.params
    charges:
      PICK_ORDER:   {model: per_unit, rate: "2.65", description: Order pick, gl_account: "4030"}
      PICK_ADD_UNIT: {model: graduated, gl_account: "4030",
                      tiers: [{up_to: 50000, rate: "0.65"}, {up_to: null, rate: "0.55"}]}
      STORAGE_PALLET: {model: per_unit, aggregate: max, rate: "30.00", gl_account: "4020"}
      SHIP_LABEL:   {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}
      ACCOUNT_MGMT: {model: flat, amount: "250.00", gl_account: "4090"}
    minimums:
      - {code: MIN_FULFILLMENT, covers: [PICK_ORDER, PICK_ADD_UNIT], amount: "1500.00",
         description: Monthly fulfillment minimum, gl_account: "4030"}
"""

Write = Callable[..., Path]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RateCardError) as info:
        load_ratecard(path)
    return info.value.problems


def test_the_spec_example_loads(write: Write) -> None:
    card = load_ratecard(write(SPEC_EXAMPLE))
    assert (card.client_id, card.name, card.currency, card.minor_units) == (
        "acme",
        "Acme Outdoor Co.",
        "USD",
        2,
    )
    assert (card.timezone, card.rounding, card.rules) == ("America/New_York", "half_up", "acme.lua")
    (version,) = card.versions
    assert version.effective_from == date(2026, 1, 1)
    assert dict(version.params) == {"heavy_lb": 50}
    pick = version.charges["PICK_ORDER"]
    assert (pick.model, pick.aggregate, pick.rate, pick.description, pick.gl_account) == (
        "per_unit",
        "sum",
        Decimal("2.65"),
        "Order pick",
        "4030",
    )
    tiers = version.charges["PICK_ADD_UNIT"].tiers
    assert [(t.up_to, t.rate) for t in tiers] == [
        (Decimal(50000), Decimal("0.65")),
        (None, Decimal("0.55")),
    ]
    assert version.charges["PICK_ADD_UNIT"].description == "PICK_ADD_UNIT"  # default: the code
    assert version.charges["STORAGE_PALLET"].aggregate == "max"
    assert version.charges["SHIP_LABEL"].markup_pct == Decimal("12.5")
    assert version.charges["ACCOUNT_MGMT"].amount == Decimal("250.00")
    (minimum,) = version.minimums
    assert minimum.covers == ("PICK_ORDER", "PICK_ADD_UNIT")
    assert minimum.amount == Decimal("1500.00")
    # sha256 of the file bytes, so a one-byte edit changes the fingerprint
    import hashlib

    assert card.sha256 == hashlib.sha256(SPEC_EXAMPLE.encode()).hexdigest()


def test_the_shipped_sample_card_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "ratecards" / "acme.yaml"
    card = load_ratecard(path)
    april = card.version_on(date(2026, 4, 1))
    assert april is not None
    # the merge key keeps the January charges; the explicit entry overrides one of them
    assert april.charges["PICK_ORDER"].rate == Decimal("2.75")
    assert april.charges["PACK_CARTON"].rate == Decimal("1.10")
    assert card.versions[0].charges["PICK_ORDER"].rate == Decimal("2.65")


def test_defaults(write: Write, base: dict[str, Any]) -> None:
    card = load_ratecard(write(base))
    assert card.rounding == "half_up"
    assert card.rules == "default.lua"
    assert dict(card.versions[0].params) == {}
    assert card.versions[0].minimums == ()


def test_numbers_are_read_by_their_shortest_decimal(write: Write, base: dict[str, Any]) -> None:
    base["versions"][0]["charges"]["PICK_ORDER"]["rate"] = 0.1
    base["versions"][0]["charges"]["SHIP_LABEL"]["markup_pct"] = 12
    card = load_ratecard(write(base))
    assert card.versions[0].charges["PICK_ORDER"].rate == Decimal("0.1")
    assert str(card.versions[0].charges["PICK_ORDER"].rate) == "0.1"  # not 0.1000000000000000055
    assert card.versions[0].charges["SHIP_LABEL"].markup_pct == Decimal(12)


def test_versions_are_sorted_and_looked_up_by_date(write: Write, base: dict[str, Any]) -> None:
    base["versions"].reverse()
    card = load_ratecard(write(base))
    assert [v.effective_from for v in card.versions] == [date(2026, 1, 1), date(2026, 2, 1)]
    assert card.version_on(date(2025, 12, 31)) is None
    assert card.version_on(date(2026, 1, 31)).effective_from == date(2026, 1, 1)
    assert card.version_on(date(2026, 2, 1)).effective_from == date(2026, 2, 1)
    assert card.closing_version(date(2026, 1, 1)).effective_from == date(2026, 1, 1)
    assert card.closing_version(date(2025, 12, 1)) is None


def test_closing_version_is_the_one_on_the_last_day(write: Write, base: dict[str, Any]) -> None:
    base["versions"][1]["effective_from"] = "2026-01-31"
    card = load_ratecard(write(base))
    assert card.closing_version(date(2026, 1, 1)).effective_from == date(2026, 1, 31)


def test_categories_default_by_prefix_and_can_be_set(write: Write, base: dict[str, Any]) -> None:
    charges = base["versions"][1]["charges"]
    charges["STORAGE_BIN"] = {"model": "per_unit", "rate": "1", "gl_account": "1"}
    charges["KIT_BUILD"] = {"model": "per_unit", "rate": "1", "gl_account": "1"}
    charges["MAT_BOX_S"] = {"model": "per_unit", "rate": "1", "gl_account": "1"}
    charges["SPECIAL"] = {"model": "per_unit", "rate": "1", "gl_account": "1"}
    charges["RUSH"] = {"model": "per_unit", "rate": "1", "gl_account": "1", "category": "shipping"}
    card = load_ratecard(write(base))
    got = {code: spec.category for code, spec in card.versions[1].charges.items()}
    assert got == {
        "PICK_ORDER": "handling",
        "ACCOUNT_MGMT": "fees",
        "STORAGE_BIN": "storage",
        "KIT_BUILD": "value_added",
        "MAT_BOX_S": "handling",
        "SPECIAL": "fees",
        "RUSH": "shipping",
    }


def test_yaml_merge_keys_are_allowed(write: Write) -> None:
    text = textwrap.dedent(
        """\
        client_id: acme
        name: Acme
        currency: USD
        timezone: UTC
        versions:
          - effective_from: 2026-01-01
            charges: &base
              PICK_ORDER: {model: per_unit, rate: "2.65", gl_account: "4030"}
              PACK_CARTON: {model: per_unit, rate: "1.10", gl_account: "4030"}
          - effective_from: 2026-02-01
            charges:
              <<: *base
              PICK_ORDER: {model: per_unit, rate: "2.75", gl_account: "4030"}
        """
    )
    card = load_ratecard(write(text))
    assert card.versions[1].charges["PICK_ORDER"].rate == Decimal("2.75")
    assert card.versions[1].charges["PACK_CARTON"].rate == Decimal("1.10")


# --- one rule, one message ---------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets a dotted path (list indexes as numbers) in the base card."""

    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return apply


_DELETE = object()
V0 = "versions.0.charges"
V1 = "versions.1.charges"

CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "client_id not the file stem",
        _set("client_id", "globex"),
        'acme.yaml: client_id: "globex" does not match the file name (expected "acme")',
    ),
    ("name missing", _set("name", _DELETE), "acme.yaml: name: missing"),
    (
        "currency unknown",
        _set("currency", "XYZ"),
        'acme.yaml: currency: not an ISO 4217 currency code: "XYZ"',
    ),
    (
        "currency with no minor unit (gold)",
        _set("currency", "XAU"),
        'acme.yaml: currency: not an ISO 4217 currency code: "XAU"',
    ),
    (
        "timezone not IANA",
        _set("timezone", "Eastern Time"),
        'acme.yaml: timezone: not an IANA time zone: "Eastern Time"',
    ),
    (
        "rounding unknown",
        _set("rounding", "bankers"),
        'acme.yaml: rounding: unknown rounding mode "bankers" (one of: half_up, half_even)',
    ),
    (
        "rules with a path",
        _set("rules", "../secrets.lua"),
        'acme.yaml: rules: must be a file name in lua/rules/ ending in .lua, got "../secrets.lua"',
    ),
    (
        "rules in a subdirectory",
        _set("rules", "lib/x.lua"),
        'acme.yaml: rules: must be a file name in lua/rules/ ending in .lua, got "lib/x.lua"',
    ),
    (
        "rules not lua",
        _set("rules", "acme.py"),
        'acme.yaml: rules: must be a file name in lua/rules/ ending in .lua, got "acme.py"',
    ),
    (
        "no versions",
        _set("versions", []),
        "acme.yaml: versions: must be a list of one or more versions, got a list",
    ),
    (
        "unknown top-level key",
        _set("currncy", "USD"),
        "acme.yaml: currncy: unknown key (a typo? expected one of: client_id, name, currency, "
        "timezone, rounding, rules, versions)",
    ),
    (
        "duplicate effective_from",
        _set("versions.1.effective_from", "2026-01-01"),
        "acme.yaml: versions[1].effective_from: duplicate effective_from 2026-01-01 "
        "(also versions[0])",
    ),
    (
        "effective_from not a real date",
        _set("versions.1.effective_from", "2026-02-30"),
        "acme.yaml: versions[1].effective_from: not a real date: 2026-02-30",
    ),
    (
        "effective_from not a date",
        _set("versions.1.effective_from", "February"),
        'acme.yaml: versions[1].effective_from: must be a date (YYYY-MM-DD), got "February"',
    ),
    (
        "charge code lower case",
        _set(f"{V0}.pick_order", {"model": "per_unit", "rate": "1", "gl_account": "1"}),
        'acme.yaml: versions[0].charges.pick_order: charge code "pick_order" does not match '
        "^[A-Z][A-Z0-9_]{0,63}$",
    ),
    (
        "the spec's comma decimal",
        _set(f"{V1}.PICK_ORDER.rate", "2,65"),
        'acme.yaml: versions[1].charges.PICK_ORDER.rate: not a decimal: "2,65"',
    ),
    (
        "negative rate",
        _set(f"{V1}.PICK_ORDER.rate", "-2.65"),
        "acme.yaml: versions[1].charges.PICK_ORDER.rate: must not be negative: -2.65",
    ),
    (
        "rate with 7 places",
        _set(f"{V1}.PICK_ORDER.rate", "0.1234567"),
        "acme.yaml: versions[1].charges.PICK_ORDER.rate: more than 6 decimal places: 0.1234567",
    ),
    (
        "rate that is a boolean",
        _set(f"{V1}.PICK_ORDER.rate", True),
        "acme.yaml: versions[1].charges.PICK_ORDER.rate: not a decimal: True",
    ),
    (
        "rate missing",
        _set(f"{V1}.PICK_ORDER.rate", _DELETE),
        "acme.yaml: versions[1].charges.PICK_ORDER.rate: missing",
    ),
    (
        "rate null",
        _set(f"{V1}.PICK_ORDER.rate", None),
        "acme.yaml: versions[1].charges.PICK_ORDER.rate: missing value",
    ),
    (
        "typo in a key",
        _set(f"{V1}.PICK_ORDER.descripton", "Pick"),
        "acme.yaml: versions[1].charges.PICK_ORDER.descripton: unknown key (a typo? expected "
        "one of: model, description, gl_account, category, rate, aggregate)",
    ),
    (
        "a key of another model",
        _set(f"{V1}.PICK_ORDER.markup_pct", "5"),
        "acme.yaml: versions[1].charges.PICK_ORDER.markup_pct: not used by model per_unit "
        "(it takes: model, description, gl_account, category, rate, aggregate)",
    ),
    (
        "aggregate on cost_plus",
        _set(f"{V0}.SHIP_LABEL.aggregate", "max"),
        "acme.yaml: versions[0].charges.SHIP_LABEL.aggregate: not allowed for model cost_plus "
        "(it is priced day by day from the summed basis)",
    ),
    (
        "aggregate on flat",
        _set(f"{V1}.ACCOUNT_MGMT.aggregate", "sum"),
        "acme.yaml: versions[1].charges.ACCOUNT_MGMT.aggregate: not allowed for model flat "
        "(a flat fee is one line a month)",
    ),
    (
        "aggregate unknown",
        _set(f"{V1}.PICK_ORDER.aggregate", "avg"),
        'acme.yaml: versions[1].charges.PICK_ORDER.aggregate: unknown aggregate "avg" '
        "(one of: sum, max, last, average)",
    ),
    (
        "model unknown",
        _set(f"{V1}.PICK_ORDER.model", "per_units"),
        'acme.yaml: versions[1].charges.PICK_ORDER.model: unknown model "per_units" '
        "(one of: per_unit, graduated, volume, package, cost_plus, flat)",
    ),
    (
        "model missing",
        _set(f"{V1}.PICK_ORDER.model", _DELETE),
        "acme.yaml: versions[1].charges.PICK_ORDER.model: missing",
    ),
    (
        "gl_account missing",
        _set(f"{V1}.PICK_ORDER.gl_account", _DELETE),
        "acme.yaml: versions[1].charges.PICK_ORDER.gl_account: missing",
    ),
    (
        "gl_account as a number",
        _set(f"{V1}.PICK_ORDER.gl_account", 4030),
        "acme.yaml: versions[1].charges.PICK_ORDER.gl_account: must be a string (quote it: "
        '"4030"), got a number',
    ),
    (
        "category unknown",
        _set(f"{V1}.PICK_ORDER.category", "picking"),
        'acme.yaml: versions[1].charges.PICK_ORDER.category: unknown category "picking" '
        "(one of: handling, storage, shipping, value_added, fees)",
    ),
    (
        "cost_plus without markup",
        _set(f"{V0}.SHIP_LABEL.markup_pct", _DELETE),
        "acme.yaml: versions[0].charges.SHIP_LABEL.markup_pct: missing",
    ),
    (
        "flat without amount",
        _set(f"{V1}.ACCOUNT_MGMT.amount", _DELETE),
        "acme.yaml: versions[1].charges.ACCOUNT_MGMT.amount: missing",
    ),
    (
        "flat amount finer than a cent",
        _set(f"{V1}.ACCOUNT_MGMT.amount", "250.005"),
        "acme.yaml: versions[1].charges.ACCOUNT_MGMT.amount: more than 2 decimal places for "
        "USD: 250.005",
    ),
    (
        "package without package_size",
        _set(f"{V1}.DISPOSAL_UNIT", {"model": "package", "rate": "15", "gl_account": "4060"}),
        "acme.yaml: versions[1].charges.DISPOSAL_UNIT.package_size: missing",
    ),
    (
        "package_size zero",
        _set(
            f"{V1}.DISPOSAL_UNIT",
            {"model": "package", "rate": "15", "package_size": 0, "gl_account": "4060"},
        ),
        "acme.yaml: versions[1].charges.DISPOSAL_UNIT.package_size: must be greater than 0: 0",
    ),
    (
        "graduated without tiers",
        _set(f"{V1}.PICK_ADD_UNIT", {"model": "graduated", "gl_account": "4030"}),
        "acme.yaml: versions[1].charges.PICK_ADD_UNIT.tiers: missing",
    ),
    (
        "empty tiers",
        _set(f"{V1}.PICK_ADD_UNIT", {"model": "volume", "gl_account": "4030", "tiers": []}),
        "acme.yaml: versions[1].charges.PICK_ADD_UNIT.tiers: must be a list of one or more "
        "{up_to, rate} tiers, got a list",
    ),
    (
        "tiers not increasing",
        _set(
            f"{V1}.PICK_ADD_UNIT",
            {
                "model": "graduated",
                "gl_account": "4030",
                "tiers": [
                    {"up_to": 100, "rate": "1"},
                    {"up_to": 100, "rate": "0.9"},
                    {"up_to": None, "rate": "0.8"},
                ],
            },
        ),
        "acme.yaml: versions[1].charges.PICK_ADD_UNIT.tiers[1].up_to: must be greater than the "
        "previous tier's up_to (100): 100",
    ),
    (
        "null up_to before the last tier",
        _set(
            f"{V1}.PICK_ADD_UNIT",
            {
                "model": "graduated",
                "gl_account": "4030",
                "tiers": [{"up_to": None, "rate": "1"}, {"up_to": None, "rate": "0.9"}],
            },
        ),
        "acme.yaml: versions[1].charges.PICK_ADD_UNIT.tiers[0].up_to: null (no upper bound) is "
        "only allowed on the last tier",
    ),
    (
        "last tier bounded",
        _set(
            f"{V1}.PICK_ADD_UNIT",
            {"model": "volume", "gl_account": "4030", "tiers": [{"up_to": 100, "rate": "1"}]},
        ),
        "acme.yaml: versions[1].charges.PICK_ADD_UNIT.tiers[0].up_to: the last tier must have "
        "up_to: null, or quantities above 100 would have no price",
    ),
    (
        "tier without rate",
        _set(
            f"{V1}.PICK_ADD_UNIT",
            {"model": "volume", "gl_account": "4030", "tiers": [{"up_to": None}]},
        ),
        "acme.yaml: versions[1].charges.PICK_ADD_UNIT.tiers[0].rate: missing",
    ),
    (
        "minimum covering a code the version does not price",
        _set(
            "versions.1.minimums",
            [
                {
                    "code": "MIN_F",
                    "covers": ["PICK_ORDER", "SHIP_LABEL"],
                    "amount": "100",
                    "gl_account": "4030",
                }
            ],
        ),
        'acme.yaml: versions[1].minimums[0].covers[1]: "SHIP_LABEL" is not a charge code of '
        "this version",
    ),
    (
        "minimum covers neither a list nor all",
        _set(
            "versions.1.minimums",
            [{"code": "MIN_F", "covers": "everything", "amount": "100", "gl_account": "4030"}],
        ),
        'acme.yaml: versions[1].minimums[0].covers: must be "all" or a list of charge codes of '
        'this version, got "everything"',
    ),
    (
        "minimum code that is also a charge",
        _set(
            "versions.1.minimums",
            [{"code": "PICK_ORDER", "covers": "all", "amount": "100", "gl_account": "4030"}],
        ),
        "acme.yaml: versions[1].minimums[0].code: PICK_ORDER is also a charge code of this version",
    ),
    (
        "two minimums with one code",
        _set(
            "versions.1.minimums",
            [
                {"code": "MIN_F", "covers": "all", "amount": "100", "gl_account": "4030"},
                {"code": "MIN_F", "covers": "all", "amount": "200", "gl_account": "4030"},
            ],
        ),
        "acme.yaml: versions[1].minimums[1].code: duplicate minimum code MIN_F",
    ),
    (
        "minimum without gl_account",
        _set("versions.1.minimums", [{"code": "MIN_F", "covers": "all", "amount": "100"}]),
        "acme.yaml: versions[1].minimums[0].gl_account: missing",
    ),
    (
        "params not a mapping",
        _set("versions.0.params", [1, 2]),
        "acme.yaml: versions[0].params: must be a mapping, got a list",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_names_file_path_and_problem(
    write: Write, base: dict[str, Any], mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    mutate(base)
    assert problems_of(write(base)) == [message]


def test_client_id_pattern(write: Write, base: dict[str, Any]) -> None:
    base["client_id"] = "Acme"
    assert problems_of(write(base, "Acme.yaml")) == [
        'Acme.yaml: client_id: "Acme" does not match ^[a-z0-9][a-z0-9_-]{0,63}$'
    ]


def test_zero_decimal_currency_refuses_fractional_amounts(
    write: Write, base: dict[str, Any]
) -> None:
    base["currency"] = "JPY"
    base["versions"][1]["charges"]["ACCOUNT_MGMT"]["amount"] = "2500.5"
    assert problems_of(write(base)) == [
        "acme.yaml: versions[1].charges.ACCOUNT_MGMT.amount: more than 0 decimal places for "
        "JPY: 2500.5"
    ]
    base["versions"][1]["charges"]["ACCOUNT_MGMT"]["amount"] = "2500.00"  # zeros are not places
    assert load_ratecard(write(base)).minor_units == 0


def test_unquoted_invalid_date_is_reported_at_its_field(write: Write) -> None:
    text = SPEC_EXAMPLE.replace("effective_from: 2026-01-01", "effective_from: 2026-02-30")
    assert problems_of(write(text)) == [
        "acme.yaml: versions[0].effective_from: not a real date: 2026-02-30"
    ]


def test_timestamp_is_not_a_date(write: Write) -> None:
    text = SPEC_EXAMPLE.replace("effective_from: 2026-01-01", "effective_from: 2026-01-01 10:00:00")
    assert problems_of(write(text)) == [
        "acme.yaml: versions[0].effective_from: must be a date (YYYY-MM-DD), not a timestamp: "
        "2026-01-01 10:00:00"
    ]


def test_every_problem_is_reported_at_once(write: Write, base: dict[str, Any]) -> None:
    base["currency"] = "usd"
    base["timezone"] = "Mars/Olympus"
    base["versions"][0]["charges"]["PICK_ORDER"]["rate"] = "2,65"
    base["versions"][1]["charges"]["PICK_ORDER"]["rat"] = "2.75"
    base["versions"][1]["charges"]["ACCOUNT_MGMT"]["amount"] = "-1"
    path = write(base)
    with pytest.raises(RateCardError) as info:
        load_ratecard(path)
    assert info.value.problems == [
        'acme.yaml: currency: not an ISO 4217 currency code: "usd" (codes are upper case)',
        'acme.yaml: timezone: not an IANA time zone: "Mars/Olympus"',
        'acme.yaml: versions[0].charges.PICK_ORDER.rate: not a decimal: "2,65"',
        "acme.yaml: versions[1].charges.PICK_ORDER.rat: unknown key (a typo? expected one of: "
        "model, description, gl_account, category, rate, aggregate)",
        "acme.yaml: versions[1].charges.ACCOUNT_MGMT.amount: must not be negative: -1",
    ]
    assert str(info.value) == "\n".join(info.value.problems)
    assert validate_files([path]) == info.value.problems


def test_duplicate_keys_are_refused(write: Write) -> None:
    text = SPEC_EXAMPLE.replace(
        '      SHIP_LABEL:   {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}\n',
        '      SHIP_LABEL:   {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}\n'
        '      SHIP_LABEL:   {model: cost_plus, markup_pct: "0", gl_account: "4050"}\n',
    )
    assert problems_of(write(text)) == [
        "acme.yaml: line 16: duplicate key SHIP_LABEL (each key may appear once in a mapping)"
    ]


@pytest.mark.parametrize(
    "payload",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        "!!python/object:builtins.object {{}}",
        '!!python/name:os.system ""',
    ],
)
def test_unsafe_yaml_tags_are_refused_and_never_run(
    write: Write, tmp_path: Path, payload: str
) -> None:
    marker = tmp_path / "pwned"
    text = SPEC_EXAMPLE + "evil: " + payload.format(marker=marker) + "\n"
    (problem,) = problems_of(write(text))
    assert problem.startswith("acme.yaml: not valid YAML (line 20")
    assert "only plain YAML data (no tags) is allowed" in problem
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "",
            "acme.yaml: must be a mapping with client_id, name, currency, timezone, versions, "
            "got null",
        ),
        (
            "- 1\n- 2\n",
            "acme.yaml: must be a mapping with client_id, name, currency, timezone, "
            "versions, got a list",
        ),
        (
            "client_id: [unclosed\n",
            "acme.yaml: not valid YAML (line 2, column 1): expected ',' "
            "or ']', but got '<stream end>'",
        ),
    ],
)
def test_not_a_card_at_all(write: Write, text: str, message: str) -> None:
    assert problems_of(write(text)) == [message]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_bytes(b"name: Caf\xe9\n")
    assert problems_of(path) == ["acme.yaml: not UTF-8 text (byte 9)"]


def test_missing_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "acme.yaml") == [
        "acme.yaml: cannot read: No such file or directory"
    ]


def test_a_bad_card_does_not_block_the_others(
    write: Write, base: dict[str, Any], tmp_path: Path
) -> None:
    write(base)
    globex = dict(base, client_id="globex", currency="EURO")
    write(globex, "globex.yaml")
    initech = dict(base, client_id="initech")
    write(initech, "initech.yml")
    (tmp_path / "notes.txt").write_text("not a card")
    (tmp_path / ".acme.yaml").write_text("editor backup: ignored")
    good, bad = load_ratecards(tmp_path)
    assert sorted(good) == ["acme", "initech"]
    assert list(bad) == ["globex.yaml"]
    assert bad["globex.yaml"].problems == [
        'globex.yaml: currency: not an ISO 4217 currency code: "EURO"'
    ]


def test_two_files_for_one_client_are_both_refused(
    write: Write, base: dict[str, Any], tmp_path: Path
) -> None:
    write(base, "acme.yaml")
    write(base, "acme.yml")
    good, bad = load_ratecards(tmp_path)
    assert good == {}
    assert bad["acme.yaml"].problems == ["acme.yaml: client acme is also defined by acme.yml"]
    assert bad["acme.yml"].problems == ["acme.yml: client acme is also defined by acme.yaml"]
    assert validate_files([tmp_path / "acme.yaml", tmp_path / "acme.yml"]) == [
        "acme.yml: client acme is also defined by acme.yaml"
    ]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RateCardError, match="rate cards directory not found"):
        load_ratecards(tmp_path / "nope")


def test_currency_table() -> None:
    assert {
        c: MINOR_UNITS[c] for c in ("USD", "EUR", "GBP", "CAD", "JPY", "KRW", "KWD", "BHD")
    } == {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "CAD": 2,
        "JPY": 0,
        "KRW": 0,
        "KWD": 3,
        "BHD": 3,
    }
    assert MINOR_UNITS["CLF"] == 4
    assert MINOR_UNITS["TND"] == 3 and MINOR_UNITS["ISK"] == 0 and MINOR_UNITS["VND"] == 0
    assert "XAU" not in MINOR_UNITS and "XXX" not in MINOR_UNITS
    assert len(MINOR_UNITS) > 150
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)
