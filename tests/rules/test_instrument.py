"""The budget rewriter (instrument.py): ticks in every loop form, never inside strings or
comments, line numbers unchanged; and runaway code of every form stopped by the budget."""

from __future__ import annotations

import pytest

from billing_pipeline.rules.instrument import InstrumentError, instrument
from tests.rules.conftest import engine_with, event, frame

TRICKY = b"""local a = "do while repeat function goto \\" do"
local b = 'for i = 1, 2 do end'
-- while true do end
--[==[ repeat until false
do ]] still a comment ]==]
local c = [[function() end
do]] local d = [=[ ]] do ]=]
return a, b, c, d
"""


def test_strings_and_comments_are_untouched_and_lines_kept():
    out = instrument(TRICKY)
    assert out.count(b"\n") == TRICKY.count(b"\n")
    assert out.count(b"__tick(") == 0
    for line in TRICKY.splitlines():
        assert line in out


def test_every_loop_form_and_function_entry_gets_a_tick_on_its_line():
    src = (
        b"local function f(a, ...)\n"
        b"  while a do a = nil end\n"
        b"  for i = 1, 3 do end\n"
        b"  for k, v in pairs({}) do end\n"
        b"  repeat until true\n"
        b"  ::top:: if a then goto top end\n"
        b"  return function() end\n"
        b"end\n"
    )
    out = instrument(src).split(b"\n")
    assert len(out) == len(src.split(b"\n"))
    assert out[0].count(b"__tick(") == 1  # f's entry (plus the prefix's local)
    for line in out[1:7]:
        assert b"__tick(" in line, line
    assert b"__tick(" not in out[7]
    assert out[5].index(b"__tick(") < out[5].index(b"goto")  # before goto, not after ::top::


def test_the_reserved_name_is_refused_with_its_line():
    with pytest.raises(InstrumentError, match=r"^2: the name __tick is reserved"):
        instrument(b"local x = 1\nlocal __tick = function() end\n")


RUNAWAYS = {
    "while": "while true do end",
    "for": "for i = 1, math.huge do end",
    "for_in": "local t = {1} for _ in function() return 1 end do end",
    "repeat": "repeat until false",
    "goto": "::top:: goto top",
    "recursion": "local function f(n) return f(n + 1) + 1 end f(1)",
    "tail_recursion": "local function f(n) return f(n + 1) end f(1)",
    "mutual": "local g local function f() return g() end g = function() return f() end f()",
    "metamethod": (
        "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) local _ = t.x"
    ),
    "sort_callback": (
        "local t = {} for i = 1, 200 do t[i] = i end"
        " table.sort(t, function(a, b) while true do end end)"
    ),
    "gsub_callback": 'string.gsub("aaa", "a", function() while true do end end)',
    "coroutine": "coroutine.wrap(function() while true do end end)()",
    "swallowed": "while true do pcall(function() while true do end end) end",
    "negative_tick": "local t = _G['__ti' .. 'ck'] while true do t(-1e9) t(0/0) end",
    "multiline_loop": "local i = 0\n  while true do\n    i = i + 1\n  end",
}


def test_runaway_code_of_every_form_is_stopped_with_file_and_line(lua_dir, small_budgets):
    lines = ["local rules = {}", 'rules["good"] = function(e, charge) charge("GOOD", 1) end']
    where = {}
    for name, body in RUNAWAYS.items():
        lines.append(f'rules["{name}"] = function(e, charge)')
        where[name] = len(lines) + 1
        lines.append('  charge("PARTIAL", 1); ' + body)
        lines.append("end")
    lines.append("return rules")
    engine = engine_with(lua_dir, "\n".join(lines) + "\n", small_budgets)
    rows = [event("good", "good")] + [event(f"bad-{n}", n) for n in RUNAWAYS]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.charges["event_id"].to_list() == ["good"]
    errors = {r["event_id"]: r for r in result.errors.iter_rows(named=True)}
    assert set(errors) == {f"bad-{n}" for n in RUNAWAYS}
    for name in RUNAWAYS:
        row = errors[f"bad-{name}"]
        assert row["line"] is not None and row["line"] >= where[name], (name, row["message"])
        assert "rules/t.lua:" in row["message"], (name, row["message"])
        if name not in ("recursion", "metamethod"):  # a stack overflow may come first
            assert "instruction budget exceeded" in row["message"], (name, row["message"])


def test_rule_code_mentioning_the_counter_fails_to_load(lua_dir, small_budgets):
    engine = engine_with(lua_dir, "local __tick = 1\nreturn {}\n", small_budgets)
    result = engine.evaluate(
        frame([event("a", "x")]), client_id="acme", rules_file="t.lua", versions=[]
    )
    assert result.errors["line"].to_list() == [1]
    assert "reserved" in result.errors["message"][0]


def test_a_long_legitimate_loop_stays_within_the_default_budget(lua_dir):
    from billing_pipeline.rules import Budgets

    source = (
        "return { t = function(e, charge)\n"
        "  local s = 0\n"
        "  for i = 1, 20000 do s = s + i % 7 end\n"
        '  charge("SUM", s)\n'
        "end }\n"
    )
    engine = engine_with(lua_dir, source, Budgets(batch_seconds=10))
    result = engine.evaluate(
        frame([event("a", "t")]), client_id="acme", rules_file="t.lua", versions=[]
    )
    assert result.errors.height == 0, result.errors["message"].to_list()
    assert result.charges.height == 1
