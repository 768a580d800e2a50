"""Refilled event tables (confined.py, driver.lua's RUN_TYPE_SRC): a handler that cannot keep
`e` or its payload gets the same two tables refilled from event to event; any other handler
gets fresh ones, so what a rule can observe does not change."""

from __future__ import annotations

from pathlib import Path

import lupa.luajit21 as luajit
import polars as pl
import pytest

from billing_pipeline.rules import Budgets
from billing_pipeline.rules import modules as mods
from billing_pipeline.rules.batch import load_rules
from billing_pipeline.rules.confined import confined_spans
from billing_pipeline.rules.lua import new_runtime, text
from tests.rules.conftest import engine_with, event, frame

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "lua" / "rules"


def spans(source: str) -> dict[str, tuple[str, ...]]:
    return confined_spans(source.encode())


@pytest.mark.parametrize(
    "body",
    [
        "charge('X', e.payload.n)",
        "local p = e.payload\n charge('X', p.n, { memo = p['s'] })",
        "local p = e.payload; charge('X', p.n)",
        "if e.event_type == 'x' then local p = e.payload return end",
        "e.payload.n = e.payload.n + 1; e.mark = true; charge('X', e.payload.items[1].qty)",
        "for _, m in ipairs(e.payload.materials) do charge('M', m.qty) end",
    ],
)
def test_handlers_that_only_read_and_write_fields_are_confined(body):
    last = body.count("\n") + 3  # the line of the handler's `end`
    assert spans(f"return {{ h = function(e, charge)\n{body}\nend }}") == {f"1:{last}": ()}


@pytest.mark.parametrize(
    "body",
    [
        "keep = e",  # kept in a global
        "t[#t + 1] = e",
        "f(e)",  # handed to a function that may keep it
        "return e",
        "charge('X', 1, { memo = e })",
        "local x = e.payload or {}",  # the payload flows on in an expression
        "local x = e.payload\n keep = x",
        "local x = e.payload\n f(x.n, x)",
        "local x = e.payload\n return x",
        "local x, y = e.payload, 1",
        "keep = e.payload",
        "f(e.payload)",
        "for k in pairs(e.payload) do end",
        "e.payload:m()",
        "e:m()",
        "local y = e['payload']",  # a computed key may name the payload
        "local s = tostring(e)",
        "keep = function() return e.payload.n end",  # a closure outlives the call
        "local p = e.payload\n keep = function() return p.n end",
        "local e = {}",  # shadowing: not worth telling apart
        "local x = e.payload\n(f)(1)",  # `e.payload(f)(1)`: a call, not a new statement
    ],
)
def test_handlers_that_can_keep_a_table_are_not_confined(body):
    assert spans(f"return {{ h = function(e, charge)\n{body}\nend }}") == {}


def test_method_definitions_varargs_and_shared_lines():
    source = (
        "local t = {}\n"
        "function t:m(e) return e.payload.n end\n"  # first argument is self
        "local v = function(...) end\n"
        "local a = function(e) return e.payload.n end; local b = function(e) keep = e end\n"
        "local c = function(e) return e.payload.n end; local d = function(e) return e.x end\n"
    )
    # two functions on one line are told apart only by their lines: one that can keep its
    # argument makes the line's span not confined
    assert spans(source) == {"5:5": ()}


def test_the_spans_are_the_lines_luajit_reports():
    """The driver finds a handler's span with jit.util.funcinfo: the lines must match."""
    source = (
        "local rules = {}\n"
        "rules.a = function(e,\n  charge)\n  charge('A', e.payload.n)\nend\n"
        "rules.b =\nfunction\n(e, charge) charge('B', e.payload.n) end\n"
        "local function c\n(e, charge)\nend\n"
        "rules.c = c\n"
        "return rules\n"
    )
    lua = luajit.LuaRuntime()
    info = lua.eval(
        "function(src) local rules = assert(load(src, '@t.lua'))()"
        " local out = {} for name, f in pairs(rules) do"
        " local i = require('jit.util').funcinfo(f)"
        " out[name] = i.linedefined .. ':' .. i.lastlinedefined end return out end"
    )(source.encode())
    reported = dict(info.items())
    assert reported == {"a": "2:5", "b": "8:8", "c": "10:11"}
    assert set(spans(source)) == set(reported.values())


