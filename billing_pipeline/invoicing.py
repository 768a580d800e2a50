"""Invoice files of one client-month from its stored charges (SPEC §6.1, §7).

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
from decimal import Decimal

import polars as pl

from billing_pipeline import closing
from billing_pipeline.charging import read_charges, read_charges_state
from billing_pipeline.invoices import ActivitySummary, render_invoice_files
from billing_pipeline.months import first_day
from billing_pipeline.pricing import PricedMonth, price_month
from billing_pipeline.ratecards import RateCard
from billing_pipeline.storage import Store, remove_tree, write_files

INVOICE_FILES = ("invoice_lines.csv", "invoice.json", "invoice.html")
EXAMPLES = 5


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


def activity_summaries(priced: PricedMonth, charges: pl.DataFrame) -> dict[int, ActivitySummary]:
    """The events behind each line: its code's charges on the line's days.

    One join of the charges with every line's (code, day) pairs, then one pass per figure:
    a filter per line cost a dozen Polars calls per line, the bulk of an invoice at
    hundreds of clients. An event is counted once per line however many charges it made.
    """
    dated = [line for line in priced.lines if line.days]
    if not dated:
        return {}
    keys = pl.DataFrame(
        [
            (line.line_no, line.charge_code, day)
            for line in dated
            for day in dict.fromkeys(line.days)
        ],
        schema={"line_no": pl.Int64, "charge_code": pl.String, "activity_date": pl.Date},
        orient="row",
    )
    events = (
        charges.select("charge_code", "activity_date", "event_id", "event_type")
        .join(keys, on=["charge_code", "activity_date"], how="inner")
        .unique(["line_no", "event_id"])
    )
    per_line = events.group_by("line_no").agg(
        pl.len().alias("events"),
        pl.col("event_id").sort().head(EXAMPLES).alias("examples"),
    )
    counts = {n: (events_, examples) for n, events_, examples in per_line.iter_rows()}
    types: dict[int, dict[str, int]] = {}
    by_type = events.group_by("line_no", "event_type").len().sort("line_no", "event_type")
    for line_no, event_type, n in by_type.iter_rows():
        types.setdefault(line_no, {})[event_type] = n
    summaries = {}
    for line in dated:
        total, examples = counts.get(line.line_no, (0, []))
        summaries[line.line_no] = ActivitySummary(
            events=total,
            event_types=types.get(line.line_no, {}),
            first_date=min(line.days),
            last_date=max(line.days),
            example_event_ids=examples,
        )
    return summaries


def has_invoice(charges: pl.DataFrame, priced: PricedMonth) -> bool:
    """SPEC §7: a client-month gets an invoice when it has charges or a flat fee."""
    return not charges.is_empty() or any(line.model == "flat" for line in priced.lines)


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
    charges = read_charges(store, month, client_id, INVOICE_COLUMNS)
    priced = price_month(card, first_day(month), charges)
    pending = closing.pending_adjustments(store, card, month)
    outcome.adjustments_checked = pending.checked
    if pending.waiting:
        outcome.reason = "adjustments waiting: " + "; ".join(pending.waiting)
    if not has_invoice(charges, priced) and not pending.adjustments:
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
        activity=activity_summaries(priced, charges),
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
