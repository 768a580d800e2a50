"""Each validation rule of SPEC §3 and each reason code of §4, one line at a time."""

from __future__ import annotations

import pytest

from billing_pipeline.ingest.validation import parse_file
from tests.ingest.conftest import Landing, event, line


def outcome(landing: Landing, text: str) -> tuple[str | None, str | None]:
    path = landing.write("one.ndjson", [text])
    frame, _ = parse_file(path, "one.ndjson")
    assert frame.height == 1
    row = frame.row(0, named=True)
    return row["reason"], row["detail"]


def test_a_valid_line_has_no_reason(landing: Landing) -> None:
    assert outcome(landing, line(event())) == (None, None)


@pytest.mark.parametrize("text", ['{"event_id": "x"', "{bad json}", '{"a": NaN}', '{"a": 1} x'])
def test_invalid_json(landing: Landing, text: str) -> None:
    assert outcome(landing, text)[0] == "invalid_json"


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "42", "null", "true"])
def test_not_an_object(landing: Landing, text: str) -> None:
    assert outcome(landing, text)[0] == "not_an_object"


@pytest.mark.parametrize(
    "field", ["event_id", "event_type", "occurred_at", "client_id", "warehouse_id", "payload"]
)
def test_missing_envelope_field(landing: Landing, field: str) -> None:
    ev = event()
    del ev[field]
    assert outcome(landing, line(ev)) == ("missing_field", field)


def test_null_counts_as_missing(landing: Landing) -> None:
    assert outcome(landing, line(event(client_id=None))) == ("missing_field", "client_id")


def test_missing_payload_field_names_it(landing: Landing) -> None:
    ev = event()
    del ev["payload"]["units"]
    assert outcome(landing, line(ev)) == ("missing_field", "payload.units")


def test_optional_payload_field_may_be_absent(landing: Landing) -> None:
    ev = event(
        event_type="order.shipped",
        payload={
            "order_id": "o",
            "carrier": "UPS",
            "service": "ground",
            "tracking_number": "1Z",
            "weight_lb": "2.5",
            "label_cost": 7.42,
        },
    )
    ev["payload"] = {
        k: v for k, v in ev["payload"].items() if k not in ("channel", "lines", "units")
    }
    assert outcome(landing, line(ev)) == (None, None)


def test_missing_beats_invalid_whatever_the_field_order(landing: Landing) -> None:
    # event_id is invalid (an envelope field, first in order) but a payload field is
    # missing: the order of reasons puts missing_field first.
    ev = event(event_id="bad id with spaces")
    del ev["payload"]["order_id"]
    assert outcome(landing, line(ev)) == ("missing_field", "payload.order_id")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": "has space"}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"event_id": 17}, "event_id"),
        ({"client_id": "Acme"}, "client_id"),
        ({"client_id": "-acme"}, "client_id"),
        ({"warehouse_id": "nj1"}, "warehouse_id"),
        ({"occurred_at": "2026-11-02 15:00:00"}, "occurred_at"),
        ({"occurred_at": "2026-11-02T15:00:00"}, "occurred_at"),
        ({"occurred_at": "2026-13-02T15:00:00Z"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"schema_version": 2}, "schema_version"),
        ({"schema_version": "1"}, "schema_version"),
        ({"payload": [1, 2]}, "payload"),
    ],
)
def test_invalid_envelope_field(landing: Landing, overrides: dict, field: str) -> None:
    reason, detail = outcome(landing, line(event(**overrides)))
    assert reason == "invalid_field"
    assert detail is not None and detail.startswith(f"{field}:")


@pytest.mark.parametrize(
    ("event_type", "payload", "field"),
    [
        ("order.picked", {"channel": "retail"}, "channel"),
        ("order.picked", {"lines": 0}, "lines"),
        ("order.picked", {"units": "3"}, "units"),
        ("order.picked", {"units": 2.0}, "units"),
        ("order.picked", {"units": True}, "units"),
        ("order.picked", {"order_id": 5}, "order_id"),
    ],
)
def test_invalid_payload_field(
    landing: Landing, event_type: str, payload: dict, field: str
) -> None:
    reason, detail = outcome(landing, line(event(event_type=event_type, payload=payload)))
    assert reason == "invalid_field"
    assert detail is not None and detail.startswith(f"payload.{field}:")


