"""The per-day charges cache (charges_cache.py): a month built night by night equals a cold
rebuild, and each kind of input change recomputes exactly the days it affects.

Data: ``billing generate`` (3 clients, 2026-03-01 .. 03-08, ~1,500 events a day), ingested
with the real ingestion code into a "full" store. The third client bills with ``errs.lua``,
which raises for every ``order.cancelled``, so rule errors go through the cache too. The
cold rebuild is ``compute_charges`` without a cache: the whole month in one engine batch,
as before the cache existed.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from billing_pipeline.charges_cache import ChargesCache
from billing_pipeline.charging import (
    ChargesOutcome,
    charges_state_file,
    charges_written,
    compute_charges,
    read_charges,
    read_charges_state,
    write_charges,
)
from billing_pipeline.generate import GenerateOptions, generate
from billing_pipeline.ingest.activity import ENCODING, build_activity_range
from billing_pipeline.ingest.landing import dates_around, ingest_landing
from billing_pipeline.invoicing import issue_invoice
from billing_pipeline.ratecards import RateCard, load_ratecards
from billing_pipeline.rules import RuleEngine
from billing_pipeline.storage import Store, write_parquet

REPO_LUA = Path(__file__).resolve().parents[2] / "lua"
MONTH = "2026-03"
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(8)]
ERRS_LUA = """\
local rules = require("rules.default")
rules["order.cancelled"] = function(e, charge, ctx) error("cannot bill " .. e.event_id) end
return rules
"""


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated, ingested activity of the 8 days (read-only; tests copy what they need)."""
    root = tmp_path_factory.mktemp("full")
    generate(
        GenerateOptions(
            out=root / "gen",
            clients=3,
            start=DAYS[0],
            days=len(DAYS),
            events_per_day=1500,
            seed=7,
        )
    )
    cards, bad = load_ratecards(root / "gen" / "ratecards")
    assert not bad and len(cards) == 3
    timezones = {c: card.timezone for c, card in cards.items()}
    store = Store(root / "data")
    result = ingest_landing(root / "gen" / "landing", store, timezones)
    build_activity_range(store, sorted(dates_around(result.touched_dates)), timezones)
    return root


@pytest.fixture
def world(full: Path, tmp_path: Path) -> dict:
    """A fresh outputs directory, Lua tree and rate cards; the third client on errs.lua."""
    lua = tmp_path / "lua"
    shutil.copytree(REPO_LUA, lua)
    (lua / "rules" / "errs.lua").write_text(ERRS_LUA)
    ratecards = tmp_path / "ratecards"
    shutil.copytree(full / "gen" / "ratecards", ratecards)
    third = sorted(ratecards.glob("*.yaml"))[2]
    card = yaml.safe_load(third.read_text())
    card["rules"] = "errs.lua"
    third.write_text(yaml.safe_dump(card))
    return {
        "full": Store(full / "data"),
        "store": Store(tmp_path / "data"),
        "lua": lua,
        "ratecards": ratecards,
    }


def cards(world: dict) -> dict[str, RateCard]:
    loaded, bad = load_ratecards(world["ratecards"])
    assert not bad
    return loaded


def land_day(world: dict, day: date) -> None:
    """Copy one day's activity partition files from the full store (what a night adds)."""
    source = world["full"].activity_dir(day)
    if source.exists():
        shutil.copytree(source, world["store"].activity_dir(day), dirs_exist_ok=True)


def run_all(world: dict, cache: bool = True) -> dict[str, ChargesOutcome]:
    engine = RuleEngine(world["lua"])
    store = world["store"]
    return {
        client: compute_charges(store, engine, card, MONTH, ChargesCache(store) if cache else None)
        for client, card in cards(world).items()
    }


def assert_same(cached: ChargesOutcome, cold: ChargesOutcome) -> None:
    assert cached.charges.equals(cold.charges), cached.client_id
    assert cached.errors.equals(cold.errors), cached.client_id
    assert cached.charges.schema == cold.charges.schema
    assert cached.errors.schema == cold.errors.schema
    for name in ("events", "events_by_type", "events_sha256", "rules_sha256", "unpriced"):
        assert getattr(cached, name) == getattr(cold, name), name


