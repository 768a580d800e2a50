"""The nightly benchmark at a tiny size, so that it cannot rot (issue 7).

Runs ``benchmarks/bench_nightly.py --smoke`` (3,000 events and 3 clients for the nightly run;
2 days of 600 events for month-to-date) and checks the table's shape and that its figures
are positive and consistent with each other. No timing targets: those are for the full
benchmark on a quiet machine (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_nightly.py"


def test_the_nightly_benchmark_runs_and_prints_consistent_figures(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path), "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = [ln for ln in done.stdout.splitlines() if ln.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:3] == ["events", "clients", "floor s"]
    assert {"wall/floor", "peak RSS MB", "runs", "processes", "outside compute s"} <= set(header)
    assert {"floor CPU s", "CPU s", "CPU/floor CPU", "ingest CPU/floor CPU"} <= set(header)
    assert set(table[1].replace("|", "").split()) == {"---"}
    assert table[2].split("|")[1:3] == [" 3,000 ", " 3 "]  # one row: the smoke size
    # nightly: header, rule, 1 row; month: header, rule, 3 nights and the last day alone
    assert len(table) == 3 + 2 + 4

    results = json.loads(figures.read_text())
    row = results["nightly"][0]["row"]
    for name in ("floor_s", "ingest_s", "charges_s", "invoices_s", "wall_s", "rss_mb"):
        assert row[name] > 0, name
    # the stages are parts of the wall time, and what is left is the orchestration's
    stages = row["ingest_s"] + row["charges_s"] + row["invoices_s"] + row["reconciliation_s"]
    assert stages < row["wall_s"]
    assert 0 < row["outside_s"] < row["wall_s"]
    assert abs(row["wall_ratio"] - row["wall_s"] / row["floor_s"]) < 1e-9
    # CPU: the night's (every process it reaped) and its ingest run's, against the floor's
    assert row["floor_cpu_s"] > 0 and row["cpu_s"] > 0
    assert abs(row["cpu_ratio"] - row["cpu_s"] / row["floor_cpu_s"]) < 1e-9
    night = results["nightly"][0]["runs"][0]
    assert 0 < night["stage_cpu"]["ingest"] < row["cpu_s"]
    ingest_ratio = night["stage_cpu"]["ingest"] / row["floor_cpu_s"]
    assert abs(row["ingest_cpu_ratio"] - ingest_ratio) < 1e-9
    # generated with a 0.5% fault rate: most of the 3,000 events are valid and charged
    assert 2700 <= row["events_charged"] <= 3000
    assert row["charges_events_per_s"] > 0 and row["charges_events_per_cpu_s"] > 0
    # run_billing: ingest, charges, invoices, reconciliation; the engine forks per client-month
    assert row["dagster_runs"] == 4
    assert row["processes"] >= 3

    month = results["month"]
    first, last, uncached = month["night_1"], month["night_n"], month["night_n_uncached"]
    # night 1 computes each client's first day; night 2 only its new day, the first cached
    assert first["days_computed"] == 3 and first["days_from_cache"] == 0
    assert last["days_computed"] == 3 and last["days_from_cache"] == 3
    assert uncached["days_computed"] == 6 and uncached["days_from_cache"] == 0
    assert last["events"] == uncached["events"] > first["events"] > 0
    assert last["charges"] == uncached["charges"]
    # day 2 alone, in a fresh warehouse: its own events, computed, nothing cached
    alone = month["night_n_alone"]
    assert alone["days_computed"] == 3 and alone["days_from_cache"] == 0
    assert 0 < alone["events"] < last["events"]
    assert set(alone["stage_cpu"]) == {"ingest", "charges", "invoices", "reconciliation"}
