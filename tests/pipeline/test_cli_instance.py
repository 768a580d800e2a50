"""The Dagster home ``billing`` creates: no compute-log capture (no processes per run), and
everything the UI shows of a run still recorded."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance
from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager

from billing_pipeline.cli import _ensure_dagster_home
from billing_pipeline.runlog import records
from billing_pipeline.runner import run_billing
from tests.pipeline.conftest import DAYS, START, BillingEnv

_POPENS: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "subprocess.Popen":
        _POPENS.append(str(args[1]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only appends


def test_a_new_home_captures_no_compute_logs_and_keeps_the_event_log(
    billing_env: BillingEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = _ensure_dagster_home(Path("unused"))
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.compute_log_manager, NoOpComputeLogManager)
        _POPENS.clear()
        report = run_billing(START, START + timedelta(days=DAYS - 1), instance=instance)
        started = list(_POPENS)
        assert report.runs_ok
        # Dagster's local capture starts `tail -F` and watch_orphans.py for every run.
        assert not [p for p in started if "tail" in p or "watch_orphans" in p], started
        for _name, run_id, _ok, _seconds in report.runs:
            logs = instance.all_logs(run_id)
            kinds = {e.dagster_event.event_type for e in logs if e.dagster_event}
            assert DagsterEventType.ASSET_MATERIALIZATION in kinds
            # the pipeline's own records are in the event log, which the UI shows
            ours = [r for e in logs if e.dagster_event is None for r in records(e.user_message)]
            assert ours and all(f["run_id"] == run_id for _, f in ours)
        assert instance.get_materialized_partitions(AssetKey("invoices"))


def test_an_existing_home_is_left_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    _ensure_dagster_home(Path("unused"))
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    # the audit hook the first test relies on does see a process start
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0 and _POPENS
