"""``billing explain`` over the builders.py world (hand arithmetic in its docstring).

testco's invoice lines: 1 ACCOUNT_MGMT, 2 PACK_CARTON, 3 PICK_ADD_UNIT tier 1,
4 PICK_ADD_UNIT tier 2, 5 PICK_ORDER, 6 SHIP_LABEL, 7 MIN_FULFILLMENT.
"""

from __future__ import annotations

import pytest

from billing_pipeline.charging import read_charges
from billing_pipeline.explain import main_explain
from tests.reconciliation.builders import World


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main_explain(["--client", args[0], "--month", "2026-03", *args[1:]])
    out, err = capsys.readouterr()
    return status, out, err


def test_per_unit_line(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "testco", "--line", "5")
    assert status == 0
    assert "PICK_ORDER: Order pick" in out
    assert "4 units × 0.50 = 2.00" in out  # picks O1, O2, O3, O5
    assert "version effective_from 2026-01-01" in out
    sha = read_charges(env.store, "2026-03", "testco")["rules_sha256"][0]
    assert f"Rules: default.lua  sha256 {sha}" in out
    assert "Events: 4 (order.picked 4), 2026-03-02 .. 2026-03-07" in out
    for event_id, day in (("E-P1", "03-02"), ("E-P2", "03-03"), ("E-P3", "03-04")):
        assert f"{event_id}  2026-{day}  order.picked  quantity 1" in out


def test_graduated_lines(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    # PICK_ADD_UNIT: 4 (03-02) + 11 (03-03) + 2 (03-07) = 17 on 3 days; tiers up to 10, then
    _, first, _ = explain(capsys, "testco", "--line", "3")
    assert "sum of daily quantities 17 (3 days with charges)" in first
    assert "tier 1 holds the part above 0 up to 10: 10 units × 0.30 = 3.00" in first
    _, second, _ = explain(capsys, "testco", "--line", "4")
    assert "tier 2 holds the part above 10 up to no limit: 7 units × 0.20 = 1.40" in second
    assert "Events: 3 (order.picked 3)" in second  # O3 had 1 unit: no additional unit


def test_cost_plus_line(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = explain(capsys, "testco", "--line", "6")
    # 7.42 + 10.00 + 5.00 + 3.59 = 26.01; x 1.125 = 29.26125
    assert "4 charges, basis 26.01 × (1 + 12.5/100) = 29.26125, rounded half_up to 29.26" in out
    assert "E-S1  2026-03-02  order.shipped  quantity 1  basis 7.42" in out


def test_minimum_and_flat_lines(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = explain(capsys, "testco", "--line", "7")
    # covered: lines 3, 4, 5 = 3.00 + 1.40 + 2.00 = 6.40; 50.00 - 6.40 = 43.60
    assert "minimum 50.00 − covered 6.40 = 43.60" in out
    assert "covered = lines 3, 4, 5 (codes: PICK_ORDER, PICK_ADD_UNIT)" in out
    assert "Events: none" in out
    _, flat, _ = explain(capsys, "testco", "--line", "1")
    assert "flat monthly fee: 1 × 100.00 = 100.00" in flat


def test_event_and_the_lines_it_landed_on(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "testco", "--event", "E-P1")
    assert status == 0
    # 5 units: PICK_ORDER 1 and PICK_ADD_UNIT 4, both on 03-02
    assert "PICK_ADD_UNIT  quantity 4" in out
    assert "PICK_ORDER  quantity 1" in out
    assert "rules default.lua" in out
    assert "rate card version effective_from 2026-01-01" in out
    # the graduated pool of 03-02 is split over both tier lines
    assert "PICK_ADD_UNIT -> line 3 (Additional unit, tier 1, amount 3.00)" in out
    assert "PICK_ADD_UNIT -> line 4 (Additional unit, tier 2, amount 1.40)" in out
    assert "PICK_ORDER -> line 5 (Order pick, amount 2.00)" in out
    assert "PICK_ORDER counts toward minimum MIN_FULFILLMENT (line 7)" in out
    _, ship, _ = explain(capsys, "testco", "--event", "E-S4")
    assert "SHIP_LABEL  quantity 1  basis 5.00" in ship
    assert "SHIP_LABEL -> line 6" in ship


def test_event_without_charges(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = explain(capsys, "testco", "--event", "E-C3")
    assert status == 0
    assert "no charges -- the handler ran and emitted no charge" in out
    _, unknown, _ = explain(capsys, "testco", "--event", "E-X1")
    assert "no key for this type" in unknown
    _, errored, _ = explain(capsys, "blockco", "--event", "B-S1")
    assert "rule error in block.lua line 3: rules/block.lua:3: no label for B-S1" in errored


def test_no_invoice_says_why(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = explain(capsys, "blockco", "--line", "1")
    assert (status, out) == (1, "")
    assert "blocked by 1 rule errors; unpriced charges: MYSTERY x1" in err
    status, _, err = explain(capsys, "lateco", "--line", "1")
    assert status == 2
    assert "charges not materialized" in err


def test_bad_usage_exits_2_with_one_line(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["testco", "--line", "8"], "has no line 8 (it has lines 1..7"),
        (["nobody", "--line", "1"], "unknown client 'nobody'"),
        (["testco", "--event", "NOPE"], "event 'NOPE' not found for testco 2026-03"),
        (["testco"], "one of the arguments --line --event is required"),
    ]
    for args, message in cases:
        status, out, err = explain(capsys, *args)
        assert status == 2, args
        assert out == ""
        assert message in err
        assert err.count("\n") == 1
    assert main_explain(["--client", "testco", "--month", "2026-3", "--line", "1"]) == 2
