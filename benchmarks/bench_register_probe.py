"""What the dedup register's nightly probe costs as one client's history grows.

Builds one client's register in a scratch folder (``register._append`` and
``_merge_newest``, as nights of ingestion do: segments of up to ``MAX_SEGMENT_ROWS`` rows,
each with its fences) from synthetic event ids in the generator's format (order events
``evt:WH:YYYYMMDDHH:SEQ`` by warehouse and hour, one event in ten ``evt:WH:sSEQ``), then
probes it with the next night's ids, none of them landed before (``register._probe``, as
``update_register`` calls it): with the fences, and reading every segment's ids as before
the fences (the same segments, fences ignored). Run::

    .venv/bin/python benchmarks/bench_register_probe.py --per-day 50000 --days 20 60 200

Prints, for each size of history, the CPU seconds of each probe (this process, all its
threads: median of ``--repeat``) and the rows of history each read.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from billing_pipeline.fences import blocks_holding
from billing_pipeline.ingest import register
from billing_pipeline.ingest.classify import REGISTER_SCHEMA
from billing_pipeline.storage import Store

START = datetime.date(2026, 1, 1)
CLIENT = "big"


def day_ids(day: int, per_day: int) -> pl.Series:
    """Event ids of day ``day``: ids grow with time, as most WMS number them."""
    date = START + datetime.timedelta(days=day)
    first = 1_000_000 + day * per_day
    ids = []
    for k in range(per_day):
        warehouse = "IL1" if k % 3 else "TX2"
        if k % 10 == 0:
            ids.append(f"evt:{warehouse}:s{first + k}")
        else:
            hour = (k * 24) // per_day
            ids.append(f"evt:{warehouse}:{date:%Y%m%d}{hour:02d}:{first + k}")
    return pl.Series("event_id", ids)


def register_rows(ids: pl.Series) -> pl.DataFrame:
    n = ids.len()
    return pl.DataFrame(
        {
            "event_id": ids,
            "file_id": ["f"] * n,
            "source_file": ["a.ndjson"] * n,
            "source_line": range(n),
            "utc_date": [START] * n,
            "status": ["valid"] * n,
            "reason": [None] * n,
            "detail": [None] * n,
            "fingerprint": [1] * n,
            "fingerprint_of": [None] * n,
        },
        schema=REGISTER_SCHEMA,
    )


def probe_cpu(segments: register.Segments, ids: pl.Series, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        cpu = time.process_time()
        found = register._probe(segments, ids, [])
        times.append(time.process_time() - cpu)
        assert found.is_empty(), "the night's ids are new: the probe must find none"
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-day", type=int, default=50_000, help="event ids a night")
    parser.add_argument("--days", type=int, nargs="+", default=[20, 60, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fence-rows", type=int, default=register.FENCE_ROWS)
    args = parser.parse_args(argv)
    register.FENCE_ROWS = args.fence_rows

    with tempfile.TemporaryDirectory() as scratch:
        segments = register.Segments.load(Store(Path(scratch)), CLIENT)
        done = 0
        print("| days | rows of history | segments | fences CPU s | rows read | whole CPU s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for days in sorted(args.days):
            while done < days:
                chunk = min(20, days - done)  # as nights merge: a segment per few nights
                ids = pl.concat([day_ids(d, args.per_day) for d in range(done, done + chunk)])
                register._append(segments, register_rows(ids))
                register._merge_newest(segments)
                done += chunk
            segments.commit()
            night = day_ids(done, args.per_day)
            wanted = night.unique().sort()
            read = sum(
                length
                for name, rows in zip(segments.names, segments.rows, strict=True)
                for _, length in blocks_holding(segments.fences[name], rows, wanted)
            )
            unfenced = register.Segments(
                segments.folder, segments.names, segments.rows, segments.next, {}
            )
            fenced_cpu = probe_cpu(segments, night, args.repeat)
            whole_cpu = probe_cpu(unfenced, night, args.repeat)
            history = sum(segments.rows)
            print(
                f"| {done} | {history:,} | {len(segments.names)} | {fenced_cpu:.3f} "
                f"| {read:,} | {whole_cpu:.3f} |"
            )


if __name__ == "__main__":
    main()
