"""Damaged landing files: reported per file and per line, never stopping the other files."""

from __future__ import annotations

import gzip

import polars as pl

from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.ingest.reading import MAX_LINE_BYTES
from tests.ingest.conftest import TIMEZONES, Landing, event, line


def manifest(landing: Landing) -> dict[str, dict]:
    frame = pl.read_parquet(landing.store.manifest_file())
    return {r["source_file"]: r for r in frame.iter_rows(named=True)}


def reasons(landing: Landing, fid_source: str) -> list[tuple[int, str]]:
    fid = manifest(landing)[fid_source]["file_id"]
    q = pl.read_parquet(landing.store.quarantine_file(fid))
    return list(zip(q["source_line"], q["reason"], strict=True))


def test_truncated_gzip_keeps_the_lines_before_the_damage(landing: Landing) -> None:
    body = "\n".join(line(event(event_id=f"e{i}")) for i in range(2000)) + "\n"
    data = gzip.compress(body.encode())
    path = landing.dir / "cut.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    landing.write("fine.ndjson", [line(event(event_id="other"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    row = manifest(landing)["cut.ndjson.gz"]
    assert row["problem"] == "unreadable_file"
    assert row["valid"] > 0
    assert row["lines"] == row["valid"] + row["duplicates"] + row["quarantined"]
    assert reasons(landing, "cut.ndjson.gz")[-1][1] == "unreadable_file"
    assert manifest(landing)["fine.ndjson"]["valid"] == 1


def test_bytes_that_are_not_utf8_quarantine_only_their_line(landing: Landing) -> None:
    good = line(event(event_id="e1")).encode()
    bad = line(event(event_id="e2")).encode().replace(b"NJ1", b"NJ\xff")
    (landing.dir / "latin.ndjson").write_bytes(good + b"\n" + bad + b"\n")
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    row = manifest(landing)["latin.ndjson"]
    assert (row["lines"], row["valid"], row["quarantined"]) == (2, 1, 1)
    assert row["problem"] == "invalid_encoding"
    assert reasons(landing, "latin.ndjson") == [(2, "invalid_encoding")]
    fid = row["file_id"]
    raw = pl.read_parquet(landing.store.quarantine_file(fid))["raw_line"][0]
    assert "\\xff" in raw  # the offending byte is kept, escaped


def test_a_ten_megabyte_line_is_quarantined_whole(landing: Landing) -> None:
    huge = line(event(event_id="big", payload={"note": "x" * (10 * 1024 * 1024)}))
    assert len(huge) > MAX_LINE_BYTES
    landing.write("big.ndjson", [line(event(event_id="e1")), huge, line(event(event_id="e3"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    row = manifest(landing)["big.ndjson"]
    assert (row["lines"], row["valid"], row["quarantined"]) == (3, 2, 1)
    assert reasons(landing, "big.ndjson") == [(2, "line_too_long")]
    fid = row["file_id"]
    assert len(pl.read_parquet(landing.store.quarantine_file(fid))["raw_line"][0]) == len(huge)


def test_a_symlink_out_of_the_landing_dir_is_ignored(landing: Landing, tmp_path) -> None:
    outside = tmp_path / "secret.ndjson"
    outside.write_text(line(event(event_id="leak")) + "\n")
    (landing.dir / "link.ndjson").symlink_to(outside)
    result = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert result.files_parsed == []


def test_files_parsed_in_one_batch_keep_their_own_problems_dates_and_counts(
    landing: Landing,
) -> None:
    """Files of one parse batch are summed up in bulk; each manifest row must still hold
    only its own file's problems, UTC dates and counts."""
    huge = line(event(event_id="big", payload={"note": "x" * (MAX_LINE_BYTES + 1)}))
    bad = line(event(event_id="a3")).encode().replace(b"NJ1", b"NJ\xff")
    (landing.dir / "a.ndjson").write_bytes(
        b"\n".join([line(event(event_id="a1")).encode(), huge.encode(), bad, b"", b"   "]) + b"\n"
    )
    landing.write(
        "b.ndjson",
        [line(event(event_id="b1", occurred_at="2026-11-05T01:00:00Z")), "", "{not json"],
    )
    landing.write("c.ndjson", ["", " "])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    rows = manifest(landing)
    # a: line 1 valid, 2 too long, 3 not UTF-8, 4 and 5 blank (2 blank lines, 3 counted).
    a = rows["a.ndjson"]
    assert (a["lines"], a["valid"], a["quarantined"], a["blank_lines"]) == (3, 1, 2, 2)
    assert a["problem"] == "invalid_encoding, line_too_long"  # both, in sorted order
    # The two refused lines carry no readable timestamp: only line 1's date (UTC 2026-11-02).
    assert [d.isoformat() for d in a["utc_dates"]] == ["2026-11-02"]
    b = rows["b.ndjson"]
    assert (b["lines"], b["valid"], b["quarantined"], b["blank_lines"]) == (2, 1, 1, 1)
    assert b["problem"] is None  # invalid_json is a line reason, not a file problem
    assert [d.isoformat() for d in b["utc_dates"]] == ["2026-11-05"]
    c = rows["c.ndjson"]
    assert (c["lines"], c["valid"], c["quarantined"], c["blank_lines"]) == (0, 0, 0, 2)
    assert c["problem"] is None and c["utc_dates"] == []
    assert reasons(landing, "a.ndjson") == [(2, "line_too_long"), (3, "invalid_encoding")]
    assert reasons(landing, "b.ndjson") == [(3, "invalid_json")]
