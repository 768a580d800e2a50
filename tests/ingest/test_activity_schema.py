"""The activity asset's blocking ``activity_schema`` check, over partitions written by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.defs.ingest import activity_schema
from billing_pipeline.defs.ingest.activity_schema import activity_schema_problems
from billing_pipeline.ingest.activity import ACTIVITY_SCHEMA
from billing_pipeline.storage import Store, write_parquet

DAY = date(2026, 11, 2)


def row(client_id: str, event_id: str, day: date = DAY) -> dict:
    at = datetime(day.year, day.month, day.day, 15, tzinfo=UTC)
    return {
        "event_id": event_id,
        "event_type": "order.picked",
        "occurred_at": at,
        "occurred_at_raw": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "activity_date": day,
        "client_id": client_id,
        "warehouse_id": "NJ1",
        "schema_version": 1,
        "payload": '{"order_id":"o-1"}',
        "order_id": "o-1",
        "raw_line": "{}",
        "source_file": "a.ndjson",
        "source_line": 1,
    }


def write(store: Store, client_id: str, rows: list[dict]) -> None:
    write_parquet(pl.DataFrame(rows, schema=ACTIVITY_SCHEMA), store.activity_file(DAY, client_id))


def test_clean_partitions_have_no_problems(tmp_path: Path) -> None:
    store = Store(tmp_path)
    write(store, "acme", [row("acme", "e1"), row("acme", "e2")])
    write(store, "bolt", [row("bolt", "e1")])  # the same id in another client is fine
    assert activity_schema_problems(store, DAY, ["acme", "bolt"]) == []


PROBLEMS = [
    "- 2026-11-02 bolt: rows fail the envelope schema",
    "- 2026-11-02 coda: rows outside their partition",
    "- 2026-11-02 dune: an event_id appears twice",
]


def write_problems(store: Store) -> list[str]:
    """Partitions with one problem each but acme's; their clients."""
    write(store, "acme", [row("acme", "e1")])
    # "bad id!" breaks the event_id pattern (a space and "!")
    write(store, "bolt", [row("bolt", "bad id!"), row("bolt", "e2")])
    # coda's file holds a row dated the day before and a row of acme
    write(store, "coda", [row("coda", "e1", date(2026, 11, 1)), row("acme", "e9")])
    write(store, "dune", [row("dune", "e1"), row("dune", "e1"), row("dune", "e1")])
    return ["acme", "bolt", "coda", "dune"]


def test_each_problem_is_named_once_with_its_partition(tmp_path: Path) -> None:
    clients = write_problems(Store(tmp_path))
    assert activity_schema_problems(Store(tmp_path), DAY, clients) == PROBLEMS


def test_partitions_checked_in_groups_give_the_same_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # groups of at least one row: each partition is validated in a Pandera call of its own
    monkeypatch.setattr(activity_schema, "GROUP_ROWS", 1)
    clients = write_problems(Store(tmp_path))
    assert activity_schema_problems(Store(tmp_path), DAY, clients) == PROBLEMS
