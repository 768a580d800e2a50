"""Concurrency (issue 8 item 3): runs touching the same client-month at once.

Two real ``billing run`` processes (a nightly run over all clients and a one-client backfill
of the same dates) started together end with the outputs of a single run, and a reader never
sees a partial file. Because their inputs are the same, that alone cannot show that the
runs were kept apart; the second test holds a client-month's lock (as a run charging or
invoicing it would) and shows that a run waits for it rather than writing that client-month.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from billing_pipeline import locks
from billing_pipeline.storage import Store
from tests.reliability.conftest import Reference
from tests.reliability.harness import Reader, Tree, differences, snapshot, start_run


@pytest.mark.slow
def test_a_nightly_run_and_a_backfill_at_once(reference: Reference, fresh_tree: Tree) -> None:
    with Reader(fresh_tree.data) as reader:
        nightly = start_run(fresh_tree)
        backfill = start_run(fresh_tree, "--client", "acme-outdoor")
        outputs = [child.communicate(timeout=900)[0] for child in (nightly, backfill)]
    # Exit 1: both worked; reconciliation found the ledger's planted differences.
    assert [nightly.returncode, backfill.returncode] == [1, 1], outputs
    assert "FAILED" not in "".join(outputs), outputs
    assert differences(reference.outputs, snapshot(fresh_tree.data)) == []
    assert reader.problems == []


def _lines(child: subprocess.Popen, seen: list[str]) -> None:
    assert child.stdout is not None
    for text in child.stdout:
        seen.append(text)


@pytest.mark.slow
def test_a_run_waits_for_a_client_month_held_by_another(
    reference: Reference, fresh_tree: Tree
) -> None:
    store = Store(fresh_tree.data)
    charges = store.charges_dir("2026-10", "acme-outdoor")
    seen: list[str] = []
    with locks.client_month(store, "2026-10", "acme-outdoor"):
        child = start_run(fresh_tree)
        reader = threading.Thread(target=_lines, args=(child, seen), daemon=True)
        reader.start()
        deadline = time.monotonic() + 600
        while not any(line.startswith("  charges") for line in seen):
            assert child.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            time.sleep(0.2)
        time.sleep(5)  # ample time to charge four tiny client-months
        assert child.poll() is None, "".join(seen)
        assert not charges.exists()
        assert not any("charges" in line and "done" in line for line in seen), seen
    child.wait(timeout=600)
    reader.join()
    assert child.returncode == 1, "".join(seen)
    assert differences(reference.outputs, snapshot(fresh_tree.data)) == []
