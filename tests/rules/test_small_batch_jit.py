"""Batches below batch.JIT_MIN_EVENTS run with LuaJIT's JIT off: same charges, same budget."""

from __future__ import annotations

import datetime

import pytest

from billing_pipeline.rules import RateVersion, RuleEngine, batch
from tests.rules.conftest import engine_with, event, frame
from tests.rules.test_engine import SHIPPED, shipped_events

VERSIONS = [RateVersion(datetime.date(2026, 1, 1), {"heavy_lb": 20})]


def test_a_small_batch_charges_as_the_same_events_in_a_large_one(monkeypatch):
    engine = RuleEngine(SHIPPED)
    events = shipped_events(batch.JIT_MIN_EVENTS + 2000)
    small = events.head(700)
    assert small.height < batch.JIT_MIN_EVENTS <= events.height

    def charges(frame_):
        return engine.evaluate(
            frame_, client_id="acme", rules_file="heavy_parcel.lua", versions=VERSIONS
        ).charges

    large = charges(events)
    interpreted = charges(small)
    in_large = large.filter(large["event_id"].is_in(small["event_id"].implode()))
    assert interpreted.height > small.height
    assert interpreted.equals(in_large)
    monkeypatch.setattr(batch, "JIT_MIN_EVENTS", 0)  # the same small batch, compiled
    assert charges(small).equals(interpreted)


@pytest.mark.parametrize("jit_min_events", [batch.JIT_MIN_EVENTS, 0], ids=["jit-off", "jit-on"])
def test_a_runaway_rule_is_stopped_in_a_small_batch(
    lua_dir, small_budgets, monkeypatch, jit_min_events
):
    monkeypatch.setattr(batch, "JIT_MIN_EVENTS", jit_min_events)
    source = (
        "return {\n"
        '  good = function(e, charge) charge("GOOD", 1) end,\n'
        "  bad = function(e, charge)\n"
        "    while true do end\n"
        "  end,\n"
        "}\n"
    )
    engine = engine_with(lua_dir, source, small_budgets)
    rows = [event(f"g{i}", "good") for i in range(50)] + [event("bad", "bad"), event("g50", "good")]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.charges["event_id"].to_list() == [f"g{i}" for i in range(51)]
    assert result.errors["event_id"].to_list() == ["bad"]
    assert "instruction budget exceeded" in result.errors["message"][0]
    assert result.errors["line"][0] == 4
