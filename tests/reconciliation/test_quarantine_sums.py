"""The month's quarantine summary from per-file sums (reconciliation/summaries.py): what it
says by hand, and that a report from the cached sums says what one from the files says,
whatever changed in between, reading only the files that changed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.ingest.landing import MANIFEST_SCHEMA, QUARANTINE_SCHEMA
from billing_pipeline.reconciliation import summaries
from billing_pipeline.reconciliation.summaries import quarantine_of_month, quarantine_rows
from billing_pipeline.storage import Store, file_id, write_parquet

MONTH = "2026-03"
# a quarantined line: (source_line, reason, client_id, activity_date, occurred_at)
Line = tuple[int, str, str | None, date | None, datetime | None]
MARCH = date(2026, 3, 9)
AT_MARCH = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


def land(
    store: Store, files: dict[str, tuple[list[date], list[Line]]], only: set[str] | None = None
) -> None:
    """Each file's quarantine (those ``only`` names, when given) and the manifest, a row per
    file with its UTC dates."""
    manifest = []
    for source, (utc_dates, lines) in files.items():
        manifest.append(
            {"source_file": source, "file_id": file_id(source), "quarantined": len(lines),
             "utc_dates": utc_dates}
        )  # fmt: skip
        if only is not None and source not in only:
            continue
        rows = [
            {"source_file": source, "source_line": n, "raw_line": "x", "reason": reason,
             "detail": "", "client_id": client, "event_id": None, "event_type": None,
             "occurred_at": at, "activity_date": day}
            for n, reason, client, day, at in lines
        ]  # fmt: skip
        write_parquet(
            pl.DataFrame(rows, schema=QUARANTINE_SCHEMA), store.quarantine_file(file_id(source))
        )
    frame = pl.DataFrame(manifest, schema={k: MANIFEST_SCHEMA[k] for k in manifest[0]})
    missing = [c for c in MANIFEST_SCHEMA if c not in frame.columns]
    frame = frame.with_columns(*(pl.lit(None, MANIFEST_SCHEMA[c]).alias(c) for c in missing))
    write_parquet(frame.select(list(MANIFEST_SCHEMA)), store.manifest_file())


def summary(store: Store) -> list[tuple[str, ...]]:
    return quarantine_rows(MONTH, quarantine_of_month(store, MONTH))


def from_scratch(store: Store) -> list[tuple[str, ...]]:
    """The summary with the cached sums deleted first."""
    summaries._sums_file(store, MONTH).unlink(missing_ok=True)
    return summary(store)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


FILES = {
    # one client and reason over two files: the examples are the 5 smallest (file, line)
    "wh1/x.ndjson": ([MARCH], [(9, "invalid_field", "acme", MARCH, AT_MARCH),
                               (3, "invalid_field", "acme", MARCH, AT_MARCH),
                               (12, "invalid_field", "acme", MARCH, AT_MARCH),
                               (4, "invalid_json", None, None, None)]),
    "wh2/y.ndjson": ([MARCH], [(7, "invalid_field", "acme", MARCH, AT_MARCH),
                               (1, "invalid_field", "acme", MARCH, AT_MARCH),
                               (2, "invalid_field", "acme", MARCH, AT_MARCH),
                               (5, "invalid_field", "acme", MARCH, AT_MARCH),
                               # April by its activity date, whatever its file's dates
                               (8, "invalid_field", "acme", date(2026, 4, 1), AT_MARCH)]),
    # all of February: never read for March
    "wh3/z.ndjson": ([date(2026, 2, 3)], [(1, "invalid_json", None, None, None)]),
}  # fmt: skip


def test_by_hand(store: Store) -> None:
    land(store, FILES)
    # acme's invalid_field lines of March: x 3, 9, 12 and y 1, 2, 5, 7 (y 8 is April's): 7
    # lines, the smallest (file, line) first; x:4 has no client (its billing date is its
    # file's first UTC date)
    assert summary(store) == [
        ("2026-03", "", "invalid_json", "1", "wh1/x.ndjson:4"),
        ("2026-03", "acme", "invalid_field", "7",
         "wh1/x.ndjson:3 wh1/x.ndjson:9 wh1/x.ndjson:12 wh2/y.ndjson:1 wh2/y.ndjson:2"),
    ]  # fmt: skip


def test_a_report_reads_only_the_files_new_or_changed_since_the_last(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(store, FILES)
    summary(store)
    read: list[list[str]] = []
    sum_files = summaries._sum_files

    def spy(store: Store, files: pl.DataFrame) -> pl.DataFrame:
        read.append(sorted(files["source_file"]))
        return sum_files(store, files)

    monkeypatch.setattr(summaries, "_sum_files", spy)
    # a new file, and wh1/x.ndjson written again with one line fewer
    more = dict(FILES)
    more["wh1/x.ndjson"] = (FILES["wh1/x.ndjson"][0], FILES["wh1/x.ndjson"][1][1:])
    more["wh4/w.ndjson"] = ([MARCH], [(6, "unknown_client", "ghost", None, AT_MARCH)])
    land(store, more, only={"wh1/x.ndjson", "wh4/w.ndjson"})
    cached = summary(store)
    assert read == [["wh1/x.ndjson", "wh4/w.ndjson"]]
    assert cached == from_scratch(store)
    assert cached[1] == ("2026-03", "acme", "invalid_field", "6",
                         "wh1/x.ndjson:3 wh1/x.ndjson:12 wh2/y.ndjson:1 wh2/y.ndjson:2 "
                         "wh2/y.ndjson:5")  # fmt: skip
    read.clear()
    assert summary(store) == cached  # nothing changed: nothing read
    assert read == []


def test_a_file_whose_first_date_moved_is_summed_again(store: Store) -> None:
    land(store, FILES)
    before = summary(store)
    moved = dict(FILES)
    # x.ndjson's first UTC date is now in February: its unreadable line is February's
    moved["wh1/x.ndjson"] = ([date(2026, 2, 28), MARCH], FILES["wh1/x.ndjson"][1])
    land(store, moved, only=set())  # the manifest only
    after = summary(store)
    assert after == from_scratch(store)
    assert [row[2] for row in before] == ["invalid_json", "invalid_field"]
    assert [row[2] for row in after] == ["invalid_field"]


def test_a_file_gone_from_the_month_leaves_the_summary(store: Store) -> None:
    land(store, FILES)
    summary(store)
    land(store, {k: v for k, v in FILES.items() if k != "wh2/y.ndjson"}, only=set())
    assert summary(store) == from_scratch(store)
    assert summary(store)[1][3] == "3"  # x 3, 9, 12


def test_an_unreadable_cache_is_recomputed(store: Store) -> None:
    land(store, FILES)
    expected = summary(store)
    summaries._sums_file(store, MONTH).write_bytes(b"not parquet")
    assert summary(store) == expected


def test_a_line_naming_another_file_is_kept_by_the_file_it_is_in(store: Store) -> None:
    # x.ndjson's quarantine holds a line whose source_file is another name (a file renamed
    # in the manifest since, say): summed under x.ndjson, it stays in the cached summary
    land(store, FILES)
    path = store.quarantine_file(file_id("wh1/x.ndjson"))
    frame = pl.read_parquet(path)
    stray = frame.head(1).with_columns(
        source_file=pl.lit("old/x.ndjson"), source_line=pl.lit(99, dtype=pl.Int64)
    )
    write_parquet(pl.concat([frame, stray]), path)
    first = summary(store)
    assert first[1][3] == "8"  # x 3, 9, 12, its stray copy of line 9, and y 1, 2, 5, 7
    assert summary(store) == first  # from the cached sums
