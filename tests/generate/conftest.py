from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from billing_pipeline.generate import GenerateOptions, GenerateSummary, generate

from ._checker import Ingested, ingest

# Crosses a month end (a rate change on the 1st), a weekend, and London's DST change.
OPTIONS = {"clients": 9, "start": date(2026, 3, 27), "days": 6, "events_per_day": 3000, "seed": 11}


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerateOptions, GenerateSummary]:
    out = tmp_path_factory.mktemp("gen")
    options = GenerateOptions(out=out, fault_rate=0.02, **OPTIONS)
    return options, generate(options)


@pytest.fixture(scope="session")
def ingested(generated: tuple[GenerateOptions, GenerateSummary]) -> Ingested:
    options, summary = generated
    return ingest(Path(options.out) / "landing", set(summary.clients))
