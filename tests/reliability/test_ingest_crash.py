"""Crash safety of the landing stage at every file it commits, on a second night whose late
file changes the outcome of lines landed the night before.

A child process runs ``ingest_landing`` and SIGKILLs itself just before its N-th
``os.replace`` (storage.atomic_path's commit), for every N the uninterrupted run reaches.
A rerun must then leave every dataset and staging file with the rows of an uninterrupted
night, and report at least the activity dates the uninterrupted night reported (the nightly
chain re-materializes only the dates a landing run reports).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.storage import Store
from tests.ingest.conftest import event, line
from tests.reliability.harness import differences, snapshot

NIGHT1 = {"acme": "America/New_York"}
# Night two also brings beta's rate card: beta's lines move from unknown_client to valid.
NIGHT2 = {"acme": "America/New_York", "beta": "Europe/Berlin"}


def _write(path: Path, events: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line(e) + "\n" for e in events))


def _night1(landing: Path) -> None:
    _write(
        landing / "b" / "night1.ndjson",
        [event(event_id=f"evt-{i}", occurred_at=f"2026-11-02T1{i}:00:00Z") for i in range(1, 5)]
        + [event(event_id="beta-1", client_id="beta")],
    )


def _night2(landing: Path) -> None:
    # A late file under an earlier path: its copies win over the night-1 lines (SPEC §4),
    # evt-1 an equal copy (the old line becomes a duplicate), evt-2 a different one (the old
    # line becomes a duplicate_conflict).
    _write(
        landing / "a" / "late.ndjson",
        [
            event(event_id="evt-1", occurred_at="2026-11-02T11:00:00Z"),
            event(event_id="evt-2", occurred_at="2026-11-01T12:00:00Z"),
            event(event_id="evt-9", occurred_at="2026-11-03T09:00:00Z"),
        ],
    )


def _ingest_killed_at(n: int, landing: str, root: str) -> None:
    """In a child: run night two, SIGKILL before the n-th commit (rename) of a file."""
    real, count, lock = os.replace, [0], threading.Lock()

    def replace(src, dst) -> None:
        with lock:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)

    os.replace = replace
    ingest_landing(Path(landing), Store(Path(root)), NIGHT2)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The landing directory of both nights, the outputs after night one, and after two."""
    base = tmp_path_factory.mktemp("ingest_crash")
    landing, after1, after2 = base / "landing", base / "after1", base / "after2"
    _night1(landing)
    ingest_landing(landing, Store(after1), NIGHT1)
    _night2(landing)
    shutil.copytree(after1, after2)
    return landing, after1, after2


def test_every_kill_point_of_a_second_night_recovers(
    nights: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    landing, after1, after2 = nights
    commits = []
    real = os.replace

    def counting(src, dst) -> None:
        commits.append(Path(dst).relative_to(after2).as_posix())
        real(src, dst)

    os.replace = counting
    try:
        expected_result = ingest_landing(landing, Store(after2), NIGHT2)
    finally:
        os.replace = real
    expected = snapshot(after2)
    assert len(commits) >= 8, commits  # staging, registers, clients, statuses, quarantine, …

    context = multiprocessing.get_context("spawn")
    failures = []
    for n in range(1, len(commits) + 1):
        root = tmp_path / f"kill{n}"
        shutil.copytree(after1, root)
        child = context.Process(target=_ingest_killed_at, args=(n, str(landing), str(root)))
        child.start()
        child.join()
        assert child.exitcode == -signal.SIGKILL
        rerun = ingest_landing(landing, Store(root), NIGHT2)
        problems = differences(expected, snapshot(root))
        missed = expected_result.touched_dates - rerun.touched_dates
        if problems or missed:
            failures.append(f"killed before commit {n} ({commits[n - 1]}): {problems} {missed}")
    assert failures == [], "\n".join(failures)
