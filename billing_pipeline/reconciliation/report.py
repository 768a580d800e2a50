"""One month's reconciliation reports, built from the stored datasets and written atomically.

``build_month_report`` reads; ``render_files`` turns the report into bytes (sorted rows,
"\\n" line endings, no clock: the same inputs give byte-identical files);
``write_month_report`` stores them under ``reconciliation/<YYYY-MM>/``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from billing_pipeline.months import previous_month
from billing_pipeline.ratecards import RateCard
from billing_pipeline.reconciliation.coverage import COVERAGE_HEADER, coverage_rows
from billing_pipeline.reconciliation.inputs import activity_days, load_client_month, month_clients
from billing_pipeline.reconciliation.leakage import LEAKAGE_HEADER, leakage_rows
from billing_pipeline.reconciliation.ledger import (
    RECONCILIATION_HEADER,
    Ledger,
    ReconciliationRow,
    read_billed,
    read_ledger,
    reconcile,
    reconciliation_cells,
)
from billing_pipeline.reconciliation.summaries import (
    QUARANTINE_HEADER,
    RULE_ERRORS_HEADER,
    quarantine_of_month,
    quarantine_rows,
    rule_error_rows,
    rule_errors_of_month,
)
from billing_pipeline.rules import RuleLoadError
from billing_pipeline.storage import Store, write_bytes

REPORT_FILES = (
    "reconciliation.csv",
    "coverage.csv",
    "leakage.csv",
    "quarantine_summary.csv",
    "rule_errors_summary.csv",
    "summary.json",
)
Kinds = Callable[[str], Mapping[str, str]]  # rules file -> event_type -> "handler" | "false"


@dataclass
class MonthReport:
    month: str
    tolerance: Decimal
    ledger: Ledger
    reconciliation: list[ReconciliationRow]
    currencies: dict[str, str]
    coverage: list[tuple[str, ...]] = field(default_factory=list)
    leakage: list[tuple[str, ...]] = field(default_factory=list)
    quarantine: list[tuple[str, ...]] = field(default_factory=list)
    rule_errors: list[tuple[str, ...]] = field(default_factory=list)
    rules_problems: dict[str, str] = field(default_factory=dict)  # rules file -> load error

    @property
    def problems(self) -> list[ReconciliationRow]:
        """Rows that are not a match: what the ``ledger_matches`` check fails on."""
        return [row for row in self.reconciliation if row.status != "match"]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.reconciliation:
            counts[row.status] = counts.get(row.status, 0) + 1
        return dict(sorted(counts.items()))

    def column_counts(self, rows: list[tuple[str, ...]], column: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row[column]] = counts.get(row[column], 0) + 1
        return dict(sorted(counts.items()))


def parse_tolerance(text: str) -> Decimal:
    """The reconciliation tolerance (a decimal >= 0); ValueError names the bad value."""
    try:
        value = Decimal(str(text).strip())
    except ArithmeticError:
        raise ValueError(f"reconciliation_tolerance: not a decimal: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"reconciliation_tolerance: must be a decimal >= 0, got {text!r}")
    return value


def build_month_report(
    store: Store,
    finance_dir: Path,
    month: str,
    cards: Mapping[str, RateCard],
    rule_kinds: Kinds,
    tolerance: Decimal = Decimal("0.00"),
) -> MonthReport:
    """Every report of one month. ``rule_kinds`` is ``RuleEngine.rule_kinds`` (or a stand-in).

    A client without a valid rate card is judged by ``default.lua`` for coverage (SPEC §5:
    the rules every client has unless its card names others).
    """
    billed = read_billed(store, month)
    ledger = read_ledger(finance_dir, month)
    currencies = dict(billed.currencies)
    for client_id, card in cards.items():
        currencies.setdefault(client_id, card.currency)
    report = MonthReport(
        month=month,
        tolerance=tolerance,
        ledger=ledger,
        reconciliation=reconcile(month, billed.amounts, ledger, tolerance),
        currencies=currencies,
    )
    kinds_cache: dict[str, Mapping[str, str] | None] = {}

    def kinds_of(rules_file: str) -> Mapping[str, str] | None:
        if rules_file not in kinds_cache:
            try:
                kinds_cache[rules_file] = dict(rule_kinds(rules_file))
            except RuleLoadError as exc:
                kinds_cache[rules_file] = None
                report.rules_problems[rules_file] = str(exc)
        return kinds_cache[rules_file]

    days = activity_days(store, month)
    previous_days = activity_days(store, previous_month(month))
    for client_id in month_clients(store, month, active=days):
        cm = load_client_month(
            store, month, client_id, days.get(client_id, []), previous_days.get(client_id, [])
        )
        card = cards.get(client_id)
        kinds = kinds_of(card.rules if card else "default.lua")
        report.coverage.extend(coverage_rows(month, client_id, cm.digest, kinds))
        report.leakage.extend(leakage_rows(month, cm, kinds, has_card=card is not None))
    report.quarantine = quarantine_rows(month, quarantine_of_month(store, month))
    report.rule_errors = rule_error_rows(month, rule_errors_of_month(store, month))
    return report


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def summary_document(report: MonthReport) -> dict:
    """``summary.json``: the ledger's state and the counts behind the CSV files."""
    billed_total: dict[str, Decimal] = {}
    booked_total: dict[str, Decimal] = {}
    for row in report.reconciliation:
        currency = report.currencies.get(row.client_id, "")
        if row.billed is not None:
            billed_total[currency] = billed_total.get(currency, Decimal(0)) + row.billed
        if row.ledger is not None:
            booked_total[currency] = booked_total.get(currency, Decimal(0)) + row.ledger
    return {
        "period": report.month,
        "tolerance": str(report.tolerance),
        "ledger": {
            "file": report.ledger.path.name,
            "status": report.ledger.status,
            "detail": report.ledger.detail,
            "rows_of_other_periods": report.ledger.other_periods,
        },
        "reconciliation": report.status_counts(),
        "billed_by_currency": {c: str(v) for c, v in sorted(billed_total.items())},
        "ledger_by_currency": {c: str(v) for c, v in sorted(booked_total.items())},
        "coverage": report.column_counts(report.coverage, 5),
        "leakage": report.column_counts(report.leakage, 2),
        "quarantined_lines": sum(int(row[3]) for row in report.quarantine),
        "rule_errors": sum(int(row[5]) for row in report.rule_errors),
        "rules_not_loaded": dict(sorted(report.rules_problems.items())),
    }


def render_files(report: MonthReport) -> dict[str, bytes]:
    summary = json.dumps(summary_document(report), indent=2, sort_keys=True) + "\n"
    return {
        "reconciliation.csv": csv_bytes(
            RECONCILIATION_HEADER, reconciliation_cells(report.reconciliation, report.currencies)
        ),
        "coverage.csv": csv_bytes(COVERAGE_HEADER, report.coverage),
        "leakage.csv": csv_bytes(LEAKAGE_HEADER, report.leakage),
        "quarantine_summary.csv": csv_bytes(QUARANTINE_HEADER, report.quarantine),
        "rule_errors_summary.csv": csv_bytes(RULE_ERRORS_HEADER, report.rule_errors),
        "summary.json": summary.encode("utf-8"),
    }


def write_month_report(store: Store, report: MonthReport) -> Path:
    folder = store.reconciliation_dir(report.month)
    for name, data in render_files(report).items():
        write_bytes(data, folder / name)
    return folder


def problem_cells(report: MonthReport) -> list[dict[str, str]]:
    """The non-matching rows as text, for metadata tables and messages."""
    return [
        dict(zip(RECONCILIATION_HEADER, cells, strict=True))
        for cells in reconciliation_cells(report.problems, report.currencies)
    ]
