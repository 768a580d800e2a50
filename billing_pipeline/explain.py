"""``billing explain``: trace an invoice line, or one event, to its events, rule and arithmetic.

SPEC §8: every invoice line can be traced to the events and rule that made it. This reads
only what is written -- ``invoice.json`` and ``invoice_lines.csv``, the charges dataset, the
rate card -- and computes nothing that is stored, so what it shows is what was billed.

Which charges make a line: the line's code on the line's activity dates. The exact dates
of a per-day line (two rates can interleave in time) come from pricing the stored charges
again with the rate card, when the card is the one the invoice was written with (same
sha256); otherwise the line's first..last date range is used, and the output says so.

Exit status: 0 explained; 1 no invoice because the client-month is blocked (rule errors or
unpriced charges); 2 bad usage (unknown client, month, line or event; nothing materialized).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import polars as pl

from billing_pipeline.charging import charges_written, read_charges, read_charges_state
from billing_pipeline.cli_args import OneLineParser, UsageError
from billing_pipeline.config import Paths
from billing_pipeline.ingest.activity import read_activity
from billing_pipeline.months import first_day, month_days
from billing_pipeline.pricing import price_month
from billing_pipeline.ratecards import ChargeSpec, RateCard, RateCardError, load_ratecards
from billing_pipeline.rules import ERRORS_SCHEMA, RuleEngine, RuleLoadError
from billing_pipeline.storage import Store, read_parquet

PROG = "billing explain"
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
EXAMPLES = 10


class ExplainError(UsageError):
    """A message for standard error and the exit status that goes with it."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Trace an invoice line or an event (SPEC §8).")
    parser.add_argument("--client", required=True, metavar="ID")
    parser.add_argument("--month", required=True, metavar="YYYY-MM")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--line", type=int, metavar="N", help="invoice line number")
    what.add_argument("--event", metavar="EVENT_ID", help="what one event was charged")
    return parser


def main_explain(argv: Sequence[str]) -> int:
    """Entry point of ``billing explain``; prints the trace, returns the exit status."""
    try:
        args = _parser().parse_args(list(argv))
        context = _Context.load(args.client, args.month)
        if args.line is not None:
            text = explain_line(context, args.line)
        else:
            text = explain_event(context, args.event)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return getattr(exc, "status", 2)
    print(text)
    return 0


# ----------------------------------------------------------------------------- context


@dataclass
class _Context:
    client_id: str
    month: str
    store: Store
    paths: Paths
    card: RateCard | None
    charges: pl.DataFrame
    document: dict | None  # invoice.json

    @classmethod
    def load(cls, client_id: str, month: str) -> _Context:
        if not MONTH.match(month):
            raise ExplainError(f"--month must be YYYY-MM, got {month!r}")
        paths = Paths.from_env()
        store = Store(paths.data)
        card = _card(paths, client_id)
        invoice = store.invoice_dir(month, client_id) / "invoice.json"
        written = charges_written(store, month, client_id)
        if card is None and not written and not invoice.exists():
            raise ExplainError(
                f"unknown client {client_id!r}: no rate card in {paths.ratecards} "
                f"and nothing billed under {paths.data}"
            )
        document = json.loads(invoice.read_text()) if invoice.exists() else None
        charges = read_charges(store, month, client_id)
        return cls(client_id, month, store, paths, card, charges, document)

    @property
    def where(self) -> str:
        return f"{self.client_id} {self.month}"

    def rounding(self) -> str:
        return self.card.rounding if self.card else "half_up"

    def minor_units(self) -> int:
        if self.card is not None:
            return self.card.minor_units
        total = (self.document or {}).get("total", "0.00")
        return len(total.split(".")[1]) if "." in total else 0


def _card(paths: Paths, client_id: str) -> RateCard | None:
    try:
        cards, _ = load_ratecards(paths.ratecards)
    except RateCardError:
        return None
    return cards.get(client_id)


