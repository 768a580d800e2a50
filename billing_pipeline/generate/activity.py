"""Warehouse activity, one UTC hour at a time, written straight to the landing files.

The hot path is the order loop: JSON lines are built with f-strings from pre-formatted
pieces, and choices come from 100-slot lookup tables, because ``json.dumps`` and
``random.choices`` per event would cost several times the rest of the work.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date

from billing_pipeline.generate import volume
from billing_pipeline.generate.clients import WAREHOUSES, Client
from billing_pipeline.generate.clock import MMSS, Clock
from billing_pipeline.generate.faults import FaultInjector
from billing_pipeline.generate.landing import LATE, LandingWriter

# Shipping: each spec is (carrier, service, tracking prefix, weight lo, weight hi,
# label base, label per lb, has zone, extra delay hours for the carrier pickup).
_DTC_SHIP = (
    [("USPS", "Ground Advantage", "9400", 0.2, 3.0, 4.10, 0.55, True, 0)] * 45
    + [("UPS", "Ground", "1Z", 0.5, 8.0, 7.20, 0.48, True, 0)] * 30
    + [("FedEx", "Home Delivery", "7", 0.5, 8.0, 7.50, 0.50, True, 0)] * 15
    + [("UPS", "2nd Day Air", "1Z", 0.3, 4.0, 14.80, 1.20, True, 0)] * 5
    + [("USPS", "Priority Mail", "9405", 0.3, 5.0, 8.90, 0.70, True, 0)] * 5
)
_B2B_SHIP = (
    [("UPS", "Ground", "1Z", 18.0, 70.0, 11.50, 0.42, True, 0)] * 45
    + [("FedEx", "Ground", "7", 20.0, 68.0, 12.00, 0.40, True, 0)] * 15
    + [("XPO", "LTL Standard", "PRO", 180.0, 2400.0, 95.00, 0.11, False, 14)] * 25
    + [("Estes", "LTL Guaranteed", "PRO", 250.0, 3000.0, 140.00, 0.12, False, 14)] * 15
)
_SUB_SHIP = [("USPS", "Ground Advantage", "9400", 1.0, 4.5, 5.20, 0.60, True, 0)] * 60 + [
    ("UPS", "SurePost", "1Z", 1.5, 6.0, 6.40, 0.45, True, 0)
] * 40
_SHIP = {"dtc": _DTC_SHIP, "b2b": _B2B_SHIP, "subscription": _SUB_SHIP}

# Packaging per order: JSON text of the materials list, by profile.
_DTC_MATERIALS = (
    ['[{"code":"POLY_MAILER","qty":1}]'] * 45
    + ['[{"code":"BOX_S","qty":1},{"code":"BUBBLE_WRAP","qty":1}]'] * 20
    + ['[{"code":"BOX_S","qty":1}]'] * 15
    + ['[{"code":"BOX_M","qty":1},{"code":"DUNNAGE","qty":1}]'] * 12
    + ["[]"] * 8  # client-supplied branded boxes
)
_SUB_MATERIALS = (
    ['[{"code":"BOX_M","qty":1},{"code":"DUNNAGE","qty":1}]'] * 70
    + ['[{"code":"BOX_M","qty":1}]'] * 20
    + ['[{"code":"BOX_L","qty":1},{"code":"DUNNAGE","qty":2}]'] * 10
)
_DTC_UNITS = [1] * 62 + [2] * 26 + [3] * 12
_SUB_UNITS = [3] * 30 + [4] * 35 + [5] * 25 + [6] * 10
_B2B_CHANNEL = ["b2b"] * 60 + ["wholesale"] * 40

_RECEIPT_MIX = {
    "dtc": ["parcel"] * 50 + ["carton"] * 40 + ["pallet"] * 10,
    "b2b": ["pallet"] * 60 + ["container"] * 25 + ["carton"] * 15,
    "subscription": ["carton"] * 50 + ["pallet"] * 40 + ["parcel"] * 10,
}
_PUTAWAY_LOCATION = {"parcel": "bin", "carton": "shelf", "pallet": "pallet", "container": "pallet"}
_CONTAINER_SIZES = ["20ft"] * 30 + ["40ft"] * 55 + ["45ft"] * 15
_DISPOSITIONS = ["restock"] * 70 + ["inspect"] * 18 + ["dispose"] * 12
_TASKS = ("special_project", "cycle_count", "relabel", "inspection", "other")
_TASK_NOTES = {
    "special_project": "Holiday bundle rework",
    "cycle_count": "Quarterly cycle count",
    "relabel": "Relabel FNSKU for Amazon",
    "inspection": "Inbound quality inspection",
    "other": "Customer-requested photos",
}
_ADJUST_REASONS = ("cycle_count_variance", "damaged", "found", "shrink")
# Storage footprint per order of daily volume, by location type (pallet, shelf, bin).
_FOOTPRINT = {"dtc": (0.25, 0.5, 1.2), "b2b": (6.0, 0.3, 0.0), "subscription": (0.5, 0.4, 0.6)}
_PER_LOCATION = {"pallet": (400, 64.0), "shelf": (60, 12.0), "bin": (15, 1.5)}
MAX_DELAY_HOURS = 40  # pick to shipment, worst case: an LTL pickup the next afternoon


@dataclass
class _Seat:
    """A client at one warehouse: the pre-formatted pieces of its JSON lines."""

    client: Client
    warehouse: str
    share: float  # of the client's volume handled here
    tail: str  # '","client_id":...,"payload":{' between occurred_at and the payload


class ActivityGenerator:
    def __init__(
        self,
        clients: list[Client],
        start: date,
        end: date,
        events_per_day: int,
        seed: int,
        landing: LandingWriter,
        faults: FaultInjector,
        clock: Clock,
    ) -> None:
        self.clients = clients
        self.start, self.end = start, end
        self.rng = random.Random(f"activity:{seed}")
        self.landing = landing
        self.faults = faults
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.orders_per_day = {
            c.client_id: volume.orders_per_day(c, events_per_day) for c in clients
        }
        self.seats: dict[str, list[_Seat]] = {}
        for c in clients:
            for warehouse, share in zip(c.warehouses, c.warehouse_shares, strict=True):
                # One integration in three sends the optional schema_version.
                version = ',"schema_version":1' if (c.index + len(warehouse)) % 3 == 0 else ""
                tail = (
                    f'","client_id":"{c.client_id}",'
                    f'"warehouse_id":"{warehouse}"{version},"payload":{{'
                )
                self.seats.setdefault(warehouse, []).append(_Seat(c, warehouse, share, tail))
        self.warehouses = sorted(self.seats)
        self.span: dict[str, list[int]] = {}  # client -> [first second, last second]
        self._countdown = faults.gap()
        self._seq = 0
        self._order_seq: Counter[str] = Counter()
        self._shipped: dict[str, list[tuple[str, int, str, int]]] = {}
        self._storage: dict[tuple[str, str, str], float] = {}

    # -- writing -------------------------------------------------------------------------

    def emit(self, warehouse: str, hour: int, event_type: str, line: str) -> None:
        entry = self.landing.open_files.get((warehouse, hour))
        handle = entry[0] if entry is not None else self.landing.handle(warehouse, hour)
        handle.write(line)
        self.counts[event_type] += 1
        self._countdown -= 1
        if self._countdown == 0:
            self._countdown = self.faults.gap()
            # The re-delivered and the late file stay clean: every line of the first must
            # be an exact duplicate, every line of the second a valid event.
            if (warehouse, hour) not in self.landing.special:
                handle.write(self.faults.line(warehouse, hour))

    def _stamp(self, second: int, zone: str | None) -> str:
        hour = second // 3600
        if zone is None:
            return self.clock.utc_prefix(hour) + MMSS[second % 3600] + "Z"
        _, _, prefix, offset = self.clock.local(zone, hour)
        return prefix + MMSS[second % 3600] + offset

    def _touch(self, client_id: str, first: int, last: int) -> None:
        span = self.span.get(client_id)
        if span is None:
            self.span[client_id] = [first, last]
        else:
            span[0] = min(span[0], first)
            span[1] = max(span[1], last)

    # -- one hour ------------------------------------------------------------------------

    def hour(self, hour: int) -> None:
        rng = self.rng.random
        for warehouse in self.warehouses:
            zone = WAREHOUSES[warehouse]
            local_day, local_hour, _, _ = self.clock.local(zone, hour)
            if not (self.start <= local_day < self.end):
                continue
            curve = volume.ORDER_CURVE[local_hour]
            dock = volume.DOCK_CURVE[local_hour]
            for seat in self.seats[warehouse]:
                c = seat.client
                rates = volume.RATES[c.profile]
                daily = self.orders_per_day[c.client_id] * seat.share
                orders = daily * volume.day_factor(local_day, c.profile) * curve
                weekday = volume.WEEKDAY_FACTOR[local_day.weekday()]
                n = _round(orders, rng())
                last = hour * 3600
                if n:
                    last = self._orders(seat, hour, n, zone)
                k = _round(orders * rates.returns, rng())
                if k:
                    self._returns(seat, hour, k, zone)
                receipts = max(daily * rates.receipts, rates.min_receipts_per_day * seat.share)
                k = _round(receipts * weekday * dock, rng())
                if k:
                    last = max(last, self._receipts(seat, hour, k, zone))
                k = _round(rates.labor_per_day * seat.share * weekday * dock, rng())
                for _ in range(k):
                    self._labor(seat, hour)
                k = _round(rates.adjust_per_day * seat.share * weekday * curve, rng())
                for _ in range(k):
                    self._adjust(seat, hour)
                if c.profile == "subscription":
                    kits = daily * rates.kits_per_order * volume.kit_factor(local_day) * dock
                    for _ in range(_round(kits, rng())):
                        self._kit(seat, hour, local_day)
                self._touch(c.client_id, hour * 3600, last)
        self._snapshots(hour)
        self.faults.advance()

    # -- orders --------------------------------------------------------------------------

    def _orders(self, seat: _Seat, hour: int, n: int, zone: str) -> int:
        """Pick, pack and ship ``n`` orders picked in ``hour``; returns the last second used."""
        c = seat.client
        wh = seat.warehouse
        tail = seat.tail
        rng = self.rng.random
        emit = self.emit
        stamp = self._stamp
        rates = volume.RATES[c.profile]
        cancel_before = rates.cancel_before_pick
        cancel_after = cancel_before + rates.cancel_after_pick
        profile = c.profile
        ships = _SHIP[profile]
        eid = f"evt:{wh}:{self.clock.utc_prefix(hour)[:13].replace('-', '').replace('T', '')}:"
        base = hour * 3600
        order_seq = self._order_seq[c.client_id]
        seq = self._seq
        last = base
        late = self.landing.special.get((wh, hour)) == LATE
        for i in range(n):
            order_seq += 1
            oid = f"{c.order_prefix}{order_seq}"
            t = base + int(rng() * 3600)
            # One order in twelve comes from a WMS host that writes local time with an offset.
            tz = zone if rng() < 0.08 else None
            u = rng()
            seq += 1
            if u < cancel_before:
                line = (
                    f'{{"event_id":"{eid}{seq}","event_type":"order.cancelled",'
                    f'"occurred_at":"{stamp(t, tz)}'
                    f'{tail}"order_id":"{oid}","stage":"before_pick"}}}}\n'
                )
                emit(wh, hour, "order.cancelled", line)
                continue
            if profile == "dtc":
                units = _DTC_UNITS[int(rng() * 100)]
                lines = 1 if units == 1 else 1 + int(rng() * units)
                channel = "dtc"
                cartons = 1
                materials = _DTC_MATERIALS[int(rng() * 100)]
                inserts = 1 if rng() < 0.15 else 0
            elif profile == "subscription":
                units = _SUB_UNITS[int(rng() * 100)]
                lines = units
                channel = "dtc"
                cartons = 1
                materials = _SUB_MATERIALS[int(rng() * 100)]
                inserts = 1 + int(rng() * 3)
            else:
                lines = 3 + int(rng() ** 2 * 58)
                units = lines * (4 + int(rng() * 20))
                channel = _B2B_CHANNEL[int(rng() * 100)]
                cartons = max(1, units // (12 + int(rng() * 24)))
                box = "BOX_L" if cartons > 2 else "BOX_M"
                dunnage = max(1, cartons // 2)
                materials = (
                    f'[{{"code":"{box}","qty":{cartons}}},{{"code":"DUNNAGE","qty":{dunnage}}}]'
                )
                inserts = 0
            line = (
                f'{{"event_id":"{eid}{seq}","event_type":"order.picked",'
                f'"occurred_at":"{stamp(t, tz)}'
                f'{tail}"order_id":"{oid}","channel":"{channel}","lines":{lines},"units":{units}}}}}\n'
            )
            emit(wh, hour, "order.picked", line)
            if i == 0 and not late:
                self.faults.remember_pick(wh, _pick_record(line))
            if u < cancel_after:
                seq += 1
                t2 = t + 600 + int(rng() * 4800)
                line = (
                    f'{{"event_id":"{eid}{seq}","event_type":"order.cancelled",'
                    f'"occurred_at":"{stamp(t2, tz)}'
                    f'{tail}"order_id":"{oid}","stage":"after_pick"}}}}\n'
                )
                emit(wh, t2 // 3600, "order.cancelled", line)
                continue
            seq += 1
            t2 = t + 240 + int(rng() * 2400)
            line = (
                f'{{"event_id":"{eid}{seq}","event_type":"order.packed",'
                f'"occurred_at":"{stamp(t2, tz)}'
                f'{tail}"order_id":"{oid}","cartons":{cartons},"materials":{materials},"inserts":{inserts}}}}}\n'
            )
            emit(wh, t2 // 3600, "order.packed", line)
            carrier, service, prefix, lo, hi, fee, per_lb, zoned, pickup = ships[
                int(rng() * len(ships))
            ]
            # Parcel carriers collect a few times a day; LTL freight goes out the next day.
            t3 = t2 + 1800 + int(rng() * 5 * 3600) + pickup * 3600
            weight = lo + (hi - lo) * rng() ** 2
            zone_no = 1 + int(rng() * 8)
            cost = (fee + per_lb * weight) * (1 + 0.07 * zone_no if zoned else 1.0)
            seq += 1
            if prefix == "1Z":
                tracking = f"1Z{c.index:04d}W{order_seq:010d}"
            elif prefix == "PRO":
                tracking = f"{c.index:03d}{order_seq:07d}"
            else:
                tracking = f"{prefix}{c.index:05d}{order_seq:013d}"
            if rng() < 0.4:
                # Some integrations send decimals as strings, as the contract allows.
                amounts = f'"weight_lb":"{weight:.1f}","label_cost":"{cost:.2f}"'
            else:
                amounts = f'"weight_lb":{weight:.2f},"label_cost":{cost:.2f}'
            zone_field = f',"zone":{zone_no}' if zoned else ""
            line = (
                f'{{"event_id":"{eid}{seq}","event_type":"order.shipped",'
                f'"occurred_at":"{stamp(t3, tz)}'
                f'{tail}"order_id":"{oid}","carrier":"{carrier}","service":"{service}",'
                f'"tracking_number":"{tracking}",{amounts}{zone_field}}}}}\n'
            )
            emit(wh, t3 // 3600, "order.shipped", line)
            if t3 > last:
                last = t3
            if i == 0 or rng() < 0.002:
                self._shipped.setdefault(c.client_id, []).append((oid, units, wh, t3))
        self._seq = seq
        self._order_seq[c.client_id] = order_seq
        pool = self._shipped.get(c.client_id)
        if pool is not None and len(pool) > 4000:
            del pool[:-2000]
        return last

    def _returns(self, seat: _Seat, hour: int, n: int, zone: str) -> None:
        c = seat.client
        pool = self._shipped.get(c.client_id)
        if not pool:
            return
        base = hour * 3600
        for _ in range(n):
            t = base + self.rng.randrange(3600)
            order_id, units, _, shipped_at = pool[int(self.rng.random() * len(pool))]
            if shipped_at >= t:
                continue  # not delivered yet: nothing to return
            self._seq += 1
            returned = 1 + int(self.rng.random() * units)
            disposition = _DISPOSITIONS[int(self.rng.random() * 100)]
            rma = f"RMA-{c.order_prefix[3:]}{self._seq}"
            line = (
                f'{{"event_id":"evt:{seat.warehouse}:r{self._seq}","event_type":"return.processed",'
                f'"occurred_at":"{self._stamp(t, None)}{seat.tail}'
                f'"rma_id":"{rma}","units":{returned},'
                f'"disposition":"{disposition}","order_id":"{order_id}"}}}}\n'
            )
            self.emit(seat.warehouse, hour, "return.processed", line)

    # -- inbound -------------------------------------------------------------------------

    def _receipts(self, seat: _Seat, hour: int, n: int, zone: str) -> int:
        c = seat.client
        rng = self.rng
        wh = seat.warehouse
        last = hour * 3600
        for _ in range(n):
            t = hour * 3600 + rng.randrange(3600)
            kind = _RECEIPT_MIX[c.profile][rng.randrange(100)]
            pallets = 0
            size = ""
            if kind == "parcel":
                cartons = rng.randint(0, 1)
                units = rng.randint(4, 60)
            elif kind == "carton":
                cartons = rng.randint(4, 80)
                units = cartons * rng.randint(6, 48)
            elif kind == "pallet":
                pallets = rng.randint(1, 26)
                cartons = pallets * rng.randint(20, 60)
                units = cartons * rng.randint(6, 24)
            else:
                cartons = rng.randint(400, 1800)
                units = cartons * rng.randint(6, 24)
                if rng.random() < 0.9:  # the rest omit the size: billed as 40ft
                    size = f',"container_size":"{_CONTAINER_SIZES[rng.randrange(100)]}"'
            self._seq += 1
            asn = f"ASN-{c.order_prefix[3:]}{self._seq}"
            line = (
                f'{{"event_id":"evt:{wh}:a{self._seq}","event_type":"receipt.completed",'
                f'"occurred_at":"{self._stamp(t, None)}{seat.tail}'
                f'"asn_id":"{asn}","receipt_type":"{kind}",'
                f'"units":{units},"cartons":{cartons},"pallets":{pallets}{size}}}}}\n'
            )
            self.emit(wh, hour, "receipt.completed", line)
            location = _PUTAWAY_LOCATION[kind]
            moves = rng.randint(1, 4)
            for m in range(moves):
                t2 = t + 1800 + rng.randrange(3 * 3600)
                self._seq += 1
                part = units // moves + (units % moves if m == 0 else 0)
                line = (
                    f'{{"event_id":"evt:{wh}:p{self._seq}","event_type":"putaway.completed",'
                    f'"occurred_at":"{self._stamp(t2, None)}{seat.tail}'
                    f'"sku":"{c.order_prefix[3:]}SKU{rng.randrange(5000):05d}",'
                    f'"units":{part},"location_type":"{location}"}}}}\n'
                )
                self.emit(wh, t2 // 3600, "putaway.completed", line)
                last = max(last, t2)
        return last

    # -- value-added and housekeeping ----------------------------------------------------

    def _labor(self, seat: _Seat, hour: int) -> None:
        rng = self.rng
        t = hour * 3600 + rng.randrange(3600)
        task = _TASKS[rng.randrange(len(_TASKS))]
        quarters = rng.randint(1, 32)
        hours = f"{quarters // 4}.{(quarters % 4) * 25:02d}"
        value = f'"{hours}"' if rng.random() < 0.7 else hours
        note = f',"note":"{_TASK_NOTES[task]}"' if rng.random() < 0.6 else ""
        self._seq += 1
        line = (
            f'{{"event_id":"evt:{seat.warehouse}:l{self._seq}","event_type":"labor.logged",'
            f'"occurred_at":"{self._stamp(t, None)}{seat.tail}'
            f'"task":"{task}","hours":{value}{note}}}}}\n'
        )
        self.emit(seat.warehouse, hour, "labor.logged", line)

    def _adjust(self, seat: _Seat, hour: int) -> None:
        rng = self.rng
        t = hour * 3600 + rng.randrange(3600)
        delta = rng.randint(1, 12) * (1 if rng.random() < 0.35 else -1)
        self._seq += 1
        line = (
            f'{{"event_id":"evt:{seat.warehouse}:j{self._seq}","event_type":"inventory.adjusted",'
            f'"occurred_at":"{self._stamp(t, None)}{seat.tail}'
            f'"sku":"{seat.client.order_prefix[3:]}SKU{rng.randrange(5000):05d}",'
            f'"delta_units":{delta},"reason":"{_ADJUST_REASONS[rng.randrange(4)]}"}}}}\n'
        )
        self.emit(seat.warehouse, hour, "inventory.adjusted", line)

    def _kit(self, seat: _Seat, hour: int, day: date) -> None:
        rng = self.rng
        t = hour * 3600 + rng.randrange(3600)
        self._seq += 1
        line = (
            f'{{"event_id":"evt:{seat.warehouse}:k{self._seq}","event_type":"kit.assembled",'
            f'"occurred_at":"{self._stamp(t, None)}{seat.tail}'
            f'"kit_sku":"KIT-{seat.client.order_prefix[3:]}{day:%Y%m}",'
            f'"kits":{rng.randint(40, 600)},"components_per_kit":{rng.randint(3, 6)}}}}}\n'
        )
        self.emit(seat.warehouse, hour, "kit.assembled", line)

    def _snapshots(self, hour: int) -> None:
        """Storage counts at 23:59 client-local time, once a day per warehouse and location type."""
        for c in self.clients:
            local_day, local_hour, _, _ = self.clock.local(c.timezone, hour)
            if local_hour != 23 or not (self.start <= local_day < self.end):
                continue
            t = hour * 3600 + 59 * 60 + self.rng.randrange(60)
            footprint = _FOOTPRINT[c.profile]
            for warehouse, share in zip(c.warehouses, c.warehouse_shares, strict=True):
                seat = next(s for s in self.seats[warehouse] if s.client is c)
                for i, location in enumerate(("pallet", "shelf", "bin")):
                    key = (c.client_id, warehouse, location)
                    level = self._storage.get(key)
                    if level is None:
                        level = self.orders_per_day[c.client_id] * share * footprint[i] + (
                            3 if footprint[i] else 0
                        )
                    else:
                        level *= 0.97 + 0.06 * self.rng.random()  # inventory drifts day to day
                    self._storage[key] = level
                    locations = int(level)
                    per_units, per_cube = _PER_LOCATION[location]
                    units = locations * per_units
                    cube = locations * per_cube * (0.8 + 0.4 * self.rng.random())
                    cube_text = f'"{cube:.3f}"' if self.rng.random() < 0.5 else f"{cube:.1f}"
                    tz = c.timezone if self.rng.random() < 0.1 else None
                    self._seq += 1
                    line = (
                        f'{{"event_id":"evt:{warehouse}:s{self._seq}","event_type":"inventory.snapshot",'
                        f'"occurred_at":"{self._stamp(t, tz)}{seat.tail}'
                        f'"location_type":"{location}",'
                        f'"locations":{locations},"units":{units},"cubic_feet":{cube_text}}}}}\n'
                    )
                    self.emit(warehouse, hour, "inventory.snapshot", line)
            self._touch(c.client_id, t, t)


def _round(expected: float, u: float) -> int:
    """Stochastic rounding: the integer part, plus one with the fractional part's odds."""
    n = int(expected)
    return n + 1 if u < expected - n else n


def _pick_record(line: str) -> dict[str, object]:
    record: dict[str, object] = json.loads(line)
    return record
