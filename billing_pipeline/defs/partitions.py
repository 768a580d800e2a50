"""Partitions: activity by day; charges, invoices by billing month x client.

Why not day x client for charges: a few hundred clients times a year of days passes
Dagster's recommended 100,000 partitions per asset within the first year. ``end_offset=1``
makes the current (open) day and month exist, for month-to-date drafts.
"""

from __future__ import annotations

import os

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MonthlyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
)

PARTITIONS_START = os.environ.get("BILLING_PARTITIONS_START", "2025-01-01")

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
client_partitions = DynamicPartitionsDefinition(name="client")
month_client_partitions = MultiPartitionsDefinition(
    {"month": monthly_partitions, "client": client_partitions}
)


def month_key(month: str) -> str:
    """``YYYY-MM`` (how people write it) to the monthly partition key ``YYYY-MM-01``."""
    return f"{month}-01"


def split_key(key: str | MultiPartitionKey) -> tuple[str, str]:
    """A month x client partition key to (``YYYY-MM``, client_id)."""
    if not isinstance(key, MultiPartitionKey):
        key = month_client_partitions.get_partition_key_from_str(key)
    dims = key.keys_by_dimension
    return dims["month"][:7], dims["client"]
