"""The Lua ``charge`` bridge under hostile arguments (issue 8, item 5), through the engine's
public ``evaluate``: the corpus in ``corpus/charge_calls`` (one argument list per line) and
hypothesis-built argument lists never crash it; every event ends charged, in error (with a
one-line message naming the rules file and line), or without charges, never two of these;
every quantity and basis is a finite decimal >= 0 with at most 6 places."""

from __future__ import annotations

import json
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.rules import Budgets, RateVersion, RuleEngine
from tests.fuzz.conftest import FUZZ_EXAMPLES, corpus_files

DAY = date(2026, 3, 2)
BUDGETS = Budgets(instructions=200_000, memory_bytes=128 * 1024**2, batch_seconds=20.0)
CALLS = [
    line
    for path in corpus_files("charge_calls", ".lua")
    for line in path.read_text().splitlines()
    if line.strip()
]


def _evaluate(calls: list[str], workdir: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """One handler per call (event type ``t<i>``), one event per handler."""
    lua = workdir / "lua"
    (lua / "rules").mkdir(parents=True)
    (lua / "lib").mkdir()
    source = ["local rules = {}"]
    for i, call in enumerate(calls):
        source.append(f"rules.t{i} = function(e, charge) charge({call}) end")
    source.append("return rules")
    (lua / "rules" / "fuzz.lua").write_text("\n".join(source) + "\n")
    ids = [f"ev-{i}" for i in range(len(calls))]
    events = pl.DataFrame(
        {
            "event_id": ids,
            "event_type": [f"t{i}" for i in range(len(calls))],
            "client_id": "acme",
            "warehouse_id": "WH1",
            "occurred_at_raw": f"{DAY}T10:00:00Z",
            "activity_date": [DAY] * len(calls),
            "payload": json.dumps({}),
        }
    )
    result = RuleEngine(lua, BUDGETS).evaluate(
        events, client_id="acme", rules_file="fuzz.lua", versions=[RateVersion(DAY, {})]
    )
    return result.charges, result.errors, ids


def _check(charges: pl.DataFrame, errors: pl.DataFrame, ids: list[str]) -> None:
    charged, failed = set(charges["event_id"]), set(errors["event_id"])
    assert not charged & failed, "an event in error keeps no charges"
    assert charged | failed <= set(ids)
    assert errors["event_id"].n_unique() == errors.height, "one error per event"
    for row in errors.iter_rows(named=True):
        message = row["message"]
        assert row["rules_file"] == "fuzz.lua"
        assert message and "\n" not in message and len(message) <= 400, message
    for column in ("quantity", "basis"):
        for value in charges[column].drop_nulls():
            assert isinstance(value, Decimal) and value.is_finite() and value >= 0, value
            assert -value.as_tuple().exponent <= 6
    for code in charges["charge_code"]:
        assert code == "PICK" or code.isupper(), code


def test_the_corpus_calls_never_crash_the_engine(tmp_path: Path) -> None:
    assert len(CALLS) >= 50
    charges, errors, ids = _evaluate(CALLS, tmp_path)
    _check(charges, errors, ids)
    by_call = dict(zip(ids, CALLS, strict=True))
    ok = {by_call[i] for i in charges["event_id"]}
    failed = {by_call[i]: m for i, m in zip(errors["event_id"], errors["message"], strict=True)}
    # Independent expectations for a few seeds: plain calls charge, absurd ones are errors
    # naming the rules file and the handler's line (call i is on line i + 2).
    assert '"PICK", 1' in ok and '"PICK", 1, {basis = "7.42"}' in ok
    for call in ('"PICK", 0/0', '"PICK", math.huge', '"PICK", -1', '"pick", 1', "nil, 1"):
        line = CALLS.index(call) + 2
        assert f"rules/fuzz.lua:{line}:" in failed[call], (call, failed[call])


ARGUMENTS = {
    "code": ['"PICK"', '"P_2"', '"pick"', "nil", "7", '""', 'string.rep("Q", 70)', '"\\0"'],
    "quantity": [
        "1",
        "0",
        "-0.0",
        "2.5",
        "1e-7",
        "0/0",
        "math.huge",
        "-3",
        "2^63",
        "1e35",
        '"1"',
        "nil",
        "{}",
        "0.1 + 0.2",
    ],
    "opts": [
        "",
        ", {}",
        ', {basis = "7.42"}',
        ", {basis = 1e39}",
        ", {basis = -0.5}",
        ', {basis = "1e999999999"}',
        ', {memo = "\\255"}',
        ', {memo = string.rep("x", 250)}',
        ", {memo = {}}",
        ', "x"',
        ", 1, 2",
    ],
}


@st.composite
def charge_call(draw: st.DrawFn) -> str:
    parts = [draw(st.sampled_from(ARGUMENTS[k])) for k in ("code", "quantity")]
    return ", ".join(parts) + draw(st.sampled_from(ARGUMENTS["opts"]))


@settings(
    max_examples=max(5, FUZZ_EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(charge_call() | st.sampled_from(CALLS), min_size=1, max_size=40))
def test_generated_charge_calls_never_crash_the_engine(calls: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        charges, errors, ids = _evaluate(calls, Path(tmp))
    _check(charges, errors, ids)
