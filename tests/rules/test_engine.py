from __future__ import annotations

import datetime
import random
import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.rules import (
    CHARGES_SCHEMA,
    ERRORS_SCHEMA,
    Budgets,
    RateVersion,
    RuleEngine,
    RuleLoadError,
)
from tests.rules.conftest import engine_with, event, frame

SHIPPED = Path(__file__).resolve().parents[2] / "lua"


def test_empty_batch_has_the_exact_dtypes(lua_dir, small_budgets):
    engine = engine_with(lua_dir, "return {}", small_budgets)
    empty = frame([event("a", "x")]).clear()
    result = engine.evaluate(empty, client_id="acme", rules_file="t.lua", versions=[])
    assert result.charges.schema == pl.Schema(CHARGES_SCHEMA)
    assert result.errors.schema == pl.Schema(ERRORS_SCHEMA)


def test_payload_reaches_lua_as_spec_5_says(lua_dir, small_budgets):
    # each check charges CHECK_n with quantity 1 when it holds, 0 when it does not
    source = """
return { t = function(e, charge)
  local p = e.payload
  local checks = {
    type(p.s) == "string" and p.s == "7.40",
    type(p.n) == "number" and p.n == 7.4,
    p.list[1] == 1 and p.list[2] == nil and p.list[3] == "x",
    p.null == nil,
    p.obj.deep[2].k == true,
    p.text == 'é "q" \\\\ \\n ☃ 😀',
    e.occurred_at == "2026-03-02T10:00:00Z" and e.activity_date == "2026-03-02",
    e.event_id == "a" and e.event_type == "t" and e.client_id == "acme" and e.warehouse_id == "WH1",
  }
  for i, ok in ipairs(checks) do charge("CHECK_" .. i, ok and 1 or 0) end
end }
"""
    engine = engine_with(lua_dir, source, small_budgets)
    payload = {
        "s": "7.40",
        "n": 7.4,
        "list": [1, None, "x"],
        "null": None,
        "obj": {"deep": [{}, {"k": True}]},
        "text": 'é "q" \\ \n ☃ 😀',
    }
    result = engine.evaluate(
        frame([event("a", "t", payload)]), client_id="acme", rules_file="t.lua", versions=[]
    )
    assert result.errors.height == 0, result.errors["message"].to_list()
    assert [str(q) for q in result.charges["quantity"]] == ["1.000000"] * 8


def test_numbers_are_read_by_shortest_decimal_and_rounded_half_up(lua_dir, small_budgets):
    source = """
return { t = function(e, charge)
  charge("A", 0.1 + 0.2)        -- 0.30000000000000004 -> 0.300000
  charge("B", 2.0000005)        -- shortest form 2.0000005 -> half up 2.000001
  charge("C", 1e-7)             -- 0.0000001 -> 0.000000
  charge("D", 3, { basis = "7.4200" })
  charge("E", 1, { basis = 1.0000005, memo = "m" })
end }
"""
    engine = engine_with(lua_dir, source, small_budgets)
    result = engine.evaluate(
        frame([event("a", "t")]), client_id="acme", rules_file="t.lua", versions=[]
    )
    rows = result.charges.select("charge_code", "quantity", "basis", "memo").rows()
    assert rows == [
        ("A", Decimal("0.3"), None, None),
        ("B", Decimal("2.000001"), None, None),
        ("C", Decimal("0"), None, None),
        ("D", Decimal("3"), Decimal("7.42"), None),
        ("E", Decimal("1"), Decimal("1.000001"), "m"),
    ]


def test_version_in_effect_gives_params_and_ratecard_version(lua_dir, small_budgets):
    source = 'return { t = function(e, charge, ctx) charge("P", ctx.params.p or 0) end }'
    engine = engine_with(lua_dir, source, small_budgets)
    days = [datetime.date(2025, 12, 31), datetime.date(2026, 1, 1), datetime.date(2026, 2, 15)]
    rows = [event(f"e{i}", "t", day=d) for i, d in enumerate(days)]
    versions = [
        RateVersion(datetime.date(2026, 2, 1), {"p": 2}),
        RateVersion(datetime.date(2026, 1, 1), {"p": 1}),
    ]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=versions)
    assert [str(q) for q in result.charges["quantity"]] == ["0.000000", "1.000000", "2.000000"]
    assert result.charges["ratecard_version"].to_list() == [
        None,
        datetime.date(2026, 1, 1),
        datetime.date(2026, 2, 1),
    ]
    # one version in effect for every event (the batch's usual case: its own code path)
    later = frame(rows[2:] * 2)
    result = engine.evaluate(later, client_id="acme", rules_file="t.lua", versions=versions)
    assert result.charges["ratecard_version"].to_list() == [datetime.date(2026, 2, 1)] * 2


