"""A run over many client-months in which some failed: keep the others' partitions.

``charges`` and ``invoices`` run one step over a partition range (``BackfillPolicy.single_run``).
When one client-month raises, the step goes on with the others; at the end it records a
materialization for each partition it did write, then fails naming the ones it could not.
Dagster then shows the written partitions as materialized and only the failed ones as failed
(the run itself is failed, so it is seen and alerted on).
"""

from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from dagster import AssetExecutionContext, AssetMaterialization, Failure, MetadataValue

from billing_pipeline.retrying import with_retries
from billing_pipeline.runlog import RunLog

T = TypeVar("T")


def attempt(work: Callable[[], T], *, stage: str, log: RunLog, client: str, month: str) -> T | None:
    """``work()`` for one client-month, retried on transient I/O errors; None when it failed
    anyway (logged as ``<stage>.failed``), so that the step goes on with the other clients."""
    fields = {"client": client, "month": month}
    try:
        return with_retries(
            work,
            what=f"{stage} {client} {month}",
            log=lambda text: log.warning(f"{stage}.retry", detail=text, **fields),
        )
    except Exception as exc:
        log.error(f"{stage}.failed", error=f"{type(exc).__name__}: {exc}", **fields)
        return None


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
