"""Rate cards for the synthetic clients (SPEC §6), pricing every code their rules can emit.

Prices follow published 3PL price sheets: about $2.50-3.00 for the first pick, $0.50-0.75
per additional unit, $25-40 per pallet-month, 8-15 % on top of label cost, and a monthly
fulfillment minimum. Each client gets its own small deviation from the list price.
"""

from __future__ import annotations

import random
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml

from billing_pipeline.generate.clients import Client

MATERIALS = ("BOX_S", "BOX_M", "BOX_L", "POLY_MAILER", "BUBBLE_WRAP", "DUNNAGE")
CONTAINER_SIZES = ("20FT", "40FT", "45FT")
HEAVY_LB = 50

GL_RECEIVING, GL_STORAGE, GL_FULFILLMENT = "4010", "4020", "4030"
GL_VALUE_ADDED, GL_SHIPPING, GL_FEES = "4040", "4050", "4090"

# code -> (list rate in USD, gl_account, description); priced per_unit unless noted below.
_PER_UNIT: dict[str, tuple[str, str, str]] = {
    "RECV_PARCEL": ("4.50", GL_RECEIVING, "Parcel receipt"),
    "RECV_UNIT": ("0.25", GL_RECEIVING, "Received unit"),
    "RECV_CARTON": ("3.75", GL_RECEIVING, "Received carton"),
    "RECV_PALLET": ("12.50", GL_RECEIVING, "Received pallet"),
    "RECV_CONTAINER_20FT": ("395.00", GL_RECEIVING, "20ft container unload"),
    "RECV_CONTAINER_40FT": ("595.00", GL_RECEIVING, "40ft container unload"),
    "RECV_CONTAINER_45FT": ("695.00", GL_RECEIVING, "45ft container unload"),
    "PICK_ORDER": ("2.75", GL_FULFILLMENT, "Order pick, first unit"),
    "PACK_CARTON": ("1.10", GL_FULFILLMENT, "Carton packed"),
    "PACK_INSERT": ("0.20", GL_VALUE_ADDED, "Marketing insert"),
    "MAT_BOX_S": ("0.65", GL_FULFILLMENT, "Small box"),
    "MAT_BOX_M": ("0.95", GL_FULFILLMENT, "Medium box"),
    "MAT_BOX_L": ("1.65", GL_FULFILLMENT, "Large box"),
    "MAT_POLY_MAILER": ("0.28", GL_FULFILLMENT, "Poly mailer"),
    "MAT_BUBBLE_WRAP": ("0.35", GL_FULFILLMENT, "Bubble wrap"),
    "MAT_DUNNAGE": ("0.40", GL_FULFILLMENT, "Void fill"),
    "CANCEL_RESTOCK": ("1.95", GL_FULFILLMENT, "Cancelled after pick, restock"),
    "RETURN_ORDER": ("3.75", GL_FULFILLMENT, "Return processed"),
    "RETURN_UNIT": ("0.65", GL_FULFILLMENT, "Returned unit inspected"),
    "DISPOSAL_UNIT": ("0.45", GL_FULFILLMENT, "Returned unit disposed"),
    "KIT_BUILD": ("0.95", GL_VALUE_ADDED, "Kit assembled"),
    "KIT_COMPONENT": ("0.15", GL_VALUE_ADDED, "Kit component"),
    "LABOR_HOUR": ("48.00", GL_VALUE_ADDED, "Project labor, per hour"),
}
# (rate, aggregate, description): pallets bill on the month's average, shelves and bins
# on the peak, as most 3PL sheets do.
_STORAGE: dict[str, tuple[str, str, str]] = {
    "STORAGE_PALLET": ("32.00", "average", "Pallet storage, per pallet-month"),
    "STORAGE_SHELF": ("11.00", "max", "Shelf storage, per shelf-month"),
    "STORAGE_BIN": ("4.50", "max", "Bin storage, per bin-month"),
}
_ACCOUNT_MGMT = {"dtc": "250.00", "b2b": "400.00", "subscription": "300.00"}
# Codes the fulfillment minimum covers: picking, packing and packaging.
MINIMUM_COVERS = (
    "PICK_ORDER",
    "PICK_ADD_UNIT",
    "PACK_CARTON",
    "PACK_INSERT",
    *(f"MAT_{m}" for m in MATERIALS),
)
CAD_PER_USD = Decimal("1.36")
CENT = Decimal("0.01")


