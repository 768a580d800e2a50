"""What the month report's order checks cost as the month goes on, cached and recomputed.

Writes one client's activity files for the month before and the month (synthetic order
lifecycles: each order picked, then shipped the same day or the next, some cancelled, a few
picked and never shipped, a few shipped without a pick; order ids numbered in sequence, as
a WMS numbers orders), then for each night N of ``--nights``:

- **cached**: the cache brought to night N-1 (``order_leaks`` over the days up to N-1; for
  night 1, the month before's report over its own days: the month's first report starts
  from the month before's index), then ``order_leaks`` over the days up to N: what a night
  costs;
- **the day before written again**: the same night after the day before's file was written
  again, the same rows (ingestion writes the days around the ones it touched again every
  night): that day is read again to see that it lost no order, then like a new day;
- **recomputed**: the cache deleted, then ``order_leaks`` over the days up to N: what
  every night cost before the cache (it read both months' order events whole), and what a
  night costs after a cached day's file changed.

Run::

    .venv/bin/python benchmarks/bench_order_checks.py --per-day 300000 --nights 1 2 10 20 30

Prints CPU seconds (this process, Polars threads included; median of ``--repeat``) and
checks that both give the same open events.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from billing_pipeline.ingest.activity import ACTIVITY_SCHEMA
from billing_pipeline.reconciliation.day_digests import activity_stats
from billing_pipeline.reconciliation.order_leaks import cache_dir, order_leaks
from billing_pipeline.storage import Store, write_parquet

MONTH = "2026-03"
PREVIOUS = [datetime.date(2026, 2, 1) + datetime.timedelta(days=k) for k in range(28)]
DAYS = [datetime.date(2026, 3, 1) + datetime.timedelta(days=k) for k in range(31)]
CLIENT = "big"


def day_events(index: int, day: datetime.date, orders: int) -> pl.DataFrame:
    """The order events of day number ``index`` (from 0): picks of the day's orders; ships of
    the orders picked the day before that did not ship then (and a few without a pick);
    ships and cancels of today's orders that close today. Bucket = order number mod 200."""
    first = index * orders
    today = pl.int_range(first, first + orders, eager=True).alias("n")
    yesterday = pl.int_range(max(first - orders, 0), first, eager=True).alias("n")
    bucket = pl.col("n") % 200
    parts = [
        today.to_frame().with_columns(event_type=pl.lit("order.picked")),
        # 70 % ship the day they are picked, 28.5 % the next day, 1 % are cancelled the day
        # they are picked, 0.5 % never close
        today.to_frame().filter(bucket < 140).with_columns(event_type=pl.lit("order.shipped")),
        today.to_frame()
        .filter(bucket.is_between(197, 198))
        .with_columns(event_type=pl.lit("order.cancelled")),
        yesterday.to_frame()
        .filter(bucket.is_between(140, 196))
        .with_columns(event_type=pl.lit("order.shipped")),
    ]
    frame = pl.concat(parts).with_row_index("k")
    # one ship in 400 names an order never picked
    stray = (pl.col("event_type") == "order.shipped") & (pl.col("k") % 400 == 7)
    order_id = pl.format("SO-{}", pl.when(stray).then(pl.col("n") + 10**9).otherwise(pl.col("n")))
    return frame.select(
        event_id=pl.format("E-{}-{}", pl.lit(day.isoformat()), pl.col("k")),
        event_type="event_type",
        occurred_at=pl.lit(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)),
        occurred_at_raw=pl.lit(f"{day.isoformat()}T00:00:00Z"),
        activity_date=pl.lit(day),
        client_id=pl.lit(CLIENT),
        warehouse_id=pl.lit("WH1"),
        schema_version=pl.lit(1, dtype=pl.Int64),
        payload=pl.lit("{}"),
        order_id=order_id,
        raw_line=pl.lit(""),
        source_file=pl.lit("synthetic.ndjson"),
        source_line=pl.col("k").cast(pl.Int64),
    ).cast(ACTIVITY_SCHEMA)


def build(store: Store, per_day: int) -> None:
    orders = per_day // 2  # a pick and about one close per order
    for index, day in enumerate([*PREVIOUS, *DAYS]):
        write_parquet(day_events(index, day, orders), store.activity_file(day, CLIENT))


def leaks_of(store: Store, night: int) -> list[pl.DataFrame]:
    """The open events of both checks at night ``night``, sorted."""
    days = [d for d in DAYS if d.day <= night]
    found = order_leaks(store, MONTH, CLIENT, activity_stats(store, CLIENT, [*PREVIOUS, *days]))
    return [found.shipped_without_pick.sort("event_id"), found.picked_not_shipped.sort("event_id")]


def rewrite(store: Store, day: datetime.date) -> None:
    """The day's activity file written again, the same rows: a new file to the caches."""
    path = store.activity_file(day, CLIENT)
    write_parquet(pl.read_parquet(path), path)


def prepare(store: Store, night: int) -> None:
    """The cache as night ``night`` finds it."""
    if night > 1:
        leaks_of(store, night - 1)
        return
    shutil.rmtree(cache_dir(store, CLIENT), ignore_errors=True)
    order_leaks(store, "2026-02", CLIENT, activity_stats(store, CLIENT, PREVIOUS))


def cpu_of(action) -> tuple[float, object]:
    began = time.process_time()
    result = action()
    return time.process_time() - began, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-day", type=int, default=300_000, help="order events a day")
    parser.add_argument("--nights", type=int, nargs="+", default=[1, 2, 10, 20, 30])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        began = time.perf_counter()
        build(store, args.per_day)
        window = len(PREVIOUS) * args.per_day
        print(f"built {len(PREVIOUS) + len(DAYS)} days of ~{args.per_day:,} order events "
              f"in {time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
        print("| night | order events in the window | cached CPU s | day before rewritten CPU s "
              "| recomputed CPU s | open |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        for night in args.nights:
            cached, changed, recomputed = [], [], []
            for _ in range(args.repeat):
                prepare(store, night)
                seconds, with_cache = cpu_of(lambda n=night: leaks_of(store, n))
                cached.append(seconds)
                prepare(store, night)
                rewrite(store, ([*PREVIOUS, *DAYS])[len(PREVIOUS) + night - 2])
                seconds, after_change = cpu_of(lambda n=night: leaks_of(store, n))
                changed.append(seconds)
                shutil.rmtree(cache_dir(store, CLIENT))
                seconds, from_scratch = cpu_of(lambda n=night: leaks_of(store, n))
                recomputed.append(seconds)
                if not all(
                    a.equals(b) and a.equals(c)
                    for a, b, c in zip(with_cache, after_change, from_scratch, strict=True)
                ):
                    raise SystemExit(f"night {night}: cached and recomputed leaks differ")
            events = window + night * args.per_day
            print(
                f"| {night} | ~{events:,} | {statistics.median(cached):.3f} "
                f"| {statistics.median(changed):.3f} | {statistics.median(recomputed):.3f} "
                f"| {with_cache[0].height:,} shipped without pick, "
                f"{with_cache[1].height:,} picked not shipped |",
                flush=True,
            )


if __name__ == "__main__":
    main()
