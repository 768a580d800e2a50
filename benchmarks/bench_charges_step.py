"""The charges step alone, in process: wall seconds, CPU, and the engine workers' CPU.

Runs ``billing run`` once over the generated days (outside the clock), then ``--repeat``
times: removes the charges dataset, rule errors, the charges cache and the charges state,
and materializes the ``charges`` asset for every client-month through Dagster in this
process, as the charges run of ``billing run`` does (checks included). With the cache gone
every client-month is computed, as on a first night. Run, on the nightly benchmark's data::

    .venv/bin/python benchmarks/bench_nightly.py --events 1000000 --clients 300 \\
        --repeat 1 --no-month
    .venv/bin/python benchmarks/bench_charges_step.py --start 2026-03-10 \\
        --data benchmarks/out/nightly-1000000e-300c --work /tmp/charges-step

Prints, per run, the wall seconds, this process's CPU seconds and its engine workers'
(``getrusage`` of reaped children), then the medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

# What the charges step writes; the rest of the warehouse (activity above all) stays.
CHARGES_OUTPUTS = ("charges", "rule_errors", "_cache/charges", "_state/charges")


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="`billing generate` output")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, help="default: --start")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "home").mkdir(parents=True)
    (args.work / "home" / "dagster.yaml").write_text("")  # the default SQLite instance
    # Locations are read from the environment when used (config.Paths), Dagster's home
    # when the instance is made: both before anything runs.
    os.environ.update(
        DAGSTER_HOME=str(args.work / "home"),
        BILLING_LANDING_DIR=str(args.data / "landing"),
        BILLING_RATECARDS_DIR=str(args.data / "ratecards"),
        BILLING_DATA_DIR=str(args.work / "warehouse"),
        BILLING_FINANCE_DIR=str(args.work / "finance"),
    )
    from dagster import DagsterInstance, materialize

    from billing_pipeline import runner
    from billing_pipeline.defs.charges.assets import charges
    from billing_pipeline.defs.partitions import client_partitions
    from billing_pipeline.defs.resources import BillingSettings

    start, end = args.start, args.end or args.start
    began = time.perf_counter()
    runner.run_billing(start, end, progress=lambda _: None)
    print(f"setup: billing run {start}..{end} in {time.perf_counter() - began:.1f} s")

    instance = DagsterInstance.get()
    assert client_partitions.name is not None
    clients = instance.get_dynamic_partitions(client_partitions.name)
    months = runner.months_between(start, end)
    tags = runner._month_client_range(months, (clients[0], clients[-1]))  # all, as billing run
    tags["billing/command"] = "run"
    warehouse = args.work / "warehouse"
    walls, own, workers = [], [], []
    for n in range(1, args.repeat + 1):
        for output in CHARGES_OUTPUTS:
            shutil.rmtree(warehouse / output, ignore_errors=True)
        cpu, children = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        result = materialize(
            [charges],
            instance=instance,
            resources={"settings": BillingSettings()},
            tags=tags,
            run_config=runner.QUIET,
            raise_on_error=False,
        )
        walls.append(time.perf_counter() - began)
        own.append(cpu_seconds(resource.RUSAGE_SELF) - cpu)
        workers.append(cpu_seconds(resource.RUSAGE_CHILDREN) - children)
        if not result.success:
            raise SystemExit(f"run {n}: the charges step failed (run {result.run_id})")
        print(
            f"run {n}: wall {walls[-1]:.2f} s, CPU {own[-1]:.2f} s (process) "
            f"+ {workers[-1]:.2f} s (engine workers), {len(clients)} clients"
        )
    print(
        f"median of {args.repeat}: wall {statistics.median(walls):.2f} s, "
        f"CPU {statistics.median(own):.2f} s + {statistics.median(workers):.2f} s"
    )


if __name__ == "__main__":
    main()
