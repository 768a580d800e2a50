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

from billing_pipeline.ingest.landing import MANIFEST_SCHEMA
from billing_pipeline.months import month_days
from billing_pipeline.storage import (
    PART,
    DataPath,
    Store,
    check_month,
    file_stat_or_none,
    read_cache,
    read_parquet,
    scan_parquet,
    write_cache,
)

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
    """The month's quarantined lines (see the module docstring) per client and reason:
    ``client_id``, ``reason``, ``lines``, and ``examples``, the smallest (source_file,
    source_line) as ``file:line`` texts.

    Only the quarantine of landing files whose UTC event dates come within a day of the
    month is read: every date a line can be billed by (its local activity date, its UTC
    date, the file's earliest UTC date) is within a day of one of its file's UTC dates, so
    the other files hold none of the month's lines, and reading them all made each night's
    reconciliation grow with every file ever landed. And of those, only the files that are
    new or changed since the month's last report: each file's lines are summed up per
    billing date, client and reason once, and the sums kept (``_file_sums``).
    """
    days = month_days(month)
    manifest = read_parquet(store.manifest_file(), MANIFEST_SCHEMA)
    near = manifest.filter(
        (pl.col("quarantined") > 0)
        & pl.col("utc_dates")
        .list.eval(pl.element().is_between(days[0] - _DAY, days[-1] + _DAY))
        .list.any()
    ).select("file_id", "source_file", pl.col("utc_dates").list.min().alias("file_date"))
    sums = _file_sums(store, month, near)
    mine = sums.filter(pl.col("billing_date").is_between(days[0], days[-1]))
    examples = (
        mine.select("client_id", "reason", "source_file", "examples")
        .explode("examples")
        .sort("source_file", "examples")
        .group_by("client_id", "reason", maintain_order=True)
        .agg(pl.format("{}:{}", "source_file", "examples").head(EXAMPLES).alias("examples"))
    )
    return (
        mine.group_by("client_id", "reason")
        .agg(pl.col("lines").sum())
        .join(examples, on=["client_id", "reason"], how="left", nulls_equal=True)
    )


# Per landing file, its quarantined lines summed up per billing date, client and reason, with
# the smallest of their line numbers (the examples: a month's are among its files').
SUMS_SCHEMA = {
    "file_id": pl.String,
    "source_file": pl.String,
    "billing_date": pl.Date,
    "client_id": pl.String,
    "reason": pl.String,
    "lines": pl.Int64,
    "examples": pl.List(pl.Int64),
}
_SUMS_FORMAT = 1
_SUMS_KEY = "billing.quarantine_sums"  # the Parquet key-value entry of the files' keys


def _file_sums(store: Store, month: str, near: pl.DataFrame) -> pl.DataFrame:
    """The sums of the ``near`` files (file_id, source_file, file_date), from the month's
    cache file where a file's key (its quarantine file's stat, its earliest UTC date) is
    the one they were made with; the others read and summed now, and the cache rewritten."""
    keys = {}
    for fid, file_date in zip(near["file_id"], near["file_date"], strict=True):
        stat = file_stat_or_none(store.quarantine_file(fid))
        if stat is not None:
            keys[fid] = [stat, file_date.isoformat() if file_date else None]
    path = _sums_file(store, month)
    cached, cached_keys = _load_sums(path)
    fresh = [fid for fid, key in keys.items() if cached_keys.get(fid) == key]
    stale = sorted(fid for fid in keys if cached_keys.get(fid) != keys[fid])
    kept = cached.filter(pl.col("file_id").is_in(fresh))
    if not stale and len(fresh) == len(cached_keys):
        return kept
    sums = pl.concat([kept, _sum_files(store, near.filter(pl.col("file_id").is_in(stale)))])
    sums = sums.sort("file_id", "billing_date", "client_id", "reason", nulls_last=True)
    write_cache(sums, path, _SUMS_KEY, {"format": _SUMS_FORMAT, "files": keys})
    return sums


def _sum_files(store: Store, files: pl.DataFrame) -> pl.DataFrame:
    """The sums of ``files`` (file_id, source_file, file_date), from one scan of their
    quarantine (a read per file cost five times as much: 3,400 files); without raw_line
    and detail, most of a quarantine file's bytes."""
    if files.is_empty():
        return pl.DataFrame(schema=SUMS_SCHEMA)
    # each row's file from the file it is read from: a row whose source_file named another
    # file would otherwise be summed under no file, and dropped from the cache the next night
    paths = [str(store.quarantine_file(fid)) for fid in files["file_id"]]
    file_of = pl.col("_path").replace_strict(paths, files["file_id"], return_dtype=pl.String)
    rows = (
        scan_parquet(paths, include_file_paths="_path")
        .select(*MONTH_COLUMNS, file_of.alias("file_id"))
        .collect()
    )
    return (
        rows.join(files.select("file_id", "file_date"), on="file_id", how="left")
        .with_columns(
            pl.coalesce(
                pl.col("activity_date"), pl.col("occurred_at").dt.date(), pl.col("file_date")
            ).alias("billing_date")
        )
        .group_by("file_id", "source_file", "billing_date", "client_id", "reason")
        .agg(
            pl.len().cast(pl.Int64).alias("lines"),
            pl.col("source_line").sort().head(EXAMPLES).alias("examples"),
        )
        .select(list(SUMS_SCHEMA))
    )


def _sums_file(store: Store, month: str) -> DataPath:
    return (
        store.root
        / "_cache"
        / "reconciliation"
        / f"month={check_month(month)}"
        / "quarantine.parquet"
    )


def _load_sums(path: DataPath) -> tuple[pl.DataFrame, dict[str, list]]:
    """The cached sums and each file's key; none when missing, unreadable or another format."""
    found = read_cache(path, _SUMS_KEY, SUMS_SCHEMA)
    if found is None or found[1].get("format") != _SUMS_FORMAT:
        return pl.DataFrame(schema=SUMS_SCHEMA), {}
    return found[0], dict(found[1]["files"])


def quarantine_rows(month: str, quarantine: pl.DataFrame) -> list[tuple[str, ...]]:
    """The summary's rows from ``quarantine_of_month``, by client (none first) and reason."""
    rows = [
        (month, client_id or "", reason, str(lines), " ".join(examples))
        for client_id, reason, lines, examples in quarantine.select(
            "client_id", "reason", "lines", "examples"
        ).iter_rows()
    ]
    return sorted(rows, key=lambda row: _key((row[1], row[2])))


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
