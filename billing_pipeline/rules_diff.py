"""``billing rules diff``: what the current rules and rate card would change, before a backfill.

Recomputes one client-month with the same code the ``charges`` asset uses
(``compute_charges``, then ``price_month``) without writing anything, and compares it with
what is materialized: the charges dataset, and the written ``invoice_lines.csv`` (or, when
the month has no invoice file -- blocked, say -- the stored charges priced with the current
rate card).

Per charge code it prints the quantity and amount before and after. Quantity is the sum of
the code's charge quantities (what the rules emit, the thing a rule fix changes); for codes
no rule emits (flat fees, minimums) it is the invoice lines' quantity. Amount is the sum of
the code's invoice lines. Then the invoice total, rule errors that would appear or clear
(by event), and unpriced codes that would appear, clear or change count.

Exit status: 0 nothing would change; 1 something would; 2 bad usage (unknown client, bad
month, bad rate card, nothing materialized for the client-month). A change of fingerprints
alone (an edited comment in a rules file) with identical charges is reported but is not a
change.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from billing_pipeline.charging import (
    ChargesOutcome,
    charges_written,
    compute_charges,
    read_charges,
    read_charges_state,
)
from billing_pipeline.cli_args import OneLineParser, UsageError
from billing_pipeline.closing import ADJUSTMENT_PREFIX
from billing_pipeline.config import Paths
from billing_pipeline.months import first_day
from billing_pipeline.pricing import PricedMonth, price_month
from billing_pipeline.ratecards import RateCard, RateCardError, load_ratecards
from billing_pipeline.rules import ERRORS_SCHEMA, RuleEngine
from billing_pipeline.storage import Store, read_parquet

PROG = "billing rules diff"
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
EXAMPLES = 5


class DiffUsage(UsageError):
    """Bad usage or configuration: exit status 2 with this one-line message."""


@dataclass
class Side:
    """Charges, lines and problems of one side of the comparison."""

    charges: pl.DataFrame
    errors: pl.DataFrame
    unpriced: dict[str, int]
    lines: list[tuple[str, Decimal, Decimal]]  # (charge_code, quantity, amount)
    total: Decimal
    source: str
    fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeDelta:
    code: str
    old_quantity: Decimal
    new_quantity: Decimal
    old_amount: Decimal
    new_amount: Decimal

    @property
    def changed(self) -> bool:
        return self.old_quantity != self.new_quantity or self.old_amount != self.new_amount


@dataclass
class Diff:
    client_id: str
    month: str
    currency: str
    minor_units: int
    old: Side
    new: Side
    codes: list[CodeDelta]
    new_errors: pl.DataFrame
    cleared_errors: pl.DataFrame
    unpriced_changes: dict[str, tuple[int, int]]  # code -> (old count, new count)
    invoice_status: str | None

    @property
    def total_delta(self) -> Decimal:
        return self.new.total - self.old.total

    @property
    def changed(self) -> bool:
        return (
            any(c.changed for c in self.codes)
            or self.total_delta != 0
            or not self.new_errors.is_empty()
            or not self.cleared_errors.is_empty()
            or bool(self.unpriced_changes)
        )


def main_rules_diff(argv: Sequence[str]) -> int:
    """Entry point of ``billing rules diff``: prints the diff, returns the exit status."""
    parser = OneLineParser(prog=PROG, description="Preview what the current rules would change.")
    parser.add_argument("--client", required=True, metavar="ID")
    parser.add_argument("--month", required=True, metavar="YYYY-MM")
    try:
        args = parser.parse_args(list(argv))
        diff = diff_client_month(Paths.from_env(), args.client, args.month)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(render(diff))
    return 1 if diff.changed else 0


def _card(paths: Paths, client_id: str) -> RateCard:
    try:
        cards, bad = load_ratecards(paths.ratecards)
    except RateCardError as exc:
        raise DiffUsage(str(exc).splitlines()[0]) from None
    if client_id in cards:
        return cards[client_id]
    for name in (f"{client_id}.yaml", f"{client_id}.yml"):
        if name in bad:
            raise DiffUsage(f"rate card refused: {str(bad[name]).splitlines()[0]}")
    raise DiffUsage(f"unknown client {client_id!r}: no rate card in {paths.ratecards}")


def diff_client_month(paths: Paths, client_id: str, month: str) -> Diff:
    """Compare the materialized client-month with a fresh computation; writes nothing."""
    if not MONTH.match(month):
        raise DiffUsage(f"--month must be YYYY-MM, got {month!r}")
    card = _card(paths, client_id)
    store = Store(paths.data)
    if not charges_written(store, month, client_id):
        raise DiffUsage(
            f"nothing materialized for {client_id} {month}: no charges at "
            f"{store.charges_dir(month, client_id)} (run billing run first)"
        )
    old = materialized_side(store, card, month)
    outcome = compute_charges(store, RuleEngine(paths.lua), card, month)
    new = computed_side(card, month, outcome)
    return compare(card, month, old, new, _invoice_status(store, month, client_id))


def _invoice_status(store: Store, month: str, client_id: str) -> str | None:
    path = store.invoice_dir(month, client_id) / "invoice.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


def materialized_side(store: Store, card: RateCard, month: str) -> Side:
    client_id = card.client_id
    charges = read_charges(store, month, client_id)
    errors = read_parquet(store.rule_errors_file(month, client_id), ERRORS_SCHEMA)
    state = read_charges_state(store, month, client_id) or {}
    folder = store.invoice_dir(month, client_id)
    fingerprints = {k: state.get(f"{k}_sha256", "") for k in ("rules", "ratecard", "events")} | {
        "rules_file": state.get("rules_file", "")
    }
    if (folder / "invoice_lines.csv").exists():
        with (folder / "invoice_lines.csv").open(encoding="utf-8", newline="") as handle:
            # Adjustment lines correct earlier months (closing.py); they are not this
            # month's charges, so they take no part in what a rule change would alter.
            lines = [
                (row["charge_code"], Decimal(row["quantity"]), Decimal(row["amount"]))
                for row in csv.DictReader(handle)
                if not row["charge_code"].startswith(ADJUSTMENT_PREFIX)
            ]
        total = sum((amount for _, _, amount in lines), Decimal(0))
        source = f"invoice files in {folder}"
    else:
        priced = price_month(card, first_day(month), charges)
        lines, total = _priced_lines(priced), priced.total
        source = "stored charges priced with the current rate card (no invoice file)"
    return Side(
        charges, errors, dict(state.get("unpriced", {})), lines, total, source, fingerprints
    )


def computed_side(card: RateCard, month: str, outcome: ChargesOutcome) -> Side:
    priced = price_month(card, first_day(month), outcome.charges)
    fingerprints = {
        "rules": outcome.rules_sha256,
        "ratecard": outcome.ratecard_sha256,
        "events": outcome.events_sha256,
        "rules_file": outcome.rules_file,
    }
    return Side(
        outcome.charges,
        outcome.errors,
        dict(outcome.unpriced),
        _priced_lines(priced),
        priced.total,
        "current rules and rate card",
        fingerprints,
    )


def _priced_lines(priced: PricedMonth) -> list[tuple[str, Decimal, Decimal]]:
    return [(line.charge_code, line.quantity, line.amount) for line in priced.lines]


def _sums(frame: pl.DataFrame) -> dict[str, Decimal]:
    if frame.is_empty():
        return {}
    grouped = frame.group_by("charge_code").agg(pl.col("quantity").sum())
    return {code: Decimal(q) for code, q in grouped.iter_rows()}


def compare(card: RateCard, month: str, old: Side, new: Side, status: str | None) -> Diff:
    old_q, new_q = _sums(old.charges), _sums(new.charges)
    old_l: dict[str, list[Decimal]] = {}
    new_l: dict[str, list[Decimal]] = {}
    for lines, into in ((old.lines, old_l), (new.lines, new_l)):
        for code, quantity, amount in lines:
            entry = into.setdefault(code, [Decimal(0), Decimal(0)])
            entry[0] += quantity
            entry[1] += amount
    zero = [Decimal(0), Decimal(0)]
    codes = []
    for code in sorted(set(old_q) | set(new_q) | set(old_l) | set(new_l)):
        emitted = code in old_q or code in new_q
        codes.append(
            CodeDelta(
                code,
                old_q.get(code, Decimal(0)) if emitted else old_l.get(code, zero)[0],
                new_q.get(code, Decimal(0)) if emitted else new_l.get(code, zero)[0],
                old_l.get(code, zero)[1],
                new_l.get(code, zero)[1],
            )
        )
    unpriced = {
        code: (old.unpriced.get(code, 0), new.unpriced.get(code, 0))
        for code in sorted(set(old.unpriced) | set(new.unpriced))
        if old.unpriced.get(code, 0) != new.unpriced.get(code, 0)
    }
    return Diff(
        client_id=card.client_id,
        month=month,
        currency=card.currency,
        minor_units=card.minor_units,
        old=old,
        new=new,
        codes=codes,
        new_errors=_error_difference(new.errors, old.errors),
        cleared_errors=_error_difference(old.errors, new.errors),
        unpriced_changes=unpriced,
        invoice_status=status,
    )


def _error_difference(these: pl.DataFrame, others: pl.DataFrame) -> pl.DataFrame:
    """Errors of ``these`` whose event (or, for a load failure, message) ``others`` lacks."""

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.coalesce(pl.col("event_id"), pl.col("message")).alias("_key"))

    if these.is_empty():
        return these
    return (
        keyed(these)
        .join(keyed(others).select("_key"), on="_key", how="anti")
        .drop("_key")
        .sort("event_id", nulls_last=True)
    )


# ----------------------------------------------------------------------------- output


def _money(value: Decimal, minor: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-minor)):f}"


def _signed_money(value: Decimal, minor: int) -> str:
    text = _money(value, minor)
    return text if value < 0 else ("+" + text if value > 0 else text.lstrip("-"))


def _qty(value: Decimal) -> str:
    value = value.normalize()
    return f"{value.quantize(Decimal(1)) if value == value.to_integral_value() else value:f}"


def _signed_qty(value: Decimal) -> str:
    return ("+" if value > 0 else "") + _qty(value)


def render(diff: Diff) -> str:
    minor = diff.minor_units
    head = [
        f"billing rules diff {diff.client_id} {diff.month} ({diff.currency})",
        f"  materialized: {diff.old.source}",
        f"  recomputed:   {diff.new.source} (nothing written)",
    ]
    for name in ("rules_file", "rules", "ratecard", "events"):
        before, after = diff.old.fingerprints.get(name, ""), diff.new.fingerprints.get(name, "")
        if before != after:
            head.append(f"  {name} changed: {before[:16] or '?'} -> {after[:16]}")
    if diff.invoice_status == "final":
        head.append("  the invoice is final: changes would bill as adjustments next month")
    table = [("code", "old qty", "new qty", "Δ qty", "old amount", "new amount", "Δ amount", "")]
    for c in diff.codes:
        table.append(
            (
                c.code,
                _qty(c.old_quantity),
                _qty(c.new_quantity),
                _signed_qty(c.new_quantity - c.old_quantity),
                _money(c.old_amount, minor),
                _money(c.new_amount, minor),
                _signed_money(c.new_amount - c.old_amount, minor),
                "changed" if c.changed else "",
            )
        )
    body = _columns(table)
    total = (
        f"invoice total: {_money(diff.old.total, minor)} -> {_money(diff.new.total, minor)} "
        f"(Δ {_signed_money(diff.total_delta, minor)})"
    )
    if diff.new.unpriced or not diff.new.errors.is_empty():
        total += "; with the current rules the invoice would be BLOCKED"
    tail = [total, *_errors_text(diff), *_unpriced_text(diff)]
    verdict = "changes: yes" if diff.changed else "changes: none"
    return "\n".join([*head, "", *body, "", *tail, verdict])


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i in (0, 7) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _errors_text(diff: Diff) -> list[str]:
    out = [f"rule errors: {diff.old.errors.height} -> {diff.new.errors.height}"]
    for label, frame in (("new", diff.new_errors), ("cleared", diff.cleared_errors)):
        if frame.is_empty():
            continue
        out.append(f"  {label}: {frame.height}")
        for row in frame.head(EXAMPLES).iter_rows(named=True):
            out.append(
                f"    {row['event_id'] or '-'} {row['event_type'] or ''} "
                f"{row['rules_file']}:{row['line'] if row['line'] is not None else '?'} "
                f"{row['message']}"
            )
    return out


def _unpriced_text(diff: Diff) -> list[str]:
    out = []
    for code, (before, after) in diff.unpriced_changes.items():
        if before == 0:
            out.append(f"unpriced {code}: new, {after} charges")
        elif after == 0:
            out.append(f"unpriced {code}: cleared (was {before} charges)")
        else:
            out.append(f"unpriced {code}: {before} -> {after} charges")
    return out
