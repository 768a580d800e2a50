"""The Dagster code location: every domain's assets, checks, jobs, schedules and sensors."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from billing_pipeline.defs.ingest import assets as ingest_assets
from billing_pipeline.defs.resources import BillingSettings

defs = Definitions(
    assets=load_assets_from_modules([ingest_assets]),
    resources={"settings": BillingSettings()},
)
