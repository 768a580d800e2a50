"""Ingestion of generated data: outcomes match what the generator planted, line for line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline.generate import GenerateOptions, generate
from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.storage import Store


def test_generated_faults_end_where_the_generator_says(tmp_path: Path) -> None:
    summary = generate(
        GenerateOptions(
            out=tmp_path,
            clients=6,
            start=date(2026, 3, 30),
            days=3,
            events_per_day=2000,
            seed=5,
            fault_rate=0.03,
        )
    )
    cards, errors = load_ratecards(tmp_path / "ratecards")
    assert not errors
    store = Store(tmp_path / "out")
    result = ingest_landing(
        tmp_path / "landing", store, {c: card.timezone for c, card in cards.items()}
    )
    m = result.manifest
    totals = {k: int(m[k].sum()) for k in ("lines", "valid", "duplicates", "quarantined")}
    assert totals["lines"] == summary.lines
    assert totals["valid"] == summary.expected_valid
    assert totals["duplicates"] == summary.expected_duplicates
    assert totals["quarantined"] == summary.expected_quarantined
    quarantine = pl.concat(
        [pl.read_parquet(f) for f in (store.root / "quarantine").glob("*/part-0.parquet")]
    )
    by_reason = dict(quarantine["reason"].value_counts().iter_rows())
    quarantine_kinds = (
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "unknown_client",
        "duplicate_conflict",
    )
    planted = {k: n for k, n in summary.faults.items() if k in quarantine_kinds and n > 0}
    assert by_reason == planted
