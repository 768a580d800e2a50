"""The ``invoices`` asset: draft invoice files per client-month (SPEC §6.1, §7)."""

import csv
import io
import json
from decimal import Decimal

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from billing_pipeline import locks
from billing_pipeline.defs.charges.assets import charges
from billing_pipeline.defs.isolation import attempt, fail_partitions
from billing_pipeline.defs.metadata import md_table
from billing_pipeline.defs.partitions import month_client_partitions, split_key
from billing_pipeline.defs.resources import BillingSettings
from billing_pipeline.invoicing import InvoiceOutcome, issue_invoice
from billing_pipeline.runlog import RunLog
from billing_pipeline.storage import Store

GROUP = "invoices"


@asset(
    group_name=GROUP,
    partitions_def=month_client_partitions,
    deps=[charges],
    backfill_policy=BackfillPolicy.single_run(),
    description=(
        "Draft invoice of a client-month: invoices/YYYY-MM/CLIENT/invoice_lines.csv, "
        "invoice.json and invoice.html. None for a client-month with rule errors or "
        "unpriced charges (SPEC §5)."
    ),
    check_specs=[
        AssetCheckSpec(
            "total_is_sum_of_lines",
            asset="invoices",
            description="Each written invoice.json total equals the sum of its CSV lines.",
        ),
        AssetCheckSpec(
            "none_blocked",
            asset="invoices",
            description="No client-month was left without an invoice by rule errors, "
            "unpriced charges or a bad rate card.",
        ),
    ],
    kinds={"csv", "html"},
)
def invoices(context: AssetExecutionContext, settings: BillingSettings):
    store = settings.store()
    cards, _ = settings.ratecards()
    log = RunLog(context.log, context.run_id)
    outcomes: list[InvoiceOutcome] = []
    failed: list[str] = []
    mismatches: list[InvoiceOutcome] = []
    logged: list[tuple[str, dict[str, object]]] = []  # logged together (see runlog)
    try:
        for key in context.partition_keys:
            month, client_id = split_key(key)
            card = cards.get(client_id)
            fields = {"client": client_id, "month": month}
            if card is None:
                outcomes.append(InvoiceOutcome(month, client_id, "blocked", "no valid rate card"))
                log.warning("invoice.blocked", **fields, reason="no valid rate card")
                continue
            issued = attempt(
                lambda card=card, month=month, client_id=client_id: _issue_locked(
                    store, card, month, client_id, context.log.info
                ),
                stage="invoice",
                log=log,
                **fields,
            )
            if issued is None:
                # As in charges: the other clients' invoices are still written.
                failed.append(key)
                continue
            outcome, matches = issued
            if outcome.status == "issued" and not matches:
                mismatches.append(outcome)
            outcomes.append(outcome)
            record = {
                **fields,
                "total": outcome.total,
                "currency": outcome.currency if outcome.total is not None else None,
                "reason": outcome.reason or None,
            }
            logged.append(("invoice." + outcome.status, record))
    finally:
        log.info_lines(logged)
    yield AssetCheckResult(
        check_name="total_is_sum_of_lines",
        passed=not mismatches,
        metadata={"mismatched": ", ".join(f"{o.client_id} {o.month}" for o in mismatches)},
    )
    blocked = [o for o in outcomes if o.status in ("blocked", "no_charges_computed")]
    yield AssetCheckResult(
        check_name="none_blocked",
        passed=not blocked,
        severity=AssetCheckSeverity.WARN,
        metadata={"blocked": _table(blocked)},
    )
    if failed:
        done = [k for k in context.partition_keys if k not in failed]
        fail_partitions(context, "invoices", done, failed)
    issued = [o for o in outcomes if o.status == "issued"]
    yield MaterializeResult(
        metadata={
            "issued": len(issued),
            "blocked": len(blocked),
            "without_invoice": sum(o.status == "no_invoice" for o in outcomes),
            "invoices": _table(outcomes),
        }
    )


def _issue_locked(store, card, month: str, client_id: str, log) -> tuple[InvoiceOutcome, bool]:
    """Issue the invoice and check its total under the client-month's lock, so a concurrent
    run cannot rewrite the files between the two."""
    with locks.client_month(store, month, client_id, log=log):
        outcome = issue_invoice(store, card, month)
        return outcome, outcome.status != "issued" or _total_matches(store, outcome)


def _total_matches(store: Store, outcome: InvoiceOutcome) -> bool:
    folder = store.invoice_dir(outcome.month, outcome.client_id)
    # The csv module, not Polars: a few dozen lines, read 300 times a run.
    text = (folder / "invoice_lines.csv").read_bytes().decode("utf-8")
    amounts = [row["amount"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    total = sum((Decimal(a) for a in amounts), Decimal(0))
    document = json.loads((folder / "invoice.json").read_text())
    return Decimal(document["total"]) == total and document["line_count"] == len(amounts)


def _table(outcomes: list[InvoiceOutcome]) -> MetadataValue:
    frame = pl.DataFrame(
        [
            {
                "client_id": o.client_id,
                "month": o.month,
                "status": o.status,
                "total": "" if o.total is None else f"{o.total} {o.currency}",
                "reason": o.reason,
            }
            for o in outcomes
        ],
        schema={k: pl.Utf8 for k in ("client_id", "month", "status", "total", "reason")},
    )
    return md_table(frame, limit=50)
