"""One activity date's partition of the valid-events dataset (SPEC §4.1), for all clients.

Built from the stored lines and statuses of the landing files that can hold events of that
date: any file with an event whose UTC date is within a day of it (time zone offsets are
under a day). A late file that carries old events therefore lands them in the old dates'
partitions as soon as those partitions are re-materialized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from billing_pipeline.ingest.landing import MANIFEST_SCHEMA, STATUS_SCHEMA
from billing_pipeline.storage import Store, read_parquet, remove_tree, write_parquet

ACTIVITY_SCHEMA = {
    "event_id": pl.Utf8,
    "event_type": pl.Utf8,
    "occurred_at": pl.Datetime("us", "UTC"),
    "occurred_at_raw": pl.Utf8,
    "activity_date": pl.Date,
    "client_id": pl.Utf8,
    "warehouse_id": pl.Utf8,
    "schema_version": pl.Int64,
    "payload": pl.Utf8,
    "raw_line": pl.Utf8,
    "source_file": pl.Utf8,
    "source_line": pl.Int64,
}


@dataclass
class ActivityResult:
    day: date
    events_by_client: dict[str, int] = field(default_factory=dict)
    events_by_type: dict[str, int] = field(default_factory=dict)
    files_read: int = 0

    @property
    def events(self) -> int:
        return sum(self.events_by_client.values())


def build_activity(store: Store, day: date, timezones: Mapping[str, str]) -> ActivityResult:
    """Write ``activity/activity_date=DAY/client_id=*/`` from the landed files; drop stale ones."""
    result = ActivityResult(day)
    manifest = read_parquet(store.manifest_file(), MANIFEST_SCHEMA)
    window = [day + timedelta(days=k) for k in (-1, 0, 1)]
    candidates = manifest.filter(
        pl.col("utc_dates").list.eval(pl.element().is_in(window)).list.any()
    )
    parts = []
    for fid in candidates["file_id"]:
        status = read_parquet(store.status_file(fid), STATUS_SCHEMA).filter(
            (pl.col("status") == "valid") & pl.col("client_id").is_in(list(timezones))
        )
        if status.is_empty():
            continue
        lines = (
            pl.scan_parquet(store.lines_file(fid))
            .filter(pl.col("occurred_at").dt.date().is_in(window))
            .join(status.lazy().select("source_line"), on="source_line", how="semi")
            .collect()
        )
        parts.append(lines)
        result.files_read += 1
    events = (
        pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=ACTIVITY_SCHEMA)
    )
    written = set()
    for client_id in sorted(set(events["client_id"].unique().to_list()) if parts else set()):
        zone = timezones[client_id]
        rows = (
            events.filter(pl.col("client_id") == client_id)
            .with_columns(
                pl.col("occurred_at").dt.convert_time_zone(zone).dt.date().alias("activity_date")
            )
            .filter(pl.col("activity_date") == day)
            .select(list(ACTIVITY_SCHEMA))
            .sort("source_file", "source_line")
        )
        if rows.is_empty():
            continue
        write_parquet(rows, store.activity_file(day, client_id))
        written.add(client_id)
        result.events_by_client[client_id] = rows.height
        for event_type, count in rows["event_type"].value_counts().iter_rows():
            result.events_by_type[event_type] = result.events_by_type.get(event_type, 0) + count
    _remove_stale_clients(store, day, written)
    return result


def _remove_stale_clients(store: Store, day: date, written: set[str]) -> None:
    folder = store.activity_dir(day)
    if not folder.exists():
        return
    for child in folder.iterdir():
        if child.is_dir() and child.name.removeprefix("client_id=") not in written:
            remove_tree(child)


def read_activity(store: Store, client_id: str, days: list[date]) -> pl.DataFrame:
    """A client's valid events on the given dates, in source order."""
    files = [store.activity_file(d, client_id) for d in days]
    files = [f for f in files if f.exists()]
    if not files:
        return pl.DataFrame(schema=ACTIVITY_SCHEMA)
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
