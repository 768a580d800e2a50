"""The activity behind each invoice line, made from the charges summed per day and code
(charge_summaries.py), equals the line-by-line definition: the line's code's charges on the
line's days, each event once; and pricing from the summaries equals pricing the lines.

An event has one activity date and one type (SPEC §4.1: one activity row per event), which
is what lets a line's events be summed over its days; the random charges keep to that."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from billing_pipeline.charge_summaries import (
    EXAMPLES,
    activity_summaries,
    codes_from_json,
    codes_to_json,
    summarize,
    totals_of,
)
from billing_pipeline.pricing import price_month, price_totals
from billing_pipeline.ratecards import load_ratecard
from billing_pipeline.rules import CHARGES_SCHEMA

MARCH = date(2026, 3, 1)
# A per-day code whose rate changes mid-month (two lines, interleaved days), a graduated
# code (several tier lines over the same days), a cost_plus code, a flat fee and a minimum.
CARD = """\
client_id: acme
name: Acme
currency: USD
timezone: UTC
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {model: per_unit, rate: "2.65", gl_account: "4030"}
      PICK_ADD_UNIT: {model: graduated, gl_account: "4030",
                      tiers: [{up_to: 10, rate: "0.65"}, {up_to: 30, rate: "0.60"},
                              {up_to: null, rate: "0.55"}]}
      SHIP_LABEL: {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}
      ACCOUNT_MGMT: {model: flat, amount: "250.00", gl_account: "4090"}
    minimums:
      - {code: MIN_PICK, covers: [PICK_ORDER], amount: "100000.00", gl_account: "4030"}
  - effective_from: 2026-03-10
    charges:
      PICK_ORDER: {model: per_unit, rate: "2.75", gl_account: "4030"}
      PICK_ADD_UNIT: {model: graduated, gl_account: "4030",
                      tiers: [{up_to: 10, rate: "0.65"}, {up_to: 30, rate: "0.60"},
                              {up_to: null, rate: "0.55"}]}
      SHIP_LABEL: {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}
      ACCOUNT_MGMT: {model: flat, amount: "250.00", gl_account: "4090"}
  - effective_from: 2026-03-20
    charges:
      PICK_ORDER: {model: per_unit, rate: "2.65", gl_account: "4030"}
      PICK_ADD_UNIT: {model: graduated, gl_account: "4030",
                      tiers: [{up_to: 10, rate: "0.65"}, {up_to: 30, rate: "0.60"},
                              {up_to: null, rate: "0.55"}]}
      SHIP_LABEL: {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}
      ACCOUNT_MGMT: {model: flat, amount: "250.00", gl_account: "4090"}
"""
TYPES = {"PICK_ORDER": "order.picked", "PICK_ADD_UNIT": "order.picked", "SHIP_LABEL": "ship"}


def reference(priced, charges: pl.DataFrame) -> dict:
    """The definition, one line at a time (what invoicing did before)."""
    out = {}
    for line in priced.lines:
        if not line.days:
            continue
        rows = charges.filter(
            (pl.col("charge_code") == line.charge_code)
            & pl.col("activity_date").is_in(list(line.days))
        )
        events = rows.unique("event_id").sort("event_id")
        types = dict(events["event_type"].value_counts().sort("event_type").iter_rows())
        out[line.line_no] = (
            events.height,
            list(types.items()),
            min(line.days),
            max(line.days),
            events["event_id"].head(EXAMPLES).to_list(),
        )
    return out


def charges_frame(seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(400):
        number = rng.randrange(250)
        event_id = f"e{number:04d}"  # many events make several charges
        code = rng.choice(list(TYPES))
        # each event's own day and type, whatever charge it makes
        kind = ("order.picked", "ship", "order.adjusted")[number % 3]
        day = MARCH + timedelta(days=number * 7 % 31)
        rows.append(
            {
                "event_id": event_id,
                "activity_date": day,
                "event_type": kind,
                "charge_code": code,
                "quantity": Decimal(rng.randrange(1, 4)),
                "basis": Decimal("7.42") if code == "SHIP_LABEL" else None,
            }
        )
    frame = pl.DataFrame(rows, schema={k: CHARGES_SCHEMA[k] for k in rows[0]})
    return frame.with_columns(
        *(
            pl.lit(None, dtype=CHARGES_SCHEMA[k]).alias(k)
            for k in CHARGES_SCHEMA
            if k not in rows[0]
        )
    ).select(list(CHARGES_SCHEMA))


def test_one_pass_equals_the_line_by_line_definition(tmp_path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(CARD)
    card = load_ratecard(path)
    for seed in range(5):
        charges = charges_frame(seed)
        priced = price_month(card, MARCH, charges)
        # as the charges asset keeps them: JSON per day, read back
        summaries = {
            day: codes_from_json(codes_to_json(codes))
            for day, codes in summarize(charges, MARCH).items()
        }
        assert price_totals(card, MARCH, totals_of(summaries)) == priced
        dated = [line for line in priced.lines if line.days]
        # the case that matters: a code on several lines (rates by period, tiers)
        assert len({line.charge_code for line in dated}) < len(dated)
        got = {
            n: (
                s.events,
                list(s.event_types.items()),
                s.first_date,
                s.last_date,
                list(s.example_event_ids),
            )
            for n, s in activity_summaries(priced, summaries).items()
        }
        assert got == reference(priced, charges)


def test_no_dated_lines_no_summaries(tmp_path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(CARD)
    card = load_ratecard(path)
    empty = pl.DataFrame(schema=CHARGES_SCHEMA)
    assert summarize(empty, MARCH) == {}
    assert activity_summaries(price_month(card, MARCH, empty), {}) == {}


NOT_HERE = ("memo", "rules_file", "rules_sha256", "ratecard_version")  # not needed below


def test_a_codes_events_are_counted_once_across_types_with_the_smallest_ids() -> None:
    # By hand: e01 makes two MAT_A lines (one event), the others one each; types alternate.
    rows = [("e01", "order.packed"), ("e01", "order.packed")]
    rows += [(f"e{n:02d}", ("order.packed", "kit.assembled")[n % 2 == 0]) for n in range(2, 8)]
    charges = pl.DataFrame(
        {
            "event_id": [e for e, _ in reversed(rows)],  # input order does not matter
            "activity_date": [MARCH] * len(rows),
            "event_type": [t for _, t in reversed(rows)],
            "charge_code": ["MAT_A"] * len(rows),
            "quantity": [Decimal(1)] * len(rows),
            "basis": [None] * len(rows),
        },
        schema={k: CHARGES_SCHEMA[k] for k in CHARGES_SCHEMA if k not in NOT_HERE},
    )
    (summary,) = summarize(charges, MARCH)[MARCH].values()
    # e01, e03, e05, e07 are order.packed; e02, e04, e06 kit.assembled
    assert summary.events == 7
    assert summary.event_types == {"kit.assembled": 3, "order.packed": 4}
    assert list(summary.event_types) == ["kit.assembled", "order.packed"]
    assert summary.examples == ["e01", "e02", "e03", "e04", "e05"]
    assert summary.total.rows == 8 and summary.total.quantity == 8
