"""The landing-files stage: parse what is new, classify, and record every line's outcome.

One call brings the outputs up to date with the landing directory and the rate cards:

1. every landing file whose sha256 is not in the manifest is parsed (``validation``) and its
   lines stored; an unchanged file is never parsed again;
2. every client that appears in a new file, or whose rate card appeared or vanished, is
   classified again over its whole register (``classify``);
3. files whose line outcomes changed get their status, quarantine partition and manifest
   row rewritten.

The daily activity partitions are built from the stored lines and statuses by
``activity.build_activity``; this stage reports which UTC dates it touched so the caller
knows which partitions to re-materialize.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from billing_pipeline.ingest.classify import REGISTER_SCHEMA, classify_client, load_register
from billing_pipeline.ingest.reading import file_sha256, list_landing_files
from billing_pipeline.ingest.validation import parse_files
from billing_pipeline.storage import (
    Store,
    atomic_path,
    file_id,
    read_parquet,
    remove_tree,
    write_parquet,
)

MANIFEST_SCHEMA = {
    "source_file": pl.Utf8,
    "file_id": pl.Utf8,
    "sha256": pl.Utf8,
    "lines": pl.Int64,
    "valid": pl.Int64,
    "duplicates": pl.Int64,
    "quarantined": pl.Int64,
    "blank_lines": pl.Int64,
    "problem": pl.Utf8,
    "utc_dates": pl.List(pl.Date),
}
STATUS_SCHEMA = {
    "source_line": pl.Int64,
    "client_id": pl.Utf8,
    "status": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
}
QUARANTINE_SCHEMA = {
    "source_file": pl.Utf8,
    "source_line": pl.Int64,
    "raw_line": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
    "client_id": pl.Utf8,
    "event_id": pl.Utf8,
    "event_type": pl.Utf8,
    "occurred_at": pl.Datetime("us", "UTC"),
    "activity_date": pl.Date,
}
CLIENTS_SCHEMA = {"client_id": pl.Utf8, "timezone": pl.Utf8}
# Files are parsed and validated in batches of about this much text (gzip counted as
# GZ_RATIO times its size): big enough that validation's fixed costs vanish, small enough
# that a batch's Python objects stay well under the memory budget.
BATCH_BYTES = 48 * 1024 * 1024
GZ_RATIO = 5
# File-level problems (reading.py) a manifest row names, beyond the per-line reasons.
FILE_PROBLEMS = ("unreadable_file", "invalid_encoding", "line_too_long")


@dataclass
class LandingResult:
    files_seen: int = 0
    files_parsed: list[str] = field(default_factory=list)
    files_refreshed: list[str] = field(default_factory=list)
    clients_classified: list[str] = field(default_factory=list)
    touched_dates: set[date] = field(default_factory=set)
    manifest: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MANIFEST_SCHEMA))


def ingest_landing(
    landing_dir: Path,
    store: Store,
    timezones: Mapping[str, str],
    log: Callable[[str], None] = lambda _: None,
) -> LandingResult:
    """Bring manifest, statuses and quarantine up to date; ``timezones`` are the known clients."""
    result = LandingResult()
    old_manifest = read_parquet(store.manifest_file(), MANIFEST_SCHEMA)
    known_sha = dict(zip(old_manifest["source_file"], old_manifest["sha256"], strict=True))
    paths = list_landing_files(landing_dir)
    result.files_seen = len(paths)

    new_rows: list[pl.DataFrame] = []
    parsed: dict[str, tuple[int, str | None]] = {}  # file_id -> (blank lines, problem)
    todo = []
    for path in paths:
        source = path.relative_to(landing_dir).as_posix()
        sha = file_sha256(path)
        if known_sha.get(source) == sha:
            continue
        todo.append((path, source, sha))
    for batch in _batches(todo):
        results = parse_files([(path, source) for path, source, _ in batch])
        for (_, source, sha), (lines, blank) in zip(batch, results, strict=True):
            fid = file_id(source)
            write_staging(lines, store.lines_file(fid))
            problems = lines.filter(pl.col("reason").is_in(FILE_PROBLEMS))["reason"].unique().sort()
            parsed[fid] = (blank, ", ".join(problems) or None)
            known_sha[source] = sha
            result.files_parsed.append(source)
            new_rows.append(_register_rows(lines, fid))
            log(f"parsed {source}: {lines.height} lines")
        del results
    fresh = (
        pl.concat(new_rows, how="vertical_relaxed")
        if new_rows
        else pl.DataFrame(schema={"client_id": pl.Utf8, **REGISTER_SCHEMA})
    )
    changed_files = set(parsed)

    clients_before = read_parquet(store.clients_file(), CLIENTS_SCHEMA)
    before = dict(zip(clients_before["client_id"], clients_before["timezone"], strict=True))
    # A client whose rate card appeared or vanished flips between valid and unknown_client;
    # a re-parsed file may have lost a client that its old version had.
    flipped = set(before) ^ set(timezones)
    dropped = _clients_in(store, changed_files & set(old_manifest["file_id"]))
    affected = sorted(
        set(fresh["client_id"].unique()) | _registered(store, flipped) | _registered(store, dropped)
    )

    updates = []
    for client_id in affected:
        old = load_register(store, client_id)
        rows = pl.concat(
            [
                old.filter(~pl.col("file_id").is_in(list(changed_files))),
                fresh.filter(pl.col("client_id") == client_id).drop("client_id"),
            ],
            how="vertical_relaxed",
        )
        new = classify_client(store, client_id, rows, known=client_id in timezones)
        write_parquet(new, store.register_file(client_id))
        updates.append(_changes(old, new, changed_files).with_columns(client_id=pl.lit(client_id)))
    result.clients_classified = affected
    write_parquet(
        pl.DataFrame(
            {"client_id": sorted(timezones), "timezone": [timezones[c] for c in sorted(timezones)]},
            schema=CLIENTS_SCHEMA,
        ),
        store.clients_file(),
    )

    changes = (
        pl.concat(updates, how="vertical_relaxed")
        if updates
        else pl.DataFrame(schema={"file_id": pl.Utf8, **STATUS_SCHEMA})
    )
    refresh = sorted(changed_files | set(changes["file_id"].unique()))
    by_id = {file_id(s): s for s in known_sha}
    manifest = {row["file_id"]: row for row in old_manifest.iter_rows(named=True)}
    for fid in refresh:
        source = by_id[fid]
        row, dates = _refresh_file(
            store,
            fid,
            source,
            changes.filter(pl.col("file_id") == fid),
            timezones,
            fresh_file=fid in changed_files,
        )
        blank, problem = parsed.get(fid, (manifest.get(fid, {}).get("blank_lines", 0), None))
        if fid not in parsed and fid in manifest:
            problem = manifest[fid]["problem"]
        row.update(sha256=known_sha[source], blank_lines=blank, problem=problem)
        manifest[fid] = row
        result.touched_dates |= dates
    result.files_refreshed = [by_id[f] for f in refresh]
    result.manifest = pl.DataFrame(
        sorted(manifest.values(), key=lambda r: r["source_file"]), schema=MANIFEST_SCHEMA
    )
    write_parquet(result.manifest, store.manifest_file())
    return result


def _batches(todo: list[tuple[Path, str, str]]) -> Iterator[list[tuple[Path, str, str]]]:
    """Files in path order, grouped so that one batch holds about BATCH_BYTES of text."""
    batch: list[tuple[Path, str, str]] = []
    size = 0
    for item in todo:
        path = item[0]
        size += path.stat().st_size * (GZ_RATIO if path.name.endswith(".gz") else 1)
        batch.append(item)
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _register_rows(lines: pl.DataFrame, fid: str) -> pl.DataFrame:
    """The well-formed lines of a file, as register rows awaiting classification."""
    return lines.filter(pl.col("reason").is_null()).select(
        "client_id",
        "event_id",
        pl.lit(fid).alias("file_id"),
        "source_file",
        "source_line",
        pl.col("occurred_at").dt.date().alias("utc_date"),
        pl.lit(None, pl.Utf8).alias("status"),
        pl.lit(None, pl.Utf8).alias("reason"),
        pl.lit(None, pl.Utf8).alias("detail"),
    )


def _clients_in(store: Store, file_ids: set[str]) -> set[str]:
    found: set[str] = set()
    for fid in file_ids:
        status = read_parquet(store.status_file(fid), STATUS_SCHEMA)
        found |= set(status["client_id"].unique())
    return found


def _registered(store: Store, clients: set[str]) -> set[str]:
    return {c for c in clients if store.register_file(c).exists()}


def _changes(old: pl.DataFrame, new: pl.DataFrame, changed_files: set[str]) -> pl.DataFrame:
    """Rows whose outcome is new: all rows of re-parsed files, and any whose status moved."""
    keys = ["file_id", "source_line"]
    compared = new.join(
        old.select(*keys, pl.col("status").alias("o_status"), pl.col("reason").alias("o_reason")),
        on=keys,
        how="left",
    )
    moved = (
        pl.col("file_id").is_in(list(changed_files))
        | ~pl.col("status").eq_missing(pl.col("o_status"))
        | ~pl.col("reason").eq_missing(pl.col("o_reason"))
    )
    return compared.filter(moved).select("file_id", *STATUS_SCHEMA.keys() - {"client_id"})


def _refresh_file(
    store: Store,
    fid: str,
    source: str,
    changes: pl.DataFrame,
    timezones: Mapping[str, str],
    fresh_file: bool,
) -> tuple[dict, set[date]]:
    """Rewrite one file's statuses and quarantine partition; its manifest counts and dates."""
    old = (
        pl.DataFrame(schema=STATUS_SCHEMA)
        if fresh_file
        else read_parquet(store.status_file(fid), STATUS_SCHEMA)
    )
    status = pl.concat(
        [
            old.join(changes.select("source_line"), on="source_line", how="anti"),
            changes.select(list(STATUS_SCHEMA)),
        ],
        how="vertical_relaxed",
    ).sort("source_line")
    write_parquet(status, store.status_file(fid))

    lines = pl.read_parquet(
        store.lines_file(fid),
        columns=[
            "source_line",
            "raw_line",
            "reason",
            "detail",
            "client_id",
            "event_id",
            "event_type",
            "occurred_at",
        ],
    )
    joined = lines.join(
        status.select(
            "source_line",
            pl.col("status").alias("s_status"),
            pl.col("reason").alias("s_reason"),
            pl.col("detail").alias("s_detail"),
        ),
        on="source_line",
        how="left",
    )
    quarantined = joined.filter(
        pl.col("reason").is_not_null() | (pl.col("s_status") == "quarantined")
    ).select(
        pl.lit(source).alias("source_file"),
        "source_line",
        "raw_line",
        pl.coalesce("reason", "s_reason").alias("reason"),
        pl.coalesce("detail", "s_detail").alias("detail"),
        "client_id",
        "event_id",
        "event_type",
        "occurred_at",
        _local_date(timezones).alias("activity_date"),
    )
    target = store.quarantine_file(fid)
    if quarantined.is_empty():
        remove_tree(target.parent)
    else:
        write_parquet(quarantined.sort("source_line"), target)

    counts = status["status"].value_counts()
    count = dict(zip(counts["status"], counts["count"], strict=True))
    dates = {d for d in lines["occurred_at"].dt.date().unique().to_list() if d is not None}
    row = {
        "source_file": source,
        "file_id": fid,
        "lines": lines.height,
        "valid": count.get("valid", 0),
        "duplicates": count.get("duplicate", 0),
        "quarantined": quarantined.height,
        "utc_dates": sorted(dates),
    }
    return row, dates


def _local_date(timezones: Mapping[str, str]) -> pl.Expr:
    """The activity date where the client's zone is known (SPEC §4); null otherwise."""
    expr = pl.lit(None, pl.Date)
    for client_id, zone in sorted(timezones.items()):
        local = pl.col("occurred_at").dt.convert_time_zone(zone).dt.date()
        expr = pl.when(pl.col("client_id") == client_id).then(local).otherwise(expr)
    return expr


def write_staging(frame: pl.DataFrame, target: Path) -> None:
    """Internal staging files: written atomically like the datasets, compressed cheaply
    (lz4 writes several times faster than zstd; these files are read back within the run
    and by the daily partitions, never by users)."""
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="lz4", statistics=True)


def dates_around(days: set[date]) -> set[date]:
    """Activity dates a set of UTC dates can fall on in any zone (offsets are under a day)."""
    return {d + timedelta(days=k) for d in days for k in (-1, 0, 1)}
