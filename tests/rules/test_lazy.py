"""Lazy `e` and payload tables (driver.lua): rules cannot tell them from filled ones, and the
memory cap on the worker process still stops a memory bomb."""

from __future__ import annotations

import polars as pl

from billing_pipeline.rules import Budgets
from tests.rules.conftest import engine_with, event, frame

PAYLOAD = {
    "order_id": "SO-1",
    "n": 3,
    "flag": True,
    "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
    "obj": {"code": "X", "deep": {"s": "y"}},
}

# dump(t): every key/value reached by `iter` (pairs or a next loop), sorted, nested tables
# dumped the same way; hidden keys would show up as "table: 0x...".
DUMP = """
local function dump(t, iter)
  local keys = {}
  iter(t, function(k) keys[#keys + 1] = k end)
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    local v = rawget(t, k)
    local text = type(v) == "table" and "{" .. dump(v, iter) .. "}" or tostring(v)
    out[#out + 1] = tostring(k) .. "=" .. text
  end
  return table.concat(out, ",")
end
local function emit(charge, code, s)
  for i = 1, #s, 200 do charge(code, 1, { memo = s:sub(i, i + 199) }) end
end
local function by_pairs(t, f) for k in pairs(t) do f(k) end end
local function by_next(t, f) local k = next(t) while k ~= nil do f(k) k = next(t, k) end end
"""

EXPECTED_PAYLOAD = (
    "flag=true,lines={1={qty=1,sku=A},2={qty=2,sku=B}},n=3,obj={code=X,deep={s=y}},order_id=SO-1"
)
EXPECTED_E = (
    "activity_date=2026-03-02,client_id=acme,event_id={id},event_type={type},"
    "occurred_at=2026-03-02T10:00:00Z,payload={{{payload}}},warehouse_id=WH1"
)


def run(lua_dir, small_budgets, body: str, types: list[str]) -> pl.DataFrame:
    source = "local dump\n" + DUMP.replace("local function dump", "function dump") + body
    engine = engine_with(lua_dir, source, small_budgets)
    rows = []
    for t in types:
        # twice each: the first event of a type teaches the payload shape (eager decode), the
        # second is decoded lazily by the shape-compiled decoder
        rows += [event(f"{t}-1", t, PAYLOAD), event(f"{t}-2", t, PAYLOAD)]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.errors.height == 0, result.errors["message"].to_list()
    return result.charges


def test_pairs_next_and_rawget_see_what_an_eager_table_holds(lua_dir, small_budgets):
    body = """
return {
  by_pairs = function(e, charge) emit(charge, "E", dump(e, by_pairs)) end,
  by_next = function(e, charge) emit(charge, "E", dump(e, by_next)) end,
  payload_first = function(e, charge)
    emit(charge, "P", dump(e.payload, by_pairs))
    emit(charge, "E", dump(e, by_next))
  end,
  rawget = function(e, charge)
    local p = e.payload
    charge("R", 1, { memo = table.concat({ rawget(e, "event_id"), rawget(e, "occurred_at"),
      rawget(p, "order_id"), rawget(p.obj, "code"), rawget(p.lines[2], "sku") }, " ") })
  end,
}
"""
    charges = run(lua_dir, small_budgets, body, ["by_pairs", "by_next", "payload_first", "rawget"])
    memos: dict[str, str] = {}
    for event_id, code, memo in charges.select("event_id", "charge_code", "memo").rows():
        memos[f"{event_id}/{code}"] = memos.get(f"{event_id}/{code}", "") + memo
    for t in ["by_pairs", "by_next", "payload_first"]:
        for i in (1, 2):
            assert memos[f"{t}-{i}/E"] == EXPECTED_E.format(
                id=f"{t}-{i}", type=t, payload=EXPECTED_PAYLOAD
            )
    assert memos["payload_first-2/P"] == EXPECTED_PAYLOAD
    for i in (1, 2):
        assert memos[f"rawget-{i}/R"] == f"rawget-{i} 2026-03-02T10:00:00Z SO-1 X B"


def test_writes_and_deletes_behave_as_on_a_plain_table(lua_dir, small_budgets):
    body = """
return { w = function(e, charge)
  local p = e.payload
  local checks = {}
  e.event_id = nil
  checks[#checks + 1] = e.event_id == nil and e.occurred_at == "2026-03-02T10:00:00Z"
  p.order_id = nil
  checks[#checks + 1] = p.order_id == nil and p.n == 3
  p.obj.code = "Z"
  checks[#checks + 1] = p.obj.code == "Z" and p.obj.deep.s == "y"
  p.extra = 1
  checks[#checks + 1] = p.extra == 1 and p.flag == true and p.lines[1].sku == "A"
  checks[#checks + 1] = e.payload == p and p.lines == p.lines and p.obj.deep == p.obj.deep
  checks[#checks + 1] = #p == 0 and #p.lines == 2 and p.missing == nil and e.missing == nil
  -- the fields of `e` made from the row on read survive a write to another one
  e.warehouse_id = "WH9"
  checks[#checks + 1] = e.warehouse_id == "WH9" and e.event_type == "w"
    and e.client_id == "acme" and e.activity_date == "2026-03-02"
  for i, ok in ipairs(checks) do charge("CHECK_" .. i, ok and 1 or 0) end
end }
"""
    charges = run(lua_dir, small_budgets, body, ["w"])
    # 7 checks for each of the 2 events
    assert [str(q) for q in charges["quantity"]] == ["1.000000"] * 14


def test_rules_cannot_reach_the_metatable_or_hidden_keys(lua_dir, small_budgets):
    body = """
return { m = function(e, charge)
  local p = e.payload
  local checks = {
    getmetatable(e) == nil,
    getmetatable(p) == nil and getmetatable(p.obj) == nil and getmetatable(p.lines[1]) == nil,
  }
  local hidden = 0
  for _, t in ipairs({ e, p, p.obj, p.obj.deep, p.lines[2] }) do
    for k in pairs(t) do
      if type(k) ~= "string" then hidden = hidden + 1 end
    end
  end
  checks[#checks + 1] = hidden == 0
  local other = e.payload.obj
  setmetatable(other, { __index = function() return "mt" end })
  checks[#checks + 1] = other.code == "X" and other.nope == "mt" and getmetatable(other) ~= nil
  for i, ok in ipairs(checks) do charge("CHECK_" .. i, ok and 1 or 0) end
end }
"""
    charges = run(lua_dir, small_budgets, body, ["m"])
    assert [str(q) for q in charges["quantity"]] == ["1.000000"] * 8


def test_memory_cap_stops_a_table_bomb_and_spares_the_charge_lines(lua_dir):
    budgets = Budgets(instructions=10**9, memory_bytes=48 * 1024**2, batch_seconds=20.0)
    source = """
return {
  bomb = function(e, charge)
    charge("PARTIAL", 1)
    local t = {}
    for i = 1, 1e9 do t[i] = { i, i, i, i } end
  end,
  many = function(e, charge)
    for i = 1, 20 do charge("LINE", i) end
  end,
}
"""
    engine = engine_with(lua_dir, source, budgets)
    # 60,000 events x 20 lines = 1.2M lines = ~38 MB of charge arrays (twice that while they
    # are sorted): more than the cap, but they are not rule memory
    rows = [event(f"m{i}", "many") for i in range(60_000)] + [event("b", "bomb")]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.errors["event_id"].to_list() == ["b"]
    assert "memory" in result.errors["message"][0]
    assert result.charges.height == 1_200_000
    assert set(result.charges["charge_code"]) == {"LINE"}
