"""The printable invoice: one self-contained HTML file, no scripts, no external resources.

Every text that comes from a rate card or from events goes through ``html.escape``: a
description or an event id is data, never markup.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from decimal import Decimal
from html import escape

from billing_pipeline.invoices import formatting as fmt
from billing_pipeline.invoices.model import ActivitySummary
from billing_pipeline.pricing.model import InvoiceLine, PricedMonth
from billing_pipeline.ratecards.model import CATEGORIES, CATEGORY_TITLES, RateCard

MAX_EXAMPLES = 5
# Adjustment lines (billing_pipeline.closing) get a section of their own, after the charges.
ADJUSTMENTS = "adjustments"
ADJUSTMENTS_TITLE = "Adjustments to earlier invoices"

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d232b; margin: 2rem auto; max-width: 60rem; padding: 0 1.5rem; }
header { display: flex; justify-content: space-between; align-items: flex-start;
         border-bottom: 2px solid #1d232b; padding-bottom: 1rem; margin-bottom: 1.5rem; }
h1 { font-size: 1.8rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; }
.status { font-weight: 700; letter-spacing: .08em; text-transform: uppercase;
          border: 2px solid currentColor; padding: .2rem .6rem; border-radius: 4px; }
.status.draft { color: #a15c00; }
.status.final { color: #1b6e3a; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; margin: 0; }
dl.meta dt { color: #5b6573; }
dl.meta dd { margin: 0; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .35rem .5rem; vertical-align: top; }
thead th { border-bottom: 1px solid #9aa3ad; font-size: .8rem; color: #5b6573;
           text-transform: uppercase; letter-spacing: .04em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.line td { border-top: 1px solid #e3e7eb; }
tr.activity td { color: #5b6573; font-size: .82rem; padding-top: 0; }
tfoot td { border-top: 1px solid #9aa3ad; font-weight: 600; }
.total { margin-top: 2rem; border-top: 2px solid #1d232b; display: flex;
         justify-content: space-between; font-size: 1.25rem; font-weight: 700; padding-top: .5rem; }
footer { margin-top: 2.5rem; color: #5b6573; font-size: .75rem; word-break: break-all; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em; }
@media print {
  body { margin: 0; max-width: none; font-size: 11pt; }
  section { break-inside: avoid-page; }
  tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def render_html(
    number: str,
    card: RateCard,
    period: str,
    priced: PricedMonth,
    status: str,
    fingerprints: Mapping[str, str],
    activity: Mapping[int, ActivitySummary],
) -> bytes:
    minor = priced.minor_units
    year, month = int(period[:4]), int(period[5:])
    e = escape
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(number)} · {e(card.name)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<div>",
        "<h1>Invoice</h1>",
        '<dl class="meta">',
        f"<dt>Invoice</dt><dd>{e(number)}</dd>",
        f"<dt>Client</dt><dd>{e(card.name)} (<code>{e(card.client_id)}</code>)</dd>",
        f"<dt>Period</dt><dd>{calendar.month_name[month]} {year} ({e(period)})</dd>",
        f"<dt>Currency</dt><dd>{e(card.currency)}</dd>",
        "</dl>",
        "</div>",
        f'<div class="status {e(status)}">{e(status)}</div>',
        "</header>",
    ]
    known = [c for c in CATEGORIES if any(line.category == c for line in priced.lines)]
    others = sorted({line.category for line in priced.lines} - set(CATEGORIES) - {ADJUSTMENTS})
    if any(line.category == ADJUSTMENTS for line in priced.lines):
        others.append(ADJUSTMENTS)
    titles = {**CATEGORY_TITLES, ADJUSTMENTS: ADJUSTMENTS_TITLE}
    for category in known + others:
        group = [line for line in priced.lines if line.category == category]
        title = titles.get(category, category)
        out.append(_section(title, group, card, minor, activity))
    if not priced.lines:
        out.append("<p>No charges this period.</p>")
    out.append(
        f'<div class="total"><span>Total {e(card.currency)}</span>'
        f'<span class="num">{_money(priced.total, minor)}</span></div>'
    )
    out.append("<footer><p>Inputs: ")
    out.append(
        "; ".join(
            f"{e(name)} <code>{e(value)}</code>" for name, value in sorted(fingerprints.items())
        )
    )
    out.append("</p></footer>")
    out.append("</body>")
    out.append("</html>")
    return ("\n".join(out) + "\n").encode("utf-8")


def _money(amount: Decimal, minor: int) -> str:
    # Thousands separators help a reader; the CSV and JSON stay plain (SPEC §7).
    return escape(format(Decimal(fmt.money(amount, minor)), ",f"))


def _section(
    title: str,
    lines: list[InvoiceLine],
    card: RateCard,
    minor: int,
    activity: Mapping[int, ActivitySummary],
) -> str:
    e = escape
    rows = []
    for line in lines:
        rate = (
            "" if line.unit_rate is None or line.model == "cost_plus" else fmt.rate(line.unit_rate)
        )
        rows.append(
            '<tr class="line">'
            f"<td>{line.line_no}</td>"
            f"<td><code>{e(line.charge_code)}</code></td>"
            f"<td>{e(line.description)}{_detail(line, card, minor)}</td>"
            f"<td>{e(line.gl_account)}</td>"
            f'<td class="num">{e(fmt.quantity(line.quantity))}</td>'
            f'<td class="num">{e(rate)}</td>'
            f'<td class="num">{_money(line.amount, minor)}</td>'
            "</tr>"
        )
        rows.append(
            f'<tr class="activity"><td></td><td colspan="6">'
            f"{_activity(line, activity.get(line.line_no))}</td></tr>"
        )
    subtotal = sum((line.amount for line in lines), Decimal(0))
    return (
        f"<section>\n<h2>{e(title)}</h2>\n<table>\n<thead><tr><th>#</th><th>Code</th>"
        '<th>Description</th><th>GL</th><th class="num">Quantity</th>'
        '<th class="num">Rate</th><th class="num">Amount</th></tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + f'\n</tbody>\n<tfoot><tr><td colspan="6">Subtotal {e(title)}</td>'
        f'<td class="num">{_money(subtotal, minor)}</td></tr></tfoot>\n</table>\n</section>'
    )


def _detail(line: InvoiceLine, card: RateCard, minor: int) -> str:
    """The arithmetic a reader asks about, in small print after the description."""
    version = card.version_on(line.version)
    if line.model == "cost_plus" and line.basis_amount is not None:
        spec = version.charges.get(line.charge_code) if version else None
        markup = f" + {fmt.rate(spec.markup_pct)}%" if spec and spec.markup_pct is not None else ""
        return (
            f"<br><small>cost {escape(fmt.basis(line.basis_amount, minor))}{escape(markup)}</small>"
        )
    if line.tier is not None:
        kind = "volume tier" if line.model == "volume" else "tier"
        return f"<br><small>{kind} {line.tier}</small>"
    if line.model == "package":
        spec = version.charges.get(line.charge_code) if version else None
        if spec and spec.package_size is not None:
            size = escape(fmt.quantity(spec.package_size))
            return f"<br><small>packages of {size}, a started package counts</small>"
    if line.model == "minimum" and version is not None:
        for minimum in version.minimums:
            if minimum.code == line.charge_code:
                covered = minimum.amount - line.amount
                return (
                    f"<br><small>minimum {_money(minimum.amount, minor)}, "
                    f"covered by charges {_money(covered, minor)}</small>"
                )
    return ""


def _activity(line: InvoiceLine, summary: ActivitySummary | None) -> str:
    e = escape
    if line.model == "flat":
        return "Monthly fee"
    if line.model == "minimum":
        return "Monthly minimum shortfall"
    if line.adjusts:
        return f"Corrects <code>{e(line.adjusts)}</code> (finalized invoice : charge code)"
    if summary is None:
        if line.first_date is None:
            return "No activity summary"
        return f"Activity {_range(line.first_date, line.last_date)}"
    parts = [f"{summary.events:,} event{'s' if summary.events != 1 else ''}"]
    if summary.event_types:
        types = sorted(summary.event_types.items(), key=lambda kv: (-kv[1], kv[0]))
        parts[0] += " (" + ", ".join(f"{e(name)} {count:,}" for name, count in types) + ")"
    first = summary.first_date or line.first_date
    last = summary.last_date or line.last_date
    if first is not None:
        parts.append(_range(first, last))
    examples = list(summary.example_event_ids)[:MAX_EXAMPLES]
    if examples:
        parts.append("e.g. " + ", ".join(f"<code>{e(event_id)}</code>" for event_id in examples))
    return " · ".join(parts)


def _range(first: object, last: object) -> str:
    if last is None or first == last:
        return escape(str(first))
    return f"{escape(str(first))} – {escape(str(last))}"
