"""Properties of ingestion under damaged input (hypothesis).

1. The batched typed fast path and the per-line slow path give exactly the same parsed
   frame for any mix of good and mutated lines: the fast path only ever decides "well
   typed", the slow path decides every reason.
2. Random mutations of valid lines (characters deleted, duplicated or replaced, JSON types
   changed, fields dropped or added) never crash ``ingest_landing``, and conservation holds:
   lines = valid + duplicates + quarantined for every manifest row, and the activity rows
   over all dates add up to the valid events.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.ingest import parsing
from billing_pipeline.ingest.activity import build_activity
from billing_pipeline.ingest.landing import dates_around, ingest_landing
from billing_pipeline.ingest.validation import parse_file
from billing_pipeline.storage import Store

TIMEZONES = {"acme": "America/New_York", "bolt": "Asia/Tokyo"}

PAYLOADS: dict[str, dict[str, Any]] = {
    "order.picked": {"order_id": "o-1", "channel": "dtc", "lines": 2, "units": 3},
    "order.packed": {
        "order_id": "o-1",
        "cartons": 1,
        "materials": [{"code": "BOX_S", "qty": 1}],
        "inserts": 0,
    },
    "order.shipped": {
        "order_id": "o-1",
        "carrier": "UPS",
        "service": "Ground",
        "tracking_number": "1Z",
        "weight_lb": 58.42,
        "label_cost": "7.42",
        "zone": 4,
    },
    "inventory.snapshot": {
        "location_type": "bin",
        "locations": 3,
        "units": 40,
        "cubic_feet": 12.5,
    },
    "labor.logged": {"task": "relabel", "hours": 1.5, "note": "ok"},
    "receipt.completed": {
        "asn_id": "A1",
        "receipt_type": "container",
        "units": 5,
        "cartons": 1,
        "pallets": 0,
        "container_size": "40ft",
    },
    "return.processed": {"rma_id": "R1", "units": 1, "disposition": "restock"},
    "vas.gift_wrap": {"anything": [1, {"goes": True}]},
}
ODD_VALUES = [None, True, False, 0, -1, 1.0, 2.5, 1e300, 2**70, "", "3", "7.4200", "1e3", [], {}]


@st.composite
def events(draw: st.DrawFn, index: int = 0) -> dict[str, Any]:
    event_type = draw(st.sampled_from(sorted(PAYLOADS)))
    ev: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(0, 6))}",
        "event_type": event_type,
        "occurred_at": draw(
            st.sampled_from(
                ["2026-03-10T12:00:00Z", "2026-03-10T02:30:00-05:00", "2026-03-10T23:59:59Z"]
            )
        ),
        "client_id": draw(st.sampled_from(["acme", "bolt", "nobody"])),
        "warehouse_id": "NJ1",
        "payload": json.loads(json.dumps(PAYLOADS[event_type])),
    }
    if draw(st.booleans()):
        ev["schema_version"] = 1
    return ev


def _mutate_object(draw: st.DrawFn, ev: dict[str, Any]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["drop", "add", "retype", "payload_drop", "payload_retype"]))
    if kind == "drop":
        ev.pop(draw(st.sampled_from(sorted(ev))), None)
    elif kind == "add":
        target = ev if draw(st.booleans()) else ev.get("payload")
        if isinstance(target, dict):
            target[draw(st.sampled_from(["extra", "units", "zone", "note"]))] = draw(
                st.sampled_from(ODD_VALUES)
            )
    elif kind == "retype":
        ev[draw(st.sampled_from(sorted(ev)))] = draw(st.sampled_from(ODD_VALUES))
    else:
        payload = ev.get("payload")
        if isinstance(payload, dict) and payload:
            key = draw(st.sampled_from(sorted(payload)))
            if kind == "payload_drop":
                del payload[key]
            else:
                payload[key] = draw(st.sampled_from(ODD_VALUES))
    return ev


def _mutate_text(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "replace"]))
        if kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "duplicate":
            text = text[: at + 1] + text[at:]
        else:
            char = draw(st.sampled_from([*'{}[]":,0 1a\\\x00é', "\n", "\r"]))
            text = text[:at] + char + text[at + 1 :]
    return text


@st.composite
def lines(draw: st.DrawFn) -> str:
    ev = draw(events())
    how = draw(st.sampled_from(["clean", "clean", "object", "text", "both", "blank"]))
    if how == "blank":
        return draw(st.sampled_from(["", "   "]))
    if how in ("object", "both"):
        ev = _mutate_object(draw, ev)
    compact = draw(st.booleans())
    text = json.dumps(ev, separators=(",", ":") if compact else None)
    if how in ("text", "both"):
        text = _mutate_text(draw, text)
    return text


def _slow_only(path: Path) -> pl.DataFrame:
    """The same file parsed with the fast path switched off: every line goes the slow way."""
    original = parsing.fastpath.decode_many
    parsing.fastpath.decode_many = lambda texts: [None] * len(texts)  # type: ignore[assignment]
    try:
        return parse_file(path, "f.ndjson")[0]
    finally:
        parsing.fastpath.decode_many = original  # type: ignore[assignment]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines(), min_size=1, max_size=120))
def test_fast_path_and_slow_path_give_the_same_frame(texts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.ndjson"
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        fast, _ = parse_file(path, "f.ndjson")
        slow = _slow_only(path)
    assert fast.to_dicts() == slow.to_dicts()


def test_fast_path_takes_the_clean_lines() -> None:
    """The comparison above means something only if the fast path does take lines."""
    texts = [json.dumps({**ev, "event_id": f"e{i}"}) for i, ev in enumerate(_clean_events())]
    taken = parsing.fastpath.decode_many(texts)
    assert all(event is not None for event in taken)


def _clean_events() -> list[dict[str, Any]]:
    base = {
        "occurred_at": "2026-03-10T12:00:00Z",
        "client_id": "acme",
        "warehouse_id": "NJ1",
    }
    return [
        {**base, "event_type": t, "payload": p} for t, p in PAYLOADS.items() if t in parsing.CATALOG
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(lines(), min_size=0, max_size=40), min_size=1, max_size=4))
def test_mutated_lines_never_crash_and_every_line_is_accounted_for(
    files: list[list[str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        landing.mkdir()
        for i, texts in enumerate(files):
            (landing / f"f{i}.ndjson").write_text("\n".join(texts) + "\n", encoding="utf-8")
        store = Store(Path(tmp) / "out")
        result = ingest_landing(landing, store, TIMEZONES)
        for row in result.manifest.iter_rows(named=True):
            assert row["lines"] == row["valid"] + row["duplicates"] + row["quarantined"]
        valid = int(result.manifest["valid"].sum())
        days = dates_around(result.touched_dates) | {date(2026, 3, 10)}
        built = sum(build_activity(store, day, TIMEZONES).events for day in sorted(days))
        assert built == valid


DECIMAL_FIELDS = [
    ("order.shipped", "weight_lb"),
    ("order.shipped", "label_cost"),
    ("inventory.snapshot", "cubic_feet"),
    ("labor.logged", "hours"),
]
# Numbers whose shortest text msgspec and ``repr`` write differently (1e-05 / 0.00001,
# 1e+16 / 1e16), with too many places, negative, huge, or at the 64-bit edge.
EDGE_NUMBERS = [1e-05, 1e-07, 1e15, 1e16, 1.5e17, 0.30000000000000004, -0.5, 1e300, 2**63 - 1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(DECIMAL_FIELDS),
            st.one_of(
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(-(2**63), 2**63 - 1),
                st.sampled_from(EDGE_NUMBERS),
                st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
            ),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_decimal_numbers_read_in_bulk_as_the_slow_path_reads_them(
    cases: list[tuple[tuple[str, str], object]],
) -> None:
    """The fast path reads decimal fields from the canonical payload text in bulk; every
    number or text the typed decode accepts must come out as the slow path's Decimal or
    failure."""
    texts = []
    for i, ((event_type, name), value) in enumerate(cases):
        ev = {**_clean_events()[0], "event_id": f"e{i}", "event_type": event_type}
        ev["payload"] = {**PAYLOADS[event_type], name: value}
        texts.append(json.dumps(ev))
    assert all(e is not None for e in parsing.fastpath.decode_many(texts))  # all go fast
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.ndjson"
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        fast, _ = parse_file(path, "f.ndjson")
        slow = _slow_only(path)
    assert fast.to_dicts() == slow.to_dicts()
