"""Invoice files of one client-month from its stored charges (SPEC §6.1, §7): from their
sums per day and code that the charges asset stores with them (``charge_summaries``), so
a night's draft invoice does not read the month's lines.

Gated here as well as by the blocking asset checks: a client-month with rule errors or
unpriced charges gets no invoice files at all (old ones are removed), whatever run it is
in, so one client's problem never holds back another client's invoice.

A closed month (``closing``) is never written again. An open month's invoice also carries
the adjustment lines of the closed months before it whose charges changed after they were
finalized (SPEC §7; how they are computed: ``billing_pipeline.closing``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal

from billing_pipeline import closing
from billing_pipeline.charge_summaries import (
    DaySummaries,
    activity_summaries,
    charge_rows,
    codes_from_json,
    summarize,
    totals_of,
)
from billing_pipeline.charging import read_charges, read_charges_state
from billing_pipeline.invoices import render_invoice_files
from billing_pipeline.months import first_day
from billing_pipeline.pricing import PricedMonth, price_totals
from billing_pipeline.ratecards import RateCard
from billing_pipeline.storage import Store, remove_tree, write_files

INVOICE_FILES = ("invoice_lines.csv", "invoice.json", "invoice.html")


@dataclass
class InvoiceOutcome:
    month: str
    client_id: str
    status: str  # issued | blocked | no_invoice | final_kept | no_charges_computed
    reason: str = ""
    total: Decimal | None = None
    lines: int = 0
    currency: str = ""
    adjustments: int = 0  # adjustment lines on this invoice
    # closed month -> fingerprint of what its adjustments were computed from (closing)
    adjustments_checked: dict[str, str] = field(default_factory=dict)


# What pricing and the lines' activity read of the charges: the rest (memo, rules file and
# fingerprint, rate card version) is most of a wide file and only matters to analysts.
INVOICE_COLUMNS = ("event_id", "activity_date", "event_type", "charge_code", "quantity", "basis")


def invoice_status(store: Store, month: str, client_id: str) -> str | None:
    path = store.invoice_dir(month, client_id) / "invoice.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["status"]


def has_invoice(rows: int, priced: PricedMonth) -> bool:
    """SPEC §7: a client-month gets an invoice when it has charges or a flat fee."""
    return rows > 0 or any(line.model == "flat" for line in priced.lines)


def month_summaries(store: Store, month: str, client_id: str, state: dict) -> DaySummaries:
    """The client-month's charges summed per day and code: from its state file; from the
    stored lines when the state was written before it carried them (an older version)."""
    days = state.get("days")
    if days is None:
        charges = read_charges(store, month, client_id, INVOICE_COLUMNS)
        return summarize(charges, first_day(month))
    return {
        date.fromisoformat(day): codes_from_json(part["codes"])
        for day, part in days.items()
        if part["codes"]
    }


def issue_invoice(
    store: Store, card: RateCard, month: str, status: str = "draft"
) -> InvoiceOutcome:
    """Write (or remove) the invoice files of a client-month; ``status="final"`` is the close."""
    client_id = card.client_id
    outcome = InvoiceOutcome(month, client_id, "no_invoice", currency=card.currency)
    folder = store.invoice_dir(month, client_id)
    if invoice_status(store, month, client_id) == "final" or closing.is_closed(
        store, month, client_id
    ):
        outcome.status, outcome.reason = "final_kept", "finalized invoices never change"
        return outcome
    state = read_charges_state(store, month, client_id)
    if state is None:
        outcome.status = "no_charges_computed"
        outcome.reason = f"charges for {client_id} {month} have not been materialized"
        return outcome
    if state["rule_errors"] or state["unpriced"]:
        _remove_invoice(store, month, client_id)
        outcome.status = "blocked"
        outcome.reason = _blocked_reason(state)
        return outcome
    summaries = month_summaries(store, month, client_id, state)
    priced = price_totals(card, first_day(month), totals_of(summaries))
    pending = closing.pending_adjustments(store, card, month)
    outcome.adjustments_checked = pending.checked
    if pending.waiting:
        outcome.reason = "adjustments waiting: " + "; ".join(pending.waiting)
    if not has_invoice(charge_rows(summaries), priced) and not pending.adjustments:
        _remove_invoice(store, month, client_id)
        outcome.reason = "; ".join(
            r for r in ("no charges and no flat fee this month", outcome.reason) if r
        )
        return outcome
    if pending.adjustments:
        extra = closing.adjustment_lines(card, pending, len(priced.lines) + 1)
        priced = replace(
            priced,
            lines=[*priced.lines, *extra],
            total=priced.total + sum((line.amount for line in extra), Decimal(0)),
        )
        outcome.adjustments = len(extra)
    files = render_invoice_files(
        card,
        month,
        priced,
        status=status,
        fingerprints={
            "rules": state["rules_sha256"],
            "ratecard": card.sha256,
            "events": state["events_sha256"],
        },
        activity=activity_summaries(priced, summaries),
    )
    # invoice.json last: its status is what later runs go by (a final invoice is never
    # rewritten), so a run killed between the files leaves the old JSON and the next run
    # writes all three again, rather than a final JSON beside a draft HTML for good.
    write_files(
        [(files[name], folder / name) for name in sorted(files, key=lambda n: n == "invoice.json")]
    )
    outcome.status, outcome.total, outcome.lines = "issued", priced.total, len(priced.lines)
    return outcome


def _blocked_reason(state: dict) -> str:
    parts = []
    if state["rule_errors"]:
        parts.append(f"{state['rule_errors']} rule errors")
    if state["unpriced"]:
        codes = ", ".join(f"{code} x{n}" for code, n in sorted(state["unpriced"].items()))
        parts.append(f"unpriced charges: {codes}")
    return "; ".join(parts)


def _remove_invoice(store: Store, month: str, client_id: str) -> None:
    remove_tree(store.invoice_dir(month, client_id))
