"""Crash safety of month close: SIGKILL ``billing invoices close`` before each file it
commits, close again, and get the files of an uninterrupted close (a final invoice is never
rewritten afterwards, so a close that stops half-way must not leave draft files behind)."""

from __future__ import annotations

import shutil
from pathlib import Path

from billing_pipeline.closing import close_month
from billing_pipeline.config import Paths
from tests.reliability.conftest import Reference
from tests.reliability.harness import (
    commits_of,
    differences,
    killed_at_commit,
    snapshot,
)

MONTH = "2026-10"


def _close(root: str) -> None:
    base = Path(root)
    paths = Paths(
        landing=base / "landing",
        data=base / "warehouse",
        ratecards=base / "ratecards",
        lua=base / "lua",
        finance=base / "finance",
    )
    outcomes = close_month(paths, MONTH)
    assert all(o.ok for o in outcomes), outcomes


def test_every_kill_point_of_a_close_recovers(reference: Reference, tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    shutil.copytree(reference.tree.root, closed)
    commits = commits_of(_close, str(closed))
    expected = snapshot(closed / "warehouse")
    # Per client: invoice_lines.csv, invoice.json, invoice.html and the closed snapshot.
    assert len(commits) == 8, commits

    failures = []
    for n in range(1, len(commits) + 1):
        root = tmp_path / f"kill{n}"
        shutil.copytree(reference.tree.root, root)
        killed_at_commit(n, _close, str(root))
        _close(str(root))
        problems = differences(expected, snapshot(root / "warehouse"))
        if problems:
            failures.append(f"killed before commit {n} ({commits[n - 1]}): {problems}")
    assert failures == [], "\n".join(failures)
