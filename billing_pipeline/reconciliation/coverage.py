"""Coverage: which event types the rules bill, and how many events made a charge (SPEC §9).

Status of a (client, event_type):

- ``billed``: the client's rules file holds a handler for the type;
- ``not_billable``: the rules say ``false`` for it;
- ``unhandled``: no key, and the type is in the catalog (SPEC §3);
- ``unknown_type``: no key, and the type is not in the catalog;
- ``rules_not_loaded`` (an extension): the rules file does not load, so nothing can be
  said; every event of that client-month is a rule error already.

Statuses come from the rules as they are now (the report is what an analyst acts on);
``charged_events`` from the charges as materialized. After a rule edit and before the
backfill the two can disagree; ``billing rules diff`` shows by how much.
"""

from __future__ import annotations

from collections.abc import Mapping

from billing_pipeline.catalog import is_catalog_type
from billing_pipeline.reconciliation.day_digests import DayDigest

COVERAGE_HEADER = ("period", "client_id", "event_type", "events", "charged_events", "status")


def type_status(event_type: str, kinds: Mapping[str, str] | None) -> str:
    """The coverage status of one event type under a rules file's kinds (None: not loaded)."""
    if kinds is None:
        return "rules_not_loaded"
    kind = kinds.get(event_type)
    if kind == "handler":
        return "billed"
    if kind == "false":
        return "not_billable"
    return "unhandled" if is_catalog_type(event_type) else "unknown_type"


def coverage_rows(
    month: str, client_id: str, digest: DayDigest, kinds: Mapping[str, str] | None
) -> list[tuple[str, ...]]:
    """One row per event type with valid events in the month, sorted by type; ``digest``
    counts them and those that produced at least one charge line."""
    return [
        (
            month,
            client_id,
            event_type,
            str(digest.events[event_type]),
            str(digest.charged.get(event_type, 0)),
            type_status(event_type, kinds),
        )
        for event_type in sorted(digest.events)
    ]
