"""Escape attempts and runaway rules: each is a rule error naming file and line; the other
events of the batch still charge."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.rules import RateVersion
from billing_pipeline.rules.lua import new_runtime, to_lua
from tests.rules.conftest import DAY, engine_with, event, frame

# Each attack is one handler; `good` charges normally. Line numbers matter: the attack is on
# the line right after its `rules[...] = function` line.
ATTACKS = {
    "os_execute": 'os.execute("touch {marker}")',
    "io_open": 'io.open("{marker}", "w")',
    "load_bytecode": 'load("\\27LuaJ")',
    "string_dump": "string.dump(function() end)",
    "method_dump": '("").dump(function() end)',
    "string_mt": 'getmetatable("").__index.dump(function() end)',
    "debug_lib": "debug.sethook()",
    "global_write": "x = 1",
    "g_write": "_G.y = 1",
    "rawset_g": 'rawset(_G, "z", 1)',
    "lib_write": "string.upper = nil",
    "require_dotdot": 'require("lib/../../secret")',
    "require_abs": 'require("/etc/passwd")',
    "require_symlink": 'require("lib.escape")',
    "package_lib": 'package.loadlib("x", "y")',
    "collect": 'collectgarbage("stop")',
    "random": "math.random()",
    "jit_lib": "jit.on()",
    "loop": "while true do end",
    "recursion": "local function f(n) return f(n + 1) + 1 end f(1)",
    "coroutine_loop": "coroutine.wrap(function() while true do end end)()",
    "pcall_swallow": "while true do pcall(function() while true do end end) end",
    "memory": 'local s, t = string.rep("x", 2 ^ 20), {{}} for i = 1, 1e6 do t[i] = s .. i end',
    "raise": 'error("boom")',
    "bad_code": 'charge("lower", 1)',
    "nan": 'charge("X", 0/0)',
    "negative": 'charge("X", -1)',
    "huge": 'charge("X", math.huge)',
    "string_quantity": 'charge("X", "1")',
    "basis_text": 'charge("X", 1, {{basis = "7,42"}})',
    "basis_places": 'charge("X", 1, {{basis = "1.0000001"}})',
    "memo_long": 'charge("X", 1, {{memo = string.rep("m", 201)}})',
}


def rules_source(marker: Path) -> str:
    lines = ["local rules = {}", 'rules["good"] = function(e, charge) charge("GOOD", 1) end']
    for name, body in ATTACKS.items():
        lines.append(f'rules["{name}"] = function(e, charge)')
        lines.append(
            '  charge("PARTIAL", 1); '
            + body.replace("{marker}", str(marker)).replace("{{", "{").replace("}}", "}")
        )
        lines.append("end")
    lines.append("return rules")
    return "\n".join(lines) + "\n"


def attack_line(name: str) -> int:
    return 3 + 3 * list(ATTACKS).index(name) + 1


@pytest.fixture
def evaluation(lua_dir: Path, tmp_path: Path, small_budgets):
    outside = tmp_path / "outside.lua"
    outside.write_text("return {}")
    (lua_dir / "lib" / "escape.lua").symlink_to(outside)
    marker = tmp_path / "marker"
    engine = engine_with(lua_dir, rules_source(marker), small_budgets)
    rows = []
    for i, name in enumerate(ATTACKS):
        rows.append(event(f"good-{i}", "good"))
        rows.append(event(f"bad-{name}", name))
    result = engine.evaluate(
        frame(rows), client_id="acme", rules_file="t.lua", versions=[RateVersion(DAY, {})]
    )
    return result, marker


def test_every_attack_is_a_rule_error_with_file_and_line(evaluation):
    result, marker = evaluation
    errors = {r["event_id"]: r for r in result.errors.iter_rows(named=True)}
    assert set(errors) == {f"bad-{name}" for name in ATTACKS}
    for name in ATTACKS:
        row = errors[f"bad-{name}"]
        assert row["rules_file"] == "t.lua"
        if name == "memory":  # LuaJIT runs no message handler for out-of-memory errors
            continue
        assert row["line"] == attack_line(name), (name, row["message"])
        assert f"rules/t.lua:{attack_line(name)}:" in row["message"], (name, row["message"])
    assert not marker.exists()


def test_failed_events_contribute_no_charges_and_others_do(evaluation):
    result, _ = evaluation
    assert result.charges["event_id"].to_list() == [f"good-{i}" for i in range(len(ATTACKS))]
    assert set(result.charges["charge_code"]) == {"GOOD"}


def test_error_messages_say_what_went_wrong(evaluation):
    result, _ = evaluation
    messages = dict(zip(result.errors["event_id"], result.errors["message"], strict=True))
    assert "instruction budget exceeded" in messages["bad-loop"]
    assert "instruction budget exceeded" in messages["bad-coroutine_loop"]
    assert "read-only" in messages["bad-global_write"]
    assert "read-only" in messages["bad-lib_write"]
    assert "resolves outside" in messages["bad-require_symlink"]
    assert "bad code" in messages["bad-bad_code"]
    assert "more than 6 decimal places" in messages["bad-basis_places"]
    assert "not a decimal" in messages["bad-basis_text"]
    assert "200 characters" in messages["bad-memo_long"]
    assert "memory" in messages["bad-memory"]


def test_backtracking_pattern_is_stopped_by_the_wall_clock(lua_dir, small_budgets):
    source = (
        "return {\n"
        '  good = function(e, charge) charge("GOOD", 1) end,\n'
        "  slow = function(e, charge)\n"
        '    string.find(string.rep("a", 40), string.rep("a-", 20) .. "b")\n'
        "  end,\n"
        "}\n"
    )
    engine = engine_with(lua_dir, source, small_budgets)
    rows = [event("g1", "good"), event("s1", "slow"), event("g2", "good")]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.charges["event_id"].to_list() == ["g1", "g2"]
    assert result.errors["event_id"].to_list() == ["s1"]
    assert "wall-clock" in result.errors["message"][0]


def test_syntax_error_fails_every_event_with_the_line(lua_dir, small_budgets):
    engine = engine_with(lua_dir, "local rules = {}\nrules[ = 1\nreturn rules\n", small_budgets)
    rows = [event("a", "good"), event("b", "other")]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.charges.height == 0
    assert result.errors["event_id"].to_list() == ["a", "b"]
    assert result.errors["line"].to_list() == [2, 2]


def test_params_cannot_leak_between_events(lua_dir, small_budgets):
    source = (
        "return { t = function(e, charge, ctx)\n"
        "  charge('LIMIT', ctx.params.limit)\n"
        "  ctx.params.limit = 0\n"
        "end }\n"
    )
    engine = engine_with(lua_dir, source, small_budgets)
    rows = [event("a", "t"), event("b", "t")]
    result = engine.evaluate(
        frame(rows), client_id="acme", rules_file="t.lua", versions=[RateVersion(DAY, {"limit": 5})]
    )
    assert [str(q) for q in result.charges["quantity"]] == ["5.000000", "5.000000"]


PARAM_VALUES = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.booleans(),
)
PARAMS = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.one_of(PARAM_VALUES, st.dictionaries(st.text(min_size=1, max_size=3), PARAM_VALUES)),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(params=PARAMS)
def test_ctx_params_is_what_deep_copy_makes_down_to_the_pairs_order(params):
    # ctx.params of a small flat table comes from an unrolled copy (no loop in the event
    # loop's trace), the rest from deep_copy: both must give the same table, in the same
    # `next` order, as deep_copy of the rate card's params
    runtime, driver = new_runtime()
    deep, handed = driver.params_copies(to_lua(runtime, params))
    assert lua_to_python(deep) == lua_to_python(handed)


def lua_to_python(value):
    if not hasattr(value, "values"):
        return value
    return [lua_to_python(v) for v in value.values()]


def test_ctx_params_is_a_fresh_table_at_every_read(lua_dir, small_budgets):
    source = (
        "return { t = function(e, charge, ctx)\n"
        "  local a, b = ctx.params, ctx.params\n"
        "  charge(rawequal(a, b) and 'SAME' or 'FRESH', a.limit + b.n)\n"
        "end }\n"
    )
    engine = engine_with(lua_dir, source, small_budgets)
    versions = [RateVersion(DAY, {"limit": 5, "n": 2, "name": "x"})]
    result = engine.evaluate(
        frame([event("a", "t"), event("b", "t")]),
        client_id="acme",
        rules_file="t.lua",
        versions=versions,
    )
    assert result.charges["charge_code"].to_list() == ["FRESH", "FRESH"]
    assert [str(q) for q in result.charges["quantity"]] == ["7.000000", "7.000000"]
