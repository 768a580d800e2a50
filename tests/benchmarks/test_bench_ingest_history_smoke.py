"""The ingest-history benchmark on three generated days, so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.benchmarks.generated import generate, run_benchmark


def test_the_ingest_history_benchmark_runs(tmp_path: Path) -> None:
    data = generate(tmp_path / "data", clients=2, days=3, start="2026-03-01", events_per_day=200)
    lines = run_benchmark(
        "bench_ingest_history.py",
        "--data",
        str(data),
        "--work",
        str(tmp_path / "w"),
        "--repeat",
        "2",
    )
    landed = [p for p in (data / "landing").rglob("*") if p.is_file()]
    # The generator's files sit in folders named by day (the hours after UTC midnight of
    # the last day, and the late file, under the day after it).
    last = max(p.parent.name for p in landed)
    on_last = [p for p in landed if p.parent.name == last]
    assert 0 < len(on_last) < len(landed)
    assert lines[0] == f"{len(landed) - len(on_last)} files before {last}, {len(on_last)} on it"
    assert [ln.split(":")[0] for ln in lines[1:]] == ["run 1", "run 2", "median of 2"]
    # The night's warehouse holds every generated file, the last day alone only its own.
    assert manifest_rows(tmp_path / "w" / "night0") == len(landed)
    assert manifest_rows(tmp_path / "w" / "alone0") == len(on_last)


def manifest_rows(store: Path) -> int:
    return pl.read_parquet(store / "manifest" / "part-0.parquet").height
