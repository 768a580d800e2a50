"""The order-checks benchmark on a small month, so that it cannot rot (it stops if the cached,
changed-day and recomputed results differ)."""

from __future__ import annotations

from tests.benchmarks.generated import run_benchmark


def test_the_order_checks_benchmark_runs() -> None:
    lines = run_benchmark(
        "bench_order_checks.py", "--per-day", "400", "--nights", "1", "3", "--repeat", "1"
    )
    assert lines[0].startswith("built 59 days")
    assert lines[1].startswith("| night | order events in the window | cached CPU s |")
    rows = [line.strip("|").split("|") for line in lines[3:]]
    assert [int(r[0]) for r in rows] == [1, 3]
    # the window: February's 28 days and the month's first nights, 400 order events a day
    assert [r[1].strip() for r in rows] == ["~11,600", "~12,400"]
