"""Value types of the charge engine's public API."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

QUANTITY = pl.Decimal(38, 6)

CHARGES_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "activity_date": pl.Date(),
    "event_type": pl.String(),
    "charge_code": pl.String(),
    "quantity": QUANTITY,
    "basis": QUANTITY,
    "memo": pl.String(),
    "rules_file": pl.String(),
    "rules_sha256": pl.String(),
    "ratecard_version": pl.Date(),
}

ERRORS_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "activity_date": pl.Date(),
    "event_type": pl.String(),
    "rules_file": pl.String(),
    "line": pl.Int64(),
    "message": pl.String(),
}

EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "client_id",
    "warehouse_id",
    "occurred_at_raw",
    "activity_date",
    "payload",
)


@dataclass(frozen=True)
class Budgets:
    """Limits on rule code; each breach becomes a rule error for the event at fault."""

    instructions: int = 1_000_000  # Lua VM instructions per handler call
    memory_bytes: int = 256 * 1024**2  # per Lua runtime
    batch_seconds: float = 120.0  # wall clock per batch (C-level runaway, e.g. string.find)


@dataclass(frozen=True)
class RateVersion:
    """What the engine needs of a rate card version."""

    effective_from: datetime.date
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    charges: pl.DataFrame
    errors: pl.DataFrame


class RuleLoadError(Exception):
    """A rules file that cannot be loaded (missing, syntax error, bad return value)."""


def empty_charges() -> pl.DataFrame:
    return pl.DataFrame(schema=CHARGES_SCHEMA)


def empty_errors() -> pl.DataFrame:
    return pl.DataFrame(schema=ERRORS_SCHEMA)
