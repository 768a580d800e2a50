"""Billed revenue against the general ledger, by client and GL account (SPEC §9).

Billed amounts come from the written ``invoice_lines.csv`` files (what the client is sent),
never from a fresh pricing: reconciliation checks the documents, not the code.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from billing_pipeline.reconciliation.money import currency_minor_units, money_text, parse_amount
from billing_pipeline.storage import Store, child_dirs

LEDGER_HEADER = ("period", "client_id", "gl_account", "amount")
RECONCILIATION_HEADER = (
    "period",
    "client_id",
    "gl_account",
    "billed_amount",
    "ledger_amount",
    "difference",
    "status",
)
STATUSES = ("match", "mismatch", "missing_in_ledger", "missing_in_billing")

Key = tuple[str, str]  # (client_id, gl_account)


@dataclass
class Billed:
    """Sums of one month's invoice lines by (client, gl_account), and each client's currency."""

    amounts: dict[Key, Decimal] = field(default_factory=dict)
    currencies: dict[str, str] = field(default_factory=dict)
    invoices: list[str] = field(default_factory=list)  # client_ids with an invoice


@dataclass
class Ledger:
    """The finance report of a month; ``status`` is present, missing or unreadable."""

    path: Path
    status: str
    amounts: dict[Key, Decimal] = field(default_factory=dict)
    detail: str = ""
    other_periods: int = 0  # rows of another period, ignored

    @property
    def usable(self) -> bool:
        return self.status == "present"


@dataclass(frozen=True)
class ReconciliationRow:
    period: str
    client_id: str
    gl_account: str
    billed: Decimal | None
    ledger: Decimal | None
    difference: Decimal
    status: str

    def cells(self, minor: int) -> tuple[str, ...]:
        return (
            self.period,
            self.client_id,
            self.gl_account,
            money_text(self.billed, minor),
            money_text(self.ledger, minor),
            money_text(self.difference, minor),
            self.status,
        )


def ledger_path(finance_dir: Path, month: str) -> Path:
    return Path(finance_dir) / f"gl_revenue_{month}.csv"


def read_billed(store: Store, month: str) -> Billed:
    """Sum ``amount`` of every ``invoices/<month>/<client>/invoice_lines.csv`` by GL account."""
    billed = Billed()
    folder = store.root / "invoices" / month
    for client_dir in (folder / name for name in child_dirs(folder)):
        path = client_dir / "invoice_lines.csv"
        if not path.exists():
            continue
        billed.invoices.append(client_dir.name)
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                key = (row["client_id"], row["gl_account"])
                amount = parse_amount(row["amount"])
                billed.amounts[key] = billed.amounts.get(key, Decimal(0)) + amount
                billed.currencies.setdefault(row["client_id"], row["currency"])
    return billed


def read_ledger(finance_dir: Path, month: str) -> Ledger:
    """The month's ledger report; a missing or malformed file is reported, never raised.

    Several rows for one (client, gl_account) are summed (finance may book a month in more
    than one journal entry). Rows of another period are ignored and counted.
    """
    path = ledger_path(finance_dir, month)
    if not path.exists():
        return Ledger(path, "missing", detail=f"no ledger report at {path}")
    ledger = Ledger(path, "present")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != LEDGER_HEADER:
                raise ValueError(f"header must be {','.join(LEDGER_HEADER)}, got {header}")
            for number, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(LEDGER_HEADER):
                    raise ValueError(f"line {number}: expected 4 fields, got {len(row)}")
                period, client_id, gl_account, amount = (cell.strip() for cell in row)
                if period != month:
                    ledger.other_periods += 1
                    continue
                try:
                    value = parse_amount(amount)
                except ValueError as exc:
                    raise ValueError(f"line {number}: {exc}") from None
                key = (client_id, gl_account)
                ledger.amounts[key] = ledger.amounts.get(key, Decimal(0)) + value
    except (ValueError, UnicodeDecodeError) as exc:
        return Ledger(path, "unreadable", detail=f"{path}: {exc}")
    return ledger


def reconcile(
    month: str, billed: Mapping[Key, Decimal], ledger: Ledger, tolerance: Decimal
) -> list[ReconciliationRow]:
    """One row per (client, gl_account) on either side, sorted by client then account.

    A missing or unreadable ledger counts as an empty one: every billed row is
    ``missing_in_ledger``. The absent side of a row is written empty and counts as 0 in the
    difference, so the differences add up to total billed - total booked.
    """
    booked = ledger.amounts if ledger.usable else {}
    rows = []
    for key in sorted(set(billed) | set(booked)):
        b, g = billed.get(key), booked.get(key)
        difference = (b or Decimal(0)) - (g or Decimal(0))
        if g is None:
            status = "missing_in_ledger"
        elif b is None:
            status = "missing_in_billing"
        elif abs(difference) <= tolerance:
            status = "match"
        else:
            status = "mismatch"
        rows.append(ReconciliationRow(month, key[0], key[1], b, g, difference, status))
    return rows


def reconciliation_cells(
    rows: list[ReconciliationRow], currencies: Mapping[str, str]
) -> list[tuple[str, ...]]:
    """CSV rows, each client's amounts with its currency's decimals."""
    return [row.cells(currency_minor_units(currencies.get(row.client_id))) for row in rows]
