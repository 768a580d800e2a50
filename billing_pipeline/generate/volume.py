"""How much activity happens when: weekday, season, subscription spikes, shift hours.

``events_per_day`` is the total over all clients for an average weekday in an ordinary
month, so the order rate of a client is derived backwards from its expected events per order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from billing_pipeline.generate.clients import Client, Profile

# Mon..Sun: warehouses run a skeleton crew at weekends.
WEEKDAY_FACTOR = (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.35)
# Peak season in Nov-Dec, post-holiday slump in January.
MONTH_FACTOR = {1: 0.85, 2: 0.9, 10: 1.05, 11: 1.3, 12: 1.45}


def _normalize(weights: list[float]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(w / total for w in weights)


# Two shifts, 06:00-22:00 local, a lunch dip and a thin night crew.
ORDER_CURVE = _normalize(
    [
        *(0.2, 0.1, 0.1, 0.1, 0.3, 1.0, 3.0, 5.5, 7.5, 8.5, 8.5, 7.0),
        *(6.5, 8.0, 8.5, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5),
    ]
)
# Dock doors open 06:00-16:00 local.
DOCK_CURVE = _normalize([0.0] * 6 + [2, 4, 5, 5, 5, 4, 4, 4, 3, 2] + [0.0] * 8)


@dataclass(frozen=True)
class ProfileRates:
    cancel_before_pick: float
    cancel_after_pick: float
    returns: float  # returns per shipped order
    receipts: float  # receipts per order
    putaways_per_receipt: float
    kits_per_order: float
    labor_per_day: float
    adjust_per_day: float
    # Even a small brand gets a few inbound shipments a week, whatever it sells.
    min_receipts_per_day: float


RATES: dict[Profile, ProfileRates] = {
    "dtc": ProfileRates(0.008, 0.006, 0.035, 0.004, 2.5, 0.0, 0.4, 3.0, 0.8),
    "b2b": ProfileRates(0.004, 0.004, 0.01, 0.08, 2.5, 0.0, 0.6, 2.0, 0.6),
    "subscription": ProfileRates(0.006, 0.004, 0.02, 0.01, 2.5, 0.002, 0.5, 2.0, 0.6),
}


def events_per_order(profile: Profile) -> float:
    r = RATES[profile]
    shipped = 1.0 - r.cancel_before_pick - r.cancel_after_pick
    lifecycle = 3 * shipped + r.cancel_before_pick + 2 * r.cancel_after_pick
    return lifecycle + r.returns * shipped + r.receipts * (1 + r.putaways_per_receipt)


def fixed_events_per_day(client: Client) -> float:
    r = RATES[client.profile]
    snapshots = 3 * len(client.warehouses)
    receipts = r.min_receipts_per_day * (1 + r.putaways_per_receipt)
    return snapshots + r.labor_per_day + r.adjust_per_day + receipts


def orders_per_day(client: Client, events_per_day: int) -> float:
    """Orders on an ordinary weekday so that all clients together make ``events_per_day``."""
    budget = events_per_day * client.share - fixed_events_per_day(client)
    return max(0.0, budget) / events_per_order(client.profile)


def day_factor(day: date, profile: Profile) -> float:
    factor = WEEKDAY_FACTOR[day.weekday()] * MONTH_FACTOR.get(day.month, 1.0)
    if profile == "subscription":
        # Boxes ship in the first three days of the month; the rest is replacements
        # and new sign-ups. 3 x 3.0 + 27 x 0.78 averages about 1 over a month.
        factor *= 3.0 if day.day <= 3 else 0.78
    return factor


def kit_factor(day: date) -> float:
    """Subscription kitting runs in the last week of the month, ahead of the spike."""
    return 6.0 if day.day >= 24 else (1.5 if day.day <= 3 else 0.2)
