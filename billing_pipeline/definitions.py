"""The Dagster code location: every domain's assets, checks, jobs, schedules and sensors."""

from dagster import Definitions, load_assets_from_modules

from billing_pipeline.defs import orchestration
from billing_pipeline.defs.charges import assets as charges_assets
from billing_pipeline.defs.ingest import assets as ingest_assets
from billing_pipeline.defs.invoices import assets as invoices_assets
from billing_pipeline.defs.reconciliation import assets as reconciliation_assets
from billing_pipeline.defs.resources import BillingSettings

defs = Definitions(
    assets=[
        *load_assets_from_modules(
            [ingest_assets, charges_assets, invoices_assets, reconciliation_assets]
        ),
        *orchestration.ASSETS,
    ],
    jobs=orchestration.JOBS,
    schedules=orchestration.SCHEDULES,
    sensors=orchestration.SENSORS,
    resources={"settings": BillingSettings()},
)
