"""A run over many client-months in which some failed: keep the others' partitions.

``charges`` and ``invoices`` run one step over a partition range (``BackfillPolicy.single_run``).
When one client-month raises, the step goes on with the others; at the end it records a
materialization for each partition it did write, then fails naming the ones it could not.
Dagster then shows the written partitions as materialized and only the failed ones as failed
(the run itself is failed, so it is seen and alerted on).
"""

from collections.abc import Sequence
from typing import NoReturn

from dagster import AssetExecutionContext, AssetMaterialization, Failure, MetadataValue


def fail_partitions(
    context: AssetExecutionContext, asset: str, done: Sequence[str], failed: Sequence[str]
) -> NoReturn:
    for key in done:
        context.log_event(
            AssetMaterialization(
                asset_key=context.asset_key,
                partition=str(key),
                metadata={"partial_run": True},
            )
        )
    shown = ", ".join(str(k) for k in failed)
    raise Failure(
        description=f"{asset} failed for {len(failed)} partition(s): {shown}; "
        f"the other {len(done)} were written",
        metadata={"failed": MetadataValue.text(shown)},
    )
