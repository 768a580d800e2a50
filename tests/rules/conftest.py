from __future__ import annotations

import datetime
import json
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.rules import Budgets, RuleEngine

DAY = datetime.date(2026, 3, 2)


def event(event_id: str, event_type: str, payload: dict | None = None, day: datetime.date = DAY):
    return {
        "event_id": event_id,
        "event_type": event_type,
        "client_id": "acme",
        "warehouse_id": "WH1",
        "occurred_at_raw": f"{day.isoformat()}T10:00:00Z",
        "activity_date": day,
        "payload": json.dumps(
            payload or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ),
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema_overrides={"activity_date": pl.Date})


@pytest.fixture
def lua_dir(tmp_path: Path) -> Path:
    root = tmp_path / "lua"
    (root / "rules").mkdir(parents=True)
    (root / "lib").mkdir()
    return root


@pytest.fixture
def small_budgets() -> Budgets:
    return Budgets(instructions=200_000, memory_bytes=64 * 1024**2, batch_seconds=2.0)


def engine_with(lua_dir: Path, source: str, budgets: Budgets, name: str = "t.lua") -> RuleEngine:
    (lua_dir / "rules" / name).write_text(source)
    return RuleEngine(lua_dir, budgets)
