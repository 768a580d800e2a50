"""The three invoice files of a client-month (SPEC §7), as bytes.

Byte-identical for the same inputs: no clock, sorted JSON keys, "\n" line endings, UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from billing_pipeline.invoices import formatting as fmt
from billing_pipeline.invoices.html import render_html
from billing_pipeline.invoices.model import PERIOD, STATUSES, ActivitySummary, invoice_id
from billing_pipeline.pricing.model import InvoiceLine, PricedMonth
from billing_pipeline.ratecards.model import RateCard

CSV_HEADER = (
    "invoice_id",
    "client_id",
    "period",
    "line_no",
    "charge_code",
    "description",
    "gl_account",
    "quantity",
    "unit_rate",
    "basis_amount",
    "amount",
    "currency",
)


def render_invoice_files(
    card: RateCard,
    period: str,
    priced: PricedMonth,
    *,
    status: str,
    fingerprints: Mapping[str, str],
    activity: Mapping[int, ActivitySummary],
) -> dict[str, bytes]:
    """``invoice_lines.csv``, ``invoice.json`` and ``invoice.html`` for one client-month.

    Refuses (``ValueError``) a month with unpriced charges: SPEC §5 says no invoice files
    for it. ``fingerprints`` names the inputs (``rules``, ``ratecard``, ``events``);
    ``ratecard`` defaults to the card's sha256.
    """
    if not PERIOD.match(period):
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    if priced.period != period or priced.client_id != card.client_id:
        raise ValueError(
            f"priced month {priced.client_id} {priced.period} is not {card.client_id} {period}"
        )
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if priced.unpriced:
        codes = ", ".join(f"{code} ({count})" for code, count in priced.unpriced.items())
        raise ValueError(f"unpriced charges block the invoice: {codes}")
    prints = {"ratecard": card.sha256, **dict(fingerprints)}
    number = invoice_id(card.client_id, period)
    return {
        "invoice_lines.csv": render_csv(number, card, period, priced),
        "invoice.json": render_json(number, card, period, priced, status, prints, activity),
        "invoice.html": render_html(number, card, period, priced, status, prints, activity),
    }


def render_csv(number: str, card: RateCard, period: str, priced: PricedMonth) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for line in priced.lines:
        cells = _cells(line, priced.minor_units)
        writer.writerow(
            (
                number,
                card.client_id,
                period,
                line.line_no,
                line.charge_code,
                line.description,
                line.gl_account,
                cells["quantity"],
                cells["unit_rate"] or "",
                cells["basis_amount"] or "",
                cells["amount"],
                card.currency,
            )
        )
    return out.getvalue().encode("utf-8")


def _cells(line: InvoiceLine, minor: int) -> dict[str, str | None]:
    cost_plus = line.model == "cost_plus"
    return {
        "quantity": fmt.quantity(line.quantity),
        "unit_rate": None if cost_plus or line.unit_rate is None else fmt.rate(line.unit_rate),
        "basis_amount": (
            fmt.basis(line.basis_amount, minor)
            if cost_plus and line.basis_amount is not None
            else None
        ),
        "amount": fmt.money(line.amount, minor),
    }


def render_json(
    number: str,
    card: RateCard,
    period: str,
    priced: PricedMonth,
    status: str,
    fingerprints: Mapping[str, str],
    activity: Mapping[int, ActivitySummary],
) -> bytes:
    lines: list[dict[str, Any]] = []
    for line in priced.lines:
        entry: dict[str, Any] = {
            "line_no": line.line_no,
            "charge_code": line.charge_code,
            "description": line.description,
            "gl_account": line.gl_account,
            "category": line.category,
            "model": line.model,
            "tier": line.tier,
            "first_date": line.first_date.isoformat() if line.first_date else None,
            "last_date": line.last_date.isoformat() if line.last_date else None,
            "ratecard_version": line.version.isoformat(),
            "adjusts": line.adjusts,
            **_cells(line, priced.minor_units),
        }
        summary = activity.get(line.line_no)
        if summary is not None:
            entry["activity"] = {
                "events": summary.events,
                "event_types": dict(summary.event_types),
                "first_date": summary.first_date.isoformat() if summary.first_date else None,
                "last_date": summary.last_date.isoformat() if summary.last_date else None,
                "example_event_ids": list(summary.example_event_ids),
            }
        lines.append(entry)
    document = {
        "invoice_id": number,
        "client_id": card.client_id,
        "client_name": card.name,
        "period": period,
        "currency": card.currency,
        "status": status,
        "total": fmt.money(priced.total, priced.minor_units),
        "line_count": len(priced.lines),
        "fingerprints": dict(fingerprints),
        "lines": lines,
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")
