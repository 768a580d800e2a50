"""Small generated data sets and benchmark runs for the benchmarks' smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BILLING = str(Path(sys.executable).parent / "billing")


def generate(data: Path, *, clients: int, days: int, start: str, events_per_day: int) -> Path:
    """``billing generate`` (seed 1, no ledger) into ``data``."""
    command = [BILLING, "generate", "--out", str(data), "--clients", str(clients)]
    command += ["--days", str(days), "--start", start, "--events-per-day", str(events_per_day)]
    subprocess.run(
        [*command, "--seed", "1", "--quiet", "--no-ledger"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return data


def run_benchmark(script: str, *args: str) -> list[str]:
    """The lines the benchmark printed; fails the test when it exits non-zero."""
    command = [sys.executable, str(BENCHMARKS / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()
