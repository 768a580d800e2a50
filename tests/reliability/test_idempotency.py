"""Idempotency (issue 8 item 2): the same night run again, and a backfill of partitions that
are already right, change no output byte, and bill no adjustment line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reliability.conftest import Reference
from tests.reliability.harness import BILLING, file_bytes, run, temp_files


@pytest.mark.slow
def test_rerunning_a_night_and_backfilling_change_nothing(
    reference: Reference, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(reference.tree.root, root)
    tree = type(reference.tree)(root)
    # October is closed first, so that a change would show as an adjustment on November.
    closed = subprocess.run(
        [*BILLING, "invoices", "close", "--month", "2026-10"],
        env=tree.env(),
        capture_output=True,
        text=True,
    )
    assert closed.returncode == 0, closed.stderr
    before = file_bytes(tree.data)
    assert before.keys() - reference.raw.keys() == {
        "_state/closed/2026-10/acme-outdoor.json",
        "_state/closed/2026-10/bluebird-b2b.json",
    }

    again = run(tree)
    assert again.returncode == 1, again.output  # 1: the ledger's planted differences
    assert file_bytes(tree.data) == before
    for client in ("acme-outdoor", "bluebird-b2b"):
        csv = (tree.data / "invoices" / "2026-11" / client / "invoice_lines.csv").read_text()
        assert ",ADJ_" not in csv

    backfill = run(tree, "--client", "acme-outdoor")
    assert backfill.returncode == 1, backfill.output
    assert file_bytes(tree.data) == before
    assert temp_files(tree.data) == []
