"""The ``activity_schema`` check: what a run wrote passes the envelope schema, sits in its
partition and holds each (client, event_id) once."""

from __future__ import annotations

from datetime import date

import polars as pl

from billing_pipeline.ingest.schemas import Envelope, failing_rows
from billing_pipeline.storage import Store, read_parquet

# The envelope's columns and the partition keys: the payload and the raw line are most of
# an activity file's bytes, and the check needs neither.
CHECKED = (*Envelope.to_schema().columns, "activity_date")
# Rows validated per Pandera call: a call costs ~7 ms however few its rows (once per
# partition, that was most of the check), and one call for a whole day of 10M events held
# ~2 GB.
GROUP_ROWS = 500_000
KINDS = (
    "rows fail the envelope schema",
    "rows outside their partition",
    "an event_id appears twice",
)


def activity_schema_problems(store: Store, day: date, clients: list[str]) -> list[str]:
    """One line per (client, kind of problem) in the day's partitions of ``clients``."""
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    group: list[pl.DataFrame] = []
    rows = 0
    for client_id in clients:
        frame = read_parquet(store.activity_file(day, client_id), columns=CHECKED)
        group.append(frame.with_columns(pl.lit(client_id).alias("_partition")))
        rows += frame.height
        if rows >= GROUP_ROWS:
            _check(pl.concat(group), day, found)
            group, rows = [], 0
    if group:
        _check(pl.concat(group), day, found)
    return [
        f"- {day} {client_id}: {kind}"
        for client_id in clients
        for kind in KINDS
        if client_id in found[kind]
    ]


def _check(frame: pl.DataFrame, day: date, found: dict[str, set[str]]) -> None:
    """Partitions of ``frame`` (whole ones, labelled by ``_partition``) with problems."""
    failing = frame[failing_rows(Envelope, frame)["index"].unique()]
    outside = frame.filter(
        (pl.col("activity_date") != day) | (pl.col("client_id") != pl.col("_partition"))
    )
    twice = frame.filter(pl.struct("_partition", "event_id").is_duplicated())
    for kind, rows in zip(KINDS, (failing, outside, twice), strict=True):
        found[kind].update(rows["_partition"])
