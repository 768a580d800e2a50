"""What a month's reports read: activity, charges, rule errors per client (SPEC §4.1).

Kept apart from the report logic so each report is a plain function of frames, easy to test
and to reason about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from billing_pipeline.charging import charges_written, read_charges, read_charges_state
from billing_pipeline.months import month_days, previous_month
from billing_pipeline.reconciliation.day_digests import (
    DayDigest,
    activity_stats,
    client_month_digest,
)
from billing_pipeline.reconciliation.order_leaks import OrderLeaks, order_leaks
from billing_pipeline.storage import Store, child_dirs


@dataclass
class ClientMonth:
    """One client's inputs to the month's coverage and leakage reports."""

    client_id: str
    # the month's valid events per type, charged or not (coverage, billable_not_charged)
    digest: DayDigest
    # the order checks' open events, over this month's order events and the month before's
    # (a pick may come before the month its ship is in)
    orders: OrderLeaks
    charges_materialized: bool
    # charging's state file (rule error and unpriced counts) and whether any charge line is
    # stored, read only for a client-month without an invoice, the one case a report says
    # why: the state carries every day's sums (~230 KB at day 30), ~2 ms a client-month
    state: dict | None
    has_charges: bool | None
    has_invoice: bool


def activity_days(store: Store, month: str) -> dict[str, list[date]]:
    """The days of the month each client has an activity partition (from one listing per
    day), so a client's month is read from the files that exist rather than by trying every
    day of two months for each client."""
    found: dict[str, list[date]] = {}
    for day in month_days(month):
        for name in child_dirs(store.activity_dir(day)):
            if name.startswith("client_id="):
                found.setdefault(name.removeprefix("client_id="), []).append(day)
    return found


def activity_clients(store: Store, month: str) -> list[str]:
    """Clients with at least one valid event in the month (from the partition folders)."""
    return sorted(activity_days(store, month))


def month_clients(store: Store, month: str, active: Iterable[str] | None = None) -> list[str]:
    """Every client with activity (``active``, when already listed), charges or an invoice
    in the month."""
    found = set(activity_clients(store, month) if active is None else active)
    charges = store.root / "charges" / f"month={month}"
    found.update(name.removeprefix("client_id=") for name in child_dirs(charges))
    found.update(child_dirs(store.root / "invoices" / month))
    return sorted(found)


def load_client_month(
    store: Store,
    month: str,
    client_id: str,
    days: Sequence[date] | None = None,
    previous_days: Sequence[date] | None = None,
) -> ClientMonth:
    """``days`` and ``previous_days``: the client's activity days of the month and of the
    month before (``activity_days``); every day of each month when not given."""
    has_invoice = (store.invoice_dir(month, client_id) / "invoice_lines.csv").exists()
    days = list(month_days(month) if days is None else days)
    if previous_days is None:
        previous_days = month_days(previous_month(month))
    activity = activity_stats(store, client_id, sorted({*days, *previous_days}))
    return ClientMonth(
        client_id=client_id,
        digest=client_month_digest(store, month, client_id, days, activity),
        orders=order_leaks(store, month, client_id, activity),
        charges_materialized=charges_written(store, month, client_id),
        state=None if has_invoice else read_charges_state(store, month, client_id),
        has_charges=(
            None
            if has_invoice
            else not read_charges(store, month, client_id, ["event_id"]).is_empty()
        ),
        has_invoice=has_invoice,
    )