def test_every_shipped_default_handler_is_confined():
    source = (SHIPPED_RULES / "default.lua").read_bytes()
    lua = luajit.LuaRuntime()
    info = lua.eval(
        "function(src) local env = setmetatable({ require = function() return"
        " { num = tonumber, charge_positive = print, code_part = tostring } end },"
        " { __index = _G }) local rules = assert(load(src, '@d.lua', 't', env))()"
        " local out = {} for name, f in pairs(rules) do if f then"
        " local i = require('jit.util').funcinfo(f)"
        " out[name] = i.linedefined .. ':' .. i.lastlinedefined end end return out end"
    )(source)
    handlers = set(info.values())
    assert len(handlers) == 9
    assert handlers <= confined_spans(source).keys()


def test_a_wrapper_may_hand_e_to_a_local_it_never_reassigns():
    wrapper = (
        "local rules = require('rules.default')\n"
        "local ship = rules['order.shipped']\n"
        "rules['order.shipped'] = function(e, charge, ctx)\n"
        "  ship(e, charge, ctx)\n"
        "  if e.payload.weight_lb > 70 then charge('SHIP_HEAVY', 1) end\n"
        "end\n"
        "return rules\n"
    )
    assert spans(wrapper) == {"3:6": ("ship",)}
    # what `ship` holds could change, or e reaches it other than as its first argument
    for change in (
        "ship = print\n",
        "function ship(e) end\n",
        "local ship = print\n",
        "local t = { ship }\n",
    ):
        assert "3:6" not in spans(wrapper.replace("return rules", change + "return rules"))
    for call in ("ship(charge, e)", "ship(e, e)", "rules.ship(e)", "print(e)", "ship(e.payload)"):
        assert spans(wrapper.replace("ship(e, charge, ctx)", call)) == {}


def loaded_refills(lua_dir: Path, rules_file: str) -> list[str]:
    """The event types whose handler the driver refills, for rules loaded in this process."""
    runtime, driver = new_runtime()
    modules = mods.collect(lua_dir, rules_file)
    root = mods.module_for_rules_file(rules_file)
    rules, error = load_rules(driver, runtime, modules, root, Budgets())
    assert error is None, error
    return [text(t) for t in driver.refilled(rules).values()]


def test_the_driver_refills_every_shipped_handler_and_heavy_parcels_wrapper():
    lua = SHIPPED_RULES.parent
    default = loaded_refills(lua, "default.lua")
    assert len(default) == 9 and "order.shipped" in default
    assert loaded_refills(lua, "heavy_parcel.lua") == default


def test_a_wrapper_of_a_handler_that_keeps_e_gets_fresh_tables(lua_dir, small_budgets):
    source = """
local kept
local function inner(e, charge)
  kept = kept or e
  charge("K", kept.payload.n)
end
local function recursive(e, charge, ctx)
  if ctx == nil then return end
  charge("R", e.payload.n)
  recursive(e, charge, nil)
end
return {
  wrapper = function(e, charge) inner(e, charge) end,
  rec = function(e, charge, ctx) recursive(e, charge, ctx) end,
}
"""
    # statically all three are confined, given what they call; at run time `inner` is not,
    # and `recursive` calls itself (the driver gives up on a chain that long)
    assert sorted(spans(source).values()) == [("inner",), ("recursive",), ("recursive",)]
    assert loaded_refills(write_rules(lua_dir, source), "t.lua") == []
    data = events(["wrapper", "rec"], [{"n": n} for n in range(1, 7)])
    charges = evaluate(lua_dir, small_budgets, source, data)
    assert quantities(charges, "K") == [1] * 6  # the first event's n, kept
    assert quantities(charges, "R") == list(range(1, 7))


