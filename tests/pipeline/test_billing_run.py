"""``billing run`` end to end through Dagster, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal

import polars as pl
from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus

from billing_pipeline.runner import run_billing
from tests.pipeline.conftest import DAYS, START, BillingEnv

# One day either side: every activity date the generated events can fall on in the
# clients' time zones, so the run bills exactly what the ledger booked.
FIRST, LAST = START - timedelta(days=1), START + timedelta(days=DAYS)
END = START + timedelta(days=DAYS - 1)


def _latest_check(instance: DagsterInstance, asset: str, check: str) -> str:
    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(asset), check), limit=1
    )
    assert records, f"no evaluation of {asset}.{check} recorded"
    return records[0].status.value


def test_billing_run_bills_a_month_end_through_dagster(
    billing_env: BillingEnv, instance: DagsterInstance
) -> None:
    report = run_billing(FIRST, LAST, instance=instance, progress=lambda _: None)

    # Every run is recorded in the instance's storage, and succeeded.
    assert len(report.runs) == 4
    for name, run_id, ok, _ in report.runs:
        assert ok, name
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    # Check results are stored too.
    assert _latest_check(instance, "landing_files", "conservation") == "SUCCEEDED"
    assert _latest_check(instance, "charges", "no_rule_errors") == "SUCCEEDED"
    assert _latest_check(instance, "charges", "no_unpriced_charges") == "SUCCEEDED"
    # Each activity date asked for is a materialized partition.
    dates = {(START + timedelta(days=i)).isoformat() for i in range(DAYS)}
    assert dates <= instance.get_materialized_partitions(AssetKey("activity"))

    # Every client-month with events has a draft invoice whose total is the sum of its lines.
    assert {cm.month for cm in report.client_months} == {"2026-10", "2026-11"}
    for cm in report.client_months:
        assert not cm.problem
        folder = billing_env.data / "invoices" / cm.month / cm.client_id
        if cm.events == 0:
            continue
        document = json.loads((folder / "invoice.json").read_text())
        assert document["status"] == "draft"
        assert document["invoice_id"] == f"INV-{cm.client_id.upper()}-{cm.month.replace('-', '')}"
        lines = pl.read_csv(folder / "invoice_lines.csv", infer_schema=False)
        assert Decimal(document["total"]) == sum(Decimal(a) for a in lines["amount"])
        assert all(re.fullmatch(r"-?\d+\.\d{2}", a) for a in lines["amount"])

    # Reconciliation finds exactly the differences planted in the ledgers.
    for month, planted in billing_env.planted.items():
        rows = pl.read_csv(
            billing_env.data / "reconciliation" / month / "reconciliation.csv", infer_schema=False
        )
        off = {
            (r["client_id"], r["gl_account"]): r["status"]
            for r in rows.iter_rows(named=True)
            if r["status"] != "match"
        }
        expected = {}
        if planted.mismatch:
            expected[planted.mismatch] = "mismatch"
        if planted.missing:
            expected[planted.missing] = "missing_in_ledger"
        if planted.extra:
            expected[planted.extra] = "missing_in_billing"
        assert off == expected, month
    assert _latest_check(instance, "reconciliation", "ledger_matches") == "FAILED"
    assert report.has_problems  # SPEC §10: a reconciliation mismatch is exit status 1

    # The charges of a client-month come from exactly the activity of its days.
    for cm in report.client_months:
        activity = list(
            (billing_env.data / "activity").glob(
                f"activity_date={cm.month}-*/client_id={cm.client_id}/*"
            )
        )
        events = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in activity)
        assert cm.events == events


def test_rerunning_the_same_night_changes_nothing(
    billing_env: BillingEnv, instance: DagsterInstance
) -> None:
    run_billing(START, END, instance=instance, progress=lambda _: None)
    invoices = sorted((billing_env.data / "invoices").rglob("*.*"))
    before = {p: p.read_bytes() for p in invoices}
    run_billing(START, END, instance=instance, progress=lambda _: None)
    assert sorted((billing_env.data / "invoices").rglob("*.*")) == invoices
    assert {p: p.read_bytes() for p in invoices} == before


BROKEN_RULES = """
local rules = require("rules.default")
local broken = {}
for k, v in next, rules do broken[k] = v end
broken["order.picked"] = function(e, charge, ctx)
  error("picker table missing")
