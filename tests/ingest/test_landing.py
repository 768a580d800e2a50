"""Landing-file stage and activity partitions: duplicates, late files, rate cards, re-runs."""

from __future__ import annotations

import gzip
from datetime import date

import polars as pl

from billing_pipeline.ingest.activity import build_activity
from billing_pipeline.ingest.landing import ingest_landing
from tests.ingest.conftest import TIMEZONES, Landing, event, line


def quarantine(landing: Landing) -> pl.DataFrame:
    files = sorted((landing.store.root / "quarantine").glob("*/part-0.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f) for f in files]).sort("source_file", "source_line")


def activity_rows(landing: Landing, day: date) -> pl.DataFrame:
    files = sorted(landing.store.activity_dir(day).glob("*/part-0.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f) for f in files])


def counts(landing: Landing) -> dict[str, tuple[int, int, int, int]]:
    manifest = pl.read_parquet(landing.store.manifest_file())
    return {
        r["source_file"]: (r["lines"], r["valid"], r["duplicates"], r["quarantined"])
        for r in manifest.iter_rows(named=True)
    }


def test_identical_copy_is_a_duplicate_and_a_changed_copy_a_conflict(landing: Landing) -> None:
    first = event(event_id="e1")
    same = event(event_id="e1")
    other = event(event_id="e1", payload={"units": 9})
    landing.write("a.ndjson", [line(first), line(same), line(other)])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert counts(landing) == {"a.ndjson": (3, 1, 1, 1)}
    q = quarantine(landing)
    assert q["reason"].to_list() == ["duplicate_conflict"]
    assert q["source_line"].to_list() == [3]
    assert "a.ndjson:1" in q["detail"][0]


def test_same_instant_written_differently_is_equal(landing: Landing) -> None:
    utc = event(event_id="e1", occurred_at="2026-11-02T15:00:00Z")
    offset = event(event_id="e1", occurred_at="2026-11-02T10:00:00-05:00")
    landing.write("a.ndjson", [line(utc), line(offset)])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert counts(landing) == {"a.ndjson": (2, 1, 1, 0)}


def test_same_event_id_for_another_client_is_not_a_duplicate(landing: Landing) -> None:
    landing.write(
        "a.ndjson", [line(event(event_id="e1")), line(event(event_id="e1", client_id="bolt"))]
    )
    ingest_landing(landing.dir, landing.store, {**TIMEZONES, "bolt": "UTC"})
    assert counts(landing) == {"a.ndjson": (2, 2, 0, 0)}


def test_first_copy_by_path_wins_across_deliveries(landing: Landing) -> None:
    # Delivered first under a later path; a copy arriving later under an earlier path
    # becomes the first occurrence (SPEC §4 orders by path, then line).
    landing.write("b/later.ndjson", [line(event(event_id="e1", payload={"units": 3}))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    landing.write("a/earlier.ndjson", [line(event(event_id="e1", payload={"units": 5}))])
    result = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert result.files_parsed == ["a/earlier.ndjson"]
    assert counts(landing) == {"a/earlier.ndjson": (1, 1, 0, 0), "b/later.ndjson": (1, 0, 0, 1)}
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    rows = activity_rows(landing, date(2026, 11, 2))
    assert rows["source_file"].to_list() == ["a/earlier.ndjson"]


def test_redelivered_file_bills_nothing_twice(landing: Landing) -> None:
    lines = [line(event(event_id=f"e{i}")) for i in range(5)]
    landing.write("day1/a.ndjson", lines)
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    landing.write("day8/a-redelivered.ndjson", lines)
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert counts(landing)["day8/a-redelivered.ndjson"] == (5, 0, 5, 0)
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    assert activity_rows(landing, date(2026, 11, 2)).height == 5


def test_unchanged_file_is_not_parsed_again_and_changed_one_is(landing: Landing) -> None:
    landing.write("a.ndjson", [line(event(event_id="e1"))])
    assert ingest_landing(landing.dir, landing.store, TIMEZONES).files_parsed == ["a.ndjson"]
    assert ingest_landing(landing.dir, landing.store, TIMEZONES).files_parsed == []
    landing.write("a.ndjson", [line(event(event_id="e1")), line(event(event_id="e2"))])
    assert ingest_landing(landing.dir, landing.store, TIMEZONES).files_parsed == ["a.ndjson"]
    assert counts(landing) == {"a.ndjson": (2, 2, 0, 0)}


def test_unknown_client_comes_in_when_its_rate_card_appears(landing: Landing) -> None:
    landing.write("a.ndjson", [line(event(event_id="e1", client_id="bolt"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    q = quarantine(landing)
    assert q["reason"].to_list() == ["unknown_client"]
    assert q["client_id"].to_list() == ["bolt"]
    result = ingest_landing(landing.dir, landing.store, {**TIMEZONES, "bolt": "Europe/London"})
    assert result.files_parsed == []  # no re-parse, only re-classification
    assert counts(landing) == {"a.ndjson": (1, 1, 0, 0)}
    assert quarantine(landing).is_empty()
    build_activity(landing.store, date(2026, 11, 2), {**TIMEZONES, "bolt": "Europe/London"})
    assert activity_rows(landing, date(2026, 11, 2))["client_id"].to_list() == ["bolt"]


def test_activity_date_is_in_the_clients_time_zone(landing: Landing) -> None:
    # 03:00 UTC on the 2nd is 22:00 on the 1st in New York and 03:00 on the 2nd in London.
    ts = "2026-11-02T03:00:00Z"
    landing.write(
        "a.ndjson",
        [
            line(event(event_id="e1", occurred_at=ts)),
            line(event(event_id="e2", client_id="bolt", occurred_at=ts)),
        ],
    )
    zones = {**TIMEZONES, "bolt": "Europe/London"}
    ingest_landing(landing.dir, landing.store, zones)
    build_activity(landing.store, date(2026, 11, 1), zones)
    build_activity(landing.store, date(2026, 11, 2), zones)
    assert activity_rows(landing, date(2026, 11, 1))["event_id"].to_list() == ["e1"]
    assert activity_rows(landing, date(2026, 11, 2))["event_id"].to_list() == ["e2"]


def test_late_file_lands_in_the_old_partition(landing: Landing) -> None:
    landing.write(
        "2026-11-10/a.ndjson", [line(event(event_id="new", occurred_at="2026-11-10T15:00:00Z"))]
    )
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    landing.write(
        "2026-11-11/late.ndjson", [line(event(event_id="old", occurred_at="2026-11-03T15:00:00Z"))]
    )
    result = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert result.touched_dates == {date(2026, 11, 3)}
    build_activity(landing.store, date(2026, 11, 3), TIMEZONES)
    assert activity_rows(landing, date(2026, 11, 3))["event_id"].to_list() == ["old"]


def test_activity_rows_carry_the_contract_columns(landing: Landing) -> None:
    landing.write("w/a.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    row = activity_rows(landing, date(2026, 11, 2)).row(0, named=True)
    assert row["event_id"] == "e1"
    assert row["activity_date"] == date(2026, 11, 2)
    assert row["occurred_at"].isoformat() == "2026-11-02T15:00:00+00:00"
    assert row["occurred_at_raw"] == "2026-11-02T15:00:00Z"
    assert row["source_file"] == "w/a.ndjson" and row["source_line"] == 1
    assert row["payload"] == '{"channel":"dtc","lines":2,"order_id":"o-1","units":3}'


def test_order_id_column_is_the_payloads_order_id(landing: Landing) -> None:
    putaway = {"sku": "S1", "units": 4, "location_type": "shelf"}
    landing.write(
        "w/a.ndjson",
        [
            line(event(event_id="e1", payload={"order_id": 'o-"9"'})),
            line(event(event_id="e2", event_type="order.cancelled",
                       payload={"order_id": "o-2", "stage": "before_pick"})),
            line(event(event_id="e3", event_type="putaway.completed", payload=putaway)),
        ],
    )  # fmt: skip
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    rows = activity_rows(landing, date(2026, 11, 2)).sort("event_id")
    # the JSON string 'o-"9"' unescaped. The putaway's payload also carries the base event's
    # order_id, as an extra field: the column is only for types whose catalog payload has one.
    assert rows["order_id"].to_list() == ['o-"9"', "o-2", None]


def test_order_ids_of_lines_staged_before_the_column_come_from_the_payload(
    landing: Landing,
) -> None:
    """Parsing stages each line's order_id; files staged before that (no such column) get it
    from the payload text. Either way, and mixed, the activity is the same, in source order."""
    extra = {"order_id": "o-7", "note": "an extra field: the line takes the slow parse"}
    landing.write(
        "w/a.ndjson",
        [line(event(event_id=f"a{i}", payload={"order_id": f"o-{i}"})) for i in range(3)],
    )
    landing.write(
        "w/b.ndjson",
        [
            line(event(event_id="b1", payload=extra)),
            line(
                event(
                    event_id="b2",
                    event_type="putaway.completed",
                    payload={"sku": "S", "units": 1, "location_type": "bin"},
                )
            ),
        ],
    )
    landing.write("w/c.ndjson", [line(event(event_id="c1", payload={"order_id": 'o-"c"'}))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    day = date(2026, 11, 2)
    build_activity(landing.store, day, TIMEZONES)
    staged = activity_rows(landing, day)
    assert staged["event_id"].to_list() == ["a0", "a1", "a2", "b1", "b2", "c1"]
    assert staged["order_id"].to_list() == ["o-0", "o-1", "o-2", "o-7", None, 'o-"c"']
    lines = sorted((landing.store.root / "_staging" / "lines").glob("*/*.parquet"))
    assert len(lines) == 3 and all("order_id" in pl.read_parquet_schema(f) for f in lines)
    for old in (lines[:2], lines):  # the first two files staged the old way, then all three
        for path in old:
            pl.read_parquet(path).drop("order_id", strict=False).write_parquet(path)
        build_activity(landing.store, day, TIMEZONES)
        assert activity_rows(landing, day).equals(staged)


def test_rematerializing_gives_the_same_rows(landing: Landing) -> None:
    landing.write("a.ndjson", [line(event(event_id=f"e{i}")) for i in range(20)])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    first = activity_rows(landing, date(2026, 11, 2))
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    assert activity_rows(landing, date(2026, 11, 2)).equals(first)


def test_partition_loses_a_client_whose_events_moved(landing: Landing) -> None:
    landing.write("a.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    assert landing.store.activity_file(date(2026, 11, 2), "acme").exists()
    landing.write("a.ndjson", [line(event(event_id="e1", occurred_at="2026-11-05T15:00:00Z"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    assert not landing.store.activity_file(date(2026, 11, 2), "acme").exists()


def test_gzip_and_jsonl_are_read_and_other_files_ignored(landing: Landing) -> None:
    path = landing.dir / "w" / "a.ndjson.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress((line(event(event_id="g1")) + "\n").encode()))
    landing.write("w/b.jsonl", [line(event(event_id="j1"))])
    landing.write("w/readme.txt", ["not an event"])
    result = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert result.files_parsed == ["w/a.ndjson.gz", "w/b.jsonl"]


def test_blank_lines_are_ignored_not_counted(landing: Landing) -> None:
    landing.write("a.ndjson", "\n" + line(event()) + "\n\n   \n")
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    manifest = pl.read_parquet(landing.store.manifest_file())
    assert manifest["lines"].to_list() == [1]
    assert manifest["blank_lines"].to_list() == [3]


def test_progress_is_one_line_per_batch_of_files(landing: Landing) -> None:
    # each progress line is an event-log write in a Dagster run: not one per file
    for name in ("a", "b", "c"):
        landing.write(f"{name}.ndjson", [line(event(event_id=f"{name}1")), line(event())])
    said: list[str] = []
    ingest_landing(landing.dir, landing.store, TIMEZONES, log=said.append)
    assert said == ["parsed 3 files, 6 lines: a.ndjson .. c.ndjson"]


def test_a_killed_runs_scratch_folder_is_removed_by_the_next_build(landing: Landing) -> None:
    # A run killed during the streaming pass leaves its scratch folder (a day's activity at
    # scale) in _staging; the next build, under the same ingest lock, must not keep it.
    landing.write("a.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    left = landing.store.root / "_staging" / ".activity-killed"
    (left / "2026-11-02" / "acme").mkdir(parents=True)
    (left / "2026-11-02" / "acme" / "000000.parquet").write_bytes(b"partial")
    build_activity(landing.store, date(2026, 11, 2), TIMEZONES)
    assert not left.exists()
    assert [p.name for p in (landing.store.root / "_staging").glob(".activity-*")] == []
    assert activity_rows(landing, date(2026, 11, 2))["event_id"].to_list() == ["e1"]
    # Also when the rerun has no events to write (the killed run had written them all).
    left.mkdir()
    build_activity(landing.store, date(2026, 11, 20), TIMEZONES)
    assert not left.exists()


def test_a_conflicts_detail_follows_the_first_copy_when_an_earlier_path_lands(
    landing: Landing,
) -> None:
    # Night 1: e1 twice in a.ndjson, the second different: it conflicts with a.ndjson:1.
    # Night 2: an earlier path brings e1 equal to a.ndjson:1: it becomes the first copy, and
    # the conflict's detail must name it (status and reason stay the same).
    landing.write(
        "d1/a.ndjson",
        [line(event(event_id="e1")), line(event(event_id="e1", payload={"units": 9}))],
    )
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    landing.write("d0/early.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    rows = quarantine(landing).select("source_file", "source_line", "reason", "detail").rows()
    assert rows == [
        ("d1/a.ndjson", 2, "duplicate_conflict", "differs from the first copy at d0/early.ndjson:1")
    ]
