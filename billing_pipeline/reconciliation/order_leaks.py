"""The order checks of ``leakage.csv``, kept per client-month so that a month's report
matches the order events of only the days that are new since the last report.

Both checks compare this month's order events with every order event of this month and the
one before (the *window*):

- ``shipped_without_pick``: this month's ``order.shipped`` events whose order has no
  ``order.picked`` in the window;
- ``picked_not_shipped``: this month's ``order.picked`` events whose order has neither an
  ``order.shipped`` nor an ``order.cancelled`` in the window.

Read whole every night, the window's order events cost ~0.3 µs an event, two months of them
by the month's end: at 10 million events a day, minutes of CPU a night, the last part of the
report that grew with the month (docs/performance.md, "Session 10"). So the client-month's
cache keeps the answer, the events of both kinds still *open*, and an index of the window:
for each day, the stat of its activity file and the order ids it picked and those it closed
(shipped or cancelled), sorted in one file with block fences (``fences``). A report then:

- adds the days the cache does not hold yet (``_add_days``): an open event closes when a new
  day has its order's event; a new day's event opens unless a new day or a cached day has
  it, and of the cached days only the index blocks that can hold one of the new days'
  candidates are read (order ids that grow with time, as a WMS numbers orders, fall after
  or between the blocks of earlier days; ids in no order read every block, about what every
  night cost before);
- takes a cached day whose file was written again (ingestion writes the days around the
  ones it touched again each night: the day before gains the events of a time zone west
  of UTC, or of a late file) as a new day, once its file is seen to still pick and close
  every order its index holds: nothing it closed opens again, and its own open events go
  before it is added again;
- recomputes the client-month from all its days when a cached day lost an order's event or
  went (a re-ingest), or the cache is missing or unreadable: the same ``_add_days`` over an
  empty cache, keeping the index files of the days that did not change.

Exact because an event has one activity date and an id unique within the client (SPEC §4),
so adding days one night at a time gives what adding them all at once gives.

Layout, under ``_cache/reconciliation/orders/client_id=ID/``: ``state-YYYY-MM.parquet`` per
month (its open events; its days, with their stats and fences, as the file's key-value
metadata) and ``index-DAY.parquet`` per day, shared by the months whose window holds the
day. A day's index files are a function of its activity file, so
writing them again under the same names is safe; a month's state is written after them, and
then the states of months before the one before the newest go, with the index files no
state left names. A state or index file that is gone or unreadable costs a recompute.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from billing_pipeline.fences import blocks_holding_in, fences_of
from billing_pipeline.ingest.activity import read_activity
from billing_pipeline.months import month_days, previous_month
from billing_pipeline.storage import (
    DataPath,
    Store,
    check_client_id,
    check_month,
    child_files,
    parquet_bytes,
    read_cache,
    remove_file,
    scan_parquet,
    write_bytes,
    write_cache,
)

PICKED, SHIPPED, CANCELLED = "order.picked", "order.shipped", "order.cancelled"
CLOSING = (SHIPPED, CANCELLED)
ORDER_TYPES = (PICKED, SHIPPED, CANCELLED)
_FORMAT = 1
_METADATA_KEY = "billing.order_leaks"  # the Parquet key-value entry of the days
_LEAK_SCHEMA = {
    "kind": pl.String,
    "activity_date": pl.Date,
    "order_id": pl.String,
    "event_id": pl.String,
}
_PICKED_KEY, _CLOSED_KEY = "p:", "c:"  # see _keys
# Order ids per block (and Parquet row group) of a day's index file: what a probe reads of a
# day when one of the night's ids falls in a block's range.
INDEX_ROWS = 8192
_STATE = re.compile(r"^state-(\d{4}-\d{2})\.parquet$")
# What a cache that cannot be read raises: it is then recomputed.
_BROKEN = (OSError, KeyError, TypeError, ValueError, pl.exceptions.PolarsError)


@dataclass
class OrderLeaks:
    """The open events of each order check (``activity_date``, ``order_id``, ``event_id``),
    in no given order."""

    shipped_without_pick: pl.DataFrame
    picked_not_shipped: pl.DataFrame


# Per day of the window (ISO date): {"stat": file_stat, "index": {"rows": keys,
# "fences": fences.fences_of, "sha256": of the file's bytes} or None (no order event)}.
_Days = dict[str, dict]


def order_leaks(
    store: Store, month: str, client_id: str, activity: Mapping[date, list[int | str] | None]
) -> OrderLeaks:
    """The client-month's open order events; ``activity``: the stat of the client's activity
    file of each day of the window (``activity_stats``: this month's days and the month
    before's). The cache is brought up to date."""
    folder = cache_dir(store, client_id)
    # a listed day without a file has no events
    stats = {day.isoformat(): stat for day, stat in sorted(activity.items()) if stat is not None}
    leaks, cached = _load(folder / _state_name(month))
    indexed: _Days = {}  # days whose events are read again but whose index files are kept
    changed = [iso for iso, entry in cached.items() if stats.get(iso) != entry["stat"]]
    # the changed days' order events, read once for the check and the night; none when one
    # of them went
    again = None
    if changed and all(iso in stats for iso in changed):
        again = _events_of(store, client_id, month, changed)
    if again is not None and _only_grew(folder, cached, changed, again):
        # Most nights: the day before written again with more events (a time zone west of
        # UTC, a late file), none lost. Nothing it closed opens again; its own open events
        # go, and it is added again like a new day.
        gone = pl.col("activity_date").is_in([date.fromisoformat(iso) for iso in changed])
        leaks = OrderLeaks(
            leaks.shipped_without_pick.filter(~gone), leaks.picked_not_shipped.filter(~gone)
        )
        cached = {iso: entry for iso, entry in cached.items() if iso not in changed}
    elif changed:
        # A cached day lost an order's event, or went (a re-ingest): every day is read
        # again, as before the cache, but only the changed days are indexed again.
        indexed = {iso: e for iso, e in cached.items() if iso not in changed}
        leaks, cached = _empty(), {}
    elif not cached:
        # A month's first report: the month before's index of its own days is this month's
        # too, and no event of this month is cached, so none is open yet.
        _, before = _load(folder / _state_name(previous_month(month)))
        cached = {iso: e for iso, e in before.items() if stats.get(iso) == e["stat"]}
    new = [iso for iso in stats if iso not in cached]
    if not new:
        return leaks
    if again is None:
        events = _events_of(store, client_id, month, new)
    else:
        unread = [iso for iso in new if iso not in changed]
        events = pl.concat([again, _events_of(store, client_id, month, unread)])
    try:
        leaks, added = _add_days(month, folder, leaks, cached, new, indexed, events)
    except _BROKEN:  # an index file gone or damaged: recomputed from the activity files
        if not cached and not indexed:
            raise
        leaks, cached, new = _empty(), {}, list(stats)
        events = _events_of(store, client_id, month, new)
        leaks, added = _add_days(month, folder, leaks, cached, new, {}, events)
    for iso in new:
        added[iso]["stat"] = stats[iso]
    _save(folder, month, leaks, {**cached, **added})
    return leaks


def _only_grew(folder: DataPath, cached: _Days, changed: list[str], events: pl.DataFrame) -> bool:
    """Do the ``changed`` days (their order ``events`` as they are now) still pick and close
    every order their index holds?"""
    now = _keys(events)
    try:
        for iso in changed:
            index = cached[iso]["index"]
            if index is None:
                continue
            data = _index_file(folder, iso).read_bytes()
            # the file as this state indexed it: another month's report may have indexed
            # the day again since, from the file as it is now
            if hashlib.sha256(data).hexdigest() != index["sha256"]:
                return False
            of_day = now.filter(pl.col("activity_date") == date.fromisoformat(iso))
            if not pl.read_parquet(io.BytesIO(data)).join(of_day, on="key", how="anti").is_empty():
                return False
    except _BROKEN:  # an index file gone or damaged
        return False
    return True


def _events_of(store: Store, client_id: str, month: str, days: list[str]) -> pl.DataFrame:
    """The order events of ``days`` (activity_date, event_type, order_id, event_id); of the
    month before's days only which orders they picked or closed counts, so their event_id
    is not read (null)."""
    mine = [date.fromisoformat(iso) for iso in days if iso.startswith(month)]
    theirs = [date.fromisoformat(iso) for iso in days if not iso.startswith(month)]
    columns = ["activity_date", "event_type", "order_id"]
    frames = [_order_events(store, client_id, mine, [*columns, "event_id"])]
    if theirs:
        before = _order_events(store, client_id, theirs, columns)
        frames.append(before.with_columns(event_id=pl.lit(None, dtype=pl.String)))
    return pl.concat(frames)


def _add_days(
    month: str,
    folder: DataPath,
    leaks: OrderLeaks,
    cached: _Days,
    new: list[str],
    indexed: _Days,
    events: pl.DataFrame,
) -> tuple[OrderLeaks, _Days]:
    """``leaks`` over the cached days, brought to the cached days and the ``new`` ones
    (whose order ``events`` are given, ``_events_of``) together; the index of the new days
    (written, but for those already ``indexed``)."""
    days = month_days(month)
    this = events.filter(pl.col("activity_date").is_between(days[0], days[-1]))
    window = events.drop("event_id")
    picked = _orders(window, [PICKED])
    closed = _orders(window, CLOSING)
    shipped_new = _unmatched(_of_type(this, [SHIPPED]), picked)
    picked_new = _unmatched(_of_type(this, [PICKED]), closed)
    seen = _seen(folder, cached, shipped_new, picked_new)
    shipped_new = _unmatched(shipped_new, seen.filter(pl.col("picked")).select("order_id"))
    picked_new = _unmatched(picked_new, seen.filter(~pl.col("picked")).select("order_id"))
    leaks = OrderLeaks(
        pl.concat([_unmatched(leaks.shipped_without_pick, picked), shipped_new]),
        pl.concat([_unmatched(leaks.picked_not_shipped, closed), picked_new]),
    )
    kept = {iso: indexed[iso] for iso in new if iso in indexed}
    return leaks, {**kept, **_index(folder, window, [iso for iso in new if iso not in kept])}


def _order_events(
    store: Store, client_id: str, days: list[date], columns: list[str]
) -> pl.DataFrame:
    """``columns`` of the order events on ``days`` that name an order."""
    return (
        read_activity(store, client_id, days, columns)
        .filter(pl.col("event_type").is_in(ORDER_TYPES))
        .drop_nulls("order_id")
    )


def _of_type(events: pl.DataFrame, types: Sequence[str]) -> pl.DataFrame:
    """The (activity_date, order_id, event_id) of ``events`` of ``types``."""
    return events.filter(pl.col("event_type").is_in(types)).select(
        "activity_date", "order_id", "event_id"
    )


def _orders(events: pl.DataFrame, types: Sequence[str]) -> pl.DataFrame:
    """The order ids of ``events`` of ``types`` (an order id may repeat)."""
    return events.filter(pl.col("event_type").is_in(types)).select("order_id")


def _unmatched(events: pl.DataFrame, found: pl.DataFrame) -> pl.DataFrame:
    """``events`` whose order is not in ``found`` (an anti-join: at a month's size several
    times faster than ``is_in`` with a unique set)."""
    if events.is_empty() or found.is_empty():  # a join would hash the other side for nothing
        return events
    return events.join(found, on="order_id", how="anti")


def _seen(
    folder: DataPath, cached: _Days, shipped: pl.DataFrame, picked: pl.DataFrame
) -> pl.DataFrame:
    """The orders of ``shipped`` that a cached day picked and those of ``picked`` that a
    cached day closed (``order_id``, ``picked``: which), from the blocks of the days' index
    files that can hold one of them."""
    none = pl.DataFrame(schema={"order_id": pl.String, "picked": pl.Boolean})
    days = [(iso, e["index"]) for iso, e in cached.items() if e["index"] is not None]
    if not days or (shipped.is_empty() and picked.is_empty()):
        return none
    wanted = pl.concat(
        [
            shipped.select("order_id", picked=pl.lit(True)),
            picked.select("order_id", picked=pl.lit(False)),
        ]
    )
    keys = _keys(wanted)["key"].unique().sort()
    found = blocks_holding_in([(index["fences"], index["rows"]) for _, index in days], keys)
    blocks = []
    for (iso, _), runs in zip(days, found, strict=True):
        if runs:  # a scan reads the file's footer when made: only for the days to read
            scan = scan_parquet(_index_file(folder, iso))
            blocks += [scan.slice(start, length) for start, length in runs]
    if not blocks:
        return none
    night = pl.LazyFrame({"key": keys})
    seen = pl.concat(blocks).join(night, on="key", how="semi").collect()["key"]
    return pl.DataFrame(
        {"order_id": seen.str.slice(len(_PICKED_KEY)), "picked": seen.str.starts_with(_PICKED_KEY)}
    )


def _keys(events: pl.DataFrame) -> pl.DataFrame:
    """``key`` of each order event (``event_type`` or ``picked``, ``order_id``): the order id
    behind ``p:`` (picked) or ``c:`` (closed), so that one sorted index per day holds both."""
    picked = pl.col("picked") if "picked" in events.columns else pl.col("event_type") == PICKED
    prefix = pl.when(picked).then(pl.lit(_PICKED_KEY)).otherwise(pl.lit(_CLOSED_KEY))
    return events.with_columns(key=pl.concat_str(prefix, pl.col("order_id")))


def _index(folder: DataPath, window: pl.DataFrame, days: list[str]) -> _Days:
    """Writes the index files of ``days`` from their order events (``window``); their
    entries."""
    wanted_days = [date.fromisoformat(iso) for iso in days]
    keyed = _keys(window.filter(pl.col("activity_date").is_in(wanted_days)))
    by_day = keyed.partition_by("activity_date", as_dict=True)
    entries: _Days = {}
    for iso in days:
        of_day = by_day.get((date.fromisoformat(iso),))
        keys = of_day["key"].unique().sort() if of_day is not None else None
        entries[iso] = {"index": None}
        if keys is not None and not keys.is_empty():
            data = parquet_bytes(keys.to_frame(), row_group_size=INDEX_ROWS)
            write_bytes(data, _index_file(folder, iso), durable=False)
            entries[iso]["index"] = {
                "rows": keys.len(),
                "fences": fences_of(keys, INDEX_ROWS),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    return entries


def _index_file(folder: DataPath, iso: str) -> DataPath:
    return folder / f"index-{iso}.parquet"


def _empty() -> OrderLeaks:
    schema = {"activity_date": pl.Date, "order_id": pl.String, "event_id": pl.String}
    return OrderLeaks(pl.DataFrame(schema=schema), pl.DataFrame(schema=schema))


def cache_dir(store: Store, client_id: str) -> DataPath:
    """The folder of the client's order check caches: one state per month, one index file
    per day, shared by the months whose window holds the day."""
    return (
        store.root
        / "_cache"
        / "reconciliation"
        / "orders"
        / f"client_id={check_client_id(client_id)}"
    )


def _state_name(month: str) -> str:
    return f"state-{check_month(month)}.parquet"


def _save(folder: DataPath, month: str, leaks: OrderLeaks, days: _Days) -> None:
    """The month's state, after the index files it names. Then the states of months before
    the month before the newest go, and the index files no state left names (a report of a
    month whose state went recomputes it)."""
    rows = pl.concat(
        [
            leaks.shipped_without_pick.select(pl.lit("shipped_without_pick").alias("kind"), "*"),
            leaks.picked_not_shipped.select(pl.lit("picked_not_shipped").alias("kind"), "*"),
        ]
    ).cast(_LEAK_SCHEMA)
    # sorted: the same rows however the nights came (a rerun after a kill writes the same file)
    rows = rows.sort(list(_LEAK_SCHEMA))
    write_cache(rows, folder / _state_name(month), _METADATA_KEY, {"format": _FORMAT, "days": days})
    names = child_files(folder)
    months = sorted(m.group(1) for name in names if (m := _STATE.match(name)))
    keep = {month, months[-1], previous_month(months[-1])}
    named = set()
    for other in months:
        if other not in keep:
            remove_file(folder / _state_name(other))
            continue
        kept = days if other == month else _load(folder / _state_name(other))[1]
        named |= {_index_file(folder, iso).name for iso, e in kept.items() if e["index"]}
    for name in names:
        if not _STATE.match(name) and name not in named:
            remove_file(folder / name)


def _load(path: DataPath) -> tuple[OrderLeaks, _Days]:
    """A month's cached leaks and days; none when its state is missing, unreadable or of
    another format."""
    found = read_cache(path, _METADATA_KEY, _LEAK_SCHEMA)
    days = found[1].get("days") if found and found[1].get("format") == _FORMAT else None
    valid = isinstance(days, dict) and all(
        isinstance(e, dict) and {"stat", "index"} <= set(e) for e in days.values()
    )
    if found is None or not valid:
        return _empty(), {}
    rows = found[0]
    kind = pl.col("kind")
    return (
        OrderLeaks(
            rows.filter(kind == "shipped_without_pick").drop("kind"),
            rows.filter(kind == "picked_not_shipped").drop("kind"),
        ),
        days,
    )
