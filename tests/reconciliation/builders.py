"""A small billed world in a tmp directory: activity partitions written directly, then the
real ``compute_charges`` + ``write_charges`` + ``issue_invoice`` (no ingestion, no Dagster).

The month is March 2026, every client in UTC. Hand arithmetic of testco's invoice
(default.lua rules, rate card ``TESTCO`` below):

- order.picked O1 (5 units), O2 (12), O3 (1), O5 (3): PICK_ORDER 4 x 0.50 = 2.00;
  PICK_ADD_UNIT 4 + 11 + 0 (not emitted) + 2 = 17 -> tier 1: 10 x 0.30 = 3.00,
  tier 2: 7 x 0.20 = 1.40
- order.packed O1, 1 carton: PACK_CARTON 1 x 1.10 = 1.10
- order.shipped O1 7.42, O2 10.00, O4 5.00, O6 3.59: SHIP_LABEL 4 charges, basis 26.01,
  26.01 x 1.125 = 29.26125 -> 29.26
- ACCOUNT_MGMT flat 100.00
- MIN_FULFILLMENT covers PICK_*: 50.00 - (2.00 + 3.00 + 1.40 = 6.40) = 43.60
- lines by code: 1 ACCOUNT_MGMT, 2 PACK_CARTON, 3 PICK_ADD_UNIT t1, 4 PICK_ADD_UNIT t2,
  5 PICK_ORDER, 6 SHIP_LABEL, 7 MIN_FULFILLMENT; total 100.00 + 1.10 + 3.00 + 1.40 + 2.00
  + 29.26 + 43.60 = 180.36
- by GL: 4030 = 1.10 + 3.00 + 1.40 + 2.00 + 43.60 = 51.10; 4050 = 29.26; 4090 = 100.00
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from billing_pipeline.charging import compute_charges, write_charges
from billing_pipeline.ingest.activity import ACTIVITY_SCHEMA
from billing_pipeline.ingest.landing import MANIFEST_SCHEMA, QUARANTINE_SCHEMA
from billing_pipeline.invoicing import issue_invoice
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.rules import RuleEngine
from billing_pipeline.storage import Store, file_id, write_parquet

REPO_LUA = Path(__file__).resolve().parents[2] / "lua"
MONTH = "2026-03"

TESTCO = """\
client_id: testco
name: Test Co
currency: USD
timezone: UTC
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {model: per_unit, rate: "0.50", gl_account: "4030", description: Order pick}
      PICK_ADD_UNIT: {model: graduated, gl_account: "4030", description: Additional unit,
                      tiers: [{up_to: 10, rate: "0.30"}, {up_to: null, rate: "0.20"}]}
      PACK_CARTON: {model: per_unit, rate: "1.10", gl_account: "4030"}
      SHIP_LABEL: {model: cost_plus, markup_pct: "12.5", gl_account: "4050"}
      CANCEL_RESTOCK: {model: per_unit, rate: "1.50", gl_account: "4030"}
      ACCOUNT_MGMT: {model: flat, amount: "100.00", gl_account: "4090"}
    minimums:
      - {code: MIN_FULFILLMENT, covers: [PICK_ORDER, PICK_ADD_UNIT], amount: "50.00",
         gl_account: "4030", description: Monthly minimum}
"""
OTHERCO = """\
client_id: otherco
name: Other Co
currency: USD
timezone: UTC
rules: custom.lua
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {model: per_unit, rate: "0.50", gl_account: "4030"}
"""
BLOCKCO = """\
client_id: blockco
name: Block Co
currency: USD
timezone: UTC
rules: block.lua
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {model: per_unit, rate: "1.00", gl_account: "4030"}
"""
LATECO = """\
client_id: lateco
name: Late Co
currency: USD
timezone: UTC
versions:
  - effective_from: 2026-01-01
    charges:
      PICK_ORDER: {model: per_unit, rate: "1.00", gl_account: "4030"}
