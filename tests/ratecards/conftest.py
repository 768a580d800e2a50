from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# A small valid card, as plain data, that each test bends one way.
BASE: dict[str, Any] = {
    "client_id": "acme",
    "name": "Acme Outdoor Co.",
    "currency": "USD",
    "timezone": "America/New_York",
    "versions": [
        {
            "effective_from": "2026-01-01",
            "charges": {
                "PICK_ORDER": {"model": "per_unit", "rate": "2.65", "gl_account": "4030"},
                "SHIP_LABEL": {"model": "cost_plus", "markup_pct": "12.5", "gl_account": "4050"},
            },
        },
        {
            "effective_from": "2026-02-01",
            "charges": {
                "PICK_ORDER": {"model": "per_unit", "rate": "2.75", "gl_account": "4030"},
                "ACCOUNT_MGMT": {"model": "flat", "amount": "250.00", "gl_account": "4090"},
            },
        },
    ],
}


@pytest.fixture
def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a card (plain data or raw YAML text) and return its path."""

    def _write(doc: dict[str, Any] | str, name: str = "acme.yaml") -> Path:
        path = tmp_path / name
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
