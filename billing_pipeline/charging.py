"""Charges for one client-month: activity through the client's Lua rules (SPEC §5, §4.1).

``compute_charges`` writes nothing, so ``billing rules diff`` can preview a rule fix with the
same code path the asset uses; ``write_charges`` then stores the datasets and a small state
file the invoice step reads (fingerprints, rule-error and unpriced counts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import polars as pl

from billing_pipeline.ingest.activity import read_activity
from billing_pipeline.months import first_day, month_days
from billing_pipeline.pricing import price_month
from billing_pipeline.ratecards import RateCard
from billing_pipeline.rules import (
    CHARGES_SCHEMA,
    ERRORS_SCHEMA,
    RateVersion,
    RuleEngine,
    RuleLoadError,
)
from billing_pipeline.storage import (
    Store,
    check_client_id,
    check_month,
    remove_tree,
    write_bytes,
    write_parquet,
)


@dataclass
class ChargesOutcome:
    month: str  # YYYY-MM
    client_id: str
    rules_file: str
    rules_sha256: str
    ratecard_sha256: str
    events_sha256: str
    events: int
    events_by_type: dict[str, int]
    charges: pl.DataFrame
    errors: pl.DataFrame
    unpriced: dict[str, int] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        """SPEC §5: rule errors or unpriced charges mean no invoice for this client-month."""
        return self.errors.height > 0 or bool(self.unpriced)

    def charges_by_code(self) -> dict[str, int]:
        if self.charges.is_empty():
            return {}
        return dict(self.charges["charge_code"].value_counts().sort("charge_code").iter_rows())

    def state(self) -> dict[str, object]:
        return {
            "month": self.month,
            "client_id": self.client_id,
            "rules_file": self.rules_file,
            "rules_sha256": self.rules_sha256,
            "ratecard_sha256": self.ratecard_sha256,
            "events_sha256": self.events_sha256,
            "events": self.events,
            "charges": self.charges.height,
            "rule_errors": self.errors.height,
            "unpriced": self.unpriced,
        }


def events_fingerprint(events: pl.DataFrame) -> str:
    """sha256 over the month's events (id, type, date, payload), independent of row order."""
    digest = hashlib.sha256()
    if not events.is_empty():
        keys = events.select(
            pl.concat_str(
                [
                    pl.col("event_id"),
                    pl.col("event_type"),
                    pl.col("activity_date").cast(pl.Utf8),
                    pl.col("payload"),
                ],
                separator="\x1f",
            ).sort()
        ).to_series()
        for key in keys:
            digest.update(key.encode())
            digest.update(b"\n")
    return digest.hexdigest()


def compute_charges(store: Store, engine: RuleEngine, card: RateCard, month: str) -> ChargesOutcome:
    events = read_activity(store, card.client_id, month_days(month))
    versions = [RateVersion(v.effective_from, dict(v.params)) for v in card.versions]
    try:
        rules_sha = engine.fingerprint(card.rules)
    except RuleLoadError:
        # A rules file that is missing or misnamed: evaluate raises it again just below and
        # this client's events are in error, not the run of every client's charges.
        rules_sha = ""
    try:
        evaluation = engine.evaluate(
            events, client_id=card.client_id, rules_file=card.rules, versions=versions
        )
        charges, errors = evaluation.charges, evaluation.errors
    except RuleLoadError as exc:
        # The rules file itself is broken: every event of the month is in error.
        charges = pl.DataFrame(schema=CHARGES_SCHEMA)
        errors = _load_failure(events, card.rules, str(exc))
    priced = price_month(card, first_day(month), charges)
    by_type = (
        dict(events["event_type"].value_counts().sort("event_type").iter_rows())
        if not events.is_empty()
        else {}
    )
    return ChargesOutcome(
        month=month,
        client_id=card.client_id,
        rules_file=card.rules,
        rules_sha256=rules_sha,
        ratecard_sha256=card.sha256,
        events_sha256=events_fingerprint(events),
        events=events.height,
        events_by_type=by_type,
        charges=charges,
        errors=errors,
        unpriced=dict(sorted(priced.unpriced.items())),
    )


def _load_failure(events: pl.DataFrame, rules_file: str, message: str) -> pl.DataFrame:
    rows = events.select(
        "event_id",
        "activity_date",
        "event_type",
        pl.lit(rules_file).alias("rules_file"),
        pl.lit(None, pl.Int64).alias("line"),
        pl.lit(message).alias("message"),
    )
    if rows.is_empty():
        rows = pl.DataFrame(
            [
                {
                    "event_id": None,
                    "activity_date": None,
                    "event_type": None,
                    "rules_file": rules_file,
                    "line": None,
                    "message": message,
                }
            ],
            schema=dict(ERRORS_SCHEMA),
        )
    return rows.cast(dict(ERRORS_SCHEMA))


def write_charges(store: Store, outcome: ChargesOutcome) -> None:
    """Store the charges and rule_errors partitions (rule_errors only when there are any)."""
    month, client_id = outcome.month, outcome.client_id
    write_parquet(outcome.charges, store.charges_file(month, client_id))
    errors_file = store.rule_errors_file(month, client_id)
    if outcome.errors.is_empty():
        remove_tree(errors_file.parent)
    else:
        write_parquet(outcome.errors, errors_file)
    state = json.dumps(outcome.state(), indent=2, sort_keys=True) + "\n"
    write_bytes(state.encode(), charges_state_file(store, month, client_id))


def charges_state_file(store: Store, month: str, client_id: str):
    return (
        store.root
        / "_state"
        / "charges"
        / check_month(month)
        / check_client_id(client_id)
        / "inputs.json"
    )


def read_charges_state(store: Store, month: str, client_id: str) -> dict | None:
    path = charges_state_file(store, month, client_id)
    return json.loads(path.read_text()) if path.exists() else None