def missing_invoice_reason(store: Store, month: str, client_id: str) -> tuple[str, int]:
    """Why a client-month has no invoice file, and the exit status that goes with it."""
    state = read_charges_state(store, month, client_id)
    if state is None:
        return (
            f"no invoice for {client_id} {month}: charges not materialized "
            f"(billing run --start {month}-01 --end ... --client {client_id})",
            2,
        )
    parts = []
    if state["rule_errors"]:
        parts.append(f"{state['rule_errors']} rule errors")
    if state["unpriced"]:
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(state["unpriced"].items()))
        parts.append(f"unpriced charges: {codes}")
    if parts:
        return f"no invoice for {client_id} {month}: blocked by " + "; ".join(parts), 1
    if state["charges"] == 0:
        return f"no invoice for {client_id} {month}: no charges and no flat fee this month", 2
    return f"no invoice for {client_id} {month}: invoice not materialized", 2


def _line_days(context: _Context) -> dict[int, tuple[date, ...]] | None:
    """line_no -> activity dates, when the rate card is the one the invoice was priced with."""
    card, document = context.card, context.document
    if card is None or document is None:
        return None
    if document.get("fingerprints", {}).get("ratecard") != card.sha256:
        return None
    priced = price_month(card, first_day(context.month), context.charges)
    return {line.line_no: line.days for line in priced.lines}


def _charges_of_line(
    context: _Context, line: dict, days: dict[int, tuple[date, ...]] | None
) -> pl.DataFrame:
    code = pl.col("charge_code") == line["charge_code"]
    if days is not None and line["line_no"] in days:
        dates = list(days[line["line_no"]])
    elif line.get("first_date"):
        first = date.fromisoformat(line["first_date"])
        last = date.fromisoformat(line["last_date"])
        dates = [d for d in month_days(context.month) if first <= d <= last]
    else:
        dates = []
    return context.charges.filter(code & pl.col("activity_date").is_in(dates))


# ----------------------------------------------------------------------------- numbers


def _qty(value: Decimal) -> str:
    """A quantity for people: thousands separated, no meaningless trailing zeros."""
    value = value.normalize()
    if value == value.to_integral_value():
        value = value.quantize(Decimal(1))
    return f"{value:,f}"


def _money(value: Decimal, minor: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-minor)):,f}"


def _basis(value: Decimal, minor: int) -> str:
    """A cost basis: at least the currency's decimals, more only when it carries them."""
    return _money(value, minor) if -value.normalize().as_tuple().exponent <= minor else _qty(value)


def _rate(text: str | Decimal) -> str:
    return f"{Decimal(text):,f}"


def _rounded(exact: Decimal, amount: Decimal, minor: int, mode: str) -> str:
    """``amount``, with the exact product when rounding changed it."""
    shown = _money(amount, minor)
    if exact == amount:
        return shown
    return f"{_qty(exact)}, rounded {mode} to {shown}"


# ----------------------------------------------------------------------------- lines


def explain_line(context: _Context, line_no: int) -> str:
    """The trace of one invoice line (SPEC §8)."""
    document = context.document
    if document is None:
        message, status = missing_invoice_reason(context.store, context.month, context.client_id)
        raise ExplainError(message, status)
    lines = {entry["line_no"]: entry for entry in document["lines"]}
    if line_no not in lines:
        folder = context.store.invoice_dir(context.month, context.client_id)
        raise ExplainError(
            f"invoice {document['invoice_id']} has no line {line_no} "
            f"(it has lines 1..{len(lines)}; {folder / 'invoice.json'})"
        )
    line = lines[line_no]
    if line.get("adjusts"):
        return _explain_adjustment(context, document, line, len(lines))
    days = _line_days(context)
    charges = _charges_of_line(context, line, days)
    minor = context.minor_units()
    out = [
        f"Invoice {document['invoice_id']} ({document['status']}), {context.where}, "
        f"line {line_no} of {len(lines)}",
        f"  {line['charge_code']}: {line['description']}  (GL {line['gl_account']}, "
        f"{line['model']}{_tier_text(line)})",
        f"  amount {line['amount']} {document['currency']}",
        "",
        "Arithmetic:",
        *(f"  {text}" for text in arithmetic(context, line, charges, document["lines"], minor)),
        "",
        f"Rate card: {context.card.path.name if context.card else '(not loaded)'}, version "
        f"effective_from {line['ratecard_version']}",
    ]
    if context.card is not None and document["fingerprints"].get("ratecard") != context.card.sha256:
        out.append(
            "  note: the rate card changed since this invoice was written; "
            "events are those of the line's date range"
        )
    out.extend(_rules_text(charges, document))
    out.extend(_events_text(charges, minor))
    return "\n".join(out)