def shipped_events(n: int) -> pl.DataFrame:
    """The benchmark's realistic mix (benchmarks/ is not a package: load it by path)."""
    import importlib.util

    path = SHIPPED.parent / "benchmarks" / "bench_rules.py"
    spec = importlib.util.spec_from_file_location("bench_rules", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_events(n, seed=3)


def test_same_events_shuffled_and_split_give_identical_charges():
    engine = RuleEngine(SHIPPED)
    events = shipped_events(3000)
    versions = [RateVersion(datetime.date(2026, 1, 1), {"heavy_lb": 20})]
    whole = engine.evaluate(
        events, client_id="acme", rules_file="heavy_parcel.lua", versions=versions
    ).charges
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=11)
    parts = [shuffled[:1000], shuffled[1000:1700], shuffled[1700:]]
    pieces = pl.concat(
        [
            engine.evaluate(
                p, client_id="acme", rules_file="heavy_parcel.lua", versions=versions
            ).charges
            for p in parts
        ]
    )
    key = ["event_id", "charge_code"]
    assert whole.height > 3000
    assert whole.sort(key, maintain_order=True).equals(pieces.sort(key, maintain_order=True))


def test_output_keeps_input_order_then_emission_order():
    engine = RuleEngine(SHIPPED)
    rows = [
        event("z", "order.picked", {"order_id": "1", "channel": "dtc", "lines": 1, "units": 3}),
        event("a", "order.cancelled", {"order_id": "1", "stage": "after_pick"}),
    ]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="default.lua", versions=[])
    assert result.charges.select("event_id", "charge_code").rows() == [
        ("z", "PICK_ORDER"),
        ("z", "PICK_ADD_UNIT"),
        ("a", "CANCEL_RESTOCK"),
    ]


def test_rule_kinds_of_the_shipped_rules():
    kinds = RuleEngine(SHIPPED).rule_kinds("heavy_parcel.lua")
    assert kinds["putaway.completed"] == "false"
    assert kinds["inventory.adjusted"] == "false"
    assert kinds["order.shipped"] == "handler"
    assert len(kinds) == 11


def test_rule_kinds_refuses_a_broken_rules_file(lua_dir, small_budgets):
    engine = engine_with(lua_dir, "return { x = 1 }", small_budgets)
    with pytest.raises(RuleLoadError, match="must be a function or false"):
        engine.rule_kinds("t.lua")


def test_fingerprint_covers_required_libraries(tmp_path):
    lua = tmp_path / "lua"
    shutil.copytree(SHIPPED, lua)
    engine = RuleEngine(lua, Budgets())
    before = engine.fingerprint("heavy_parcel.lua")
    default_before = engine.fingerprint("default.lua")
    assert before != default_before
    (lua / "lib" / "util.lua").write_text((lua / "lib" / "util.lua").read_text() + "\n-- x\n")
    assert engine.fingerprint("heavy_parcel.lua") != before
    assert engine.fingerprint("default.lua") != default_before


def test_rules_file_names_cannot_escape(lua_dir, small_budgets):
    engine = engine_with(lua_dir, "return {}", small_budgets)
    for name in ["../t.lua", "/etc/passwd", "rules/t.lua", "missing.lua"]:
        with pytest.raises(RuleLoadError):
            engine.fingerprint(name)


def test_many_events_with_a_few_bad_ones_keep_the_rest():
    rng = random.Random(5)
    engine = RuleEngine(SHIPPED, Budgets(batch_seconds=30))
    events = shipped_events(20000)
    bad = set(rng.sample(range(events.height), 25))
    # a label_cost that is not a decimal makes charge() refuse the basis
    payloads = ['{"label_cost":"n/a"}' if i in bad else p for i, p in enumerate(events["payload"])]
    types = ["order.shipped" if i in bad else t for i, t in enumerate(events["event_type"])]
    events = events.with_columns(pl.Series("payload", payloads), pl.Series("event_type", types))
    result = engine.evaluate(events, client_id="acme", rules_file="default.lua", versions=[])
    bad_ids = {events["event_id"][i] for i in bad}
    assert set(result.errors["event_id"]) == bad_ids
    assert set(result.errors["line"]) == {28}  # the SHIP_LABEL charge in default.lua
    assert not bad_ids & set(result.charges["event_id"])
    assert result.charges.height > 20000


