"""Crash safety (issue 8 item 1): SIGKILL ``billing run`` at many points, rerun, compare.

The kill points are spread over the reference run's duration (stratified, seeded), so they
fall in ingestion, charging, invoicing and reconciliation alike. Kills are chained: each
killed run starts from the state the previous kill left, which is harder on recovery than a
kill from a clean tree. A reader polls every output file throughout.

``BILLING_CRASH_POINTS`` (default 6) and ``BILLING_CRASH_SEED`` set a longer or another
sweep: ``BILLING_CRASH_POINTS=60 pytest tests/reliability/test_crash.py``.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.reliability.conftest import Reference
from tests.reliability.harness import (
    Reader,
    Tree,
    differences,
    kill_after,
    run,
    snapshot,
    start_run,
    temp_files,
)

POINTS = int(os.environ.get("BILLING_CRASH_POINTS", "6"))
SEED = int(os.environ.get("BILLING_CRASH_SEED", "8"))


def kill_points(duration: float, count: int, seed: int) -> list[float]:
    """One delay in each of ``count`` equal slices of ``duration``, in shuffled order."""
    rng = random.Random(seed)
    delays = [duration * (i + rng.random()) / count for i in range(count)]
    rng.shuffle(delays)
    return delays


@pytest.mark.slow
def test_killed_runs_then_a_rerun_give_the_reference_outputs(
    reference: Reference, fresh_tree: Tree
) -> None:
    delays = kill_points(reference.seconds, POINTS, SEED)
    killed = []
    with Reader(fresh_tree.data) as reader:
        for delay in delays:
            if kill_after(start_run(fresh_tree), delay):
                killed.append(round(delay, 1))
        debris = temp_files(fresh_tree.data)
        final = run(fresh_tree)
    print(f"kill points (s after start): {killed}; temp files left by kills: {len(debris)}")
    print(f"reader checked {reader.checked} files; reference run {reference.seconds:.1f}s")
    assert final.returncode == 1, final.output
    assert len(killed) >= POINTS // 2, "most kills must land while the run is still going"
    assert differences(reference.outputs, snapshot(fresh_tree.data)) == []
    assert reader.problems == []
    assert reference.reader_problems == []
