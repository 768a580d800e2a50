"""Which clients ingestion knows, and in which time zone (SPEC §4, §6).

A client is *known* when a rate card file exists for it, good or bad: ``unknown_client``
means "no rate card for the client" (SPEC §4), and a typo in a rate card must not send a
month of that client's events to quarantine. The billing time zone comes from the good card;
for a refused card it is read from the file's ``timezone`` field when that field is still a
readable IANA zone. A known client without a readable zone keeps its events valid, but its
activity partitions cannot be dated: they are left as they are until the card is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from billing_pipeline.ratecards import RateCard, RateCardError

_MAX_CARD_BYTES = 1 << 20


@dataclass(frozen=True)
class ClientZones:
    """``timezones``: known clients whose zone is readable; ``unzoned``: known, zone unreadable."""

    timezones: dict[str, str] = field(default_factory=dict)
    unzoned: frozenset[str] = frozenset()

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self.timezones) | self.unzoned


def client_zones(
    directory: Path, cards: Mapping[str, RateCard], bad: Mapping[str, RateCardError]
) -> ClientZones:
    """Known clients of a rate cards directory (``load_ratecards``' good and bad cards)."""
    timezones = {client_id: card.timezone for client_id, card in cards.items()}
    found: dict[str, set[str | None]] = {}
    for name in bad:
        client_id = Path(name).stem
        if client_id in timezones:
            continue
        found.setdefault(client_id, set()).add(card_timezone(Path(directory) / name))
    unzoned = set()
    for client_id, zones in found.items():
        # Two refused files for one client (acme.yaml and acme.yml) must agree on the zone.
        if len(zones) == 1 and None not in zones:
            timezones[client_id] = zones.pop()
        else:
            unzoned.add(client_id)
    return ClientZones(dict(sorted(timezones.items())), frozenset(unzoned))


def card_timezone(path: Path) -> str | None:
    """The ``timezone`` of a rate card file that may be broken elsewhere; None if unreadable."""
    try:
        if path.stat().st_size > _MAX_CARD_BYTES:
            return None
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None
    zone = doc.get("timezone") if isinstance(doc, dict) else None
    if not isinstance(zone, str) or not zone:
        return None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return zone
