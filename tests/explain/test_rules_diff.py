"""``billing rules diff`` on testco's March (builders.py) after editing a copy of lua/."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing_pipeline.charging import compute_charges, write_charges
from billing_pipeline.config import Paths
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.rules import RuleEngine
from billing_pipeline.rules_diff import diff_client_month, main_rules_diff
from tests.reconciliation.builders import World, make_world


@pytest.fixture
def testco(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A world of its own (its Lua gets edited), with testco alone, materialized."""
    world = make_world(tmp_path / "w", clients=("testco",))
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    return world


def edit_rules(world: World, old: str, new: str) -> None:
    path = world.lua / "rules" / "default.lua"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main_rules_diff(["--client", "testco", "--month", "2026-03"])
    out, err = capsys.readouterr()
    return status, out, err


def test_no_change_exits_0(testco: World, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys)
    assert status == 0
    assert "invoice total: 180.36 -> 180.36 (Δ 0.00)" in out
    assert "changes: none" in out
    assert "changed" not in out.replace("changes: none", "")


def test_rule_change_shows_the_delta(testco: World, capsys: pytest.CaptureFixture[str]) -> None:
    # One more carton per pack; cancels now raise; packs also emit an unpriced code.
    edit_rules(
        testco,
        'charge("PACK_CARTON", p.cartons)',
        'charge("PACK_CARTON", p.cartons + 1); charge("GIFT_WRAP", 1)',
    )
    edit_rules(
        testco,
        'if e.payload.stage == "after_pick" then',
        'error("cancel rule broken")\n  if e.payload.stage == "after_pick" then',
    )
    diff = diff_client_month(Paths.from_env(), "testco", "2026-03")
    by_code = {c.code: c for c in diff.codes}
    pack = by_code["PACK_CARTON"]
    # 1 carton -> 2; 2 x 1.10 = 2.20
    assert (pack.old_quantity, pack.new_quantity) == (Decimal(1), Decimal(2))
    assert (pack.old_amount, pack.new_amount) == (Decimal("1.10"), Decimal("2.20"))
    assert not by_code["PICK_ORDER"].changed
    assert diff.total_delta == Decimal("1.10")  # 180.36 -> 181.46
    assert diff.new_errors["event_id"].to_list() == ["E-C3"]
    assert diff.unpriced_changes == {"GIFT_WRAP": (0, 1)}
    status, out, _ = run(capsys)
    assert status == 1
    assert "invoice total: 180.36 -> 181.46 (Δ +1.10)" in out
    line = next(x for x in out.splitlines() if x.startswith("PACK_CARTON"))
    assert line.split() == ["PACK_CARTON", "1", "2", "+1", "1.10", "2.20", "+1.10", "changed"]
    assert "rule errors: 0 -> 1" in out
    assert "E-C3 order.cancelled" in out
    assert "unpriced GIFT_WRAP: new, 1 charges" in out
    assert "would be BLOCKED" in out


def test_cleared_rule_errors(testco: World, capsys: pytest.CaptureFixture[str]) -> None:
    # Materialize a broken cancel rule, then diff with the fixed (original) file.
    path = testco.lua / "rules" / "default.lua"
    original = path.read_text()
    edit_rules(testco, 'if e.payload.stage == "after_pick" then', 'error("x")\n  if false then')
    cards, _ = load_ratecards(testco.ratecards)
    store = testco.store
    write_charges(store, compute_charges(store, RuleEngine(testco.lua), cards["testco"], "2026-03"))
    path.write_text(original)
    diff = diff_client_month(Paths.from_env(), "testco", "2026-03")
    assert diff.cleared_errors["event_id"].to_list() == ["E-C3"]
    assert diff.new_errors.is_empty()
    status, out, _ = run(capsys)
    assert status == 1
    assert "rule errors: 1 -> 0" in out


def test_bad_usage_exits_2(testco: World, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (["--client", "testco", "--month", "2026-04"], "nothing materialized for testco 2026-04"),
        (["--client", "nobody", "--month", "2026-03"], "unknown client 'nobody'"),
        (["--client", "testco", "--month", "March"], "--month must be YYYY-MM"),
        (["--client", "testco"], "the following arguments are required: --month"),
    ):
        assert main_rules_diff(args) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert message in err
        assert err.count("\n") == 1
