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


def _events(ids: list[str]) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "event_id": ids,
            "event_type": ["order.picked"] * n,
            "activity_date": [DAY] * n,
            "payload": ['{"memo":"a\\nb","units":2}'] * n,
        },
        schema={
            "event_id": pl.String,
            "event_type": pl.String,
            "activity_date": pl.Date,
            "payload": pl.String,
        },
    )


def _by_hand(ids: list[str]) -> str:
    keys = sorted(f"{i}\x1forder.picked\x1f{DAY}\x1f" + '{"memo":"a\\nb","units":2}' for i in ids)
    return hashlib.sha256("".join(k + "\n" for k in keys).encode()).hexdigest()


@pytest.mark.parametrize("block", [1, 2, 3, 65_536])
def test_the_fingerprint_is_sha256_of_the_sorted_keys_one_a_line(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(charging, "_FINGERPRINT_BLOCK", block)
    ids = ["e7", "é2", "e10", "", "e1"]
    assert events_fingerprint(_events(ids)) == _by_hand(ids)
    assert events_fingerprint(_events(ids[::-1])) == _by_hand(ids)
    assert events_fingerprint(_events([])) == hashlib.sha256().hexdigest()