def write_rules(lua_dir: Path, source: str) -> Path:
    (lua_dir / "rules" / "t.lua").write_text(source)
    return lua_dir


# Six events of each type: the first teaches the payload's shape, the ones after are decoded
# by the shape's decoder, which is what refills a table.
def events(types: list[str], payloads: list[dict]) -> pl.DataFrame:
    rows = []
    for t in types:
        rows += [event(f"{t}-{k}", t, p) for k, p in enumerate(payloads, start=1)]
    return frame(rows)


def evaluate(lua_dir, small_budgets, source: str, data: pl.DataFrame) -> pl.DataFrame:
    engine = engine_with(lua_dir, source, small_budgets)
    result = engine.evaluate(data, client_id="acme", rules_file="t.lua", versions=[])
    assert result.errors.height == 0, result.errors["message"].to_list()
    return result.charges.sort("event_id")


def quantities(charges: pl.DataFrame, code: str) -> list[int]:
    return [int(q) for q in charges.filter(pl.col("charge_code") == code)["quantity"]]


def test_a_rule_that_keeps_e_or_its_payload_still_sees_the_event_it_kept(lua_dir, small_budgets):
    source = """
local kept_e, kept_p, readers = nil, nil, {}
return {
  keep_e = function(e, charge)
    kept_e = kept_e or e
    charge("K", kept_e.payload.n)
  end,
  keep_payload = function(e, charge)
    local p = e.payload
    kept_p = kept_p or p
    charge("P", kept_p.n)
  end,
  closure = function(e, charge)
    readers[#readers + 1] = function() return e.payload.n end
    charge("C", readers[1]())
  end,
}
"""
    data = events(["keep_e", "keep_payload", "closure"], [{"n": n} for n in range(1, 7)])
    charges = evaluate(lua_dir, small_budgets, source, data)
    # each charges n of the first event of its type (n = 1) for all six: a table refilled
    # for later events would give 1, 2, ..., 6 instead
    for code in ("K", "P", "C"):
        assert quantities(charges, code) == [1] * 6


def test_a_refilled_payload_holds_only_the_current_events_fields(lua_dir, small_budgets):
    source = """
return {
  h = function(e, charge)
    charge("N", e.payload.n, { memo = e.event_id .. "/" .. tostring(e.payload.s) })
  end,
}
"""
    payloads = [
        {"n": 1, "s": "a"},
        {"n": 2, "s": "b"},
        {"n": 3, "s": 7},  # s a number where it was a (pending) string
        {"n": 4, "s": "d"},
        {"n": 5, "s": None},
        {"n": 6, "s": "f"},
        {"n": 7},  # another shape
        {"n": 8, "s": "h"},
    ]
    charges = evaluate(lua_dir, small_budgets, source, events(["h"], payloads))
    assert quantities(charges, "N") == list(range(1, 9))
    assert charges["memo"].to_list() == [
        "h-1/a",
        "h-2/b",
        "h-3/7",
        "h-4/d",
        "h-5/nil",
        "h-6/f",
        "h-7/nil",
        "h-8/h",
    ]


def test_what_a_confined_handler_writes_does_not_reach_the_next_event(lua_dir, small_budgets):
    source = """
return {
  mark_e = function(e, charge)
    charge("E", e.seen and 100 or 1)
    e.seen = true
  end,
  mark_payload = function(e, charge)
    local p = e.payload
    charge("P", p.seen and 100 or 1)
    p.seen = true
  end,
  bump = function(e, charge)
    e.payload.n = e.payload.n + 10
    charge("B", e.payload.n)
  end,
}
"""
    assert len(spans(source)) == 3
    data = events(["mark_e", "mark_payload", "bump"], [{"n": n} for n in range(1, 7)])
    charges = evaluate(lua_dir, small_budgets, source, data)
    # a key written to `e` or the payload is absent from the next event's tables
    assert quantities(charges, "E") == [1] * 6
    assert quantities(charges, "P") == [1] * 6
    # n + 10 from each event's own n (1..6): the write to n is overwritten by the next event
    assert quantities(charges, "B") == list(range(11, 17))
