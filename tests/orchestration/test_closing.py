"""Month close and adjustments without Dagster: the real charges, pricing and invoice code
over the small hand-computed world of tests/reconciliation/builders.py (testco, March 2026:
180.36 by hand, see that module)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from billing_pipeline.charging import compute_charges, write_charges
from billing_pipeline.closing import close_month, closed_file, main_close
from billing_pipeline.config import Paths
from billing_pipeline.invoicing import issue_invoice
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.rules import RuleEngine
from tests.reconciliation.builders import (
    EVENTS,
    World,
    bill,
    make_world,
    pick,
    ship,
    write_activity,
)


def _paths(world: World) -> Paths:
    return Paths(world.landing, world.data, world.ratecards, world.lua, world.finance)


def _close(world: World, month: str, today: str, clients=("testco",)):
    outcomes = close_month(_paths(world), month, list(clients), today=date.fromisoformat(today))
    return {o.client_id: o for o in outcomes}


def _files(world: World, month: str) -> dict[str, bytes]:
    folder = world.data / "invoices" / month / "testco"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _adjustments(world: World, month: str) -> list[tuple[str, str, str]]:
    text = (world.data / "invoices" / month / "testco" / "invoice_lines.csv").read_text()
    return [
        (r["charge_code"], r["gl_account"], r["amount"])
        for r in csv.DictReader(io.StringIO(text))
        if r["charge_code"].startswith("ADJ_")
    ]


def _late(world: World, *events) -> None:
    """Late March events for testco; then what the charges and invoices assets do."""
    for old in world.data.glob("activity/activity_date=2026-03-*/client_id=testco"):
        shutil.rmtree(old)
    write_activity(world.store, "testco", [*EVENTS["testco"], *events])
    cards, _ = load_ratecards(world.ratecards)
    card = cards["testco"]
    write_charges(world.store, compute_charges(world.store, RuleEngine(world.lua), card, "2026-03"))
    assert issue_invoice(world.store, card, "2026-03").status == "final_kept"


def _issue(world: World, month: str):
    cards, _ = load_ratecards(world.ratecards)
    return issue_invoice(world.store, cards["testco"], month)


@pytest.fixture
def world(tmp_path: Path) -> World:
    built = make_world(tmp_path, ("testco", "blockco", "lateco"))
    bill(built, "testco", "2026-04")
    return built


def test_a_correction_is_billed_once_on_the_next_open_invoice(world: World) -> None:
    assert _close(world, "2026-03", "2026-04-02")["testco"].status == "closed"
    march = _files(world, "2026-03")
    document = json.loads(march["invoice.json"])
    assert document["status"] == "final" and document["total"] == "180.36"
    assert b'class="status final"' in march["invoice.html"]

    # A late pick of March (O7, 2 units): PICK_ORDER 5 x 0.50 = 2.50 (billed 2.00: +0.50);
    # PICK_ADD_UNIT 18: 10 x 0.30 + 8 x 0.20 = 4.60 (billed 4.40: +0.20);
    # MIN_FULFILLMENT 50.00 - 7.10 = 42.90 (billed 43.60: -0.70).
    _late(world, ("E-P7", "order.picked", pick("O7", 2), date(2026, 3, 10)))
    assert _files(world, "2026-03") == march
    outcome = _issue(world, "2026-04")
    assert outcome.adjustments == 3
    assert _adjustments(world, "2026-04") == [
        ("ADJ_MIN_FULFILLMENT", "4030", "-0.70"),
        ("ADJ_PICK_ADD_UNIT", "4030", "0.20"),
        ("ADJ_PICK_ORDER", "4030", "0.50"),
    ]
    april = _files(world, "2026-04")
    _issue(world, "2026-04")
    assert _files(world, "2026-04") == april  # re-rendering a draft never adds twice
    lines = json.loads(april["invoice.json"])["lines"]
    assert [ln["adjusts"] for ln in lines if ln["adjusts"]] == [
        "INV-TESTCO-202603:MIN_FULFILLMENT",
        "INV-TESTCO-202603:PICK_ADD_UNIT",
        "INV-TESTCO-202603:PICK_ORDER",
    ]
    # April on its own: ACCOUNT_MGMT 100.00 + minimum 50.00; the adjustments net to 0.
    assert json.loads(april["invoice.json"])["total"] == "150.00"

    # April closes with its adjustments; May carries nothing more for March ...
    assert _close(world, "2026-04", "2026-05-02")["testco"].status == "closed"
    snapshot = json.loads(closed_file(world.store, "2026-04", "testco").read_text())
    assert {(a["period"], a["charge_code"], a["amount"]) for a in snapshot["adjustments"]} == {
        ("2026-03", "MIN_FULFILLMENT", "-0.70"),
        ("2026-03", "PICK_ADD_UNIT", "0.20"),
        ("2026-03", "PICK_ORDER", "0.50"),
    }
    bill(world, "testco", "2026-05")
    assert _adjustments(world, "2026-05") == []

    # ... until March changes again: a late shipment O8 at 4.00 -> SHIP_LABEL basis
    # 26.01 + 4.00 = 30.01 x 1.125 = 33.76125 -> 33.76 (billed 29.26: +4.50), and only that.
    _late(
        world,
        ("E-P7", "order.picked", pick("O7", 2), date(2026, 3, 10)),
        ("E-S8", "order.shipped", ship("O8", "4.00"), date(2026, 3, 11)),
    )
    assert _issue(world, "2026-05").status == "issued"
    assert _adjustments(world, "2026-05") == [("ADJ_SHIP_LABEL", "4050", "4.50")]
    assert _files(world, "2026-03") == march
    assert json.loads(_files(world, "2026-04")["invoice.json"])["status"] == "final"

    # A rule fix that takes the late pick away again credits exactly what was billed for it.
    _late(world, ("E-S8", "order.shipped", ship("O8", "4.00"), date(2026, 3, 11)))
    _issue(world, "2026-05")
    assert _adjustments(world, "2026-05") == [
        ("ADJ_MIN_FULFILLMENT", "4030", "0.70"),
        ("ADJ_PICK_ADD_UNIT", "4030", "-0.20"),
        ("ADJ_PICK_ORDER", "4030", "-0.50"),
        ("ADJ_SHIP_LABEL", "4050", "4.50"),
    ]


def test_close_refuses_blocked_uncomputed_and_out_of_order_months(world: World) -> None:
    outcomes = _close(world, "2026-03", "2026-04-02", ("testco", "blockco", "lateco"))
    assert outcomes["testco"].status == "closed"
    assert outcomes["blockco"].status == "blocked" and "rule errors" in outcomes["blockco"].detail
    assert outcomes["lateco"].status == "not_computed"
    assert not closed_file(world.store, "2026-03", "blockco").exists()
    # April is a draft: May does not close before it.
    bill(world, "testco", "2026-05")
    outcome = _close(world, "2026-05", "2026-06-02")["testco"]
    assert (outcome.status, outcome.detail) == ("earlier_open", "close 2026-04 first")
    assert _close(world, "2026-03", "2026-04-02")["testco"].status == "already_closed"


def test_an_interrupted_close_is_completed(world: World) -> None:
    _close(world, "2026-03", "2026-04-02")
    snapshot = closed_file(world.store, "2026-03", "testco")
    before = snapshot.read_bytes()
    snapshot.unlink()  # as if the close stopped after writing the final files
    assert _close(world, "2026-03", "2026-04-02")["testco"].status == "closed"
    assert snapshot.read_bytes() == before


def test_close_command_exit_status(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    assert main_close(["--month", "2026-13"]) == 2
    assert main_close(["--month", "2030-01"]) == 2  # not ended
    assert main_close(["--month", "2026-03", "--client", "nobody"]) == 2
    assert "unknown client 'nobody'" in capsys.readouterr().err
    assert main_close(["--month", "2026-03", "--client", "testco"]) == 0
    assert main_close(["--month", "2026-03"]) == 1  # blockco is blocked, lateco not charged
    err = capsys.readouterr().err
    assert "blockco 2026-03 not closed: blocked" in err and "lateco" in err


def test_adjustment_targets_name_the_first_open_month(world: World) -> None:
    from billing_pipeline.closing import adjustment_targets

    assert adjustment_targets(world.store, [("2026-03", "testco")]) == {}
    _close(world, "2026-03", "2026-04-02")
    assert adjustment_targets(world.store, [("2026-03", "testco"), ("2026-04", "testco")]) == {
        "2026-04": ["testco"]
    }
    _close(world, "2026-04", "2026-05-02")
    assert adjustment_targets(world.store, [("2026-03", "testco")]) == {"2026-05": ["testco"]}
