"""The schedule and each sensor evaluated against real instances (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from dagster import AssetKey, DagsterInstance, build_schedule_context

from billing_pipeline.closing import main_close
from billing_pipeline.defs.orchestration.jobs import (
    CAUSE_TAG,
    NIGHT_TAG,
    RANGE_END,
    RANGE_START,
    WRITES_TAG,
)
from tests.orchestration.conftest import (
    PROJECT,
    World,
    defs,
    drain,
    launch,
    pick,
    start_chain,
    tick,
)


def _night(instance: DagsterInstance, at: datetime) -> str:
    schedule = defs.resolve_schedule_def("billing_nightly")
    data = schedule.evaluate_tick(build_schedule_context(instance, scheduled_execution_time=at))
    [request] = data.run_requests
    assert request.tags[CAUSE_TAG] == "nightly"
    assert request.run_key == f"nightly:{request.tags[NIGHT_TAG]}"
    return request.tags[NIGHT_TAG]


def test_nightly_schedule_bills_yesterday_in_its_time_zone(
    instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = defs.resolve_schedule_def("billing_nightly")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.job_name == "billing_landing_job"
    at = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert _night(instance, at) == "2026-11-24"
    # 01:00 UTC is still the evening of the 24th in New York: yesterday is the 23rd there.
    monkeypatch.setenv("BILLING_SCHEDULE_TZ", "America/New_York")
    assert _night(instance, datetime(2026, 11, 25, 1, 0, tzinfo=UTC)) == "2026-11-23"


def test_schedule_time_zone_and_cron_come_from_the_environment() -> None:
    code = (
        "from billing_pipeline.defs.orchestration.schedules import billing_nightly as s;"
        "print(s.execution_timezone, s.cron_schedule)"
    )
    env = {
        **os.environ,
        "BILLING_SCHEDULE_TZ": "Europe/Berlin",
        "BILLING_SCHEDULE_CRON": "30 3 * * *",
    }
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "Europe/Berlin 30 3 * * *", out.stderr[-2000:]
    env["BILLING_SCHEDULE_TZ"] = "Mars/Olympus"
    bad = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "Mars/Olympus" in bad.stderr


def test_landing_sensor_sees_new_and_changed_files_once(
    instance: DagsterInstance, world: World
) -> None:
    tick("billing_clients_sensor", instance, world)
    assert tick("billing_landing_sensor", instance, world).run_requests == []
    path = world.land("a/day1.ndjson", [pick("E1", "alpha", "2026-11-20T10:00:00Z", 1)])
    [first] = tick("billing_landing_sensor", instance, world).run_requests
    assert first.tags[CAUSE_TAG] == "landing_sensor"
    assert first.tags["billing/files"] == "1 new, 0 changed"
    # Until it is ingested the file stays new, under the same run key (the daemon skips it).
    [again] = tick("billing_landing_sensor", instance, world).run_requests
    assert again.run_key == first.run_key
    result = launch(instance, first, "billing_landing_job")
    assert result.success
    assert result.dagster_run.tags[WRITES_TAG] == "outputs"
    assert tick("billing_landing_sensor", instance, world).run_requests == []
    # A re-delivered file under the same path (new content): one more run.
    path.write_text(path.read_text() + "\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    [changed] = tick("billing_landing_sensor", instance, world).run_requests
    assert changed.tags["billing/files"] == "0 new, 1 changed"
    # Changed until a landing run has hashed it again: the same run key, launched once.
    [still] = tick("billing_landing_sensor", instance, world).run_requests
    assert still.run_key == changed.run_key
    assert launch(instance, changed, "billing_landing_job").success
    assert tick("billing_landing_sensor", instance, world).run_requests == []
    # A touch that changes no byte also asks for a run (the stat moved); once that run has
    # hashed the file again, the sensor is quiet.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    [touched] = tick("billing_landing_sensor", instance, world).run_requests
    assert launch(instance, touched, "billing_landing_job").success
    assert tick("billing_landing_sensor", instance, world).run_requests == []


def test_new_rate_card_registers_its_client_and_brings_in_its_lines(
    instance: DagsterInstance, world: World
) -> None:
    data = tick("billing_clients_sensor", instance, world)
    assert sorted(instance.get_dynamic_partitions("client")) == ["alpha", "beta"]
    start_chain(instance, world)
    # gamma has no rate card yet: its line is quarantined as unknown_client.
    world.land("d.ndjson", [pick("G1", "gamma", "2026-11-10T10:00:00Z", 2)])
    [request] = tick("billing_landing_sensor", instance, world).run_requests
    assert launch(instance, request, "billing_landing_job").success
    drain(instance, world)
    assert not (world.data / "invoices" / "2026-11" / "gamma").exists()
    assert tick("billing_clients_sensor", instance, world).skip_message == "no new clients"

    alpha = (world.root / "ratecards" / "alpha.yaml").read_text()
    (world.root / "ratecards" / "gamma.yaml").write_text(
        alpha.replace("client_id: alpha", "client_id: gamma").replace("Alpha Co", "Gamma Co")
    )
    data = tick("billing_clients_sensor", instance, world)
    assert [r.partition_keys for r in data.dynamic_partitions_requests] == [["gamma"]]
    assert "gamma" in instance.get_dynamic_partitions("client")
    [request] = data.run_requests
    assert request.tags[CAUSE_TAG] == "new_clients"
    assert launch(instance, request, "billing_landing_job").success
    launched = drain(instance, world)
    # The reclassified line's dates are refreshed, then charges and invoices for all
    # clients of November, gamma included.
    assert [n for n, _ in launched][:3] == [
        "billing_activity_sensor",
        "billing_charges_sensor",
        "billing_invoices_sensor",
    ]
    charges = next(t for n, t in launched if n == "billing_charges_sensor")
    assert (charges[RANGE_START], charges[RANGE_END]) == ("alpha|2026-11-01", "gamma|2026-11-01")
    assert (world.data / "invoices" / "2026-11" / "gamma" / "invoice.json").exists()


def test_inputs_sensor_records_data_versions_of_rules_and_rate_cards(
    instance: DagsterInstance, world: World
) -> None:
    tick("billing_clients_sensor", instance, world)
    data = tick("billing_inputs_sensor", instance, world)
    observed = {(e.asset_key.to_user_string(), e.partition) for e in data.asset_events}
    assert observed == {("lua_rules", None), ("ratecards", "alpha"), ("ratecards", "beta")}
    assert tick("billing_inputs_sensor", instance, world).asset_events == []
    (world.root / "lua" / "rules" / "beta.lua").write_text(
        "-- edited\n" + (world.root / "lua" / "rules" / "beta.lua").read_text()
    )
    card = world.root / "ratecards" / "alpha.yaml"
    card.write_text(card.read_text().replace('"2.00"', '"2.10"'))
    data = tick("billing_inputs_sensor", instance, world)
    assert {(e.asset_key.to_user_string(), e.partition) for e in data.asset_events} == {
        ("lua_rules", None),
        ("ratecards", "alpha"),
    }
    versions = {e.partition: e.tags["dagster/data_version"] for e in data.asset_events}
    record = instance.get_latest_data_version_record(AssetKey("ratecards"), partition_key="alpha")
    assert (
        record is not None
        and record.asset_observation.tags["dagster/data_version"] == versions["alpha"]
    )


def test_ui_backfill_of_a_closed_month_refreshes_the_next_open_invoice(
    instance: DagsterInstance, world: World
) -> None:
    """A backfill launched from the UI (one run of charges and invoices for beta's closed
    October) gets November's invoice, which carries the adjustment, from the sensor."""
    tick("billing_clients_sensor", instance, world)
    start_chain(instance, world)
    world.land(
        "x.ndjson",
        [
            pick("B1", "beta", "2026-10-20T10:00:00Z", 3),
            pick("B2", "beta", "2026-11-20T10:00:00Z", 1),
        ],
    )
    [request] = tick("billing_landing_sensor", instance, world).run_requests
    assert launch(instance, request, "billing_landing_job").success
    drain(instance, world)
    assert main_close(["--month", "2026-10", "--client", "beta"]) == 0
    closed = world.invoice_bytes("2026-10", "beta")
    (world.root / "lua" / "rules" / "beta.lua").write_text(
        (world.root / "lua" / "rules" / "beta.lua")
        .read_text()
        .replace(
            'charge("PICK_ORDER", 1)',
            'charge("PICK_ORDER", 1)\n  charge("PICK_ADD_UNIT", e.payload.units - 1)',
        )
    )
    from dagster import AssetSelection, define_asset_job

    from billing_pipeline.defs.partitions import month_client_partitions

    ui_backfill = define_asset_job(
        "__ui_backfill",
        AssetSelection.assets("charges", "invoices"),
        partitions_def=month_client_partitions,
    ).resolve(asset_graph=defs.resolve_asset_graph(), resource_defs=defs.resources)
    result = ui_backfill.execute_in_process(
        instance=instance, partition_key="beta|2026-10-01", raise_on_error=False
    )
    assert result.success
    launched = drain(instance, world)
    assert [(n, t[RANGE_START], t[RANGE_END]) for n, t in launched] == [
        ("billing_invoices_sensor", "beta|2026-11-01", "beta|2026-11-01")
    ]
    assert world.invoice_bytes("2026-10", "beta") == closed
    text = (world.invoice("2026-11", "beta") / "invoice_lines.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    # B1: 3 units, additional 2 x 0.50 = 1.00, billed 0 on the final October invoice.
    assert [(r["charge_code"], r["description"], r["amount"]) for r in rows[-1:]] == [
        (
            "ADJ_PICK_ADD_UNIT",
            "Adjustment to INV-BETA-202610 PICK_ADD_UNIT (Additional unit): billed 0.00; now 1.00",
            "1.00",
        )
    ]
