from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.reconciliation.builders import World, make_world, write_quarantine

warnings.filterwarnings("ignore", message=".*is currently in beta.*")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The four-client March of builders.py, billed once per test module (read-only)."""
    built = make_world(tmp_path_factory.mktemp("world"))
    write_quarantine(built)
    return built


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    return world


@pytest.fixture
def finance(tmp_path: Path) -> Path:
    """A fresh finance directory per test, so tests never share a ledger."""
    folder = tmp_path / "finance"
    folder.mkdir()
    return folder