SNAPSHOT = {"location_type": "pallet", "locations": 3, "units": 40, "cubic_feet": "12.5"}


@pytest.mark.parametrize(
    ("cubic_feet", "ok"),
    [
        ("12.5", True),
        (12.5, True),
        ("0", True),
        ("1.123456", True),
        ("1.1234567", False),  # 7 places
        (1.1234567, False),
        ("-0.5", False),
        ("1,5", False),
        ("NaN", False),
        ("Infinity", False),
        (None, False),  # missing
    ],
)
def test_decimal_fields(landing: Landing, cubic_feet: object, ok: bool) -> None:
    ev = event(event_type="inventory.snapshot", payload=None)
    ev["payload"] = {**SNAPSHOT, "cubic_feet": cubic_feet}
    reason, _ = outcome(landing, line(ev))
    assert (reason is None) is ok


def test_huge_number_is_not_a_decimal(landing: Landing) -> None:
    text = line(event(event_type="inventory.snapshot", payload=SNAPSHOT)).replace('"12.5"', "1e400")
    assert outcome(landing, text)[0] == "invalid_field"


def test_weight_must_be_positive(landing: Landing) -> None:
    ev = event(event_type="order.shipped")
    ev["payload"] = {
        "order_id": "o",
        "carrier": "UPS",
        "service": "ground",
        "tracking_number": "1Z",
        "weight_lb": "0",
        "label_cost": "7.42",
    }
    assert outcome(landing, line(ev)) == ("invalid_field", "payload.weight_lb: a decimal > 0")


def test_zone_range(landing: Landing) -> None:
    ev = event(event_type="order.shipped")
    ev["payload"] = {
        "order_id": "o",
        "carrier": "UPS",
        "service": "ground",
        "tracking_number": "1Z",
        "weight_lb": 1,
        "label_cost": "7.42",
        "zone": 10,
    }
    assert outcome(landing, line(ev)) == (
        "invalid_field",
        "payload.zone: an integer from 1 to 9",
    )


@pytest.mark.parametrize(
    ("materials", "ok"),
    [
        ([], True),
        ([{"code": "BOX_S", "qty": 1}], True),
        ([{"code": "BOX_S", "qty": 0}], False),
        ([{"code": 3, "qty": 1}], False),
        ([{"qty": 1}], False),
        ("BOX_S", False),
    ],
)
def test_materials(landing: Landing, materials: object, ok: bool) -> None:
    ev = event(event_type="order.packed")
    ev["payload"] = {"order_id": "o", "cartons": 1, "materials": materials, "inserts": 0}
    reason, detail = outcome(landing, line(ev))
    assert (reason is None) is ok
    if not ok:
        assert detail is not None and detail.startswith("payload.materials:")


def test_unknown_event_type_is_kept_and_its_payload_unchecked(landing: Landing) -> None:
    ev = event(event_type="vas.gift_wrap", payload=None)
    ev["payload"] = {"anything": [1, {"goes": True}]}
    assert outcome(landing, line(ev)) == (None, None)


def test_extra_fields_are_kept(landing: Landing) -> None:
    ev = event(payload={"picker": "jo"})
    ev["wms_build"] = "7.1"
    path = landing.write("x.ndjson", [line(ev)])
    frame, _ = parse_file(path, "x.ndjson")
    row = frame.row(0, named=True)
    assert row["reason"] is None
    assert '"picker":"jo"' in row["payload"]
    assert '"wms_build": "7.1"' in row["raw_line"]


def test_payload_is_canonical_json(landing: Landing) -> None:
    # Key order and spacing do not change the stored payload; numbers keep their value.
    a = (
        '{"event_id":"a","event_type":"x.y","occurred_at":"2026-11-02T15:00:00Z",'
        '"client_id":"acme","warehouse_id":"NJ1","payload":{"b":1.50,"a":"s"}}'
    )
    path = landing.write("c.ndjson", [a])
    frame, _ = parse_file(path, "c.ndjson")
    assert frame["payload"][0] == '{"a":"s","b":1.5}'
