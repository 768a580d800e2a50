"""Time a month's reconciliation reports (``build_month_report``) on outputs that exist.

Run, for instance on the warehouse a month-to-date benchmark kept::

    .venv/bin/python benchmarks/bench_nightly.py --no-nightly --month-events 100000 \\
        --month-clients 30 --month-days 30 --keep /tmp/keep
    .venv/bin/python benchmarks/bench_reconciliation.py --month 2026-03 \\
        --warehouse /tmp/keep/nightly-100000e-30c-30d/warehouse \\
        --ratecards benchmarks/out/nightly-100000e-30c-30d/ratecards

Prints wall and CPU seconds of each run (after one warm-up run: imports, rule kinds) and
their medians, then a sha256 prefix of each report file, so that two versions of the code
can be compared on the same inputs: same prefixes, same reports.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    from billing_pipeline.ratecards import load_ratecards
    from billing_pipeline.reconciliation import build_month_report, render_files
    from billing_pipeline.rules import RuleEngine
    from billing_pipeline.storage import Store

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--warehouse", type=Path, required=True, help="BILLING_DATA_DIR")
    parser.add_argument("--ratecards", type=Path, required=True)
    parser.add_argument("--lua", type=Path, default=ROOT / "lua")
    parser.add_argument("--finance", type=Path, help="ledger reports (default: none)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    store = Store(args.warehouse)
    cards, _ = load_ratecards(args.ratecards)
    kinds = RuleEngine(args.lua).rule_kinds
    finance = args.finance or args.warehouse / "_no_finance"

    def build():
        return build_month_report(store, finance, args.month, cards, kinds)

    report = build()
    walls, cpus = [], []
    for i in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        report = build()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        print(f"run {i + 1}: wall {walls[-1]:.2f} s, cpu {cpus[-1]:.2f} s", flush=True)
    print(f"median of {args.repeat}: wall {statistics.median(walls):.2f} s,", end=" ")
    print(f"cpu {statistics.median(cpus):.2f} s (this process, Polars threads included)")
    for name, data in sorted(render_files(report).items()):
        print(f"{name} {hashlib.sha256(data).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
