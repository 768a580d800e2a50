"""`billing rules test [CLIENT]`: rule fixtures, one event in, expected charges out.

A fixture is a YAML file under ``lua/tests/<rules stem>/``::

    rules: heavy_parcel.lua          # optional: defaults to the folder name + .lua
    params: {heavy_lb: 50}           # optional: ctx.params
    event:                           # envelope fields default sensibly
      event_type: order.shipped
      occurred_at: "2026-03-02T15:04:05Z"
      payload: {...}
    expect:
      charges:                       # in emission order; basis/memo default to none
        - {code: SHIP_LABEL, quantity: "1", basis: "7.42"}
      # or: error: "substring of the rule error message"
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from billing_pipeline.config import Paths
from billing_pipeline.decimals import DecimalError, parse_decimal
from billing_pipeline.rules.engine import RuleEngine
from billing_pipeline.rules.model import Budgets, RateVersion, RuleLoadError


class FixtureUsageError(Exception):
    """Bad usage or configuration: the message says what and where."""


@dataclass
class FixtureResult:
    path: Path
    passed: bool
    diff: list[str] = field(default_factory=list)


@dataclass
class FixtureReport:
    results: list[FixtureResult]

    @property
    def failed(self) -> list[FixtureResult]:
        return [r for r in self.results if not r.passed]


@dataclass
class _Fixture:
    path: Path
    rules: str
    params: dict[str, Any]
    event: dict[str, Any]
    charges: list[tuple[str, Decimal, Decimal | None, str | None]] | None
    error: str | None


def rules_file_of_client(ratecards_dir: Path, client: str) -> str:
    path = ratecards_dir / f"{client}.yaml"
    if not path.is_file():
        raise FixtureUsageError(f"unknown client {client!r}: no rate card {path}")
    try:
        card = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FixtureUsageError(f"{path}: unreadable rate card: {exc}") from exc
    rules = card.get("rules", "default.lua") if isinstance(card, dict) else None
    if not isinstance(rules, str):
        raise FixtureUsageError(f"{path}: rules: expected a file name")
    return rules


def _decimal(value: Any, where: str) -> Decimal:
    try:
        return parse_decimal(value)
    except DecimalError as exc:
        raise FixtureUsageError(f"{where}: {exc}") from exc


def _load(path: Path) -> _Fixture:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FixtureUsageError(f"{path}: unreadable fixture: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), dict):
        raise FixtureUsageError(f"{path}: a fixture needs an 'event' mapping")
    expect = doc.get("expect")
    if not isinstance(expect, dict) or ("charges" in expect) == ("error" in expect):
        raise FixtureUsageError(f"{path}: expect: give either 'charges' or 'error'")
    charges = None
    if "charges" in expect:
        charges = []
        for i, line in enumerate(expect["charges"] or []):
            where = f"{path}: expect.charges[{i}]"
            if not isinstance(line, dict) or "code" not in line or "quantity" not in line:
                raise FixtureUsageError(f"{where}: needs code and quantity")
            basis = line.get("basis")
            charges.append(
                (
                    str(line["code"]),
                    _decimal(line["quantity"], where + ".quantity"),
                    None if basis is None else _decimal(basis, where + ".basis"),
                    line.get("memo"),
                )
            )
    rules = doc.get("rules") or path.parent.name + ".lua"
    return _Fixture(
        path, rules, doc.get("params") or {}, doc["event"], charges, expect.get("error")
    )


def _event_frame(fixture: _Fixture) -> pl.DataFrame:
    event = fixture.event
    occurred = str(event.get("occurred_at", "2026-01-15T12:00:00Z"))
    day = event.get("activity_date") or occurred[:10]
    if isinstance(day, str):
        day = datetime.date.fromisoformat(day)
    payload = json.dumps(
        event.get("payload") or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return pl.DataFrame(
        {
            "event_id": [str(event.get("event_id", fixture.path.stem))],
            "event_type": [str(event["event_type"])],
            "client_id": [str(event.get("client_id", "fixture"))],
            "warehouse_id": [str(event.get("warehouse_id", "WH1"))],
            "occurred_at_raw": [occurred],
            "activity_date": [day],
            "payload": [payload],
        },
        schema_overrides={"activity_date": pl.Date},
    )


def _fmt(line: tuple[str, Decimal, Decimal | None, str | None]) -> str:
    code, quantity, basis, memo = line
    text = f"{code} quantity={quantity.normalize():f}"
    if basis is not None:
        text += f" basis={basis.normalize():f}"
    if memo is not None:
        text += f" memo={memo!r}"
    return text


def run_fixture(engine: RuleEngine, fixture: _Fixture) -> FixtureResult:
    frame = _event_frame(fixture)
    try:
        result = engine.evaluate(
            frame,
            client_id=frame["client_id"][0],
            rules_file=fixture.rules,
            versions=[RateVersion(datetime.date(1900, 1, 1), fixture.params)],
        )
    except RuleLoadError as exc:
        return FixtureResult(fixture.path, False, [f"rules did not load: {exc}"])
    errors = result.errors["message"].to_list()
    if fixture.error is not None:
        if any(fixture.error in m for m in errors):
            return FixtureResult(fixture.path, True)
        got = errors or [_fmt(x) for x in _actual(result.charges)] or ["no charges"]
        return FixtureResult(
            fixture.path, False, [f"- error containing {fixture.error!r}"] + [f"+ {g}" for g in got]
        )
    actual = _actual(result.charges)
    expected = fixture.charges or []
    if not errors and actual == expected:
        return FixtureResult(fixture.path, True)
    diff = [f"- {_fmt(x)}" for x in expected if x not in actual]
    diff += [f"+ {_fmt(x)}" for x in actual if x not in expected]
    diff += [f"+ rule error: {m}" for m in errors]
    if not diff:
        diff = ["  same lines, different order:"] + [f"  {_fmt(x)}" for x in actual]
    return FixtureResult(fixture.path, False, diff)


def _actual(charges: pl.DataFrame) -> list[tuple[str, Decimal, Decimal | None, str | None]]:
    return [
        (r["charge_code"], r["quantity"], r["basis"], r["memo"])
        for r in charges.iter_rows(named=True)
    ]


def run_fixtures(
    lua_dir: Path, client: str | None = None, ratecards_dir: Path | None = None
) -> FixtureReport:
    """Runs every fixture under ``lua/tests`` (or those of CLIENT's rules file)."""
    paths = sorted((lua_dir / "tests").rglob("*.yaml")) + sorted((lua_dir / "tests").rglob("*.yml"))
    fixtures = [_load(p) for p in paths]
    if client is not None:
        if ratecards_dir is None:
            raise FixtureUsageError("a client needs the rate cards directory")
        rules = rules_file_of_client(ratecards_dir, client)
        fixtures = [f for f in fixtures if f.rules == rules]
    engine = RuleEngine(lua_dir, Budgets(batch_seconds=10.0))
    return FixtureReport([run_fixture(engine, f) for f in fixtures])


def main_rules_test(argv: Sequence[str] | None = None) -> int:
    """``billing rules test [CLIENT]``: 0 all pass, 1 failures, 2 bad usage."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: billing rules test [CLIENT]", file=sys.stderr)
        return 2
    paths = Paths.from_env()
    try:
        report = run_fixtures(paths.lua, args[0] if args else None, paths.ratecards)
    except FixtureUsageError as exc:
        print(f"billing rules test: {exc}", file=sys.stderr)
        return 2
    for result in report.results:
        if not result.passed:
            print(f"FAIL {result.path}")
            for line in result.diff:
                print(f"    {line}")
    passed = len(report.results) - len(report.failed)
    print(f"{passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0
