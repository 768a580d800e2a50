"""Real instances (SQLite, and PostgreSQL in a database of its own), hand-made landing data,
and helpers that do what the daemon does: evaluate a sensor or schedule, launch its runs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context, instance_for_test
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from billing_pipeline.definitions import defs
from billing_pipeline.defs.resources import BillingSettings
from tests.pipeline.conftest import PG_URL, PROJECT

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# The shared `test` database is used by other test modules (and other people's runs) at the
# same time; these tests read "every event after X", so they get a database of their own
# (named by BILLING_TEST_ORCH_DB when several checkouts run their suites side by side).
ORCH_DB = os.environ.get("BILLING_TEST_ORCH_DB", "billing_orchestration_test")


def orchestration_pg_url() -> str:
    url = make_url(PG_URL)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": ORCH_DB}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{ORCH_DB}"'))
    finally:
        engine.dispose()
    return url.set(database=ORCH_DB).render_as_string(hide_password=False)


def wipe(instance: DagsterInstance) -> None:
    instance.wipe()
    instance.wipe_all_schedules()
    for key in instance.get_dynamic_partitions("client"):
        instance.delete_dynamic_partition("client", key)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest) -> Iterator[DagsterInstance]:
    if request.param == "sqlite":
        with instance_for_test() as sqlite_instance:
            yield sqlite_instance
        return
    overrides = {"storage": {"postgres": {"postgres_url": orchestration_pg_url()}}}
    with instance_for_test(overrides=overrides) as pg_instance:
        wipe(pg_instance)
        yield pg_instance


# ----------------------------------------------------------------------------- data

CARD = """\
client_id: {client}
name: {name}
currency: USD
timezone: UTC
{rules}versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {{model: per_unit, rate: "2.00", gl_account: "4030", description: Order pick}}
      PICK_ADD_UNIT: {{model: per_unit, rate: "0.50", gl_account: "4030",
                       description: Additional unit}}
      SHIP_LABEL: {{model: cost_plus, markup_pct: "10", gl_account: "4050", description: Label}}
      ACCOUNT_MGMT: {{model: flat, amount: "100.00", gl_account: "4090", description: Account}}
{minimums}"""
ALPHA_MINIMUM = """\
    minimums:
      - {code: MIN_FULFILLMENT, covers: [PICK_ORDER, PICK_ADD_UNIT], amount: "20.00",
         gl_account: "4030", description: Monthly minimum}
"""
# beta's rules with the bug a rule fix corrects: additional units are not charged.
BETA_BUGGY = """\
local rules = require("rules.default")
local beta = {}
for k, v in next, rules do beta[k] = v end
beta["order.picked"] = function(e, charge)
  charge("PICK_ORDER", 1)
end
return beta
"""
BETA_FIXED = """\
local rules = require("rules.default")
local beta = {}
for k, v in next, rules do beta[k] = v end
beta["order.picked"] = function(e, charge)
  charge("PICK_ORDER", 1)
  if e.payload.units > 1 then
    charge("PICK_ADD_UNIT", e.payload.units - 1)
  end
end
return beta
"""
BETA_FIXTURE = """\
event:
  event_type: order.picked
  occurred_at: '2026-10-02T10:00:00Z'
  payload: {order_id: O1, channel: dtc, lines: 1, units: 3}
expect:
  charges:
    - {code: PICK_ORDER, quantity: "1"}
    - {code: PICK_ADD_UNIT, quantity: "2"}
