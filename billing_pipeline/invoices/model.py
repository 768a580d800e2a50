"""What the invoice files need beside the priced month."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
STATUSES = ("draft", "final")


@dataclass(frozen=True)
class ActivitySummary:
    """The activity behind one invoice line (keyed by its line_no)."""

    events: int
    event_types: Mapping[str, int] = field(default_factory=dict, hash=False)
    first_date: date | None = None
    last_date: date | None = None
    example_event_ids: Sequence[str] = ()


def invoice_id(client_id: str, period: str) -> str:
    """``INV-<CLIENT_ID upper>-<YYYYMM>`` (SPEC §7)."""
    match = PERIOD.match(period)
    if not match:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return f"INV-{client_id.upper()}-{match.group(1)}{match.group(2)}"