def test_packing_materials_charged_in_order_with_their_error_lines():
    # lib/util.lua's code_part memoizes by material code: the same codes, charges and errors
    mat = [{"code": c, "qty": q} for c, q in [("poly-mailer", 2), ("BOX_S", 1), ("box m", 3)]]
    cases = {
        "m0": [],
        "m1": mat[:1],
        "m2": mat[:2],
        "m4": [*mat, {"code": "BOX_S", "qty": 4}],
        "hole": [mat[0], None, mat[2]],
        "bad1": [7],
        "bad3": [*mat[:2], 7, mat[2]],
        "none": None,
    }
    rows = []
    for name, materials in cases.items():
        payload = {"order_id": "SO-1", "cartons": 1, "inserts": 0}
        if materials is not None:
            payload["materials"] = materials
        rows.append(event(name, "order.packed", payload))
    result = RuleEngine(SHIPPED).evaluate(
        frame(rows), client_id="acme", rules_file="default.lua", versions=[]
    )
    got: dict[str, list[tuple[str, Decimal]]] = {}
    for event_id, code, quantity in result.charges.select(
        "event_id", "charge_code", "quantity"
    ).iter_rows():
        got.setdefault(event_id, []).append((code, quantity))
    mats = [("MAT_POLY_MAILER", 2), ("MAT_BOX_S", 1), ("MAT_BOX_M", 3), ("MAT_BOX_S", 4)]
    for name, n in [("m0", 0), ("m1", 1), ("m2", 2), ("m4", 4), ("hole", 1)]:
        expected = [("PACK_CARTON", 1), *mats[:n]]
        assert got[name] == [(c, Decimal(q)) for c, q in expected], name
    errors = {r[0]: r[1:] for r in result.errors.select("event_id", "line", "message").rows()}
    assert set(errors) == {"bad1", "bad3", "none"}
    index_error = "attempt to index local 'material' (a number value)"
    assert errors["bad1"] == (21, f"rules/default.lua:21: {index_error}")
    assert errors["bad3"] == (21, f"rules/default.lua:21: {index_error}")
    assert errors["none"][0] == 20 and "bad argument #1 to 'ipairs'" in errors["none"][1]


def test_fractional_quantities_among_integers_convert_exactly(lua_dir, small_budgets):
    source = """
return { t = function(e, charge)
  charge("Q", e.payload.q)
  if e.payload.b then charge("B", 1, { basis = e.payload.b }) end
end }
"""
    engine = engine_with(lua_dir, source, small_budgets)
    values = [1, 0.1 + 0.2, 2.5, 1e-7, 0.0000005, 3, 2.0**53 + 2, 1234.5678905]
    rows = [event(f"e{i}", "t", {"q": v, "b": v if i % 2 else None}) for i, v in enumerate(values)]
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    q = dict(
        result.charges.filter(pl.col("charge_code") == "Q").select("event_id", "quantity").rows()
    )
    assert [q[f"e{i}"] for i in range(len(values))] == [
        Decimal("1"),
        Decimal("0.3"),
        Decimal("2.5"),
        Decimal("0"),
        Decimal("0.000001"),
        Decimal("3"),
        Decimal("9007199254740994"),
        Decimal("1234.567891"),
    ]
    b = dict(result.charges.filter(pl.col("charge_code") == "B").select("event_id", "basis").rows())
    assert b == {
        "e1": Decimal("0.3"),
        "e3": Decimal("0"),
        "e5": Decimal("3"),
        "e7": Decimal("1234.567891"),
    }


