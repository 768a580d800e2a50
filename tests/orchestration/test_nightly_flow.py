"""End to end without the daemon: three nights, a late file, a rule fix with its diff and
backfill, a month close and the adjustments on the next month -- the schedule and sensors
evaluated against a real instance, their runs launched as the daemon would."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import polars as pl
from dagster import AssetKey, DagsterInstance, build_schedule_context

from billing_pipeline.closing import main_close
from billing_pipeline.defs.orchestration.jobs import NIGHT_TAG, RANGE_END, RANGE_START
from billing_pipeline.explain import main_explain
from billing_pipeline.rules.fixtures import main_rules_test
from billing_pipeline.rules_diff import main_rules_diff
from billing_pipeline.runner import run_billing
from tests.orchestration.conftest import (
    BETA_FIXED,
    World,
    defs,
    drain,
    launch,
    pick,
    ship,
    start_chain,
    tick,
)


def nightly(instance: DagsterInstance, world: World, night: date):
    """The 02:00 tick of the night after ``night``, its run, then the sensor chain."""
    schedule = defs.resolve_schedule_def("billing_nightly")
    at = datetime.combine(night + timedelta(days=1), time(2, 0), tzinfo=UTC)
    data = schedule.evaluate_tick(build_schedule_context(instance, scheduled_execution_time=at))
    [request] = data.run_requests
    assert request.tags[NIGHT_TAG] == night.isoformat()
    assert launch(instance, request, schedule.job_name).success
    return drain(instance, world)


def lines(world: World, month: str, client: str) -> list[dict[str, str]]:
    text = (world.invoice(month, client) / "invoice_lines.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def document(world: World, month: str, client: str) -> dict:
    return json.loads((world.invoice(month, client) / "invoice.json").read_text())


def amounts(world: World, month: str, client: str) -> dict[str, str]:
    return {row["charge_code"]: row["amount"] for row in lines(world, month, client)}


def test_three_nights_late_file_rule_fix_close_and_adjustments(
    instance: DagsterInstance, world: World, capsys
) -> None:
    # The new rate cards register their clients (and ask for a landing run: nothing yet).
    data = tick("billing_clients_sensor", instance, world)
    assert sorted(instance.get_dynamic_partitions("client")) == ["alpha", "beta"]
    assert len(data.run_requests) == 1
    start_chain(instance, world)

    # Three nights. Files land in the evening; the 02:00 run bills them.
    world.land(
        "2026-10-30/wms.ndjson",
        [
            pick("A1", "alpha", "2026-10-30T10:00:00Z", 3),
            pick("B1", "beta", "2026-10-30T11:00:00Z", 1),
        ],
    )
    launched = nightly(instance, world, date(2026, 10, 30))
    stages = [name for name, _ in launched]
    assert stages == [
        "billing_activity_sensor",
        "billing_charges_sensor",
        "billing_invoices_sensor",
    ]  # no ledger for October yet: no reconciliation
    activity_tags, charges_tags = launched[0][1], launched[1][1]
    # UTC clients: the touched dates are the day and its neighbours; one range, one run.
    assert (activity_tags[RANGE_START], activity_tags[RANGE_END]) == ("2026-10-29", "2026-10-31")
    # One run for all clients: a month x client range, never one run per client.
    assert (charges_tags[RANGE_START], charges_tags[RANGE_END]) == (
        "alpha|2026-10-01",
        "beta|2026-10-01",
    )
    world.land(
        "2026-10-31/wms.ndjson",
        [
            pick("A2", "alpha", "2026-10-31T09:00:00Z", 1),
            ship("A3", "alpha", "2026-10-31T15:00:00Z", "7.00"),
            pick("B2", "beta", "2026-10-31T16:00:00Z", 2),
        ],
    )
    nightly(instance, world, date(2026, 10, 31))
    (world.root / "finance" / "gl_revenue_2026-10.csv").write_text(
        "period,client_id,gl_account,amount\n2026-10,alpha,4030,20.00\n"
    )
    world.land(
        "2026-11-01/wms.ndjson",
        [
            pick("A4", "alpha", "2026-11-01T08:00:00Z", 5),
            ship("B3", "beta", "2026-11-01T09:00:00Z", "5.00"),
        ],
    )
    launched = nightly(instance, world, date(2026, 11, 1))
    # The range crosses the month end: two months, all clients, in one charges run.
    charges_tags = [t for n, t in launched if n == "billing_charges_sensor"]
    assert [(t[RANGE_START], t[RANGE_END]) for t in charges_tags] == [
        ("alpha|2026-10-01", "beta|2026-11-01")
    ]
    # The ledger arrived: October is reconciled.
    assert (world.data / "reconciliation" / "2026-10" / "reconciliation.csv").exists()

    # October by hand. alpha: A1 (3 units), A2 (1): PICK_ORDER 2 x 2.00 = 4.00,
    # PICK_ADD_UNIT 2 x 0.50 = 1.00, SHIP_LABEL 7.00 x 1.10 = 7.70, ACCOUNT_MGMT 100.00,
    # MIN_FULFILLMENT 20.00 - 5.00 = 15.00; total 127.70.
    assert amounts(world, "2026-10", "alpha") == {
        "ACCOUNT_MGMT": "100.00",
        "PICK_ADD_UNIT": "1.00",
        "PICK_ORDER": "4.00",
        "SHIP_LABEL": "7.70",
        "MIN_FULFILLMENT": "15.00",
    }
    assert document(world, "2026-10", "alpha")["total"] == "127.70"
    # beta (the buggy rule charges no additional units): B1, B2: PICK_ORDER 4.00 + 100.00.
    assert document(world, "2026-10", "beta")["total"] == "104.00"
    # November: alpha A4 (5 units): 2.00 + 2.00 + 100.00 + (20.00 - 4.00) = 120.00;
    # beta B3 label 5.00 x 1.10 = 5.50 + 100.00 = 105.50.
    assert document(world, "2026-11", "alpha")["total"] == "120.00"
    assert document(world, "2026-11", "beta")["total"] == "105.50"

    # Month close of October.
    assert main_close(["--month", "2026-10"]) == 0
    for client in ("alpha", "beta"):
        assert document(world, "2026-10", client)["status"] == "final"
        assert b"final" in (world.invoice("2026-10", client) / "invoice.html").read_bytes()
    closed = {c: world.invoice_bytes("2026-10", c) for c in ("alpha", "beta")}
    assert main_close(["--month", "2026-10"]) == 0  # again: nothing changes
    # The month the real clock is in has not ended (a fixed month would stop being in the
    # future one day: this line asserted November 2026 until December came).
    assert main_close(["--month", date.today().strftime("%Y-%m")]) == 2

    # A late file with October events arrives in the afternoon: the landing sensor sees it.
    world.land(
        "late/2026-10-15.ndjson",
        [
            pick("A5", "alpha", "2026-10-15T12:00:00Z", 4),
            ship("A6", "alpha", "2026-10-15T13:00:00Z", "3.00"),
        ],
    )
    data = tick("billing_landing_sensor", instance, world)
    [request] = data.run_requests
    assert launch(instance, request, "billing_landing_job").success
    launched = drain(instance, world)
    activity = [
        (t[RANGE_START], t[RANGE_END]) for n, t in launched if n == "billing_activity_sensor"
    ]
    assert activity == [("2026-10-14", "2026-10-16")]  # only the late dates
    invoice_runs = [
        (t[RANGE_START], t[RANGE_END]) for n, t in launched if n == "billing_invoices_sensor"
    ]
    # October's invoices (kept) and November's, which carries the adjustments.
    assert invoice_runs == [("alpha|2026-10-01", "beta|2026-11-01")]
    assert {c: world.invoice_bytes("2026-10", c) for c in ("alpha", "beta")} == closed
    assert "2026-10-15" in instance.get_materialized_partitions(AssetKey("activity"))

    # alpha's October is now A1..A6 -- PICK_ORDER 3 x 2.00 = 6.00 (billed 4.00: +2.00),
    # PICK_ADD_UNIT 5 x 0.50 = 2.50 (billed 1.00: +1.50), SHIP_LABEL 10.00 x 1.10 = 11.00
    # (billed 7.70: +3.30), MIN_FULFILLMENT 20.00 - 8.50 = 11.50 (billed 15.00: -3.50).
    november = lines(world, "2026-11", "alpha")
    adjustments = [r for r in november if r["charge_code"].startswith("ADJ_")]
    assert [(r["charge_code"], r["gl_account"], r["amount"]) for r in adjustments] == [
        ("ADJ_MIN_FULFILLMENT", "4030", "-3.50"),
        ("ADJ_PICK_ADD_UNIT", "4030", "1.50"),
        ("ADJ_PICK_ORDER", "4030", "2.00"),
        ("ADJ_SHIP_LABEL", "4050", "3.30"),
    ]
    for row in adjustments:
        assert row["description"].startswith(
            f"Adjustment to INV-ALPHA-202610 {row['charge_code'][4:]}"
        )
        assert row["quantity"] == "1" and row["unit_rate"] == row["amount"]
    csv_text = (world.invoice("2026-11", "alpha") / "invoice_lines.csv").read_text()
    assert next(csv.reader(io.StringIO(csv_text))) == [
        "invoice_id", "client_id", "period", "line_no", "charge_code", "description",
        "gl_account", "quantity", "unit_rate", "basis_amount", "amount", "currency",
    ]  # fmt: skip
    doc = document(world, "2026-11", "alpha")
    assert doc["status"] == "draft"
    assert [line["adjusts"] for line in doc["lines"] if line["adjusts"]] == [
        "INV-ALPHA-202610:MIN_FULFILLMENT",
        "INV-ALPHA-202610:PICK_ADD_UNIT",
        "INV-ALPHA-202610:PICK_ORDER",
        "INV-ALPHA-202610:SHIP_LABEL",
    ]
    # 120.00 + (-3.50 + 1.50 + 2.00 + 3.30) = 123.30
    assert doc["total"] == "123.30"
    assert sum(Decimal(r["amount"]) for r in november) == Decimal("123.30")
    # billing explain sends an adjustment line to the invoice it corrects.
    capsys.readouterr()
    line_no = next(r["line_no"] for r in november if r["charge_code"] == "ADJ_PICK_ORDER")
    assert main_explain(["--client", "alpha", "--month", "2026-11", "--line", line_no]) == 0
    explained = capsys.readouterr().out
    assert "finalized invoice INV-ALPHA-202610, charge PICK_ORDER" in explained
    assert "--month 2026-10" in explained
    html = (world.invoice("2026-11", "alpha") / "invoice.html").read_text()
    assert "Adjustments to earlier invoices" in html and "INV-ALPHA-202610:PICK_ORDER" in html

    # Rule fix for beta: edit, test, diff, backfill.
    assert main_rules_test(["beta"]) == 1  # the fixture catches the bug
    (world.root / "lua" / "rules" / "beta.lua").write_text(BETA_FIXED)
    assert main_rules_test(["beta"]) == 0
    capsys.readouterr()
    assert main_rules_diff(["--client", "beta", "--month", "2026-10"]) == 1
    diff = capsys.readouterr().out
    assert "PICK_ADD_UNIT" in diff and "the invoice is final" in diff
    report = run_billing(date(2026, 10, 1), date(2026, 10, 31), ["beta"], instance, lambda _: None)
    assert all(ok for _, _, ok, _ in report.runs)
    launched = drain(instance, world)
    # billing run bills October itself; the sensors add only November's adjustment.
    assert [(n, t[RANGE_START], t[RANGE_END]) for n, t in launched] == [
        ("billing_invoices_sensor", "beta|2026-11-01", "beta|2026-11-01")
    ]
    assert {c: world.invoice_bytes("2026-10", c) for c in ("alpha", "beta")} == closed
    # beta's October with the fix: PICK_ADD_UNIT (B1: 0, B2: 1) 1 x 0.50 = 0.50, billed 0.
    beta_nov = lines(world, "2026-11", "beta")
    assert [
        (r["charge_code"], r["amount"]) for r in beta_nov if r["charge_code"].startswith("ADJ_")
    ] == [("ADJ_PICK_ADD_UNIT", "0.50")]
    assert document(world, "2026-11", "beta")["total"] == "106.00"  # 105.50 + 0.50
    charged = pl.read_parquet(world.data / "charges" / "month=2026-10" / "client_id=beta")
    assert sorted(charged["charge_code"]) == ["PICK_ADD_UNIT", "PICK_ORDER", "PICK_ORDER"]
