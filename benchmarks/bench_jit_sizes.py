"""CPU of one evaluation of N events with LuaJIT's JIT on and off: where the JIT pays.

Run: ``.venv/bin/python benchmarks/bench_jit_sizes.py [--sizes 500,2000,...] [--repeat R]``

Each evaluation gets a fresh Lua runtime (as each client-month does in a nightly run), so a
small batch pays for compiling its traces and has few events to win it back over. For each
N (the first N of bench_rules.py's DTC-like events, default rules) it runs
``RuleEngine.evaluate`` with the JIT forced on and forced off (``batch.JIT_MIN_EVENTS``),
interleaved, and prints the median CPU (parent with its threads + the forked worker) and the
worker's alone, plus whether both modes gave the same charges. ``batch.JIT_MIN_EVENTS`` is
picked from this table.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_rules import _cpu_seconds, build_events  # noqa: E402

from billing_pipeline.rules import RateVersion, RuleEngine, batch  # noqa: E402


def run(engine, events, versions, jit: bool):
    batch.JIT_MIN_EVENTS = 0 if jit else sys.maxsize
    then = _cpu_seconds()
    result = engine.evaluate(events, client_id="acme", rules_file="default.lua", versions=versions)
    time.sleep(0.05)  # the worker is reaped on a thread: count its CPU too
    now = _cpu_seconds()
    return now[0] - then[0] + now[1] - then[1], now[1] - then[1], result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,1000,2000,3000,5000,10000,20000,50000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    events = build_events(max(sizes))
    engine = RuleEngine(ROOT / "lua")
    versions = [RateVersion(datetime.date(2026, 1, 1), {"heavy_lb": 50})]
    run(engine, events.head(100), versions, True)  # warm the parent's imports
    print(
        f"{'events':>8} {'on CPU s':>9} {'off CPU s':>9} {'on worker':>9} {'off worker':>10}"
        f" {'off/on':>6}  same charges"
    )
    for n in sizes:
        head = events.head(n)
        totals = {True: [], False: []}
        workers = {True: [], False: []}
        charges = {}
        for _ in range(args.repeat):
            for jit in (True, False):
                total, worker, result = run(engine, head, versions, jit)
                totals[jit].append(total)
                workers[jit].append(worker)
                charges[jit] = result.charges
        on, off = statistics.median(totals[True]), statistics.median(totals[False])
        same = charges[True].equals(charges[False])
        print(
            f"{n:>8,} {on:>9.3f} {off:>9.3f} {statistics.median(workers[True]):>9.3f}"
            f" {statistics.median(workers[False]):>10.3f} {off / on:>6.2f}  {same}",
            flush=True,
        )


if __name__ == "__main__":
    main()
