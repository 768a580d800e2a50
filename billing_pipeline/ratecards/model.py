"""The validated, immutable form of a rate card (SPEC §6).

Everything here has passed validation: amounts are ``Decimal``, dates are ``date``, and a
``RateCard`` is never built from a file with any problem in it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

Model = Literal["per_unit", "graduated", "volume", "package", "cost_plus", "flat"]
Aggregate = Literal["sum", "max", "last", "average"]
Rounding = Literal["half_up", "half_even"]
Category = Literal["handling", "storage", "shipping", "value_added", "fees"]

MODELS: tuple[str, ...] = ("per_unit", "graduated", "volume", "package", "cost_plus", "flat")
AGGREGATES: tuple[str, ...] = ("sum", "max", "last", "average")
ROUNDINGS: tuple[str, ...] = ("half_up", "half_even")
# Invoice order of the groups, and their printed titles.
# A rules file a card may name: a plain NAME.lua in lua/rules/ (no directories, no dots but
# the suffix, nothing hidden). The rule engine resolves names by the same pattern.
RULES_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*\.lua$")
CATEGORIES: tuple[str, ...] = ("handling", "storage", "shipping", "value_added", "fees")
CATEGORY_TITLES: Mapping[str, str] = {
    "handling": "Handling",
    "storage": "Storage",
    "shipping": "Shipping",
    "value_added": "Value-added services",
    "fees": "Fees",
}

# Default category by code prefix (docs/charge-codes.md). A code that matches none is a fee:
# flat account fees (ACCOUNT_MGMT) and anything an analyst invents without saying otherwise.
_CATEGORY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("PICK_", "handling"),
    ("PACK_", "handling"),
    ("MAT_", "handling"),
    ("RECV_", "handling"),
    ("RETURN_", "handling"),
    ("CANCEL_", "handling"),
    ("DISPOSAL_", "handling"),
    ("STORAGE_", "storage"),
    ("SHIP_", "shipping"),
    ("KIT_", "value_added"),
    ("LABOR_", "value_added"),
)


def default_category(code: str) -> str:
    """The invoice group of a charge whose rate card entry names no ``category``."""
    for prefix, category in _CATEGORY_PREFIXES:
        if code.startswith(prefix):
            return category
    return "fees"


def is_per_day(model: str, aggregate: str) -> bool:
    """Priced day by day, each day by its own version (SPEC §6.1 item 3)."""
    return model == "cost_plus" or (model == "per_unit" and aggregate == "sum")


def last_day_of_month(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive upper bound; None = unbounded (only the last tier)
    rate: Decimal


@dataclass(frozen=True)
class ChargeSpec:
    code: str
    model: str
    gl_account: str
    description: str
    category: str
    aggregate: str = "sum"
    rate: Decimal | None = None  # per_unit, package
    amount: Decimal | None = None  # flat
    markup_pct: Decimal | None = None  # cost_plus
    package_size: Decimal | None = None  # package
    tiers: tuple[Tier, ...] = ()  # graduated, volume

    @property
    def per_day(self) -> bool:
        return is_per_day(self.model, self.aggregate)


@dataclass(frozen=True)
class Minimum:
    code: str
    covers: tuple[str, ...] | Literal["all"]
    amount: Decimal
    description: str
    gl_account: str
    category: str = "fees"


@dataclass(frozen=True)
class Version:
    effective_from: date
    params: Mapping[str, object] = field(default_factory=dict, hash=False)
    charges: Mapping[str, ChargeSpec] = field(default_factory=dict, hash=False)
    minimums: tuple[Minimum, ...] = ()


@dataclass(frozen=True)
class RateCard:
    client_id: str
    name: str
    currency: str
    minor_units: int
    timezone: str
    rounding: str
    rules: str
    versions: tuple[Version, ...]  # sorted by effective_from, at least one
    sha256: str
    path: Path

    def version_on(self, day: date) -> Version | None:
        """The version in effect on ``day``: latest ``effective_from`` <= day (SPEC §6.1 item 2)."""
        found: Version | None = None
        for version in self.versions:
            if version.effective_from > day:
                break
            found = version
        return found

    def closing_version(self, month: date) -> Version | None:
        """The version in effect on the last day of ``month`` (any day of the month will do)."""
        return self.version_on(last_day_of_month(month))

    @property
    def first_effective(self) -> date:
        return self.versions[0].effective_from
