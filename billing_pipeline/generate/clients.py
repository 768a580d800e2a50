"""Synthetic clients: who they are, where they ship from, and how much they do.

Ids depend only on the client's index so that the same ``--clients N`` gives the same
client ids whatever the seed; sizes, warehouses and time zones depend on the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Profile = Literal["dtc", "b2b", "subscription"]

# Warehouse code -> IANA zone of the building (shift hours follow the building's clock).
WAREHOUSES: dict[str, str] = {
    "NJ1": "America/New_York",
    "PA3": "America/New_York",
    "IL1": "America/Chicago",
    "TX2": "America/Chicago",
    "CO1": "America/Denver",
    "CA1": "America/Los_Angeles",
    "NV2": "America/Los_Angeles",
}

# Warehouses nearest to a client's home zone come first: primary site, then overflow.
_NEAR: dict[str, tuple[str, ...]] = {
    "America/New_York": ("NJ1", "PA3", "IL1", "TX2"),
    "America/Toronto": ("NJ1", "PA3", "IL1"),
    "Europe/London": ("NJ1", "PA3", "CA1"),
    "America/Chicago": ("IL1", "TX2", "PA3", "CO1"),
    "America/Denver": ("CO1", "TX2", "NV2"),
    "America/Los_Angeles": ("CA1", "NV2", "CO1", "TX2"),
}

_US_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
_US_ZONE_WEIGHTS = (0.38, 0.27, 0.10, 0.25)

# Profile pattern over client indexes: about half DTC, a third B2B, the rest subscription.
_PROFILE_CYCLE: tuple[Profile, ...] = (
    "dtc",
    "b2b",
    "subscription",
    "dtc",
    "dtc",
    "b2b",
    "dtc",
    "subscription",
    "b2b",
    "dtc",
)

_NAMES: dict[Profile, tuple[tuple[str, str], ...]] = {
    "dtc": (
        ("acme-outdoor", "Acme Outdoor Co."),
        ("sunny-skin", "Sunny Skin Labs"),
        ("pawprint-pets", "Pawprint Pets"),
        ("urban-thread", "Urban Thread Apparel"),
        ("lumen-home", "Lumen Home Goods"),
        ("trailhead-gear", "Trailhead Gear"),
        ("coastal-candle", "Coastal Candle Co."),
        ("kindred-kids", "Kindred Kids"),
        ("velvet-bloom", "Velvet Bloom Beauty"),
        ("northpeak-nutrition", "Northpeak Nutrition"),
    ),
    "b2b": (
        ("bluebird-b2b", "Bluebird Wholesale"),
        ("granite-supply", "Granite Industrial Supply"),
        ("harbor-foods", "Harbor Foods Distribution"),
        ("ironwood-tools", "Ironwood Tools"),
        ("prairie-packaging", "Prairie Packaging"),
        ("summit-medical", "Summit Medical Supply"),
        ("keystone-hardware", "Keystone Hardware"),
        ("delta-beverage", "Delta Beverage Co."),
    ),
    "subscription": (
        ("monthly-munch", "Monthly Munch Box"),
        ("petal-crate", "Petal Crate"),
        ("brewbox-club", "BrewBox Club"),
        ("glowkit-beauty", "GlowKit Beauty Box"),
        ("story-sprouts", "Story Sprouts Book Club"),
        ("spice-route-box", "Spice Route Box"),
    ),
}

_WORDS_A = (
    "amber",
    "birch",
    "cedar",
    "dune",
    "ember",
    "fern",
    "gale",
    "hazel",
    "indigo",
    "juniper",
)
_WORDS_B = ("lane", "works", "goods", "supply", "house", "market", "co", "collective", "labs")
_SUFFIX: dict[Profile, str] = {"dtc": "", "b2b": " Wholesale", "subscription": " Box"}

# Ids that must never be configured: the generator sends them events as the
# "unknown client" fault (a brand onboarded in the WMS before its rate card exists).
UNCONFIGURED_CLIENTS = ("pinecrest-home", "ghost-apparel", "newleaf-organics")


@dataclass(frozen=True)
class Client:
    index: int
    client_id: str
    name: str
    profile: Profile
    timezone: str
    currency: str
    warehouses: tuple[str, ...]
    warehouse_shares: tuple[float, ...]  # of the client's volume, sums to 1
    share: float  # of the total volume, sums to 1 over all clients
    order_prefix: str
    heavy_parcel: bool

    @property
    def rules(self) -> str | None:
        return "heavy_parcel.lua" if self.heavy_parcel else None


def client_identity(index: int) -> tuple[str, str, Profile]:
    """Deterministic (id, display name, profile) for the index-th client."""
    profile = _PROFILE_CYCLE[index % len(_PROFILE_CYCLE)]
    seen = sum(1 for i in range(index) if _PROFILE_CYCLE[i % len(_PROFILE_CYCLE)] == profile)
    names = _NAMES[profile]
    if seen < len(names):
        client_id, name = names[seen]
        return client_id, name, profile
    extra = seen - len(names)
    a = _WORDS_A[extra % len(_WORDS_A)]
    b = _WORDS_B[(extra // len(_WORDS_A)) % len(_WORDS_B)]
    round_ = extra // (len(_WORDS_A) * len(_WORDS_B))
    # The profile letter keeps ids unique across profiles that share the word lists.
    client_id = f"{a}-{b}-{profile[0]}{round_ + 1}"
    name = f"{a.title()} {b.title()}{_SUFFIX[profile]} {round_ + 1}"
    return client_id, name, profile


def build_clients(count: int, seed: int) -> list[Client]:
    rng = random.Random(f"clients:{seed}")
    # Zipf-like sizes: a few large accounts and a long tail; ranks shuffled by seed so the
    # biggest client is not always the first one.
    ranks = list(range(1, count + 1))
    rng.shuffle(ranks)
    raw = [1.0 / (r**1.1) for r in ranks]
    total = sum(raw)
    clients: list[Client] = []
    for i in range(count):
        client_id, name, profile = client_identity(i)
        currency = "USD"
        if count >= 8 and i == 7:
            zone, currency = "America/Toronto", "CAD"
        elif count >= 5 and i == 4:
            zone = "Europe/London"
        else:
            zone = rng.choices(_US_ZONES, _US_ZONE_WEIGHTS)[0]
        near = _NEAR[zone]
        n_wh = rng.choices((1, 2, 3), (0.45, 0.4, 0.15))[0]
        warehouses = near[:n_wh]
        shares = {1: (1.0,), 2: (0.7, 0.3), 3: (0.6, 0.25, 0.15)}[n_wh]
        initials = "".join(part[0] for part in client_id.split("-")).upper()
        clients.append(
            Client(
                index=i,
                client_id=client_id,
                name=name,
                profile=profile,
                timezone=zone,
                currency=currency,
                warehouses=tuple(warehouses),
                warehouse_shares=shares,
                share=raw[i] / total,
                order_prefix=f"SO-{initials}{i}-",
                heavy_parcel=profile == "b2b",
            )
        )
    return clients
