"""The reconciliation benchmark over the small world of the reconciliation tests, so that it
cannot rot; its report hashes must be those of the reports the tests check."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.reconciliation import build_month_report, render_files
from billing_pipeline.rules import RuleEngine
from tests.reconciliation.builders import MONTH, make_world

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_reconciliation.py"


def test_the_reconciliation_benchmark_runs_and_hashes_the_reports(tmp_path: Path) -> None:
    world = make_world(tmp_path / "world")
    command = [sys.executable, str(SCRIPT), "--month", MONTH, "--repeat", "2"]
    command += ["--warehouse", str(world.data), "--ratecards", str(world.ratecards)]
    command += ["--lua", str(world.lua), "--finance", str(world.finance)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["run 1", "run 2", "median of 2"]
    cards, _ = load_ratecards(world.ratecards)
    report = build_month_report(
        world.store, world.finance, MONTH, cards, RuleEngine(world.lua).rule_kinds
    )
    expected = [
        f"{name} {hashlib.sha256(data).hexdigest()[:16]}"
        for name, data in sorted(render_files(report).items())
    ]
    assert lines[3:] == expected