def days_with_activity(world: dict, client: str) -> list[date]:
    store = world["store"]
    return [d for d in DAYS if store.activity_file(d, client).exists()]


def test_month_built_night_by_night_equals_a_cold_rebuild(world: dict) -> None:
    seen: dict[str, set[date]] = {}
    for day in DAYS:
        land_day(world, day)
        outcomes = run_all(world)
        for client, outcome in outcomes.items():
            had = seen.setdefault(client, set())
            now = set(days_with_activity(world, client))
            # each night goes through Lua only for the day that arrived
            assert outcome.days_computed == len(now - had)
            assert outcome.days_cached == len(had)
            seen[client] = now
    cold = run_all(world, cache=False)
    for client, outcome in outcomes.items():
        assert outcome.days_cached == len(seen[client]) - 1
        assert_same(outcome, cold[client])
        assert cold[client].days_computed == len(seen[client])
    # the comparison means something: charges on every day, rule errors cached too
    errs = next(o for o in outcomes.values() if o.rules_file == "errs.lua")
    assert errs.errors.height > 0
    assert set(errs.errors["activity_date"].unique()) <= set(DAYS)
    assert all(o.charges.height > 1000 for o in outcomes.values())
    # a rule-errors file is cached for the client-days that have rule errors, and only them
    cached = world["store"].root / "_cache" / "charges"
    with_errors = {
        (o.client_id, d) for o in outcomes.values() for d in o.errors["activity_date"].unique()
    }
    files = {
        (p.parent.parent.name.removeprefix("client_id="), p.parent.name.split("=")[1])
        for p in cached.rglob("*.errors.parquet")
    }
    assert files == {(c, d.isoformat()) for c, d in with_errors}


def full_month(world: dict) -> dict[str, ChargesOutcome]:
    for day in DAYS:
        land_day(world, day)
    first = run_all(world)
    assert all(o.days_cached == 0 for o in first.values())
    again = run_all(world)
    assert all(o.days_computed == 0 and o.days_cached == len(DAYS) for o in again.values())
    return again


def test_a_rule_edit_recomputes_only_the_clients_whose_rules_it_touches(world: dict) -> None:
    full_month(world)
    errs = world["lua"] / "rules" / "errs.lua"
    errs.write_text(ERRS_LUA.replace("cannot bill", "no charge for cancelled"))
    outcomes = run_all(world)
    for outcome in outcomes.values():
        if outcome.rules_file == "errs.lua":
            assert (outcome.days_computed, outcome.days_cached) == (len(DAYS), 0)
            assert outcome.errors["message"].str.contains("no charge for cancelled").all()
        else:
            assert (outcome.days_computed, outcome.days_cached) == (0, len(DAYS))
    cold = run_all(world, cache=False)
    for client, outcome in outcomes.items():
        assert_same(outcome, cold[client])


def test_a_params_change_recomputes_the_days_from_its_effective_date(world: dict) -> None:
    before = full_month(world)
    heavy = [c for c, o in before.items() if o.rules_file == "heavy_parcel.lua"]
    assert heavy, "the generator gives one client heavy_parcel.lua with params"
    client = heavy[0]
    path = world["ratecards"] / f"{client}.yaml"
    card = yaml.safe_load(path.read_text())
    later = dict(card["versions"][-1])
    later["effective_from"] = "2026-03-05"
    later["params"] = {"heavy_lb": 1}  # nearly every parcel now heavy: SHIP_HEAVY on each
    card["versions"].append(later)
    path.write_text(yaml.safe_dump(card))
    outcomes = run_all(world)
    changed = [d for d in DAYS if d >= date(2026, 3, 5)]
    assert outcomes[client].days_computed == len(changed)
    assert outcomes[client].days_cached == len(DAYS) - len(changed)
    cut = pl.col("activity_date") >= date(2026, 3, 5)

    def heavy_lines(outcome: ChargesOutcome, late: bool) -> int:
        lines = outcome.charges.filter(pl.col("charge_code") == "SHIP_HEAVY")
        return lines.filter(cut if late else ~cut).height

    # heavier than 1 lb is nearly every parcel: more SHIP_HEAVY from the 5th, same before
    assert heavy_lines(outcomes[client], late=True) > heavy_lines(before[client], late=True)
    assert heavy_lines(outcomes[client], late=False) == heavy_lines(before[client], late=False)
    for other, outcome in outcomes.items():
        if other != client:
            assert outcome.days_computed == 0
    # a rate change that leaves params alone only matters to pricing: nothing recomputed
    card["versions"][0]["charges"]["PICK_ORDER"]["rate"] = "9.99"
    path.write_text(yaml.safe_dump(card))
    assert run_all(world)[client].days_computed == 0
    cold = run_all(world, cache=False)
    for other, outcome in run_all(world).items():
        assert_same(outcome, cold[other])


