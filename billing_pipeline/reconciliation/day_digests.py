"""What coverage and ``billable_not_charged`` need of one client-day, kept so that a month's
report matches the events and charges of only the days whose inputs changed.

Each night the report read the month's events and charge lines whole and matched them
(0.57 µs an event of the month, about half of it that matching: at 10 million events a day,
minutes of CPU a night by the month's end; docs/performance.md, "Session 8"). A day's
digest is a function of three files: the day's activity file, the day's charges part (one
part per activity day, SPEC §4.1) and the client-month's rule errors. The digests of a
client-month are kept in one file under ``_cache/reconciliation``, each with the stats of
those files (``storage.file_stat``) when it was made; a day whose files' stats differ is
digested again. Deleting the folder only costs a night the full work.

Adding the days up is exact: an event has one activity date and its id is unique within the
client (SPEC §4: the first copy wins across all files and days), so counts add up and the
month's smallest ids are among the days' smallest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date

import polars as pl

from billing_pipeline.ingest.activity import read_activity
from billing_pipeline.storage import (
    DataPath,
    Store,
    check_client_id,
    check_month,
    file_stat_or_none,
    file_stats,
    read_parquet,
    scan_parquet,
    write_bytes,
)

EXAMPLES = 5  # example event ids of a leakage row
_FORMAT = 1  # of the cache file; a file of another format is ignored
_DAY_PART = re.compile(r"^part-(\d{4}-\d{2}-\d{2})\.parquet$")


@dataclass
class DayDigest:
    """Valid events per type, how many made at least one charge line, and those that made
    none and have no rule error, with the smallest of their ids (sorted)."""

    events: dict[str, int] = field(default_factory=dict)
    charged: dict[str, int] = field(default_factory=dict)
    uncharged: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.events.values())


def digests_of(
    events: pl.DataFrame, charged_ids: pl.Series, errored_ids: pl.Series
) -> dict[date, DayDigest]:
    """The digest of each day of ``events`` (event_id, event_type, activity_date), given the
    event ids with a charge line and those with a rule error (a superset of these events' is
    fine: an event id is in one day only)."""
    marked = events.select(
        "activity_date",
        "event_type",
        "event_id",
        pl.col("event_id").is_in(charged_ids.implode()).alias("charged"),
    )
    keys = ["activity_date", "event_type"]
    counts = marked.group_by(keys).agg(pl.len(), pl.col("charged").sum())
    left = (
        marked.filter(~pl.col("charged") & ~pl.col("event_id").is_in(errored_ids.implode()))
        .group_by(keys)
        .agg(pl.len(), pl.col("event_id").sort().head(EXAMPLES))
    )
    out: dict[date, DayDigest] = {}
    for day, event_type, n, charged in counts.sort(keys).iter_rows():
        digest = out.setdefault(day, DayDigest())
        digest.events[event_type] = n
        digest.charged[event_type] = charged
    for day, event_type, n, examples in left.sort(keys).iter_rows():
        out[day].uncharged[event_type] = n
        out[day].examples[event_type] = list(examples)
    return out


def add_up(days: Sequence[DayDigest]) -> DayDigest:
    """The month's digest from its days'."""
    total = DayDigest()
    for day in days:
        for ours, theirs in (
            (total.events, day.events),
            (total.charged, day.charged),
            (total.uncharged, day.uncharged),
        ):
            for event_type, n in theirs.items():
                ours[event_type] = ours.get(event_type, 0) + n
        for event_type, ids in day.examples.items():
            merged = {*total.examples.get(event_type, []), *ids}
            total.examples[event_type] = sorted(merged)[:EXAMPLES]
    return total


def activity_stats(
    store: Store, client_id: str, days: Iterable[date]
) -> dict[date, list[int | str] | None]:
    """The stat of the client's activity file of each day (None: no file), taken once for
    the caches of a client-month (its digests, ``order_leaks``)."""
    return {day: file_stat_or_none(store.activity_file(day, client_id)) for day in days}


def client_month_digest(
    store: Store,
    month: str,
    client_id: str,
    days: Sequence[date],
    activity: Mapping[date, list[int | str] | None],
) -> DayDigest:
    """The client-month's digest over its activity ``days`` (``activity``: their files'
    stats, ``activity_stats``); the days whose files changed since they were digested (or
    never were) are digested now, and the cache file updated."""
    path = _cache_file(store, month, client_id)
    cached = _load(path)
    charges = _charges_files(store, month, client_id)
    by_day = {m.group(1): stat for name, stat in charges.items() if (m := _DAY_PART.match(name))}
    # a client-month stored before charges were split by day: one file holds every day's
    legacy = None if len(by_day) == len(charges) else [[n, s] for n, s in sorted(charges.items())]
    errors = file_stat_or_none(store.rule_errors_file(month, client_id))
    keys = {
        day.isoformat(): [
            activity[day],
            legacy if legacy is not None else by_day.get(day.isoformat()),
            errors,
        ]
        for day in days
    }
    digests = {}
    for iso, key in keys.items():
        entry = cached.get(iso)
        try:
            if entry["key"] == key:
                digests[iso] = DayDigest(**entry["digest"])
        except (TypeError, KeyError):
            pass  # never digested, or written in another shape: digested again
    stale = [day for day in days if day.isoformat() not in digests]
    if stale:
        digests.update(_digest_days(store, month, client_id, stale, charges, legacy is not None))
        entries = {iso: {"key": keys[iso], "digest": asdict(digests[iso])} for iso in keys}
        data = json.dumps({"format": _FORMAT, "days": entries}, sort_keys=True).encode()
        write_bytes(data, path, durable=False)  # a cache: a lost write costs a recompute
    return add_up([digests[iso] for iso in sorted(digests)])


def _digest_days(
    store: Store,
    month: str,
    client_id: str,
    days: list[date],
    files: dict[str, list[int | str]],
    legacy: bool,
) -> dict[str, DayDigest]:
    """Digests of ``days``, from one read of their events and of their charge lines (in
    ``files``, the client-month's charges files)."""
    events = read_activity(store, client_id, days, ["event_id", "event_type", "activity_date"])
    folder = store.charges_dir(month, client_id)
    if legacy:  # one file for the month
        wanted = sorted(files)
    else:
        wanted = [n for n in (f"part-{day.isoformat()}.parquet" for day in days) if n in files]
    charged = (
        scan_parquet([folder / name for name in wanted]).select("event_id").collect()["event_id"]
        if wanted
        else pl.Series("event_id", [], pl.String)
    )
    found = digests_of(events, charged, _ids(store.rule_errors_file(month, client_id)))
    # a day whose activity file holds no event (all of them gone) still gets a digest
    return {day.isoformat(): found.get(day, DayDigest()) for day in days}


def _charges_files(store: Store, month: str, client_id: str) -> dict[str, list[int | str]]:
    """The stats of the client-month's charges files (those ``read_charges`` reads)."""
    stats = file_stats(store.charges_dir(month, client_id))
    return {
        name: stat
        for name, stat in stats.items()
        if name.endswith(".parquet") and not name.startswith((".", "_"))
    }


def _ids(path: DataPath) -> pl.Series:
    """The non-null event ids of a rule errors file (none when it is missing)."""
    try:
        return read_parquet(path, columns=["event_id"])["event_id"].drop_nulls()
    except FileNotFoundError:
        return pl.Series("event_id", [], dtype=pl.String)


def _cache_file(store: Store, month: str, client_id: str) -> DataPath:
    return (
        store.root
        / "_cache"
        / "reconciliation"
        / f"month={check_month(month)}"
        / f"client_id={check_client_id(client_id)}"
        / "digests.json"
    )


def _load(path: DataPath) -> dict[str, dict]:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return {}
    return data.get("days", {})