def _explain_adjustment(context: _Context, document: dict, line: dict, count: int) -> str:
    """An adjustment line corrects a finalized invoice (SPEC §7): its events are there."""
    invoice, _, code = line["adjusts"].partition(":")
    corrected = f"{invoice[-6:-2]}-{invoice[-2:]}"  # INV-<CLIENT>-<YYYYMM>
    return "\n".join(
        [
            f"Invoice {document['invoice_id']} ({document['status']}), {context.where}, "
            f"line {line['line_no']} of {count}",
            f"  {line['charge_code']}: {line['description']}  (GL {line['gl_account']})",
            f"  amount {line['amount']} {document['currency']}",
            "",
            f"An adjustment to finalized invoice {invoice}, charge {code}: what that month",
            "prices to now, minus what finalized invoices billed for it (closing.py).",
            f"Its events: billing explain --client {context.client_id} --month {corrected} "
            f"--event ID, or the {code} line of that invoice.",
        ]
    )


def _tier_text(line: dict) -> str:
    return f", tier {line['tier']}" if line.get("tier") else ""


def _rules_text(charges: pl.DataFrame, document: dict) -> list[str]:
    if charges.is_empty():
        return [f"Rules: fingerprint {document['fingerprints'].get('rules', '')} (no charges)"]
    pairs = charges.select("rules_file", "rules_sha256").unique().sort("rules_file")
    return [f"Rules: {f}  sha256 {sha}" for f, sha in pairs.iter_rows()]


def _events_text(charges: pl.DataFrame, minor: int) -> list[str]:
    if charges.is_empty():
        return ["Events: none (this line is not driven by activity)"]
    events = (
        charges.group_by("event_id", "activity_date", "event_type")
        .agg(pl.col("quantity").sum().alias("quantity"), pl.col("basis").sum().alias("basis"))
        .sort("activity_date", "event_id")
    )
    types = dict(events["event_type"].value_counts().sort("event_type").iter_rows())
    type_text = ", ".join(f"{t} {n:,}" for t, n in types.items())
    first, last = events["activity_date"].min(), events["activity_date"].max()
    out = [
        "",
        f"Events: {events.height:,} ({type_text}), {first} .. {last}; "
        f"{charges.height:,} charge rows",
    ]
    for event_id, day, event_type, quantity, basis in events.head(EXAMPLES).iter_rows():
        extra = f"  basis {_basis(basis, minor)}" if basis is not None and basis != 0 else ""
        out.append(f"  {event_id}  {day}  {event_type}  quantity {_qty(quantity)}{extra}")
    if events.height > EXAMPLES:
        out.append(f"  ... and {events.height - EXAMPLES:,} more")
    return out


def _spec(context: _Context, line: dict) -> ChargeSpec | None:
    if context.card is None:
        return None
    version = context.card.version_on(date.fromisoformat(line["ratecard_version"]))
    return version.charges.get(line["charge_code"]) if version else None


