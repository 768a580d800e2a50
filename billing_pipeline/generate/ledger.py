"""Finance's general-ledger revenue reports (SPEC §9 input), with realistic differences.

The amounts come from billing itself (the caller prices the generated data); the ledger
then disagrees with billing in exactly three ways per month, chosen by the seed, so a
reconciliation has something to find:

* ``mismatch``: one booked amount is off by a small sum (a manual journal typo);
* ``missing_in_ledger``: one billed (client, gl_account) row was never booked;
* ``missing_in_billing``: one row is booked for a (client, gl_account) that was not billed.

A month with a single billed row gets the mismatch and the extra row only (removing its
only row would leave nothing to mismatch); a month with none gets just the extra row when
a client is known from another month, else only the header.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

CENT = Decimal("0.01")
HEADER = ("period", "client_id", "gl_account", "amount")
# Accounts a stray booking might hit, in the order tried; 4990 is the catch-all.
_GL_ACCOUNTS = ("4010", "4020", "4030", "4040", "4050", "4090", "4990")


@dataclass(frozen=True)
class PlantedDifferences:
    period: str
    mismatch: tuple[str, str] | None  # (client_id, gl_account)
    mismatch_delta: Decimal  # ledger - billed for the mismatch row
    missing: tuple[str, str] | None  # billed, absent from the ledger
    extra: tuple[str, str] | None  # in the ledger, not billed
    extra_amount: Decimal


def ledger_rows(
    period: str, billed: Mapping[tuple[str, str], Decimal], seed: int, clients: tuple[str, ...] = ()
) -> tuple[list[tuple[str, str, str, str]], PlantedDifferences]:
    """Rows of one month's report, sorted by client and account, and what was planted."""
    rng = random.Random(f"ledger:{seed}:{period}")
    booked = {
        key: Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)
        for key, amount in billed.items()
    }
    keys = sorted(booked)
    mismatch = missing = extra = None
    delta = Decimal(0)
    if keys:
        mismatch = keys[rng.randrange(len(keys))]
        # A few cents to a few dollars; the sign says whether finance over- or under-booked.
        delta = Decimal(rng.randint(1, 2500)) / 100 * (1 if rng.random() < 0.5 else -1)
        if booked[mismatch] + delta < 0:
            delta = -delta  # a ledger does not book negative revenue for a sale
        booked[mismatch] += delta
        rest = [k for k in keys if k != mismatch]
        if rest:
            missing = rest[rng.randrange(len(rest))]
            del booked[missing]
    candidates = sorted({client for client, _ in keys} | set(clients))
    extra_amount = Decimal(0)
    if candidates:
        client = candidates[rng.randrange(len(candidates))]
        unused = [gl for gl in _GL_ACCOUNTS if (client, gl) not in billed]
        if unused:
            extra = (client, unused[0] if len(unused) == 1 else unused[rng.randrange(len(unused))])
            extra_amount = Decimal(rng.randint(2500, 50000)) / 100
            booked[extra] = extra_amount
    rows = [
        (period, client, gl, f"{amount.quantize(CENT):f}")
        for (client, gl), amount in sorted(booked.items())
    ]
    return rows, PlantedDifferences(period, mismatch, delta, missing, extra, extra_amount)


def write_ledger_reports(
    finance_dir: Path, billed: Mapping[str, Mapping[tuple[str, str], Decimal]], seed: int
) -> list[Path]:
    """Write ``gl_revenue_<YYYY-MM>.csv`` for each month of ``billed``.

    ``billed`` maps a period (``YYYY-MM``) to the billed amount per (client_id, gl_account).
    """
    finance_dir.mkdir(parents=True, exist_ok=True)
    clients = tuple(sorted({client for month in billed.values() for client, _ in month}))
    paths = []
    for period in sorted(billed):
        rows, _ = ledger_rows(period, billed[period], seed, clients)
        path = finance_dir / f"gl_revenue_{period}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(rows)
        paths.append(path)
    return paths
