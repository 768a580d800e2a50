"""The register-probe benchmark on a small history, so that it cannot rot."""

from __future__ import annotations

from tests.benchmarks.generated import run_benchmark


def test_the_register_probe_benchmark_runs() -> None:
    lines = run_benchmark(
        "bench_register_probe.py",
        "--per-day",
        "300",
        "--days",
        "2",
        "6",
        "--repeat",
        "1",
        "--fence-rows",
        "100",
    )
    assert lines[0].startswith("| days | rows of history |")
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert [int(r[0]) for r in rows] == [2, 6]
    assert [int(r[1].replace(",", "")) for r in rows] == [600, 1800]
    # a night of new ids reads a few blocks of 100 rows of each segment, not all its rows
    for r in rows:
        assert 0 < int(r[4].replace(",", "")) < int(r[1].replace(",", ""))