def priced_codes(client: Client) -> set[str]:
    """Every code the client's rules can emit, per docs/charge-codes.md."""
    codes = set(_PER_UNIT) | set(_STORAGE) | {"PICK_ADD_UNIT", "SHIP_LABEL"}
    if client.heavy_parcel:
        codes.add("SHIP_HEAVY")
    return codes


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _charges(client: Client, jitter: dict[str, Decimal], factor: Decimal) -> dict[str, Any]:
    fx = CAD_PER_USD if client.currency == "CAD" else Decimal(1)

    def price(code: str, usd: str) -> str:
        return _money(Decimal(usd) * jitter[code] * factor * fx)

    charges: dict[str, Any] = {}
    for code in sorted(priced_codes(client)):
        if code in _PER_UNIT:
            usd, gl, text = _PER_UNIT[code]
            charges[code] = {
                "model": "per_unit",
                "rate": price(code, usd),
                "description": text,
                "gl_account": gl,
            }
        elif code in _STORAGE:
            usd, aggregate, text = _STORAGE[code]
            charges[code] = {
                "model": "per_unit",
                "aggregate": aggregate,
                "rate": price(code, usd),
                "description": text,
                "gl_account": GL_STORAGE,
            }
        elif code == "PICK_ADD_UNIT":
            charges[code] = {
                "model": "graduated",
                "description": "Additional unit picked",
                "gl_account": GL_FULFILLMENT,
                "tiers": [
                    {"up_to": 25000, "rate": price(code, "0.62")},
                    {"up_to": 100000, "rate": price(code, "0.52")},
                    {"up_to": None, "rate": price(code, "0.42")},
                ],
            }
        elif code == "SHIP_LABEL":
            markup = (Decimal(10) * jitter[code] + (factor - 1) * 100).quantize(Decimal("0.1"))
            charges[code] = {
                "model": "cost_plus",
                "markup_pct": str(min(max(markup, Decimal(8)), Decimal(15))),
                "description": "Shipping label, cost plus handling",
                "gl_account": GL_SHIPPING,
            }
        elif code == "SHIP_HEAVY":
            charges[code] = {
                "model": "per_unit",
                "rate": price(code, "7.50"),
                "description": f"Heavy shipment over {HEAVY_LB} lb",
                "gl_account": GL_SHIPPING,
            }
    charges["ACCOUNT_MGMT"] = {
        "model": "flat",
        "amount": price("ACCOUNT_MGMT", _ACCOUNT_MGMT[client.profile]),
        "description": "Account management",
        "gl_account": GL_FEES,
    }
    return charges


def build_ratecard(
    client: Client, start: date, end: date, seed: int, monthly_fulfillment: float
) -> dict[str, Any]:
    """The rate card of a client for activity in ``[start, end)``.

    About a third of the clients get a second version, a 3-6 % increase from the first of
    a month inside the range, so pricing across a version change gets exercised.
    """
    rng = random.Random(f"ratecard:{seed}:{client.client_id}")
    codes = sorted(priced_codes(client) | {"ACCOUNT_MGMT"})
    jitter = {code: Decimal(str(round(rng.uniform(0.9, 1.1), 3))) for code in codes}
    # The minimum bites for small accounts only: about half a typical month, within list bounds.
    minimum = Decimal(max(500, min(5000, int(monthly_fulfillment * 0.5 / 250) * 250)))
    if client.currency == "CAD":
        minimum = (minimum * CAD_PER_USD).quantize(Decimal(1))
    first = date(start.year, 1, 1)
    versions: list[dict[str, Any]] = [_version(client, first, jitter, Decimal(1), minimum)]
    month_starts = [d for d in _firsts(start, end) if d > start]
    # The second client always gets one, so every range that crosses a month has one.
    if month_starts and (rng.random() < 0.34 or client.index == 1):
        increase = Decimal(100 + rng.randint(3, 6)) / 100
        versions.append(_version(client, month_starts[0], jitter, increase, minimum))
    card: dict[str, Any] = {
        "client_id": client.client_id,
        "name": client.name,
        "currency": client.currency,
        "timezone": client.timezone,
        "rounding": "half_up",
    }
    if client.rules:
        card["rules"] = client.rules
    card["versions"] = versions
    return card


def _version(
    client: Client, effective: date, jitter: dict[str, Decimal], factor: Decimal, minimum: Decimal
) -> dict[str, Any]:
    version: dict[str, Any] = {"effective_from": effective}
    if client.heavy_parcel:
        version["params"] = {"heavy_lb": HEAVY_LB}
    version["charges"] = _charges(client, jitter, factor)
    version["minimums"] = [
        {
            "code": "MIN_FULFILLMENT",
            "covers": list(MINIMUM_COVERS),
            "amount": _money(minimum),
            "description": "Monthly fulfillment minimum",
            "gl_account": GL_FULFILLMENT,
        }
    ]
    return version


def _firsts(start: date, end: date) -> list[date]:
    out = []
    year, month = start.year, start.month
    while True:
        first = date(year, month, 1)
        if first >= end:
            return out
        out.append(first)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def write_ratecard(directory: Path, card: dict[str, Any], seed: int) -> Path:
    path = directory / f"{card['client_id']}.yaml"
    header = f"# Synthetic rate card written by `billing generate` (seed {seed}).\n"
    body = yaml.safe_dump(
        card, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True
    )
    path.write_text(header + body, encoding="utf-8")
    return path
