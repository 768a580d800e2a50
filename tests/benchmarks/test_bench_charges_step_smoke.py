"""The charges-step benchmark on a small generated day, so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.generated import generate, run_benchmark


def test_the_charges_step_benchmark_runs(tmp_path: Path) -> None:
    data = generate(tmp_path / "data", clients=2, days=1, start="2026-03-10", events_per_day=300)
    work = tmp_path / "w"
    lines = run_benchmark(
        "bench_charges_step.py",
        *("--data", str(data), "--work", str(work), "--start", "2026-03-10", "--repeat", "2"),
    )
    assert [ln.split(":")[0] for ln in lines] == ["setup", "run 1", "run 2", "median of 2"]
    assert lines[1].endswith("2 clients")
    # each run computed the charges again: both clients' datasets are there after the last
    months = work / "warehouse" / "charges" / "month=2026-03"
    assert sorted(p.name for p in months.iterdir()) == sorted(
        f"client_id={p.stem}" for p in (data / "ratecards").glob("*.yaml")
    )
