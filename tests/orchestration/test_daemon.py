"""dagster-daemon itself, on a PostgreSQL instance from deploy/dagster.yaml: the landing
sensor sees a file and the run it launches goes through the queue and completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from tests.orchestration.conftest import World, orchestration_pg_url, pick, wipe
from tests.pipeline.conftest import PROJECT

DEADLINE = 150  # seconds


@pytest.mark.postgres
def test_daemon_launches_a_sensor_run_that_completes(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    workspace = PROJECT / "workspace.yaml"
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": orchestration_pg_url()}
    monkeypatch.setenv("DAGSTER_PG_URL", env["DAGSTER_PG_URL"])
    instance = DagsterInstance.from_config(str(home))
    try:
        wipe(instance)
        instance.add_dynamic_partitions("client", ["alpha", "beta"])
        world.land("2026-11-24/wms.ndjson", [pick("D1", "alpha", "2026-11-24T10:00:00Z", 2)])
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("wb"),
            start_new_session=True,
        )
        try:
            run = _wait_for_run(instance, daemon, tmp_path / "daemon.log")
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
        assert run.job_name == "billing_landing_job"
        assert run.tags["billing/cause"] == "landing_sensor"
        assert run.tags["billing/writes"] == "outputs"
        assert (world.data / "manifest" / "part-0.parquet").exists()
    finally:
        wipe(instance)
        instance.dispose()


def _wait_for_run(instance: DagsterInstance, daemon: subprocess.Popen, log: Path):
    began = time.monotonic()
    while time.monotonic() - began < DEADLINE:
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited: {log.read_text()[-3000:]}")
        runs = instance.get_runs(RunsFilter(tags={"billing/cause": "landing_sensor"}))
        for run in runs:
            if run.status == DagsterRunStatus.SUCCESS:
                return run
            if run.status == DagsterRunStatus.FAILURE:
                pytest.fail(f"the sensor's run failed: {run.run_id}")
        time.sleep(2)
    pytest.fail(f"no sensor-launched run completed within {DEADLINE}s: {log.read_text()[-3000:]}")
