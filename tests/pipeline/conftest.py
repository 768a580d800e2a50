"""Fixtures for in-process Dagster runs against real instances: SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test

from billing_pipeline.generate import GenerateOptions, GenerateSummary, generate
from billing_pipeline.generate.billed import billed_amounts
from billing_pipeline.generate.ledger import PlantedDifferences, ledger_rows, write_ledger_reports

PROJECT = Path(__file__).resolve().parents[2]
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which dagster-postgres does not
# install; it ships psycopg2, so the driver is named.
PG_URL = os.environ.get("BILLING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
# Crosses a month end so one run touches two billing months.
START, DAYS = date(2026, 10, 29), 5
SEED = 7


@dataclass
class BillingEnv:
    root: Path
    summary: GenerateSummary
    planted: dict[str, PlantedDifferences]

    @property
    def data(self) -> Path:
        return self.root / "warehouse"


Generated = tuple[Path, GenerateSummary, dict[str, PlantedDifferences]]


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Generated logs and rate cards, and ledgers that book what they bill but for the
    differences the ledger writer plants (returned, per month)."""
    root = tmp_path_factory.mktemp("generated")
    options = GenerateOptions(
        out=root, clients=3, start=START, days=DAYS, events_per_day=600, seed=SEED, fault_rate=0.01
    )
    summary = generate(options)
    billed = billed_amounts(root / "landing", root / "ratecards", PROJECT / "lua")
    write_ledger_reports(root / "finance", billed, SEED)
    clients = tuple(sorted({client for month in billed.values() for client, _ in month}))
    planted = {m: ledger_rows(m, billed[m], SEED, clients)[1] for m in billed}
    return root, summary, planted


@pytest.fixture
def billing_env(
    generated: Generated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> BillingEnv:
    """A private copy of the generated tree and of the project's Lua, pointed at by BILLING_*."""
    source, summary, planted = generated
    root = tmp_path / "billing"
    shutil.copytree(source, root)
    shutil.copytree(PROJECT / "lua", root / "lua")
    monkeypatch.setenv("BILLING_LANDING_DIR", str(root / "landing"))
    monkeypatch.setenv("BILLING_RATECARDS_DIR", str(root / "ratecards"))
    monkeypatch.setenv("BILLING_LUA_DIR", str(root / "lua"))
    monkeypatch.setenv("BILLING_FINANCE_DIR", str(root / "finance"))
    monkeypatch.setenv("BILLING_DATA_DIR", str(root / "warehouse"))
    return BillingEnv(root, summary, planted)


def _postgres_instance() -> Iterator[DagsterInstance]:
    overrides = {"storage": {"postgres": {"postgres_url": PG_URL}}}
    with instance_for_test(overrides=overrides) as instance:
        # The database outlives tests: start each one without clients left by another.
        for key in instance.get_dynamic_partitions("client"):
            instance.delete_dynamic_partition("client", key)
        yield instance


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest) -> Iterator[DagsterInstance]:
    if request.param == "sqlite":
        with instance_for_test() as sqlite_instance:
            yield sqlite_instance
    else:
        yield from _postgres_instance()
