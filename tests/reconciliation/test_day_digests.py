"""The reports' per-day digests (reconciliation/day_digests.py): a report made from cached
digests says what one made from the files says, and a day is digested again whenever one of
its files changed. Expected rows are builders.py's world, worked out by hand below."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.reconciliation import day_digests, render_files
from billing_pipeline.reconciliation.day_digests import DayDigest, add_up, digests_of
from billing_pipeline.reconciliation.inputs import activity_days, load_client_month
from billing_pipeline.storage import write_parquet
from tests.reconciliation.builders import MONTH, World, make_world
from tests.reconciliation.test_reports import report, rows

CACHE = Path("_cache") / "reconciliation"
NOT_CHARGED = "a handler ran and emitted no charge"


def _ids(*ids: str) -> pl.Series:
    return pl.Series("event_id", list(ids), dtype=pl.String)


def test_two_days_by_hand() -> None:
    # day 1: e1 and e3 made charges, e4 a rule error, so only e2 is left uncharged;
    # day 2: e5 made none
    one, two = date(2026, 3, 1), date(2026, 3, 2)
    events = pl.DataFrame(
        [("e3", "ship", one), ("e1", "pick", one), ("e5", "pick", two), ("e4", "ship", one),
         ("e2", "pick", one)],
        schema=["event_id", "event_type", "activity_date"],
        orient="row",
    )  # fmt: skip
    digests = digests_of(events, _ids("e1", "e3", "other"), _ids("e4", "elsewhere"))
    assert digests == {
        one: DayDigest(
            events={"pick": 2, "ship": 2},
            charged={"pick": 1, "ship": 1},
            uncharged={"pick": 1},
            examples={"pick": ["e2"]},
        ),
        two: DayDigest(
            events={"pick": 1},
            charged={"pick": 0},
            uncharged={"pick": 1},
            examples={"pick": ["e5"]},
        ),
    }


def test_days_add_up_and_keep_the_five_smallest_ids() -> None:
    one = DayDigest({"pick": 4}, {"pick": 0}, {"pick": 4}, {"pick": ["b", "d", "f", "h"]})
    two = DayDigest(
        {"pick": 3, "ship": 1}, {"pick": 0, "ship": 1}, {"pick": 3}, {"pick": ["a", "c", "i"]}
    )
    assert add_up([one, two]) == DayDigest(
        events={"pick": 7, "ship": 1},
        charged={"pick": 0, "ship": 1},
        uncharged={"pick": 7},
        examples={"pick": ["a", "b", "c", "d", "f"]},
    )


@pytest.fixture
def fresh(tmp_path: Path) -> World:
    """A world of its own: these tests change its files."""
    return make_world(tmp_path / "world")


def test_a_report_from_cached_digests_is_the_report_from_the_files(
    fresh: World, finance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = render_files(report(fresh, finance))
    assert (fresh.data / CACHE / f"month={MONTH}" / "client_id=testco" / "digests.json").exists()

    def no_reading(*args: object) -> None:
        raise AssertionError("a day was digested again though none of its files changed")

    with monkeypatch.context() as patch:
        patch.setattr(day_digests, "_digest_days", no_reading)
        assert render_files(report(fresh, finance)) == first
    shutil.rmtree(fresh.data / CACHE)
    assert render_files(report(fresh, finance)) == first


def _not_charged(files: dict[str, bytes], client_id: str) -> list[list[str]]:
    """(event_type, count, examples) of the client's billable_not_charged rows."""
    found = [r for r in rows(files["leakage.csv"]) if r[1] == client_id]
    found = [r for r in found if r[2] == "billable_not_charged"]
    assert all(r[6:] == ["", NOT_CHARGED] for r in found)
    return [r[3:6] for r in found]


def _drop_charges_of(world: World, event_id: str, day: date) -> None:
    part = world.store.charges_part(MONTH, "testco", day)
    write_parquet(pl.read_parquet(part).filter(pl.col("event_id") != event_id), part)


def test_a_day_whose_charges_changed_is_digested_again(fresh: World, finance: Path) -> None:
    report(fresh, finance)  # digests cached
    # E-S2 (order.shipped, 2026-03-03) loses its SHIP_LABEL line: testco's shipments are then
    # 4 with 3 charged, and E-S2 is billable but not charged
    _drop_charges_of(fresh, "E-S2", date(2026, 3, 3))
    files = render_files(report(fresh, finance))
    coverage = [r for r in rows(files["coverage.csv"]) if r[1] == "testco"]
    assert ["2026-03", "testco", "order.shipped", "4", "3", "billed"] in coverage
    assert _not_charged(files, "testco") == [
        ["order.cancelled", "1", "E-C3"],
        ["order.shipped", "1", "E-S2"],
    ]
    shutil.rmtree(fresh.data / CACHE)
    assert render_files(report(fresh, finance)) == files


def test_a_day_whose_events_changed_is_digested_again(fresh: World, finance: Path) -> None:
    report(fresh, finance)
    # a second putaway on 2026-03-08 (not billable by default.lua): 2 events, 0 charged
    path = fresh.store.activity_file(date(2026, 3, 8), "testco")
    day = pl.read_parquet(path)
    extra = day.filter(pl.col("event_id") == "E-U1").with_columns(pl.lit("E-U2").alias("event_id"))
    write_parquet(pl.concat([day, extra]), path)
    files = render_files(report(fresh, finance))
    coverage = [r for r in rows(files["coverage.csv"]) if r[1] == "testco"]
    assert ["2026-03", "testco", "putaway.completed", "2", "0", "not_billable"] in coverage
    shutil.rmtree(fresh.data / CACHE)
    assert render_files(report(fresh, finance)) == files


def test_rule_errors_that_went_away_are_seen(fresh: World, finance: Path) -> None:
    before = render_files(report(fresh, finance))
    # B-S1's shipment raised in block.lua: a rule error, so not billable_not_charged
    assert _not_charged(before, "blockco") == []
    fresh.store.rule_errors_file(MONTH, "blockco").unlink()
    after = render_files(report(fresh, finance))
    assert _not_charged(after, "blockco") == [["order.shipped", "1", "B-S1"]]


def test_charges_stored_in_one_file_for_the_month(fresh: World, finance: Path) -> None:
    # the layout before charges were split by day (part-0.parquet): every day's events are
    # matched against the one file, and the reports are the same
    expected = render_files(report(fresh, finance))
    shutil.rmtree(fresh.data / CACHE)
    folder = fresh.store.charges_dir(MONTH, "testco")
    parts = sorted(folder.glob("part-*.parquet"))
    assert len(parts) > 1
    whole = pl.concat([pl.read_parquet(p) for p in parts])
    for part in parts:
        part.unlink()
    write_parquet(whole, folder / "part-0.parquet")
    assert render_files(report(fresh, finance)) == expected


def test_days_without_activity_add_nothing(fresh: World) -> None:
    # every day of March, most of them without an activity file, against testco's 7 days
    listed = activity_days(fresh.store, MONTH)["testco"]
    assert len(listed) == 7
    everyday = load_client_month(fresh.store, MONTH, "testco").digest
    assert everyday == load_client_month(fresh.store, MONTH, "testco", listed).digest
    assert everyday.total == 12  # testco's March events in builders.py (E-P6 is February's)