"""
# A catalog type (return.processed) has no key: unhandled. inventory.adjusted: false.
CUSTOM_LUA = """\
local rules = {}
rules["order.picked"] = function(e, charge) charge("PICK_ORDER", 1) end
rules["inventory.adjusted"] = false
return rules
"""
# Line 3 raises for every shipment: a rule error. MYSTERY is priced by no rate card.
BLOCK_LUA = """\
local rules = {}
rules["order.picked"] = function(e, charge) charge("PICK_ORDER", 1); charge("MYSTERY", 1) end
rules["order.shipped"] = function(e, charge) error("no label for " .. e.event_id) end
return rules
"""


def ship(order: str, cost: str) -> dict:
    return {
        "order_id": order,
        "carrier": "UPS",
        "service": "ground",
        "tracking_number": f"1Z{order}",
        "weight_lb": "2.5",
        "label_cost": cost,
    }


def pick(order: str, units: int) -> dict:
    return {"order_id": order, "channel": "dtc", "lines": 1, "units": units}


D = date
EVENTS: dict[str, list[tuple[str, str, dict, date]]] = {
    "testco": [
        ("E-P6", "order.picked", pick("O6", 1), D(2026, 2, 27)),  # February
        ("E-P1", "order.picked", pick("O1", 5), D(2026, 3, 2)),
        (
            "E-K1",
            "order.packed",
            {"order_id": "O1", "cartons": 1, "materials": [], "inserts": 0},
            D(2026, 3, 2),
        ),
        ("E-S1", "order.shipped", ship("O1", "7.42"), D(2026, 3, 2)),
        ("E-P2", "order.picked", pick("O2", 12), D(2026, 3, 3)),
        ("E-S2", "order.shipped", ship("O2", "10.00"), D(2026, 3, 3)),
        ("E-P3", "order.picked", pick("O3", 1), D(2026, 3, 4)),
        ("E-C3", "order.cancelled", {"order_id": "O3", "stage": "before_pick"}, D(2026, 3, 4)),
        ("E-S4", "order.shipped", ship("O4", "5.00"), D(2026, 3, 5)),
        ("E-S6", "order.shipped", ship("O6", "3.59"), D(2026, 3, 6)),
        ("E-P5", "order.picked", pick("O5", 3), D(2026, 3, 7)),
        (
            "E-U1",
            "putaway.completed",
            {"sku": "S1", "units": 4, "location_type": "bin"},
            D(2026, 3, 8),
        ),
        ("E-X1", "pallet.wrapped", {"pallets": 1}, D(2026, 3, 8)),
    ],
    "otherco": [
        ("O-P1", "order.picked", pick("Q1", 1), D(2026, 3, 2)),
        (
            "O-R1",
            "return.processed",
            {"rma_id": "R1", "units": 1, "disposition": "restock"},
            D(2026, 3, 2),
        ),
        (
            "O-A1",
            "inventory.adjusted",
            {"sku": "S", "delta_units": -1, "reason": "damage"},
            D(2026, 3, 3),
        ),
    ],
    "blockco": [
        ("B-P1", "order.picked", pick("B1", 1), D(2026, 3, 2)),
        ("B-S1", "order.shipped", ship("B1", "4.00"), D(2026, 3, 2)),
    ],
    "lateco": [("L-P1", "order.picked", pick("L1", 1), D(2026, 3, 9))],
}
CARDS = {"testco": TESTCO, "otherco": OTHERCO, "blockco": BLOCKCO, "lateco": LATECO}
# lateco's charges are never computed: "charges not materialized".
BILLED = ("testco", "otherco", "blockco")


@dataclass
class World:
    root: Path
    data: Path
    ratecards: Path
    lua: Path
    finance: Path
    landing: Path

    @property
    def store(self) -> Store:
        return Store(self.data)

    def env(self) -> dict[str, str]:
        return {
            "BILLING_DATA_DIR": str(self.data),
            "BILLING_RATECARDS_DIR": str(self.ratecards),
            "BILLING_LUA_DIR": str(self.lua),
            "BILLING_FINANCE_DIR": str(self.finance),
            "BILLING_LANDING_DIR": str(self.landing),
        }


def event_row(client_id: str, n: int, event: tuple[str, str, dict, date]) -> dict:
    event_id, event_type, payload, day = event
    at = datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": at,
        "occurred_at_raw": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "activity_date": day,
        "client_id": client_id,
        "warehouse_id": "WH1",
        "schema_version": 1,
        "payload": text,
        # what the activity build takes from the payload (ORDER_ID_TYPES)
        "order_id": payload.get("order_id") if event_type.startswith("order.") else None,
        "raw_line": "{}",
        "source_file": f"{client_id}.ndjson",
        "source_line": n,
    }


def write_activity(store: Store, client_id: str, events: list) -> None:
    rows = [event_row(client_id, n, e) for n, e in enumerate(events, start=1)]
    frame = pl.DataFrame(rows, schema=ACTIVITY_SCHEMA)
    for day in sorted({r["activity_date"] for r in rows}):
        part = frame.filter(pl.col("activity_date") == day)
        write_parquet(part, store.activity_file(day, client_id))


def bill(world: World, client_id: str, month: str = MONTH) -> None:
    """What the charges and invoices assets do for one client-month."""
    cards, bad = load_ratecards(world.ratecards)
    assert not bad, bad
    card = cards[client_id]
    write_charges(world.store, compute_charges(world.store, RuleEngine(world.lua), card, month))
    issue_invoice(world.store, card, month)


def write_ledger(finance: Path, rows: list[tuple[str, str, str]], month: str = MONTH) -> Path:
    path = finance / f"gl_revenue_{month}.csv"
    lines = ["period,client_id,gl_account,amount"] + [f"{month},{c},{g},{a}" for c, g, a in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# Planted against the hand arithmetic in the module docstring.
LEDGER = [
    ("testco", "4030", "51.10"),  # billed 51.10: match
    ("testco", "4050", "29.27"),  # billed 29.26: |-0.01| = 0.01, a match only at tolerance 0.01
    ("testco", "4090", "99.00"),  # billed 100.00: mismatch, difference 1.00
    ("testco", "4990", "12.00"),  # not billed: missing_in_billing, difference -12.00
    ("blockco", "4030", "8.00"),  # blocked, no invoice: missing_in_billing
    # otherco 4030 billed 0.50 is not booked: missing_in_ledger
]


def write_quarantine(world: World) -> None:
    """Four quarantined lines: three belong to March (by three different dates), one to April."""
    march_utc = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
    rows = [
        # activity_date read: March
        ("a.ndjson", 7, "invalid_field", "testco", "Q-1", D(2026, 3, 5), march_utc),
        # unknown client: no zone, so no activity_date; occurred_at is March (UTC)
        ("a.ndjson", 9, "unknown_client", "ghost", "Q-2", None, march_utc),
        # unreadable: no date at all; its file's earliest UTC date (manifest) is 2026-03-10
        ("b.ndjson", 1, "invalid_json", None, None, None, None),
        # April
        ("a.ndjson", 11, "invalid_field", "testco", "Q-4", D(2026, 4, 1), None),
    ]
    frame = pl.DataFrame(
        [
            {
                "source_file": f,
                "source_line": n,
                "raw_line": "x",
                "reason": reason,
                "detail": "",
                "client_id": client,
                "event_id": event_id,
                "event_type": None,
                "occurred_at": at,
                "activity_date": day,
            }
            for f, n, reason, client, event_id, day, at in rows
        ],
        schema=QUARANTINE_SCHEMA,
    )
    for source in ("a.ndjson", "b.ndjson"):
        part = frame.filter(pl.col("source_file") == source)
        write_parquet(part, world.store.quarantine_file(file_id(source)))
    # c.ndjson's events are all of January: its quarantine is never read for March or April
    # (not even parsed: it is not a Parquet file)
    unreadable = world.store.quarantine_file(file_id("c.ndjson"))
    unreadable.parent.mkdir(parents=True, exist_ok=True)
    unreadable.write_bytes(b"not parquet")
    manifest = pl.DataFrame(
        [
            {
                "source_file": "a.ndjson",
                "file_id": file_id("a.ndjson"),
                "quarantined": 3,
                "utc_dates": [D(2026, 3, 5), D(2026, 4, 1)],
            },
            {
                "source_file": "b.ndjson",
                "file_id": file_id("b.ndjson"),
                "quarantined": 1,
                "utc_dates": [D(2026, 3, 10), D(2026, 3, 11)],
            },
            {
                "source_file": "c.ndjson",
                "file_id": file_id("c.ndjson"),
                "quarantined": 1,
                "utc_dates": [D(2026, 1, 5)],
            },
        ],
        schema={
            "source_file": pl.Utf8,
            "file_id": pl.Utf8,
            "quarantined": MANIFEST_SCHEMA["quarantined"],
            "utc_dates": pl.List(pl.Date),
        },
    )
    full = manifest.with_columns(
        *(pl.lit(None, dtype).alias(name) for name, dtype in MANIFEST_SCHEMA.items()
          if name not in manifest.columns)
    ).select(list(MANIFEST_SCHEMA))  # fmt: skip
    write_parquet(full, world.store.manifest_file())


def make_world(root: Path, clients: tuple[str, ...] = tuple(CARDS)) -> World:
    world = World(
        root=root,
        data=root / "warehouse",
        ratecards=root / "ratecards",
        lua=root / "lua",
        finance=root / "finance",
        landing=root / "landing",
    )
    shutil.copytree(REPO_LUA, world.lua)
    (world.lua / "rules" / "custom.lua").write_text(CUSTOM_LUA)
    (world.lua / "rules" / "block.lua").write_text(BLOCK_LUA)
    for folder in (world.ratecards, world.finance, world.landing):
        folder.mkdir(parents=True)
    for client_id in clients:
        (world.ratecards / f"{client_id}.yaml").write_text(CARDS[client_id])
        write_activity(world.store, client_id, EVENTS[client_id])
    for client_id in BILLED:
        if client_id in clients:
            bill(world, client_id)
    return world