"""


def pick(event_id: str, client: str, at: str, units: int) -> dict:
    return {
        "event_id": event_id,
        "event_type": "order.picked",
        "occurred_at": at,
        "client_id": client,
        "warehouse_id": "WH1",
        "payload": {"order_id": f"O-{event_id}", "channel": "dtc", "lines": 1, "units": units},
    }


def ship(event_id: str, client: str, at: str, label_cost: str) -> dict:
    return {
        "event_id": event_id,
        "event_type": "order.shipped",
        "occurred_at": at,
        "client_id": client,
        "warehouse_id": "WH1",
        "payload": {
            "order_id": f"O-{event_id}",
            "carrier": "UPS",
            "service": "ground",
            "tracking_number": f"1Z{event_id}",
            "weight_lb": "2.5",
            "label_cost": label_cost,
        },
    }


@dataclass
class World:
    root: Path
    cursors: dict[str, str | None] = field(default_factory=dict)

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def data(self) -> Path:
        return self.root / "warehouse"

    def land(self, name: str, events: list[dict]) -> Path:
        path = self.landing / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        return path

    def invoice(self, month: str, client: str) -> Path:
        return self.data / "invoices" / month / client

    def invoice_bytes(self, month: str, client: str) -> dict[str, bytes]:
        folder = self.invoice(month, client)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    root = tmp_path / "billing"
    shutil.copytree(PROJECT / "lua", root / "lua")
    (root / "lua" / "rules" / "beta.lua").write_text(BETA_BUGGY)
    (root / "lua" / "tests" / "beta").mkdir(parents=True)
    (root / "lua" / "tests" / "beta" / "pick_multi_unit.yaml").write_text(BETA_FIXTURE)
    cards = root / "ratecards"
    cards.mkdir(parents=True)
    (cards / "alpha.yaml").write_text(
        CARD.format(client="alpha", name="Alpha Co", rules="", minimums=ALPHA_MINIMUM)
    )
    (cards / "beta.yaml").write_text(
        CARD.format(client="beta", name="Beta Co", rules="rules: beta.lua\n", minimums="")
    )
    for name in ("landing", "finance", "warehouse"):
        (root / name).mkdir()
    for var, sub in (
        ("BILLING_LANDING_DIR", "landing"),
        ("BILLING_RATECARDS_DIR", "ratecards"),
        ("BILLING_LUA_DIR", "lua"),
        ("BILLING_FINANCE_DIR", "finance"),
        ("BILLING_DATA_DIR", "warehouse"),
    ):
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.delenv("BILLING_SCHEDULE_TZ", raising=False)
    return World(root)


# ----------------------------------------------------------------------------- daemon work


def tick(name: str, instance: DagsterInstance, world: World):
    """Evaluate a sensor as the daemon would, keeping its cursor; apply its partition and
    asset-event requests to the instance as the daemon does."""
    sensor = defs.resolve_sensor_def(name)
    context = build_sensor_context(
        instance=instance,
        cursor=world.cursors.get(name),
        resources={"settings": BillingSettings()},
        sensor_name=name,
    )
    data = sensor.evaluate_tick(context)
    world.cursors[name] = data.cursor
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    for event in data.asset_events or []:
        instance.report_runless_asset_event(event)
    return data


def launch(instance: DagsterInstance, request: RunRequest, job_name: str):
    job = defs.resolve_job_def(request.job_name or job_name)
    result = job.execute_in_process(
        instance=instance, tags=dict(request.tags), run_config=QUIET, raise_on_error=False
    )
    return result


CHAIN = (
    "billing_activity_sensor",
    "billing_charges_sensor",
    "billing_invoices_sensor",
    "billing_reconciliation_sensor",
)


def start_chain(instance: DagsterInstance, world: World) -> None:
    """First evaluation of every chain sensor: they record where history ends."""
    for name in CHAIN:
        tick(name, instance, world)


def drain(instance: DagsterInstance, world: World) -> list[tuple[str, dict[str, str]]]:
    """Tick the chain sensors and launch what they ask for, until none asks for anything."""
    launched: list[tuple[str, dict[str, str]]] = []
    for _ in range(12):
        asked = False
        for name in CHAIN:
            data = tick(name, instance, world)
            job_name = defs.resolve_sensor_def(name).job_name
            for request in data.run_requests:
                asked = True
                launch(instance, request, job_name)
                launched.append((name, dict(request.tags)))
        if not asked:
            return launched
    raise AssertionError(f"the chain did not settle: {launched}")


def env_for(world: World) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("BILLING_")}
