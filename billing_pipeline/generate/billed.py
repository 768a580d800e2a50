"""What the generated activity bills, per month, client and GL account, for the ledger.

The finance team's ledger report books what was invoiced, give or take the mistakes the
ledger writer plants. To know what will be invoiced, this bills the generated data with the
pipeline's own functions (ingest, Lua rules, pricing) into a scratch directory: no Dagster,
nothing written beside the generated files.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from billing_pipeline.charging import compute_charges
from billing_pipeline.ingest.activity import build_activity
from billing_pipeline.ingest.landing import dates_around, ingest_landing
from billing_pipeline.invoicing import has_invoice
from billing_pipeline.months import first_day
from billing_pipeline.pricing import price_month
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.rules import RuleEngine
from billing_pipeline.storage import Store

Billed = dict[str, dict[tuple[str, str], Decimal]]


def billed_amounts(landing: Path, ratecards: Path, lua: Path) -> Billed:
    cards, _ = load_ratecards(ratecards)
    timezones = {client_id: card.timezone for client_id, card in cards.items()}
    engine = RuleEngine(lua)
    billed: Billed = defaultdict(lambda: defaultdict(Decimal))
    with tempfile.TemporaryDirectory(prefix="billing-ledger-") as scratch:
        store = Store(Path(scratch))
        result = ingest_landing(landing, store, timezones)
        utc_dates = {d for dates in result.manifest["utc_dates"].to_list() for d in dates}
        days = sorted(dates_around(utc_dates))
        for day in days:
            build_activity(store, day, timezones)
        months = sorted({f"{d:%Y-%m}" for d in days})
        for client_id, card in sorted(cards.items()):
            for month in months:
                outcome = compute_charges(store, engine, card, month)
                if outcome.blocked:
                    continue
                priced = price_month(card, first_day(month), outcome.charges)
                if not has_invoice(outcome.charges.height, priced):
                    continue
                for line in priced.lines:
                    billed[month][(client_id, line.gl_account)] += line.amount
    return {month: dict(amounts) for month, amounts in billed.items()}
