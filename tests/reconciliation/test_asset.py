"""The ``reconciliation`` asset, materialized in-process on a test instance."""

from __future__ import annotations

import csv
from pathlib import Path

from dagster import AssetCheckSeverity, instance_for_test, materialize

from billing_pipeline.defs.reconciliation.assets import reconciliation
from billing_pipeline.defs.resources import BillingSettings
from tests.reconciliation.builders import LEDGER, World, write_ledger


def run(world: World, finance: Path, tolerance: str):
    settings = BillingSettings(
        data_dir=str(world.data),
        ratecards_dir=str(world.ratecards),
        lua_dir=str(world.lua),
        finance_dir=str(finance),
        landing_dir=str(world.landing),
        reconciliation_tolerance=tolerance,
    )
    with instance_for_test() as instance:
        result = materialize(
            [reconciliation],
            partition_key="2026-03-01",
            instance=instance,
            resources={"settings": settings},
        )
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        materialization = result.asset_materializations_for_node("reconciliation")[0]
        return check, materialization.metadata


def test_planted_differences_fail_the_warning_check(world: World, finance: Path) -> None:
    write_ledger(finance, LEDGER)
    check, metadata = run(world, finance, tolerance="0.01")
    assert check.check_name == "ledger_matches"
    assert not check.passed
    assert check.severity == AssetCheckSeverity.WARN
    # at 0.01 testco 4050 matches; left: blockco 4030, otherco 4030, testco 4090 and 4990
    assert check.metadata["differences"].value == 4
    table = metadata["mismatches"].value
    assert "| testco | 4090 | 100.00 | 99.00 | 1.00 | mismatch |" in table
    path = world.store.reconciliation_dir("2026-03") / "reconciliation.csv"
    with path.open() as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert statuses.count("match") == 2  # testco 4030 and (at this tolerance) 4050


def test_matching_ledger_passes(world: World, finance: Path) -> None:
    # exactly what was billed: testco 51.10 / 29.26 / 100.00, otherco 0.50 (blockco: none)
    write_ledger(
        finance,
        [
            ("otherco", "4030", "0.50"),
            ("testco", "4030", "51.10"),
            ("testco", "4050", "29.26"),
            ("testco", "4090", "100.00"),
        ],
    )
    check, _ = run(world, finance, tolerance="0.00")
    assert check.passed
    assert check.metadata["differences"].value == 0


def test_missing_ledger_is_a_warning_not_a_crash(world: World, tmp_path: Path) -> None:
    check, metadata = run(world, tmp_path / "no-finance", tolerance="0.00")
    assert not check.passed
    assert "missing" in check.metadata["ledger"].value
    assert metadata["ledger"].value == "2026-03: missing"
    assert (world.store.reconciliation_dir("2026-03") / "coverage.csv").exists()