LEAK_PROBE = """
import os, sys, time
from tests.rules.conftest import Budgets, engine_with, event, frame
from pathlib import Path
engine = engine_with(Path(sys.argv[1]), 'return { t = function(e, charge) charge("X", 1) end }',
                     Budgets(instructions=200_000, memory_bytes=64 * 1024**2, batch_seconds=2.0))
rows = frame([event(f"e{i}", "t") for i in range(100)])
engine.evaluate(rows, client_id="acme", rules_file="t.lua", versions=[])  # warm up
before = set(os.listdir("/proc/self/fd"))
for _ in range(3):
    result = engine.evaluate(rows, client_id="acme", rules_file="t.lua", versions=[])
    assert result.charges.height == 100
time.sleep(0.5)  # children are reaped by a thread once they have sent their result
print("fds", sorted(set(os.listdir("/proc/self/fd")) - before))
try:
    os.waitpid(-1, os.WNOHANG)
    print("child left")
except ChildProcessError:
    print("no child")
"""


def test_evaluate_leaves_no_descriptor_or_child_behind(lua_dir):
    # In a fresh interpreter: the test process itself has children and threads of its own.
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", LEAK_PROBE, str(lua_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines()[-2:] == ["fds []", "no child"], done.stderr


def test_lines_come_back_in_input_order_with_their_own_values(lua_dir, small_budgets):
    """Types interleaved, a type without a handler between them, a handler that charges and
    then fails (its lines rolled back), quantities on both sides of the driver's direct-id
    range and bases that are equal as numbers and as strings: each line keeps its event,
    its place and its values."""
    source = """
return {
  a = function(e, charge)
    charge("A", e.payload.q, { basis = e.payload.b })
    charge("A2", e.payload.q * 2, { memo = "m" .. e.payload.b })
    if e.payload.fail then error("no") end
  end,
  c = function(e, charge)
    charge("C", e.payload.q, { basis = tostring(e.payload.b) })
  end,
  skip = false,
}
"""
    engine = engine_with(lua_dir, source, small_budgets)
    quantities = [0, 1, 65535, 65536, 70000, 2.0**40, 1e20]  # 7: every kind meets every value
    rows, expected, failed = [], [], []
    for i in range(len(quantities) * 8):
        q, kind, b = quantities[i % 7], ["a", "skip", "c", "none"][i % 4], i % 3
        fail = kind == "a" and i % 6 == 0
        rows.append(event(f"e{i}", kind, {"q": q, "b": b, "fail": fail or None}))
        if kind == "a" and fail:
            failed.append(f"e{i}")
        elif kind == "a":
            expected.append((f"e{i}", "A", Decimal(int(q)), Decimal(b), None))
            expected.append((f"e{i}", "A2", Decimal(int(q)) * 2, None, f"m{b}"))
        elif kind == "c":
            expected.append((f"e{i}", "C", Decimal(int(q)), Decimal(b), None))
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    got = result.charges.select("event_id", "charge_code", "quantity", "basis", "memo").rows()
    assert got == expected
    assert result.errors["event_id"].to_list() == failed


def test_payload_numbers_are_the_doubles_python_reads(lua_dir, small_budgets):
    """Every number of a payload, in an object field, an array and a nested object, is the
    double ``float()`` gives for its text: short integers (read without strtod), negative
    zero, integers of 15 and more digits, beyond 2^53 and beyond int64, and decimals. Many
    events of one shape, so the shape-compiled decoder reads most of them."""
    source = """
return { t = function(e, charge)
  local p = e.payload
  charge("N", 0, { memo = string.format("%.17g %.17g %.17g", p.a, p.b[1], p.c.d) })
end }
"""
    engine = engine_with(lua_dir, source, small_budgets)
    texts = ["0", "-0", "7", "-7", "10", "123456789012345", "-99999999999999",
             "999999999999999", "1234567890123456", "9007199254740993",
             "12345678901234567890", "-12345678901234567890", "1.5", "2.50", "1e3", "1E3",
             "-0.0", "0.1", "5e-324", "1.7976931348623157e308"]  # fmt: skip
    rows = []
    for k in range(3):
        for i, t in enumerate(texts):
            row = event(f"e{k}-{i}", "t")
            row["payload"] = f'{{"a":{t},"b":[{t}],"c":{{"d":{t}}}}}'
            rows.append(row)
    result = engine.evaluate(frame(rows), client_id="acme", rules_file="t.lua", versions=[])
    assert result.errors.height == 0
    memos = result.charges["memo"].to_list()
    assert memos == [" ".join([f"{float(t):.17g}"] * 3) for _ in range(3) for t in texts]
