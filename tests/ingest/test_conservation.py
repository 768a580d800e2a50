"""The conservation check (defs/ingest/conservation.py): the files a run wrote are recounted
from disk, every manifest row must add up, and files a run did not write are not read."""

from __future__ import annotations

import polars as pl

from billing_pipeline.defs.ingest.conservation import conservation_failures
from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.storage import file_id
from tests.ingest.conftest import TIMEZONES, Landing, event, line


def two_files(landing: Landing) -> pl.DataFrame:
    # a.ndjson: a valid line, a duplicate, a malformed line; b.ndjson: two valid lines
    landing.write("a.ndjson", [line(event(event_id="e1")), line(event(event_id="e1")), "{oops"])
    landing.write("b.ndjson", [line(event(event_id="e2")), line(event(event_id="e3"))])
    return ingest_landing(landing.dir, landing.store, TIMEZONES).manifest


def test_files_as_written_pass(landing: Landing) -> None:
    manifest = two_files(landing)
    assert conservation_failures(landing.store, manifest, ["a.ndjson", "b.ndjson"]).is_empty()


def test_a_recounted_file_that_lost_its_quarantine_fails_and_others_are_not_read(
    landing: Landing,
) -> None:
    manifest = two_files(landing)
    landing.store.quarantine_file(file_id("a.ndjson")).unlink()
    failures = conservation_failures(landing.store, manifest, ["a.ndjson"])
    assert failures["source_file"].to_list() == ["a.ndjson"]
    # 3 lines on disk = 1 valid + 1 duplicate + 0 quarantined now: does not add up; the
    # manifest still says 1 quarantined (the malformed line)
    assert failures.row(0, named=True) == {
        "source_file": "a.ndjson",
        "lines": 3,
        "valid": 1,
        "duplicates": 1,
        "quarantined": 0,
        "manifest_says": "3/1/1/1",
    }
    # a run that did not write a.ndjson does not read it again
    assert conservation_failures(landing.store, manifest, ["b.ndjson"]).is_empty()


def test_a_manifest_row_that_does_not_add_up_fails_without_a_recount(landing: Landing) -> None:
    manifest = two_files(landing)
    broken = manifest.with_columns(
        pl.when(pl.col("source_file") == "b.ndjson")
        .then(pl.col("valid") + 1)
        .otherwise(pl.col("valid"))
        .alias("valid")
    )
    failures = conservation_failures(landing.store, broken, [])
    assert failures["source_file"].to_list() == ["b.ndjson"]
    assert failures["manifest_says"][0] == "2/3/0/0"