def test_a_late_file_recomputes_its_day_only(world: dict) -> None:
    outcomes = full_month(world)
    client = sorted(outcomes)[0]
    store = world["store"]
    target = store.activity_file(DAYS[2], client)
    frame = pl.read_parquet(target)
    # the same rows written again (a new file, same bytes): still from the cache
    write_parquet(frame, target, **ENCODING)
    assert run_all(world)[client].days_computed == 0
    # a late file adds events to that day: only it goes through Lua again
    late = world["full"].activity_file(DAYS[3], client)
    extra = (
        pl.read_parquet(late)
        .head(5)
        .with_columns(pl.col("event_id") + "-late", pl.lit(DAYS[2]).alias("activity_date"))
    )
    write_parquet(pl.concat([frame, extra]), target)
    outcome = run_all(world)[client]
    assert (outcome.days_computed, outcome.days_cached) == (1, len(DAYS) - 1)
    assert outcome.events == outcomes[client].events + 5
    # a cache file lost in a crash: that day is computed again, not read as empty
    cache = ChargesCache(store)
    entry = cache.entry(client, DAYS[4])
    assert entry is not None
    (cache.day_dir(client, DAYS[4]) / f"{entry.key}.charges.parquet").unlink()
    again = run_all(world)[client]
    assert again.days_computed == 1
    assert_same(again, run_all(world, cache=False)[client])


# --- the charges dataset as one part per activity day (charging.write_charges) ---------


def write_all(world: dict) -> dict[str, ChargesOutcome]:
    outcomes = run_all(world)
    for outcome in outcomes.values():
        write_charges(world["store"], outcome)
    return outcomes


def part_stats(world: dict, client: str) -> dict[str, tuple[int, int]]:
    folder = world["store"].charges_dir(MONTH, client)
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_a_night_writes_only_its_new_day_and_reads_no_other(world: dict) -> None:
    for day in DAYS[:-1]:
        land_day(world, day)
    write_all(world)
    store = world["store"]
    clients = sorted(cards(world))
    before = {c: part_stats(world, c) for c in clients}
    for client in clients:
        assert sorted(before[client]) == [
            f"part-{d.isoformat()}.parquet" for d in days_with_activity(world, client)
        ]
    # the cached days' lines are not read at all: without their cache files the night works
    for lost in (store.root / "_cache" / "charges").rglob("*.charges.parquet"):
        lost.unlink()
    land_day(world, DAYS[-1])
    outcomes = write_all(world)
    cold = run_all(world, cache=False)
    for client in clients:
        after = part_stats(world, client)
        new = f"part-{DAYS[-1].isoformat()}.parquet"
        assert set(after) == set(before[client]) | {new}
        # the other days' files are the very same files: not rewritten (inode and mtime)
        assert {k: v for k, v in after.items() if k != new} == before[client]
        assert outcomes[client].days_computed == 1
        stored = read_charges(store, MONTH, client)
        assert stored.equals(cold[client].charges), client
        assert outcomes[client].charges.equals(cold[client].charges), client
        state = read_charges_state(store, MONTH, client)
        assert state is not None and state["charges"] == cold[client].charges.height


