"""``events_fingerprint`` is stored (charges state, invoice fingerprints): its value must not
change when its computation does."""

from __future__ import annotations

import datetime
import hashlib

import polars as pl
import pytest

from billing_pipeline import charging
from billing_pipeline.charging import events_fingerprint

DAY = datetime.date(2026, 3, 1)
PAYLOAD = '{"memo":"a\\nb","units":2}'


def _events(ids: list[str]) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "event_id": ids,
            "event_type": ["order.picked"] * n,
            "activity_date": [DAY] * n,
            "payload": [PAYLOAD] * n,
        },
        schema={
            "event_id": pl.String,
            "event_type": pl.String,
            "activity_date": pl.Date,
            "payload": pl.String,
        },
    )


def _definition(rows: list[tuple[str, str]]) -> str:
    """The fingerprint of events (id, payload) by its definition: sha256 of the sorted keys,
    one a line."""
    keys = sorted(f"{i}\x1forder.picked\x1f{DAY}\x1f{p}" for i, p in rows)
    return hashlib.sha256("".join(k + "\n" for k in keys).encode()).hexdigest()


def _by_hand(ids: list[str]) -> str:
    return _definition([(i, PAYLOAD) for i in ids])


@pytest.mark.parametrize("block", [1, 2, 3, 65_536])
def test_the_fingerprint_is_sha256_of_the_sorted_keys_one_a_line(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(charging, "_FINGERPRINT_BLOCK", block)
    ids = ["e7", "é2", "e10", "", "e1"]
    assert events_fingerprint(_events(ids)) == _by_hand(ids)
    assert events_fingerprint(_events(ids[::-1])) == _by_hand(ids)
    assert events_fingerprint(_events([])) == hashlib.sha256().hexdigest()


def _rows(rows: list[tuple[str, str]]) -> tuple[pl.DataFrame, str]:
    """Events of (id, payload), and their fingerprint by the definition: the sorted keys."""
    events = _events([i for i, _ in rows]).with_columns(
        pl.Series("payload", [p for _, p in rows], dtype=pl.String)
    )
    return events, _definition(rows)


@pytest.mark.parametrize(
    "rows",
    [
        # ids that begin no other id: the keys sort as their ids, whatever the payloads
        [("b2", "{}"), ("a9", '{"z":1}'), ("é1", "{}"), ("a1x", '{"a":1}')],
        # "a" begins "a\x01", whose key sorts first (\x01 < \x1f): not the ids' order
        [("a", '{"k":2}'), ("a\x01", '{"k":1}'), ("b", "{}")],
        # an id twice: its keys sort by what follows the id
        [("x", '{"k":2}'), ("x", '{"k":1}'), ("w", "{}")],
    ],
)
def test_rows_sorted_by_id_give_the_sorted_keys_order_or_the_keys_are_sorted(
    rows: list[tuple[str, str]],
) -> None:
    events, expected = _rows(rows)
    assert events_fingerprint(events) == expected
    assert events_fingerprint(events.reverse()) == expected
