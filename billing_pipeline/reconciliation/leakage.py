"""Revenue leakage: work the warehouse did that may not have been billed.

``leakage.csv`` columns:

- ``period``: the billing month, ``YYYY-MM``;
- ``client_id``;
- ``kind``, one of (in this order within a client):
  - ``billable_not_charged``: events of a type whose rule is a handler that produced no
    charge (a handler may rightly emit nothing, e.g. a cancel before pick; the analyst
    judges). Events with a rule error are left out: they are in ``rule_errors_summary.csv``;
  - ``shipped_without_pick``: ``order.shipped`` events whose order (same client,
    ``payload.order_id``) has no ``order.picked`` in this month or the previous one;
  - ``picked_not_shipped``: orders picked this month with neither an ``order.shipped`` nor
    an ``order.cancelled`` in this month or the previous one, as of the month's end (or
    as of the report, for an open month);
  - ``no_invoice``: the client has valid events this month but no invoice file;
- ``event_type``: the events' type (empty for ``no_invoice``);
- ``count``: events (``billable_not_charged``, ``no_invoice``) or orders (the order kinds);
- ``examples``: up to 5 event ids, space-separated, smallest first (for the order kinds the
  shipped / picked events);
- ``example_orders``: up to 5 order ids for the order kinds, else empty;
- ``detail``: why, in words (for ``no_invoice``: blocked by what, or not materialized).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from billing_pipeline.reconciliation.day_digests import EXAMPLES
from billing_pipeline.reconciliation.inputs import ClientMonth

LEAKAGE_HEADER = (
    "period",
    "client_id",
    "kind",
    "event_type",
    "count",
    "examples",
    "example_orders",
    "detail",
)
KINDS = ("billable_not_charged", "shipped_without_pick", "picked_not_shipped", "no_invoice")


def leakage_rows(
    month: str, cm: ClientMonth, kinds: Mapping[str, str] | None, has_card: bool = True
) -> list[tuple[str, ...]]:
    """Every leakage row of one client-month, in ``KINDS`` order."""
    rows = [*_not_charged(month, cm, kinds)]
    shipped = cm.orders.shipped_without_pick
    if not shipped.is_empty():
        detail = "no order.picked for the order this month or the previous one"
        rows.append(_order_row(month, cm, "shipped_without_pick", "order.shipped", shipped, detail))
    picked = cm.orders.picked_not_shipped
    if not picked.is_empty():
        detail = "picked, and neither shipped nor cancelled by the month's end"
        rows.append(_order_row(month, cm, "picked_not_shipped", "order.picked", picked, detail))
    rows.extend(_no_invoice(month, cm, has_card))
    return rows


def _ids(series: pl.Series) -> str:
    return " ".join(sorted(series.unique().to_list())[:EXAMPLES])


def _not_charged(
    month: str, cm: ClientMonth, kinds: Mapping[str, str] | None
) -> list[tuple[str, ...]]:
    digest = cm.digest
    if kinds is None or not digest.total or not cm.charges_materialized:
        return []  # no rules to judge by, or nothing charged yet (reported as no_invoice)
    return [
        (
            month,
            cm.client_id,
            "billable_not_charged",
            event_type,
            str(digest.uncharged[event_type]),
            " ".join(digest.examples[event_type]),
            "",
            "a handler ran and emitted no charge",
        )
        for event_type in sorted(digest.uncharged)
        if kinds.get(event_type) == "handler"
    ]


def _order_row(
    month: str, cm: ClientMonth, kind: str, event_type: str, frame: pl.DataFrame, detail: str
) -> tuple[str, ...]:
    return (
        month,
        cm.client_id,
        kind,
        event_type,
        str(frame["order_id"].n_unique()),
        _ids(frame["event_id"]),
        _ids(frame["order_id"]),
        detail,
    )


def _no_invoice(month: str, cm: ClientMonth, has_card: bool) -> list[tuple[str, ...]]:
    if not cm.digest.total or cm.has_invoice:
        return []
    return [
        (
            month,
            cm.client_id,
            "no_invoice",
            "",
            str(cm.digest.total),
            "",
            "",
            no_invoice_reason(cm, has_card),
        )
    ]


def no_invoice_reason(cm: ClientMonth, has_card: bool) -> str:
    """Why a client-month with activity has no invoice file, in words."""
    if not has_card:
        return "no valid rate card"
    state = cm.state
    if state is None:
        return "charges not materialized"
    parts = []
    if state.get("rule_errors"):
        parts.append(f"{state['rule_errors']} rule errors")
    if state.get("unpriced"):
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(state["unpriced"].items()))
        parts.append(f"unpriced charges: {codes}")
    if parts:
        return "blocked: " + "; ".join(parts)
    if not cm.has_charges:
        return "no charges and no flat fee this month"
    return "invoice not materialized"