def test_the_one_file_layout_and_lost_parts_are_replaced(world: dict) -> None:
    for day in DAYS:
        land_day(world, day)
    store = world["store"]
    client = sorted(cards(world))[0]
    cold = run_all(world, cache=False)[client]
    # what the earlier layout left: the whole month in part-0.parquet, a state without parts
    folder = store.charges_dir(MONTH, client)
    write_parquet(cold.charges, folder / "part-0.parquet")
    write_all(world)
    assert "part-0.parquet" not in part_stats(world, client)
    assert read_charges(store, MONTH, client).equals(cold.charges)
    # a day's part deleted by hand is written again, from the cache, by the next run
    lost = store.charges_part(MONTH, client, DAYS[3])
    lost.unlink()
    outcome = write_all(world)[client]
    assert lost.exists() and outcome.days_computed == 0
    assert read_charges(store, MONTH, client).equals(cold.charges)
    # a part the state file does not describe (a run killed after replacing it, before its
    # state file): written again, though its day's inputs are the state's
    torn = store.charges_part(MONTH, client, DAYS[2])
    write_parquet(pl.read_parquet(torn).head(1), torn)
    outcome = write_all(world)[client]
    assert outcome.days_computed == 0
    assert read_charges(store, MONTH, client).equals(cold.charges)


def test_a_month_without_charges_has_no_part_files(world: dict) -> None:
    silent = world["lua"] / "rules" / "silent.lua"
    silent.write_text(
        'local rules = require("rules.default")\n'
        "local silent = {}\n"
        "for name in pairs(rules) do silent[name] = function(e, charge, ctx) end end\n"
        "return silent\n"
    )
    client = sorted(cards(world))[0]
    path = world["ratecards"] / f"{client}.yaml"
    card = yaml.safe_load(path.read_text())
    card["rules"] = "silent.lua"
    path.write_text(yaml.safe_dump(card))
    for day in DAYS[:3]:
        land_day(world, day)
    store = world["store"]
    first = write_all(world)[client]
    assert first.events > 0 and first.charge_count == 0 and first.errors.is_empty()
    again = write_all(world)[client]
    assert again.days_cached == len(days_with_activity(world, client))
    assert list(store.charges_dir(MONTH, client).glob("*")) == []
    assert charges_written(store, MONTH, client)
    assert read_charges(store, MONTH, client).is_empty()


def test_unpriced_charges_are_counted_from_the_days_totals(world: dict) -> None:
    for day in DAYS[:4]:
        land_day(world, day)
    client = sorted(cards(world))[0]
    path = world["ratecards"] / f"{client}.yaml"
    card = yaml.safe_load(path.read_text())
    for version in card["versions"]:
        version["charges"].pop("PICK_ORDER")
        for minimum in version.get("minimums", []):
            minimum["covers"] = [c for c in minimum["covers"] if c != "PICK_ORDER"]
    path.write_text(yaml.safe_dump(card))
    write_all(world)
    land_day(world, DAYS[4])
    outcome = write_all(world)[client]
    assert outcome.days_cached == len(days_with_activity(world, client)) - 1
    cold = run_all(world, cache=False)[client]
    # counted independently: the PICK_ORDER lines of the month's charges
    picks = cold.charges.filter(pl.col("charge_code") == "PICK_ORDER").height
    assert picks > 0
    assert outcome.unpriced == {"PICK_ORDER": picks}
    assert outcome.charges_by_code() == dict(
        cold.charges["charge_code"].value_counts().sort("charge_code").iter_rows()
    )


def test_the_invoice_from_the_days_summaries_equals_the_invoice_from_the_lines(
    world: dict,
) -> None:
    for day in DAYS[:5]:
        land_day(world, day)
    write_all(world)
    land_day(world, DAYS[5])
    write_all(world)  # a night: five days' summaries from the cache, one computed
    store = world["store"]
    issued = {}
    for client, card in cards(world).items():
        outcome = issue_invoice(store, card, MONTH)
        folder = store.invoice_dir(MONTH, client)
        issued[client] = (outcome.status, {p.name: p.read_bytes() for p in folder.glob("*")})
    assert {status for status, _ in issued.values()} == {"issued", "blocked"}  # errs.lua
    for client, card in cards(world).items():
        # a state file of the earlier format (no per-day summaries): priced from the lines
        state_file = charges_state_file(store, MONTH, client)
        state = json.loads(state_file.read_text())
        del state["days"]
        state_file.write_text(json.dumps(state))
        outcome = issue_invoice(store, card, MONTH)
        folder = store.invoice_dir(MONTH, client)
        assert (outcome.status, {p.name: p.read_bytes() for p in folder.glob("*")}) == issued[
            client
        ], client