def arithmetic(
    context: _Context, line: dict, charges: pl.DataFrame, all_lines: list[dict], minor: int
) -> list[str]:
    """The line's amount in words, by pricing model (SPEC §6.1)."""
    model = line["model"]
    amount = Decimal(line["amount"])
    quantity = Decimal(line["quantity"])
    mode = context.rounding()
    if model == "minimum":
        return _minimum_text(context, line, all_lines, minor)
    if model == "flat":
        return [f"flat monthly fee: 1 × {_rate(line['unit_rate'])} = {_money(amount, minor)}"]
    spec = _spec(context, line)
    if model == "cost_plus":
        basis = Decimal(line["basis_amount"])
        if spec is None or spec.markup_pct is None:
            return [f"basis {_basis(basis, minor)} marked up = {_money(amount, minor)}"]
        exact = basis * (1 + spec.markup_pct / 100)
        return [
            f"{_qty(quantity)} charges, basis {_basis(basis, minor)} × "
            f"(1 + {_rate(spec.markup_pct)}/100)"
            f" = {_rounded(exact, amount, minor, mode)}"
        ]
    rate = Decimal(line["unit_rate"])
    exact = quantity * rate
    if spec is None or spec.per_day:
        return [f"{_qty(quantity)} units × {_rate(rate)} = {_rounded(exact, amount, minor, mode)}"]
    period, phrase = _period_phrase(context, spec, charges)
    if model == "per_unit":
        return [f"{phrase} × {_rate(rate)} = {_rounded(exact, amount, minor, mode)}"]
    if model == "package":
        assert spec.package_size is not None
        return [
            f"{phrase}; ceil({_qty(period)} / {_qty(spec.package_size)}) = "
            f"{_qty(quantity)} packages × {_rate(rate)} = {_rounded(exact, amount, minor, mode)}"
        ]
    tier = int(line.get("tier") or 1)
    bound = spec.tiers[tier - 1].up_to
    upper = "no limit" if bound is None else _qty(bound)
    if model == "volume":
        return [
            f"period quantity: {phrase}",
            f"falls in tier {tier} (up to {upper}): the whole {_qty(quantity)} × {_rate(rate)} "
            f"= {_rounded(exact, amount, minor, mode)}",
        ]
    below = Decimal(0) if tier == 1 else spec.tiers[tier - 2].up_to
    assert below is not None
    return [
        f"period quantity: {phrase}",
        f"tier {tier} holds the part above {_qty(below)} up to {upper}: "
        f"{_qty(quantity)} units × {_rate(rate)} = {_rounded(exact, amount, minor, mode)}",
    ]


def _period_phrase(
    context: _Context, spec: ChargeSpec, charges: pl.DataFrame
) -> tuple[Decimal, str]:
    """The period quantity of a monthly-priced code and how it was reached."""
    daily = (
        charges.group_by("activity_date")
        .agg(pl.col("quantity").sum())
        .sort("activity_date")
        .iter_rows()
    )
    by_day: dict[date, Decimal] = {day: Decimal(q) for day, q in daily}
    if not by_day:
        return Decimal(0), "no daily quantities"
    total = sum(by_day.values(), Decimal(0))
    if spec.aggregate == "max":
        day = max(by_day, key=lambda d: (by_day[d], -d.toordinal()))
        return by_day[day], f"largest daily quantity {_qty(by_day[day])} (on {day})"
    if spec.aggregate == "last":
        day = max(by_day)
        return by_day[day], f"quantity on the last day with one, {day}: {_qty(by_day[day])}"
    if spec.aggregate == "average":
        days = len(month_days(context.month))
        average = (total / days).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
        return average, (f"sum of daily quantities {_qty(total)} / {days} days = {_qty(average)}")
    return total, f"sum of daily quantities {_qty(total)} ({len(by_day)} days with charges)"


def _minimum_text(context: _Context, line: dict, all_lines: list[dict], minor: int) -> list[str]:
    amount = Decimal(line["amount"])
    covers: tuple[str, ...] | str | None = None
    if context.card is not None:
        version = context.card.version_on(date.fromisoformat(line["ratecard_version"]))
        for minimum in version.minimums if version else ():
            if minimum.code == line["charge_code"]:
                covers = minimum.covers
    if covers is None:
        return [f"minimum shortfall {_money(amount, minor)} (rate card not available)"]
    covered_lines = [
        entry
        for entry in all_lines
        if entry["model"] != "minimum" and (covers == "all" or entry["charge_code"] in covers)
    ]
    covered = sum((Decimal(e["amount"]) for e in covered_lines), Decimal(0))
    minimum_amount = covered + amount
    numbers = ", ".join(str(e["line_no"]) for e in covered_lines) or "none"
    codes = "every line but minimums" if covers == "all" else ", ".join(covers)
    return [
        f"minimum {_money(minimum_amount, minor)} − covered {_money(covered, minor)} "
        f"= {_money(amount, minor)}",
        f"covered = lines {numbers} (codes: {codes})",
    ]


# ----------------------------------------------------------------------------- events


