"""The month's quarantine and rule errors, summarized beside the reconciliation (SPEC §9).

Which month a quarantined line belongs to (the quarantine dataset is per landing file, not
per month): its ``activity_date`` (the client's billing date) when that could be read;
else the UTC date of its ``occurred_at``; else (an unparsable line: ``invalid_json``,
``not_an_object``, a missing or bad ``occurred_at``) the earliest UTC event date of its
landing file, from the manifest. A line with none of these (a file with no readable
timestamp at all) belongs to no month; it still counts in the manifest.

``quarantine_summary.csv``: ``period,client_id,reason,lines,examples`` -- per client
(empty when the client could not be read) and reason code; ``examples`` are up to 5
``source_file:source_line`` locations, smallest first.

``rule_errors_summary.csv``: ``period,client_id,rules_file,line,event_type,errors,examples,
message`` -- per client, rules file, Lua line and event type; ``examples`` up to 5 event
ids; ``message`` the message of the first of them (messages name the event's values, so
they are not a grouping key).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from billing_pipeline.ingest.landing import MANIFEST_SCHEMA, QUARANTINE_SCHEMA
from billing_pipeline.months import month_days
from billing_pipeline.storage import PART, Store, read_parquet, scan_parquet

QUARANTINE_HEADER = ("period", "client_id", "reason", "lines", "examples")
RULE_ERRORS_HEADER = (
    "period",
    "client_id",
    "rules_file",
    "line",
    "event_type",
    "errors",
    "examples",
    "message",
)
EXAMPLES = 5
_DAY = timedelta(days=1)


# What the month's summary reads of a quarantined line: where it is, why, whose, and when.
MONTH_COLUMNS = (
    "source_file",
    "source_line",
    "reason",
    "client_id",
    "occurred_at",
    "activity_date",
)


def quarantine_of_month(store: Store, month: str) -> pl.DataFrame:
    """Quarantined lines that belong to ``month`` (see the module docstring): their
    MONTH_COLUMNS.

    Only the quarantine of landing files whose UTC event dates come within a day of the
    month is read: every date a line can be billed by (its local activity date, its UTC
    date, the file's earliest UTC date) is within a day of one of its file's UTC dates, so
    the other files hold none of the month's lines, and reading them all made each night's
    reconciliation grow with every file ever landed.
    """
    days = month_days(month)
    manifest = read_parquet(store.manifest_file(), MANIFEST_SCHEMA)
    near = manifest.filter(
        (pl.col("quarantined") > 0)
        & pl.col("utc_dates")
        .list.eval(pl.element().is_between(days[0] - _DAY, days[-1] + _DAY))
        .list.any()
    )
    files = [store.quarantine_file(fid) for fid in near["file_id"].sort()]
    files = [f for f in files if f.exists()]
    if not files:
        return pl.DataFrame(schema={c: QUARANTINE_SCHEMA[c] for c in MONTH_COLUMNS})
    # one scan of all the files: a read per file cost five times as much (3,400 files);
    # without raw_line and detail, most of a quarantine file's bytes
    rows = scan_parquet(files).select(list(MONTH_COLUMNS)).collect()
    manifest = manifest.select("source_file", pl.col("utc_dates").list.min().alias("file_date"))
    dated = rows.join(manifest, on="source_file", how="left").with_columns(
        pl.coalesce(
            pl.col("activity_date"), pl.col("occurred_at").dt.date(), pl.col("file_date")
        ).alias("billing_date")
    )
    return dated.filter(pl.col("billing_date").is_between(days[0], days[-1])).drop(
        "file_date", "billing_date"
    )


def quarantine_rows(month: str, quarantine: pl.DataFrame) -> list[tuple[str, ...]]:
    if quarantine.is_empty():
        return []
    frame = quarantine.with_columns(
        pl.col("client_id").fill_null(""),
        pl.format("{}:{}", "source_file", "source_line").alias("where"),
    ).sort("source_file", "source_line")
    rows = []
    for (client_id, reason), group in sorted(
        frame.group_by("client_id", "reason"), key=lambda item: _key(item[0])
    ):
        rows.append(
            (
                month,
                str(client_id),
                str(reason),
                str(group.height),
                " ".join(group["where"].head(EXAMPLES).to_list()),
            )
        )
    return rows


def rule_errors_of_month(store: Store, month: str) -> pl.DataFrame:
    folder = store.root / "rule_errors" / f"month={month}"
    files = sorted(folder.glob(f"client_id=*/{PART}")) if folder.is_dir() else []
    frames = [
        read_parquet(f).with_columns(
            pl.lit(f.parent.name.removeprefix("client_id=")).alias("client_id")
        )
        for f in files
    ]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def rule_error_rows(month: str, errors: pl.DataFrame) -> list[tuple[str, ...]]:
    if errors.is_empty():
        return []
    frame = errors.with_columns(
        pl.col("event_id").fill_null(""),
        pl.col("event_type").fill_null(""),
        pl.col("line").cast(pl.Utf8).fill_null(""),
    ).sort("event_id", "message")
    keys = ("client_id", "rules_file", "line", "event_type")
    rows = []
    for key, group in sorted(frame.group_by(*keys), key=lambda item: _key(item[0])):
        ids = [i for i in group["event_id"].to_list() if i]
        rows.append(
            (
                month,
                *(str(k) for k in key),
                str(group.height),
                " ".join(ids[:EXAMPLES]),
                str(group["message"][0]),
            )
        )
    return rows


def _key(values: tuple[object, ...]) -> tuple[object, ...]:
    """Sort key of a group: strings as written, numbers-as-text padded (Lua line 9 < 10)."""
    return tuple(
        (len(v), v) if isinstance(v, str) and v.isdigit() else (0, str(v) if v is not None else "")
        for v in values
    )
