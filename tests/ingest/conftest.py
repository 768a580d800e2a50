from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billing_pipeline.storage import Store

BASE_EVENT: dict[str, Any] = {
    "event_id": "evt-1",
    "event_type": "order.picked",
    "occurred_at": "2026-11-02T15:00:00Z",
    "client_id": "acme",
    "warehouse_id": "NJ1",
    "payload": {"order_id": "o-1", "channel": "dtc", "lines": 2, "units": 3},
}
TIMEZONES = {"acme": "America/New_York"}


def event(**overrides: Any) -> dict[str, Any]:
    """A valid event with top-level fields replaced; ``payload`` entries merge into the base."""
    ev = copy.deepcopy(BASE_EVENT)
    payload = overrides.pop("payload", None)
    ev.update(overrides)
    if payload is not None:
        ev["payload"] = {**ev["payload"], **payload} if isinstance(payload, dict) else payload
    return ev


def line(obj: Any) -> str:
    return json.dumps(obj)


class Landing:
    def __init__(self, root: Path) -> None:
        self.dir = root / "landing"
        self.dir.mkdir()
        self.store = Store(root / "out")

    def write(self, name: str, lines: list[str] | str) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def landing(tmp_path: Path) -> Landing:
    return Landing(tmp_path)


@pytest.fixture
def event_factory() -> Callable[..., dict[str, Any]]:
    return event
