"""One job per pipeline stage; every run of them is one run over a partition range."""

from __future__ import annotations

from dagster import AssetKey, AssetSelection, define_asset_job

from billing_pipeline.defs.partitions import (
    daily_partitions,
    month_client_partitions,
    monthly_partitions,
)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Every run these jobs launch carries WRITES_TAG: deploy/dagster.yaml limits it to one run at
# a time, so two runs never write the outputs directory at once and the queue keeps order.
WRITES_TAG = "billing/writes"
STAGE_TAG = "billing/stage"
CAUSE_TAG = "billing/cause"  # nightly | landing_sensor | new_clients | after:<run id> ...
NIGHT_TAG = "billing/night"  # the activity date a nightly run bills
RUNNER_TAG = "billing/command"  # set to "run" by `billing run`, which chains its own stages


def _job(name: str, asset: str, stage: str, partitions_def, description: str):
    return define_asset_job(
        name,
        selection=AssetSelection.assets(AssetKey(asset)),
        partitions_def=partitions_def,
        tags={WRITES_TAG: "outputs", STAGE_TAG: stage},
        description=description,
    )


landing_job = _job(
    "billing_landing_job",
    "landing_files",
    "landing",
    None,
    "Parse what landed (manifest, quarantine); the activity sensor follows with the dates "
    "it touched.",
)
activity_job = _job(
    "billing_activity_job",
    "activity",
    "activity",
    daily_partitions,
    "Daily activity partitions (a date range per run).",
)
charges_job = _job(
    "billing_charges_job",
    "charges",
    "charges",
    month_client_partitions,
    "Charges of month x client ranges (all clients of the touched months).",
)
invoices_job = _job(
    "billing_invoices_job",
    "invoices",
    "invoices",
    month_client_partitions,
    "Draft invoices (and adjustment lines of closed months) of month x client ranges.",
)
reconciliation_job = _job(
    "billing_reconciliation_job",
    "reconciliation",
    "reconciliation",
    monthly_partitions,
    "Reconciliation of the months whose ledger report exists.",
)

JOBS = [landing_job, activity_job, charges_job, invoices_job, reconciliation_job]
