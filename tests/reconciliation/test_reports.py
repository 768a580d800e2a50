"""The month's reports over the builders.py world; expected values derived in its docstring."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.ingest.activity import read_activity
from billing_pipeline.months import month_days
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.reconciliation import (
    REPORT_FILES,
    build_month_report,
    parse_tolerance,
    read_ledger,
    render_files,
    write_month_report,
)
from billing_pipeline.rules import RuleEngine
from tests.reconciliation.builders import LEDGER, MONTH, World, make_world, write_ledger


def report(world: World, finance: Path, tolerance: str = "0.00"):
    cards, _ = load_ratecards(world.ratecards)
    kinds = RuleEngine(world.lua).rule_kinds
    return build_month_report(world.store, finance, MONTH, cards, kinds, parse_tolerance(tolerance))


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))[1:]


def test_every_reconciliation_status_at_zero_tolerance(world: World, finance: Path) -> None:
    write_ledger(finance, LEDGER)
    files = render_files(report(world, finance))
    assert rows(files["reconciliation.csv"]) == [
        # blocked (rule error + unpriced): no invoice, so billing has nothing; 0 - 8.00
        ["2026-03", "blockco", "4030", "", "8.00", "-8.00", "missing_in_billing"],
        # otherco billed 1 pick x 0.50 = 0.50, never booked
        ["2026-03", "otherco", "4030", "0.50", "", "0.50", "missing_in_ledger"],
        ["2026-03", "testco", "4030", "51.10", "51.10", "0.00", "match"],
        # 29.26 - 29.27 = -0.01: beyond a tolerance of 0.00
        ["2026-03", "testco", "4050", "29.26", "29.27", "-0.01", "mismatch"],
        ["2026-03", "testco", "4090", "100.00", "99.00", "1.00", "mismatch"],
        ["2026-03", "testco", "4990", "", "12.00", "-12.00", "missing_in_billing"],
    ]


def test_difference_equal_to_the_tolerance_is_a_match(world: World, finance: Path) -> None:
    write_ledger(finance, LEDGER)
    result = report(world, finance, tolerance="0.01")
    status = {(r.client_id, r.gl_account): r.status for r in result.reconciliation}
    assert status[("testco", "4050")] == "match"  # |29.26 - 29.27| = 0.01 <= 0.01
    assert status[("testco", "4090")] == "mismatch"  # |1.00| > 0.01
    assert [r.status for r in result.problems] == [
        "missing_in_billing",
        "missing_in_ledger",
        "mismatch",
        "missing_in_billing",
    ]


def test_ledger_rows_are_summed_and_other_periods_ignored(tmp_path: Path) -> None:
    (tmp_path / f"gl_revenue_{MONTH}.csv").write_text(
        "period,client_id,gl_account,amount\n"
        "2026-03,testco,4030,50.00\n"
        "2026-03,testco,4030,1.10\n"
        "2026-02,testco,4030,9.99\n"
    )
    ledger = read_ledger(tmp_path, MONTH)
    assert ledger.status == "present"
    assert ledger.amounts == {("testco", "4030"): Decimal("51.10")}  # 50.00 + 1.10
    assert ledger.other_periods == 1


def test_missing_ledger_still_writes_every_report(world: World, tmp_path: Path) -> None:
    result = report(world, tmp_path / "nowhere")
    assert result.ledger.status == "missing"
    # only billed rows remain, all missing_in_ledger: otherco 0.50; testco 51.10, 29.26, 100.00
    assert [(r.client_id, r.gl_account, r.billed, r.status) for r in result.reconciliation] == [
        ("otherco", "4030", Decimal("0.50"), "missing_in_ledger"),
        ("testco", "4030", Decimal("51.10"), "missing_in_ledger"),
        ("testco", "4050", Decimal("29.26"), "missing_in_ledger"),
        ("testco", "4090", Decimal("100.00"), "missing_in_ledger"),
    ]
    folder = write_month_report(world.store, result)
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["ledger"]["status"] == "missing"
    assert "gl_revenue_2026-03.csv" in summary["ledger"]["detail"]


def test_malformed_ledger_is_reported_not_raised(world: World, finance: Path) -> None:
    (finance / f"gl_revenue_{MONTH}.csv").write_text(
        'period,client_id,gl_account,amount\n2026-03,testco,4030,"51,10"\n'
    )
    result = report(world, finance)
    assert result.ledger.status == "unreadable"
    assert "line 2" in result.ledger.detail
    assert {r.status for r in result.reconciliation} == {"missing_in_ledger"}


def test_bad_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="reconciliation_tolerance"):
        parse_tolerance("-0.01")
    with pytest.raises(ValueError, match="reconciliation_tolerance"):
        parse_tolerance("one cent")


def test_coverage_statuses(world: World, finance: Path) -> None:
    files = render_files(report(world, finance))
    assert rows(files["coverage.csv"]) == [
        # block.lua: picks charge (PICK_ORDER, MYSTERY); the shipment's handler raises
        ["2026-03", "blockco", "order.picked", "1", "1", "billed"],
        ["2026-03", "blockco", "order.shipped", "1", "0", "billed"],
        # charges never computed: a handler exists, nothing charged
        ["2026-03", "lateco", "order.picked", "1", "0", "billed"],
        # custom.lua: false / handler / no key for a catalog type
        ["2026-03", "otherco", "inventory.adjusted", "1", "0", "not_billable"],
        ["2026-03", "otherco", "order.picked", "1", "1", "billed"],
        ["2026-03", "otherco", "return.processed", "1", "0", "unhandled"],
        # default.lua; the cancel is before pick (no charge); E-P6 is February's
        ["2026-03", "testco", "order.cancelled", "1", "0", "billed"],
        ["2026-03", "testco", "order.packed", "1", "1", "billed"],
        ["2026-03", "testco", "order.picked", "4", "4", "billed"],
        ["2026-03", "testco", "order.shipped", "4", "4", "billed"],
        ["2026-03", "testco", "pallet.wrapped", "1", "0", "unknown_type"],
        ["2026-03", "testco", "putaway.completed", "1", "0", "not_billable"],
    ]


def test_leakage_cases(world: World, finance: Path) -> None:
    files = render_files(report(world, finance))
    assert rows(files["leakage.csv"]) == [
        # B-S1's rule error is not leakage (it is in the rule errors summary)
        ["2026-03", "blockco", "no_invoice", "", "2", "", "",
         "blocked: 1 rule errors; unpriced charges: MYSTERY x1"],
        ["2026-03", "lateco", "picked_not_shipped", "order.picked", "1", "L-P1", "L1",
         "picked, and neither shipped nor cancelled by the month's end"],
        ["2026-03", "lateco", "no_invoice", "", "1", "", "", "charges not materialized"],
        ["2026-03", "otherco", "picked_not_shipped", "order.picked", "1", "O-P1", "Q1",
         "picked, and neither shipped nor cancelled by the month's end"],
        ["2026-03", "testco", "billable_not_charged", "order.cancelled", "1", "E-C3", "",
         "a handler ran and emitted no charge"],
        # O4 has no pick; O6's pick is in February, so it is not listed
        ["2026-03", "testco", "shipped_without_pick", "order.shipped", "1", "E-S4", "O4",
         "no order.picked for the order this month or the previous one"],
        # O3 was cancelled, O1 and O2 shipped: only O5 is open
        ["2026-03", "testco", "picked_not_shipped", "order.picked", "1", "E-P5", "O5",
         "picked, and neither shipped nor cancelled by the month's end"],
    ]  # fmt: skip


def test_activity_files_without_order_id_give_the_same_reports(tmp_path: Path) -> None:
    # Activity files written before the order_id column existed: the reports take the
    # order ids from the payloads of those files (here every other file, so old and new
    # files are read together) and come out byte-identical.
    old = make_world(tmp_path / "old")
    finance = tmp_path / "finance"
    finance.mkdir()
    expected = render_files(report(make_world(tmp_path / "new"), finance))
    files = sorted((old.data / "activity").rglob("*.parquet"))
    assert len(files) > 2
    for path in files[::2]:
        pl.read_parquet(path).drop("order_id").write_parquet(path)
    picked = read_activity(old.store, "testco", month_days(MONTH), ["event_type", "order_id"])
    assert picked.filter(pl.col("event_type") == "order.picked")["order_id"].null_count() == 0
    assert render_files(report(old, finance)) == expected


def test_quarantine_and_rule_error_summaries(world: World, finance: Path) -> None:
    files = render_files(report(world, finance))
    # a.ndjson:7 by activity_date, a.ndjson:9 by occurred_at, b.ndjson:1 by its file's first
    # UTC date (2026-03-10); a.ndjson:11 is April's
    assert rows(files["quarantine_summary.csv"]) == [
        ["2026-03", "", "invalid_json", "1", "b.ndjson:1"],
        ["2026-03", "ghost", "unknown_client", "1", "a.ndjson:9"],
        ["2026-03", "testco", "invalid_field", "1", "a.ndjson:7"],
    ]
    assert rows(files["rule_errors_summary.csv"]) == [
        ["2026-03", "blockco", "block.lua", "3", "order.shipped", "1", "B-S1",
         "rules/block.lua:3: no label for B-S1"],
    ]  # fmt: skip


def test_files_are_byte_identical_for_the_same_inputs(world: World, finance: Path) -> None:
    write_ledger(finance, LEDGER)
    folder = write_month_report(world.store, report(world, finance))
    first = {name: (folder / name).read_bytes() for name in REPORT_FILES}
    write_month_report(world.store, report(world, finance))
    assert {name: (folder / name).read_bytes() for name in REPORT_FILES} == first
    assert json.loads(first["summary.json"])["reconciliation"] == {
        "match": 1,
        "mismatch": 2,
        "missing_in_billing": 2,
        "missing_in_ledger": 1,
    }
