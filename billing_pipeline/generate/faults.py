"""Bad lines a real WMS feed contains, planted at a given rate and counted by kind.

Each fault is an *extra* line next to a good one (never a replacement), so order lifecycles
stay whole. Fault lines get event ids of their own (``evt:<WH>:f<n>``), except the
conflicting duplicates, which on purpose reuse the id of an earlier pick of the same
warehouse with a changed payload. Every line read by the pipeline should end as
valid + duplicate + quarantined; ``QUARANTINED`` and ``DUPLICATES`` say which kinds go where.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter

from billing_pipeline.catalog import CATALOG, ENVELOPE_FIELDS
from billing_pipeline.generate.clients import UNCONFIGURED_CLIENTS, Client
from billing_pipeline.generate.clock import Clock

INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNKNOWN_CLIENT = "unknown_client"
DUPLICATE_CONFLICT = "duplicate_conflict"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
REDELIVERY = "redelivery"  # lines of a re-delivered file: exact duplicates
LATE_FILE = "late_file"  # lines of the file that landed a day late: valid events

LINE_KINDS = (
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_FIELD,
    UNKNOWN_CLIENT,
    DUPLICATE_CONFLICT,
    UNKNOWN_EVENT_TYPE,
)
_WEIGHTS = (15, 10, 20, 25, 10, 12, 8)
FAULT_KINDS = (*LINE_KINDS, REDELIVERY, LATE_FILE)
QUARANTINED = (
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_FIELD,
    UNKNOWN_CLIENT,
    DUPLICATE_CONFLICT,
)
DUPLICATES = (REDELIVERY,)

_NOT_OBJECTS = ("[1,2]", '"heartbeat"', "null", "42", "[]", "true")
_UNKNOWN_TYPES = (
    (
        "vas.gift_wrap",
        lambda r: {"order_id": f"SO-GW-{r.randrange(10**6)}", "units": r.randint(1, 3)},
    ),
    ("vas.photo_shoot", lambda r: {"skus": r.randint(1, 12), "hours": "1.50"}),
    ("order.held", lambda r: {"order_id": f"SO-H-{r.randrange(10**6)}", "reason": "address_check"}),
)
# (event type, payload field, bad value) per invalid-field variant; one broken rule each.
_BAD_PAYLOAD = (
    ("order.picked", "channel", "retail"),
    ("receipt.completed", "receipt_type", "truckload"),
    ("putaway.completed", "location_type", "floor"),
    ("return.processed", "disposition", "resell"),
    ("order.cancelled", "stage", "after_ship"),
    ("receipt.completed", "units", -12),
    ("order.picked", "units", 0),
    ("inventory.snapshot", "locations", -3),
    ("order.shipped", "label_cost", "7.4200001"),
    ("order.shipped", "label_cost", "7,42"),
    ("order.shipped", "zone", 12),
    ("inventory.snapshot", "cubic_feet", "12.3456789"),
    ("labor.logged", "hours", "-1.00"),
)
_BAD_TIMES = ("{d}T{t}", "{m}/{dd}/{y} {t}", "{y}-13-01T{t}Z", "{d}T25:00:00Z")


def sample_payload(rng: random.Random, event_type: str) -> dict[str, object]:
    """A small valid payload of a catalog type, as base for a mutated fault line."""
    n = rng.randint(1, 40)
    samples: dict[str, dict[str, object]] = {
        "receipt.completed": {
            "asn_id": f"ASN-F{n}",
            "receipt_type": "carton",
            "units": n * 12,
            "cartons": n,
            "pallets": 0,
        },
        "putaway.completed": {"sku": f"SKU-F{n}", "units": n, "location_type": "shelf"},
        "inventory.snapshot": {
            "location_type": "bin",
            "locations": n,
            "units": n * 9,
            "cubic_feet": "14.5",
        },
        "order.picked": {"order_id": f"SO-F{n}", "channel": "dtc", "lines": 1, "units": 2},
        "order.packed": {
            "order_id": f"SO-F{n}",
            "cartons": 1,
            "materials": [{"code": "BOX_S", "qty": 1}],
            "inserts": 0,
        },
        "order.shipped": {
            "order_id": f"SO-F{n}",
            "carrier": "UPS",
            "service": "Ground",
            "tracking_number": f"1ZF{n:012d}",
            "weight_lb": "2.4",
            "zone": 5,
            "label_cost": "8.91",
        },
        "return.processed": {"rma_id": f"RMA-F{n}", "units": 1, "disposition": "restock"},
        "kit.assembled": {"kit_sku": f"KIT-F{n}", "kits": n, "components_per_kit": 3},
        "labor.logged": {"task": "relabel", "hours": "1.25"},
        "inventory.adjusted": {"sku": f"SKU-F{n}", "delta_units": -n, "reason": "damaged"},
        "order.cancelled": {"order_id": f"SO-F{n}", "stage": "before_pick"},
    }
    return samples[event_type]


class FaultInjector:
    def __init__(
        self, rate: float, seed: int, clock: Clock, clients_at: dict[str, list[Client]]
    ) -> None:
        self.rate = rate
        self.rng = random.Random(f"faults:{seed}")
        self.clock = clock
        self.clients_at = clients_at
        self.counts: Counter[str] = Counter()
        self._serial = 0
        # Picks remembered per warehouse: ``_fresh`` this hour, ``_ring`` earlier hours. A
        # conflicting copy only reuses picks of earlier hours, so it always lands in a later
        # file of the same warehouse, after its original in path order.
        self._fresh: dict[str, list[dict[str, object]]] = {}
        self._ring: dict[str, list[dict[str, object]]] = {}

    def gap(self) -> int:
        """Lines until the next fault: geometric, so faults hit ``rate`` of the lines."""
        if self.rate <= 0:
            return -1  # never reaches zero
        if self.rate >= 1:
            return 1
        u = self.rng.random()
        return 1 + int(math.log(1.0 - u) / math.log(1.0 - self.rate))

    def remember_pick(self, warehouse: str, event: dict[str, object]) -> None:
        self._fresh.setdefault(warehouse, []).append(event)

    def advance(self) -> None:
        """The generation hour is over: its picks may now be copied with a conflict."""
        for warehouse, picks in self._fresh.items():
            ring = self._ring.setdefault(warehouse, [])
            ring.extend(picks)
            del ring[:-256]
        self._fresh = {}

    def line(self, warehouse: str, hour: int) -> str:
        """One fault line for a file of ``warehouse`` at ``hour``, counted by kind."""
        rng = self.rng
        kind = rng.choices(LINE_KINDS, _WEIGHTS)[0]
        if kind == DUPLICATE_CONFLICT and not self._ring.get(warehouse):
            kind = INVALID_JSON  # nothing earlier to conflict with yet
        self.counts[kind] += 1
        if kind == NOT_AN_OBJECT:
            return rng.choice(_NOT_OBJECTS) + "\n"
        if kind == DUPLICATE_CONFLICT:
            original = rng.choice(self._ring[warehouse])
            payload = dict(original["payload"])  # type: ignore[call-overload]
            payload["units"] = int(payload["units"]) + rng.randint(1, 5)
            return _dump({**original, "payload": payload})
        event = self._base_event(warehouse, hour)
        if kind == INVALID_JSON:
            text = _dump(event)
            return text[: rng.randint(10, len(text) - 3)] + "\n"
        if kind == MISSING_FIELD:
            if rng.random() < 0.5:
                del event[rng.choice(ENVELOPE_FIELDS)]
            else:
                payload = event["payload"]
                assert isinstance(payload, dict)
                required = [f.name for f in CATALOG[str(event["event_type"])] if f.required]
                del payload[rng.choice(required)]
        elif kind == INVALID_FIELD:
            self._break_field(event)
        elif kind == UNKNOWN_CLIENT:
            event["client_id"] = rng.choice(UNCONFIGURED_CLIENTS)
        elif kind == UNKNOWN_EVENT_TYPE:
            event_type, make = rng.choice(_UNKNOWN_TYPES)
            event["event_type"] = event_type
            event["payload"] = make(rng)
        return _dump(event)

    def _base_event(self, warehouse: str, hour: int) -> dict[str, object]:
        rng = self.rng
        self._serial += 1
        event_type = rng.choice(sorted(CATALOG))
        client = rng.choice(self.clients_at[warehouse])
        return {
            "event_id": f"evt:{warehouse}:f{self._serial}",
            "event_type": event_type,
            "occurred_at": self.clock.stamp(hour * 3600 + rng.randrange(3600)),
            "client_id": client.client_id,
            "warehouse_id": warehouse,
            "payload": sample_payload(rng, event_type),
        }

    def _break_field(self, event: dict[str, object]) -> None:
        rng = self.rng
        variant = rng.randrange(len(_BAD_PAYLOAD) + 4)
        if variant < len(_BAD_PAYLOAD):
            event_type, name, value = _BAD_PAYLOAD[variant]
            event["event_type"] = event_type
            payload = sample_payload(rng, event_type)
            payload[name] = value
            event["payload"] = payload
        elif variant == len(_BAD_PAYLOAD):
            stamp = str(event["occurred_at"])
            y, m, dd, t = stamp[:4], stamp[5:7], stamp[8:10], stamp[11:19]
            event["occurred_at"] = rng.choice(_BAD_TIMES).format(d=stamp[:10], t=t, y=y, m=m, dd=dd)
        elif variant == len(_BAD_PAYLOAD) + 1:
            event["client_id"] = str(event["client_id"]).title()  # Acme-Outdoor
        elif variant == len(_BAD_PAYLOAD) + 2:
            event["warehouse_id"] = str(event["warehouse_id"]).lower()
        else:
            event["event_id"] = f"evt {self._serial}"  # a space is outside the id alphabet


def _dump(event: dict[str, object]) -> str:
    return json.dumps(event, separators=(",", ":")) + "\n"
