"""The Lua sandbox end to end through ``billing run`` (issue 8, item 6): a client's rules
that try to reach the system, and a rules file linked out of lua/rules/, become that
client's rule errors; nothing outside is touched; the other clients are invoiced."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, instance_for_test

from billing_pipeline.runner import run_billing
from tests.pipeline.conftest import START, BillingEnv

MONTH = f"{START:%Y-%m}"
ATTACKS = [
    'os.execute("touch {marker}")',
    'io.open("{marker}", "w")',
    'require("lib.escape")',
    'require("/etc/passwd")',
    'load("\\27LuaJ")',
    "while true do end",
]


@pytest.fixture
def sqlite_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def _use_rules(card: Path, rules: str) -> None:
    text = re.sub(r"^rules: .*\n", "", card.read_text(), flags=re.M)
    card.write_text(text + f"rules: {rules}\n")


def test_hostile_rules_are_contained_in_a_real_run(
    billing_env: BillingEnv, sqlite_instance: DagsterInstance, tmp_path: Path
) -> None:
    lua = billing_env.root / "lua"
    marker = tmp_path / "marker"
    outside = tmp_path / "outside.lua"
    outside.write_text('return {["order.picked"] = function(e, charge) charge("X", 1) end}\n')
    (lua / "lib" / "escape.lua").symlink_to(outside)
    (lua / "rules" / "linked.lua").symlink_to(outside)
    lines = ["local rules = {}", 'rules["order.picked"] = function(e, charge)']
    lines.append("  local n = tonumber(string.sub(e.event_id, -1)) or 0")
    for i, attack in enumerate(ATTACKS):
        lines.append(f"  if n % {len(ATTACKS)} == {i} then {attack.format(marker=marker)} end")
    lines += ["end", "return rules"]
    (lua / "rules" / "hostile.lua").write_text("\n".join(lines) + "\n")
    cards = sorted((billing_env.root / "ratecards").glob("*.yaml"))
    attacker, linked, bystander = cards[0].stem, cards[1].stem, cards[2].stem
    _use_rules(cards[0], "hostile.lua")
    _use_rules(cards[1], "linked.lua")

    report = run_billing(START, START, instance=sqlite_instance, progress=lambda _: None)

    assert not marker.exists()
    by_client = {cm.client_id: cm for cm in report.client_months}
    errors_dir = billing_env.data / "rule_errors" / f"month={MONTH}"
    attack_errors = pl.read_parquet(errors_dir / f"client_id={attacker}")
    assert by_client[attacker].rule_errors == attack_errors.height > 0
    assert set(attack_errors["event_type"]) == {"order.picked"}
    messages = " | ".join(attack_errors["message"])
    for expected in ("instruction budget exceeded", "resolves outside", "nil"):
        assert expected in messages, expected
    assert by_client[attacker].invoice == "none"

    link_errors = pl.read_parquet(errors_dir / f"client_id={linked}")
    assert link_errors.height == by_client[linked].events > 0
    assert (link_errors["message"].str.contains("resolves outside lua/rules/")).all()
    assert by_client[linked].invoice == "none"

    assert by_client[bystander].rule_errors == 0
    assert by_client[bystander].invoice == ("draft" if by_client[bystander].events else "none")
