"""Month close and adjustments (SPEC §7): ``billing invoices close --month YYYY-MM [--client ID]``.

Closing a client-month renders its invoice once more from the stored charges, with status
``final``, and records a *closed snapshot* in ``_state/closed/<YYYY-MM>/<client_id>.json``.
From then on the invoice files are never written again (``invoicing.issue_invoice`` keeps
them, byte for byte), whatever happens to the month's charges.

How a later change is billed
----------------------------
A late event or a backfilled rule or rate fix re-materializes a closed month's charges. The
invoice of the client's *first open month after it* (the first month after it that is not
closed) then carries adjustment lines for it, computed every time that open invoice is
rendered:

    adjustment(code, gl) = current(code, gl) - billed(code, gl)

- ``current`` is the closed month priced now: its stored charges through ``price_month``
  with the current rate card, amounts summed by (charge code, GL account), minimums and
  flat fees included (a late pick that fills a minimum shortfall nets out against it).
- ``billed`` is what finalized invoices have billed for that month so far: the closed
  invoice's own lines plus every adjustment for that month on later *finalized* invoices.

So the open (draft) invoice can be rendered any number of times (the amount is recomputed,
never accumulated), and a correction is billed exactly once: when the draft closes, its
adjustment lines join ``billed``, and the next change only bills the difference from there.
A code that disappears (a rule fix that stops a charge) is credited in full; a new code is
billed in full. Nothing is prorated or re-rated: the closed month is priced by its own rules.

An adjustment line is ``ADJ_<CODE>`` with the GL account of the code it corrects, quantity
1 and unit rate = amount = the delta (negative for a credit); its description names the
invoice and code (``Adjustment to INV-ACME-202610 PICK_ORDER (Order pick): billed 100.00;
now 112.50``) and invoice.json's ``adjusts`` holds ``INV-ACME-202610:PICK_ORDER``. The CSV
header is unchanged (SPEC §7). Adjustment lines follow the month's own lines.

Costs: a closed month is priced again only when its *fingerprint* (the charges state file
and the rate card's sha256) differs from the fingerprint it had when last finalized
(``checked`` in the snapshots); an untouched history costs one small file read per month.

Rules of the close command
--------------------------
- Months close in order: a client-month does not close while an earlier month of the client
  still has a draft invoice (exit 1, "close YYYY-MM first").
- A blocked client-month (rule errors, unpriced charges) does not close (exit 1); fix,
  backfill, close again. Charges never materialized for a month the rate card covers: exit 1.
- A client-month without an invoice (no activity, no flat fee) closes empty: a late event
  for it is then billed as an adjustment like any other.
- Closing again is a no-op ("already closed"); a month that has not ended is refused (exit 2).
- A closed month whose charges are blocked when its adjustment is due gets no adjustment on
  that render (the invoice reason says so); it follows once the month is fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import billing_pipeline.invoicing as invoicing
from billing_pipeline import locks
from billing_pipeline.charging import charges_state_file, read_charges, read_charges_state
from billing_pipeline.cli_args import OneLineParser, UsageError
from billing_pipeline.config import Paths
from billing_pipeline.invoices.model import invoice_id
from billing_pipeline.months import first_day, next_month
from billing_pipeline.pricing import price_month
from billing_pipeline.pricing.model import InvoiceLine
from billing_pipeline.ratecards import RateCard, RateCardError, load_ratecards
from billing_pipeline.ratecards.model import last_day_of_month
from billing_pipeline.storage import Store, check_client_id, check_month, child_dirs, write_bytes

PROG = "billing invoices close"
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
ADJUSTMENT_PREFIX = "ADJ_"
ADJUSTMENT_MODEL = "adjustment"
ADJUSTMENT_CATEGORY = "adjustments"
Key = tuple[str, str]  # (charge_code, gl_account)


# ----------------------------------------------------------------------------- state


def closed_file(store: Store, month: str, client_id: str) -> Path:
    return (
        store.root / "_state" / "closed" / check_month(month) / f"{check_client_id(client_id)}.json"
    )


def read_closed(store: Store, month: str, client_id: str) -> dict | None:
    path = closed_file(store, month, client_id)
    return json.loads(path.read_text()) if path.exists() else None


def is_closed(store: Store, month: str, client_id: str) -> bool:
    return closed_file(store, month, client_id).exists()


def closed_months(store: Store, client_id: str) -> list[str]:
    root = store.root / "_state" / "closed"
    return [
        m for m in child_dirs(root) if MONTH.match(m) and (root / m / f"{client_id}.json").exists()
    ]


def adjustment_target(store: Store, client_id: str, month: str) -> str:
    """The month whose invoice bills corrections of closed ``month``: the first open one after."""
    closed = set(closed_months(store, client_id))
    target = next_month(month)
    while target in closed:
        target = next_month(target)
    return target


def adjustment_targets(
    store: Store, client_months: Iterable[tuple[str, str]]
) -> dict[str, list[str]]:
    """For (month, client) pairs whose month is closed: the open month whose invoice carries
    their adjustments, as {month: [clients]} -- what to re-render after charges of closed
    months were re-materialized (``billing run`` over a closed month, say)."""
    targets: dict[str, set[str]] = {}
    for month, client_id in client_months:
        if is_closed(store, month, client_id):
            target = adjustment_target(store, client_id, month)
            targets.setdefault(target, set()).add(client_id)
    return {month: sorted(clients) for month, clients in sorted(targets.items())}


def fingerprint(store: Store, card: RateCard, month: str) -> str | None:
    """What a closed month's current pricing depends on: its charges state and the rate card."""
    path = charges_state_file(store, month, card.client_id)
    if not path.exists():
        return None
    digest = hashlib.sha256(path.read_bytes())
    digest.update(card.sha256.encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- adjustments


@dataclass(frozen=True)
class Adjustment:
    period: str  # the closed month it corrects
    invoice_id: str
    charge_code: str
    gl_account: str
    description: str
    billed: Decimal
    current: Decimal

    @property
    def amount(self) -> Decimal:
        return self.current - self.billed

    @property
    def adjusts(self) -> str:
        return f"{self.invoice_id}:{self.charge_code}"


@dataclass
class PendingAdjustments:
    adjustments: list[Adjustment] = field(default_factory=list)
    checked: dict[str, str] = field(default_factory=dict)  # closed month -> fingerprint
    waiting: list[str] = field(default_factory=list)  # closed months that cannot be priced now


def _amounts(lines: list[InvoiceLine]) -> dict[Key, tuple[Decimal, str]]:
    out: dict[Key, tuple[Decimal, str]] = {}
    for line in lines:
        key = (line.charge_code, line.gl_account)
        amount, description = out.get(key, (Decimal(0), line.description))
        out[key] = (amount + line.amount, description)
    return out


def _billed(store: Store, client_id: str, month: str, closed: list[str]) -> dict[Key, Decimal]:
    """What finalized invoices billed for ``month``: its own lines and later adjustments."""
    snapshot = read_closed(store, month, client_id) or {}
    billed: dict[Key, Decimal] = {}
    for row in snapshot.get("lines", []):
        key = (row["charge_code"], row["gl_account"])
        billed[key] = billed.get(key, Decimal(0)) + Decimal(row["amount"])
    for later in closed:
        if later <= month:
            continue
        for row in (read_closed(store, later, client_id) or {}).get("adjustments", []):
            if row["period"] == month:
                key = (row["charge_code"], row["gl_account"])
                billed[key] = billed.get(key, Decimal(0)) + Decimal(row["amount"])
    return billed


def _last_fingerprint(store: Store, client_id: str, month: str, closed: list[str]) -> str | None:
    found = (read_closed(store, month, client_id) or {}).get("fingerprint")
    for later in closed:
        if later > month:
            checked = (read_closed(store, later, client_id) or {}).get("checked", {})
            found = checked.get(month, found)
    return found


def pending_adjustments(store: Store, card: RateCard, month: str) -> PendingAdjustments:
    """Adjustments the invoice of open ``month`` carries for the closed months before it."""
    client_id = card.client_id
    closed = closed_months(store, client_id)
    pending = PendingAdjustments()
    for earlier in closed:
        if earlier >= month or adjustment_target(store, client_id, earlier) != month:
            continue
        current_print = fingerprint(store, card, earlier)
        if current_print is not None and current_print == _last_fingerprint(
            store, client_id, earlier, closed
        ):
            pending.checked[earlier] = current_print
            continue
        state = read_charges_state(store, earlier, client_id)
        if current_print is None or state is None:
            snapshot = read_closed(store, earlier, client_id) or {}
            if snapshot.get("lines"):
                pending.waiting.append(f"{earlier}: charges not materialized")
            else:
                pending.checked[earlier] = ""
            continue
        if state["rule_errors"] or state["unpriced"]:
            pending.waiting.append(f"{earlier}: charges blocked")
            continue
        charges = read_charges(store, earlier, client_id)
        priced = price_month(card, first_day(earlier), charges)
        has = invoicing.has_invoice(charges.height, priced)
        current = _amounts(priced.lines) if has else {}
        billed = _billed(store, client_id, earlier, closed)
        number = invoice_id(client_id, earlier)
        snapshot = read_closed(store, earlier, client_id) or {}
        descriptions = {
            (r["charge_code"], r["gl_account"]): r.get("description", r["charge_code"])
            for r in snapshot.get("lines", [])
        }
        for key in sorted(set(current) | set(billed)):
            now, description = current.get(key, (Decimal(0), descriptions.get(key, key[0])))
            before = billed.get(key, Decimal(0))
            if now != before:
                pending.adjustments.append(
                    Adjustment(earlier, number, key[0], key[1], description, before, now)
                )
        pending.checked[earlier] = current_print
    return pending


def adjustment_lines(
    card: RateCard, pending: PendingAdjustments, first_line_no: int
) -> list[InvoiceLine]:
    """The invoice lines of the adjustments, numbered on from ``first_line_no``."""
    from billing_pipeline.invoices import formatting as fmt

    minor = card.minor_units
    lines = []
    for n, adj in enumerate(pending.adjustments):
        version = card.closing_version(first_day(adj.period))
        lines.append(
            InvoiceLine(
                line_no=first_line_no + n,
                charge_code=f"{ADJUSTMENT_PREFIX}{adj.charge_code}",
                description=(
                    f"Adjustment to {adj.invoice_id} {adj.charge_code} ({adj.description}): "
                    f"billed {fmt.money(adj.billed, minor)}; now {fmt.money(adj.current, minor)}"
                ),
                gl_account=adj.gl_account,
                category=ADJUSTMENT_CATEGORY,
                model=ADJUSTMENT_MODEL,
                quantity=Decimal(1),
                unit_rate=adj.amount,
                basis_amount=None,
                amount=adj.amount,
                first_date=None,
                last_date=None,
                tier=None,
                version=version.effective_from if version else card.first_effective,
                adjusts=adj.adjusts,
            )
        )
    return lines


# ----------------------------------------------------------------------------- snapshots


def snapshot_from_invoice(store: Store, card: RateCard, month: str, checked: dict) -> dict:
    """The closed snapshot of a finalized client-month, read back from its invoice.json."""
    path = store.invoice_dir(month, card.client_id) / "invoice.json"
    document = json.loads(path.read_text()) if path.exists() else None
    lines: dict[Key, dict] = {}
    adjustments = []
    for line in (document or {}).get("lines", []):
        if line.get("adjusts"):
            ref, code = line["adjusts"].rsplit(":", 1)
            digits = ref.rsplit("-", 1)[1]
            adjustments.append(
                {
                    "period": f"{digits[:4]}-{digits[4:]}",
                    "invoice_id": ref,
                    "charge_code": code,
                    "gl_account": line["gl_account"],
                    "amount": line["amount"],
                }
            )
            continue
        key = (line["charge_code"], line["gl_account"])
        row = lines.setdefault(
            key,
            {
                "charge_code": key[0],
                "gl_account": key[1],
                "description": line["description"],
                "amount": "0",
            },
        )
        row["amount"] = str(Decimal(row["amount"]) + Decimal(line["amount"]))
    return {
        "client_id": card.client_id,
        "period": month,
        "invoice_id": invoice_id(card.client_id, month),
        "invoice": None if document is None else {"total": document["total"]},
        "currency": card.currency,
        "fingerprint": fingerprint(store, card, month),
        "lines": list(lines.values()),
        "adjustments": adjustments,
        "checked": dict(sorted(checked.items())),
    }


def _write_snapshot(store: Store, month: str, client_id: str, snapshot: dict) -> None:
    text = json.dumps(snapshot, indent=2, sort_keys=True) + "\n"
    write_bytes(text.encode(), closed_file(store, month, client_id))


# ----------------------------------------------------------------------------- close


@dataclass
class CloseOutcome:
    client_id: str
    month: str
    status: str  # closed | closed_empty | already_closed | blocked | not_computed | earlier_open
    detail: str = ""
    total: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("closed", "closed_empty", "already_closed")


def close_client_month(store: Store, card: RateCard, month: str) -> CloseOutcome:
    client_id = card.client_id
    outcome = CloseOutcome(client_id, month, "closed")
    if is_closed(store, month, client_id):
        outcome.status = "already_closed"
        return outcome
    for earlier_dir in sorted((store.root / "invoices").glob(f"*/{client_id}")):
        earlier = earlier_dir.parent.name
        if (
            MONTH.match(earlier)
            and earlier < month
            and not is_closed(store, earlier, client_id)
            and invoicing.invoice_status(store, earlier, client_id) == "draft"
        ):
            outcome.status, outcome.detail = "earlier_open", f"close {earlier} first"
            return outcome
    status = invoicing.invoice_status(store, month, client_id)
    if status == "final":
        # Finalized, but the snapshot was never written (a close interrupted): record it.
        _write_snapshot(store, month, client_id, snapshot_from_invoice(store, card, month, {}))
        return outcome
    first = first_day(month)
    state = read_charges_state(store, month, client_id)
    if state is None and card.first_effective <= last_day_of_month(first):
        outcome.status = "not_computed"
        outcome.detail = "charges not materialized: run billing for the month first"
        return outcome
    if state is not None:
        issued = invoicing.issue_invoice(store, card, month, status="final")
        if issued.status == "blocked":
            outcome.status, outcome.detail = "blocked", issued.reason
            return outcome
        checked = issued.adjustments_checked
        if issued.status == "issued":
            outcome.total = f"{issued.total} {card.currency}"
        else:
            outcome.status, outcome.detail = "closed_empty", issued.reason
    else:
        checked = {}
        outcome.status, outcome.detail = "closed_empty", "rate card starts later"
    _write_snapshot(store, month, client_id, snapshot_from_invoice(store, card, month, checked))
    return outcome


class CloseUsage(UsageError):
    """Bad usage or configuration: exit status 2 with this one-line message."""


def close_month(
    paths: Paths, month: str, clients: Sequence[str] | None = None, today: date | None = None
) -> list[CloseOutcome]:
    if not MONTH.match(month):
        raise CloseUsage(f"--month must be YYYY-MM, got {month!r}")
    today = today or date.today()
    if first_day(next_month(month)) > today:
        raise CloseUsage(f"{month} has not ended yet (today is {today}): nothing to close")
    try:
        cards, bad = load_ratecards(paths.ratecards)
    except RateCardError as exc:
        raise CloseUsage(str(exc).splitlines()[0]) from None
    selected = sorted(clients) if clients else sorted(cards)
    for client_id in selected:
        if client_id not in cards:
            refused = bad.get(f"{client_id}.yaml") or bad.get(f"{client_id}.yml")
            if refused is not None:
                raise CloseUsage(f"rate card refused: {str(refused).splitlines()[0]}")
            raise CloseUsage(f"unknown client {client_id!r}: no rate card in {paths.ratecards}")
    store = Store(paths.data)
    outcomes = []
    for client_id in selected:
        with locks.client_month(store, month, client_id, log=lambda m: print(m, file=sys.stderr)):
            outcomes.append(close_client_month(store, cards[client_id], month))
    return outcomes


def main_close(argv: Sequence[str]) -> int:
    """``billing invoices close --month YYYY-MM [--client ID ...]``: exit 0, 1 or 2."""
    parser = OneLineParser(prog=PROG, description="Finalize the invoices of a month (SPEC §7).")
    parser.add_argument("--month", required=True, metavar="YYYY-MM")
    parser.add_argument("--client", action="append", dest="clients", metavar="ID")
    try:
        args = parser.parse_args(list(argv))
        outcomes = close_month(Paths.from_env(), args.month, args.clients)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    rows = [("client", "month", "status", "total", "detail")]
    rows += [(o.client_id, o.month, o.status, o.total, o.detail) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"{PROG}: {o.client_id} {o.month} not closed: {o.status} {o.detail}", file=sys.stderr)
    return 1 if failed else 0
