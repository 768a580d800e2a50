"""The event catalog, schema_version 1 (SPEC §3): envelope and payload fields per event type.

One table drives payload validation (the Pandera schemas are built from it), the coverage
report (catalog versus unknown types) and the demo generator, so the three cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "int", "dec", "enum", "materials"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool = True
    minimum: int | None = None  # for int and dec: inclusive lower bound
    maximum: int | None = None  # for int: inclusive upper bound
    positive: bool = False  # for dec: strictly greater than zero
    choices: tuple[str, ...] = ()  # for enum

    def rule(self) -> str:
        """The rule in words, as the quarantine detail names it."""
        if self.kind == "enum":
            return "one of " + ", ".join(self.choices)
        if self.kind == "materials":
            return "a list of {code: string, qty: integer >= 1}"
        if self.kind == "str":
            return "a string"
        noun = "an integer" if self.kind == "int" else "a decimal"
        if self.positive:
            return f"{noun} > 0"
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"{noun} >= {self.minimum}"
        return noun


def _s(name: str, required: bool = True) -> Field:
    return Field(name, "str", required)


def _i(name: str, minimum: int | None = None, maximum: int | None = None, **kw: bool) -> Field:
    return Field(name, "int", minimum=minimum, maximum=maximum, **kw)


def _d(name: str, *, minimum: int | None = None, positive: bool = False) -> Field:
    return Field(name, "dec", minimum=minimum, positive=positive)


def _e(name: str, *choices: str, required: bool = True) -> Field:
    return Field(name, "enum", required, choices=choices)


LOCATION_TYPES = ("pallet", "shelf", "bin")

CATALOG: dict[str, tuple[Field, ...]] = {
    "receipt.completed": (
        _s("asn_id"),
        _e("receipt_type", "parcel", "carton", "pallet", "container"),
        _i("units", 0),
        _i("cartons", 0),
        _i("pallets", 0),
        _e("container_size", "20ft", "40ft", "45ft", required=False),
    ),
    "putaway.completed": (_s("sku"), _i("units", 0), _e("location_type", *LOCATION_TYPES)),
    "inventory.snapshot": (
        _e("location_type", *LOCATION_TYPES),
        _i("locations", 0),
        _i("units", 0),
        _d("cubic_feet", minimum=0),
    ),
    "order.picked": (
        _s("order_id"),
        _e("channel", "dtc", "b2b", "wholesale"),
        _i("lines", 1),
        _i("units", 1),
    ),
    "order.packed": (
        _s("order_id"),
        _i("cartons", 1),
        Field("materials", "materials"),
        _i("inserts", 0),
    ),
    "order.shipped": (
        _s("order_id"),
        _s("carrier"),
        _s("service"),
        _s("tracking_number"),
        _d("weight_lb", positive=True),
        Field("zone", "int", required=False, minimum=1, maximum=9),
        _d("label_cost", minimum=0),
    ),
    "return.processed": (
        _s("rma_id"),
        _i("units", 1),
        _e("disposition", "restock", "dispose", "inspect"),
    ),
    "kit.assembled": (_s("kit_sku"), _i("kits", 1), _i("components_per_kit", 1)),
    "labor.logged": (
        _e("task", "special_project", "cycle_count", "relabel", "inspection", "other"),
        _d("hours", positive=True),
        _s("note", required=False),
    ),
    "inventory.adjusted": (_s("sku"), _i("delta_units"), _s("reason")),
    "order.cancelled": (_s("order_id"), _e("stage", "before_pick", "after_pick")),
}

# Event types whose payload names an order (``order_id``): staged and stored as a column of
# their own (``ingest.activity``), which reconciliation joins on.
ORDER_ID_TYPES = tuple(
    sorted(t for t, fields in CATALOG.items() if any(f.name == "order_id" for f in fields))
)
ENVELOPE_FIELDS = ("event_id", "event_type", "occurred_at", "client_id", "warehouse_id", "payload")
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
WAREHOUSE_ID_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{0,31}$"
SCHEMA_VERSIONS = (1,)


def is_catalog_type(event_type: str) -> bool:
    return event_type in CATALOG