end
return broken
"""


def test_a_rule_error_blocks_only_that_clients_invoice(
    billing_env: BillingEnv, instance: DagsterInstance
) -> None:
    cards = sorted((billing_env.root / "ratecards").glob("*.yaml"))
    victim = cards[0]
    (billing_env.root / "lua" / "rules" / "broken.lua").write_text(BROKEN_RULES)
    text = victim.read_text()
    text = re.sub(r"^rules: .*\n", "", text, flags=re.M) + "rules: broken.lua\n"
    victim.write_text(text)

    report = run_billing(START, END, instance=instance, progress=lambda _: None)

    assert report.has_problems
    assert _latest_check(instance, "charges", "no_rule_errors") == "FAILED"
    by_client = {}
    for cm in report.client_months:
        by_client.setdefault(cm.client_id, []).append(cm)
    for cm in by_client[victim.stem]:
        if cm.events:
            assert cm.rule_errors > 0
            assert cm.invoice == "none"
            assert not (billing_env.data / "invoices" / cm.month / cm.client_id).exists()
            errors = pl.read_parquet(
                billing_env.data / "rule_errors" / f"month={cm.month}" / f"client_id={cm.client_id}"
            )
            assert set(errors["event_type"]) == {"order.picked"}
            assert "picker table missing" in errors["message"][0]
            assert (errors["rules_file"] == "broken.lua").all()
    others = [cm for c, cms in by_client.items() if c != victim.stem for cm in cms if cm.events]
    assert others and all(cm.invoice == "draft" for cm in others)


def test_dates_outside_the_partitions_are_refused_with_exit_2() -> None:
    from billing_pipeline.cli import main

    assert main(["run", "--start", "1999-01-01", "--end", "1999-01-02"]) == 2
    assert main(["run", "--start", "2026-11-05", "--end", "2026-11-01"]) == 2
    assert main(["run", "--start", "yesterday", "--end", "2026-11-01"]) == 2


def test_billing_run_for_one_client_bills_only_that_client(
    billing_env: BillingEnv, instance: DagsterInstance
) -> None:
    client = sorted(p.stem for p in (billing_env.root / "ratecards").glob("*.yaml"))[1]
    report = run_billing(START, END, [client], instance=instance, progress=lambda _: None)
    assert {cm.client_id for cm in report.client_months} == {client}
    assert {p.name for p in (billing_env.data / "invoices" / "2026-10").iterdir()} == {client}
    assert date(2026, 10, 29).isoformat() in instance.get_materialized_partitions(
        AssetKey("activity")
    )


def test_an_unpriced_code_blocks_only_that_clients_invoice(
    billing_env: BillingEnv, instance: DagsterInstance
) -> None:
    cards = sorted((billing_env.root / "ratecards").glob("*.yaml"))
    victim = cards[-1]
    text = victim.read_text()
    assert "    SHIP_LABEL:" in text
    victim.write_text(re.sub(r"^    SHIP_LABEL:.*\n", "", text, flags=re.M))

    report = run_billing(START, END, instance=instance, progress=lambda _: None)

    assert report.has_problems
    assert _latest_check(instance, "charges", "no_unpriced_charges") == "FAILED"
    for cm in report.client_months:
        if not cm.events:
            continue
        folder = billing_env.data / "invoices" / cm.month / cm.client_id
        if cm.client_id == victim.stem:
            assert "SHIP_LABEL" in cm.unpriced and "unpriced SHIP_LABEL" in cm.problem
            assert cm.invoice == "none" and not folder.exists()
        else:
            assert cm.invoice == "draft" and (folder / "invoice.json").exists()
