"""A tiny generated tree and one uninterrupted reference run of it, shared by the module's
tests: every crash, rerun, concurrent or outage run must end with the same outputs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.harness import (
    BILLING,
    DAYS,
    PROJECT,
    START,
    Reader,
    Tree,
    file_bytes,
    make_tree,
    run,
    snapshot,
    temp_files,
)


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Landing logs (with some faulty lines), rate cards, ledgers and the project's Lua."""
    root = tmp_path_factory.mktemp("reliability") / "inputs"
    subprocess.run(
        [
            *BILLING,
            "generate",
            "--out",
            str(root),
            "--clients",
            "2",
            "--start",
            START.isoformat(),
            "--days",
            str(DAYS),
            "--events-per-day",
            "200",
            "--seed",
            "3",
            "--fault-rate",
            "0.01",
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cp", "-r", str(PROJECT / "lua"), str(root / "lua")], check=True)
    return root


@dataclass
class Reference:
    tree: Tree
    outputs: dict[str, object]
    raw: dict[str, bytes]
    seconds: float
    reader_checked: int
    reader_problems: list[str]


@pytest.fixture(scope="session")
def reference(tiny_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    tree = make_tree(tiny_inputs, tmp_path_factory.mktemp("reference") / "tree")
    with Reader(tree.data) as reader:
        done = run(tree)
    # Exit 1: the run worked and reconciliation found the ledger's planted differences.
    assert done.returncode == 1, done.output
    assert "reconciliation 2026-10:" in done.output, done.output
    assert not temp_files(tree.data)
    return Reference(
        tree,
        snapshot(tree.data),
        file_bytes(tree.data),
        done.seconds,
        reader.checked,
        reader.problems,
    )


@pytest.fixture
def fresh_tree(tiny_inputs: Path, tmp_path: Path) -> Tree:
    return make_tree(tiny_inputs, tmp_path / "tree")