def explain_event(context: _Context, event_id: str) -> str:
    """What one event was charged, and the invoice lines its charges landed on."""
    rows = context.charges.filter(pl.col("event_id") == event_id).sort("charge_code")
    if rows.is_empty():
        return _uncharged_event(context, event_id)
    first = rows.row(0, named=True)
    out = [
        f"Event {event_id} ({first['event_type']}, {first['activity_date']}), {context.where}",
        f"  rules {first['rules_file']}  sha256 {first['rules_sha256']}",
        f"  rate card version effective_from {first['ratecard_version']}",
        "",
        f"Charges ({rows.height}):",
    ]
    minor = context.minor_units()
    for row in rows.iter_rows(named=True):
        basis = "" if row["basis"] is None else f"  basis {_basis(row['basis'], minor)}"
        memo = f"  memo {row['memo']!r}" if row["memo"] else ""
        out.append(f"  {row['charge_code']}  quantity {_qty(row['quantity'])}{basis}{memo}")
    out.append("")
    out.extend(_landed_on(context, rows))
    return "\n".join(out)


def _landed_on(context: _Context, rows: pl.DataFrame) -> list[str]:
    document = context.document
    if document is None:
        message, _ = missing_invoice_reason(context.store, context.month, context.client_id)
        return [f"Not on an invoice: {message}"]
    days = _line_days(context)
    out = [f"On invoice {document['invoice_id']} ({document['status']}):"]
    for row in rows.iter_rows(named=True):
        code, day = row["charge_code"], row["activity_date"]
        hits = []
        for line in document["lines"]:
            if line["charge_code"] != code:
                continue
            if days is not None:
                hit = day in days.get(line["line_no"], ())
            else:
                hit = bool(line.get("first_date")) and (
                    date.fromisoformat(line["first_date"])
                    <= day
                    <= date.fromisoformat(line["last_date"])
                )
            if hit:
                hits.append(line)
        if not hits:
            out.append(f"  {code}: on no line (a line of quantity 0 is left out)")
        for line in hits:
            out.append(
                f"  {code} -> line {line['line_no']} ({line['description']}{_tier_text(line)}, "
                f"amount {line['amount']})"
            )
        out.extend(_minimums_covering(context, code, document))
    return out


def _minimums_covering(context: _Context, code: str, document: dict) -> list[str]:
    if context.card is None:
        return []
    out = []
    for line in document["lines"]:
        if line["model"] != "minimum":
            continue
        version = context.card.version_on(date.fromisoformat(line["ratecard_version"]))
        for minimum in version.minimums if version else ():
            if minimum.code == line["charge_code"] and (
                minimum.covers == "all" or code in minimum.covers
            ):
                out.append(
                    f"  {code} counts toward minimum {minimum.code} (line {line['line_no']})"
                )
    return out


def _uncharged_event(context: _Context, event_id: str) -> str:
    errors = read_parquet(
        context.store.rule_errors_file(context.month, context.client_id), ERRORS_SCHEMA
    ).filter(pl.col("event_id") == event_id)
    if not errors.is_empty():
        error = errors.row(0, named=True)
        return (
            f"Event {event_id} ({error['event_type']}, {error['activity_date']}), "
            f"{context.where}: no charges -- rule error in {error['rules_file']} "
            f"line {error['line']}: {error['message']}"
        )
    events = read_activity(context.store, context.client_id, month_days(context.month)).filter(
        pl.col("event_id") == event_id
    )
    if events.is_empty():
        raise ExplainError(
            f"event {event_id!r} not found for {context.where} "
            f"(activity, charges and rule_errors under {context.store.root})"
        )
    event = events.row(0, named=True)
    rules = context.card.rules if context.card else "default.lua"
    try:
        kind = RuleEngine(context.paths.lua).rule_kinds(rules).get(event["event_type"])
    except RuleLoadError as exc:
        kind = f"unknown ({exc})"
    why = {
        "handler": "the handler ran and emitted no charge",
        "false": "the rules mark this type not billable (false)",
        None: "the rules have no key for this type (unhandled)",
    }.get(kind, f"rules: {kind}")
    if not context.charges.height and not charges_written(
        context.store, context.month, context.client_id
    ):
        why = "charges not materialized for this client-month"
    return (
        f"Event {event_id} ({event['event_type']}, {event['activity_date']}), {context.where}: "
        f"no charges -- {why} ({rules})"
    )
