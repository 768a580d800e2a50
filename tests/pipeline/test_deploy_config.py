"""The shipped deployment config gives a PostgreSQL instance from the environment alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from billing_pipeline.defs.ingest.assets import landing_files
from billing_pipeline.defs.resources import BillingSettings
from tests.pipeline.conftest import PG_URL, PROJECT, BillingEnv


@pytest.mark.postgres
def test_deploy_dagster_yaml_stores_runs_in_postgres(
    billing_env: BillingEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", PG_URL)
    instance = DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = materialize(
            [landing_files], instance=instance, resources={"settings": BillingSettings()}
        )
        assert result.success
        # A second instance over the same database sees the run: it lives in PostgreSQL,
        # not in the home directory.
        other_home = tmp_path / "other_home"
        other_home.mkdir()
        shutil.copy(home / "dagster.yaml", other_home / "dagster.yaml")
        other = DagsterInstance.from_config(str(other_home))
        try:
            assert other.get_run_by_id(result.run_id) is not None
        finally:
            other.dispose()
    finally:
        instance.dispose()
