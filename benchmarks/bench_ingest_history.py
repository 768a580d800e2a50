"""What history costs the landing stage: night N on top of days 1..N-1, against day N alone.

Lands every generated day before the last into a scratch landing folder and ingests it once
(outside the clock); then adds the last day's files and times ``ingest_landing`` on a copy
of that warehouse (night N), and on a fresh warehouse holding only the last day (day N
alone). The difference is what the history behind the night costs: the dedup register, the
landing listing, identities and manifest. Run, on the data of the month benchmark::

    .venv/bin/python benchmarks/bench_nightly.py --no-nightly --month-events 100000 \\
        --month-clients 30 --month-days 30
    .venv/bin/python benchmarks/bench_ingest_history.py --day 2026-03-30 \\
        --data benchmarks/out/nightly-100000e-30c-30d --work /tmp/history

Prints CPU and wall seconds of each run and the medians. CPU is this process's only: the
parse workers do the same work in both cases and are left out.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path


def day_of(path: Path) -> date | None:
    """The delivery day of a generated landing file: its folder's name."""
    try:
        return date.fromisoformat(path.parent.name)
    except ValueError:
        return None


def copy_files(files: list[Path], source: Path, target: Path) -> None:
    for path in files:
        to = target / path.relative_to(source)
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, to)


def timed(work: Callable[..., object], *args: object) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    work(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> None:
    from billing_pipeline.ingest.landing import ingest_landing
    from billing_pipeline.ingest.reading import list_landing_files
    from billing_pipeline.ratecards import load_ratecards
    from billing_pipeline.storage import Store

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="`billing generate` output")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    parser.add_argument(
        "--day",
        type=date.fromisoformat,
        help="the night's delivery day (default: the last); later folders are left out",
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    cards, _ = load_ratecards(args.data / "ratecards")
    timezones = {client_id: card.timezone for client_id, card in cards.items()}
    source = args.data / "landing"
    files = list_landing_files(source)
    last = args.day or max(d for d in map(day_of, files) if d is not None)
    before = [f for f in files if (day_of(f) or date.min) < last]
    night = [f for f in files if day_of(f) == last]
    shutil.rmtree(args.work, ignore_errors=True)
    landing, alone = args.work / "landing", args.work / "alone"
    copy_files(before, source, landing)
    ingest_landing(landing, Store(args.work / "history"), timezones)
    copy_files(night, source, landing)
    copy_files(night, source, alone)
    print(f"{len(before)} files before {last}, {len(night)} on it")

    nights, alones = [], []
    for i in range(args.repeat):
        store = args.work / f"night{i}"
        shutil.copytree(args.work / "history", store)
        nights.append(timed(ingest_landing, landing, Store(store), timezones))
        alones.append(timed(ingest_landing, alone, Store(args.work / f"alone{i}"), timezones))
        print(
            f"run {i + 1}: night cpu {nights[-1][0]:.2f} s wall {nights[-1][1]:.2f} s; "
            f"day alone cpu {alones[-1][0]:.2f} s wall {alones[-1][1]:.2f} s",
            flush=True,
        )
    night_cpu = statistics.median(c for c, _ in nights)
    alone_cpu = statistics.median(c for c, _ in alones)
    print(
        f"median of {args.repeat}: night cpu {night_cpu:.2f} s, day alone cpu {alone_cpu:.2f} s, "
        f"history {night_cpu - alone_cpu:+.2f} s"
    )


if __name__ == "__main__":
    main()
