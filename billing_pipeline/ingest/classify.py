"""Per-client classification of parsed events: valid, duplicate, or quarantined (SPEC §4).

Depends on more than one file (duplicates) and on the rate cards (``unknown_client``), so it
is recomputed for every client touched by a run, over that client's whole register: the key
columns of every well-formed line of that client ever landed. The first copy of an event
(by source file path, then line number) wins; a later copy equal to it is a duplicate, a
later copy that differs is quarantined as ``duplicate_conflict``. Contents are compared
only for keys that have copies, which are rare, so no per-event hash is stored.
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.storage import Store, read_parquet

REGISTER_SCHEMA = {
    "event_id": pl.Utf8,
    "file_id": pl.Utf8,
    "source_file": pl.Utf8,
    "source_line": pl.Int64,
    "utc_date": pl.Date,
    "status": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
}
CONTENT_COLUMNS = ("event_type", "occurred_at", "warehouse_id", "schema_version", "payload")


def classify_client(store: Store, client_id: str, rows: pl.DataFrame, known: bool) -> pl.DataFrame:
    """Statuses for all of one client's rows (REGISTER_SCHEMA, status columns recomputed)."""
    rows = rows.sort("event_id", "source_file", "source_line")
    if not known:
        return rows.with_columns(
            pl.lit("quarantined").alias("status"),
            pl.lit("unknown_client").alias("reason"),
            pl.lit(f"no rate card for client {client_id}").alias("detail"),
        )
    first = pl.int_range(pl.len()).over("event_id") == 0
    rows = rows.with_columns(
        pl.when(first).then(pl.lit("valid")).otherwise(pl.lit("duplicate")).alias("status"),
        pl.lit(None, pl.Utf8).alias("reason"),
        pl.lit(None, pl.Utf8).alias("detail"),
    )
    copies = rows.filter(pl.len().over("event_id") > 1)
    if copies.is_empty():
        return rows
    verdicts = _compare_copies(store, copies)
    return (
        rows.join(verdicts, on=["file_id", "source_line"], how="left")
        .with_columns(
            pl.coalesce("v_status", "status").alias("status"),
            pl.coalesce("v_reason", "reason").alias("reason"),
            pl.coalesce("v_detail", "detail").alias("detail"),
        )
        .select(list(REGISTER_SCHEMA))
    )


def _compare_copies(store: Store, copies: pl.DataFrame) -> pl.DataFrame:
    content = _load_content(store, copies)
    with_content = copies.join(content, on=["file_id", "source_line"], how="left")
    winners = with_content.filter(pl.col("status") == "valid").select(
        "event_id",
        pl.col("source_file").alias("w_file"),
        pl.col("source_line").alias("w_line"),
        *[pl.col(c).alias(f"w_{c}") for c in CONTENT_COLUMNS],
    )
    later = with_content.filter(pl.col("status") != "valid").join(winners, on="event_id")
    same = pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"w_{c}")) for c in CONTENT_COLUMNS])
    return later.select(
        "file_id",
        "source_line",
        pl.when(same).then(pl.lit("duplicate")).otherwise(pl.lit("quarantined")).alias("v_status"),
        pl.when(same).then(None).otherwise(pl.lit("duplicate_conflict")).alias("v_reason"),
        pl.when(same)
        .then(None)
        .otherwise(
            pl.format("differs from the first copy at {}:{}", pl.col("w_file"), pl.col("w_line"))
        )
        .alias("v_detail"),
    )


def _load_content(store: Store, copies: pl.DataFrame) -> pl.DataFrame:
    """The parsed envelope and payload of the given rows, read from their files' lines."""
    parts = []
    for (fid,), wanted in copies.group_by(["file_id"], maintain_order=True):
        lines = pl.scan_parquet(store.lines_file(fid)).select("source_line", *CONTENT_COLUMNS)
        found = lines.filter(pl.col("source_line").is_in(wanted["source_line"].implode())).collect()
        parts.append(found.with_columns(pl.lit(fid).alias("file_id")))
    return pl.concat(parts, how="vertical_relaxed")


def load_register(store: Store, client_id: str) -> pl.DataFrame:
    return read_parquet(store.register_file(client_id), REGISTER_SCHEMA)
