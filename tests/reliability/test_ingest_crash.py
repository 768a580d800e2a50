"""Crash safety of the landing stage at every file it commits, on a second night whose late
file changes the outcome of lines landed the night before.

A child process runs ``ingest_landing`` and SIGKILLs itself just before its N-th
``os.replace`` (storage.atomic_path's commit), for every N the uninterrupted run reaches.
A rerun must then leave every dataset and staging file with the rows of an uninterrupted
night, and report at least the activity dates the uninterrupted night reported (the nightly
chain re-materializes only the dates a landing run reports).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from billing_pipeline.ingest.landing import activity_built, ingest_landing
from billing_pipeline.storage import Store
from tests.ingest.conftest import event, line
from tests.reliability.harness import commits_of, differences, killed_at_commit, snapshot

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


def _night2_ingest(landing: str, root: str) -> None:
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
    commits = commits_of(_night2_ingest, str(landing), str(after2))
    expected_result_root = tmp_path / "expected_result"
    shutil.copytree(after1, expected_result_root)
    expected_result = ingest_landing(landing, Store(expected_result_root), NIGHT2)
    expected = snapshot(after2)
    assert len(commits) >= 8, commits  # staging, registers, clients, statuses, quarantine, …

    failures = []
    for n in range(1, len(commits) + 1):
        root = tmp_path / f"kill{n}"
        shutil.copytree(after1, root)
        killed_at_commit(n, _night2_ingest, str(landing), str(root))
        rerun = ingest_landing(landing, Store(root), NIGHT2)
        problems = differences(expected, snapshot(root))
        missed = expected_result.activity_dates - rerun.activity_dates
        if problems or missed:
            failures.append(f"killed before commit {n} ({commits[n - 1]}): {problems} {missed}")
    assert failures == [], "\n".join(failures)


def test_dates_of_a_run_whose_activity_was_never_built_are_reported_again(
    nights: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A run killed after its manifest (its dates never reached Dagster, or the activity
    run they start was killed): the next run finds no new file, yet reports those dates."""
    landing, after1, _ = nights
    root = tmp_path / "out"
    shutil.copytree(after1, root)
    store = Store(root)
    first = ingest_landing(landing, store, NIGHT2)
    assert first.files_parsed == ["a/late.ndjson"]
    assert first.activity_dates  # 2026-11-01 .. 2026-11-04, around the late file's UTC dates

    again = ingest_landing(landing, store, NIGHT2)
    assert again.files_parsed == [] and again.touched_dates == set()
    assert again.activity_dates == first.activity_dates

    built = sorted(first.activity_dates)[:2]
    activity_built(store, built)
    assert ingest_landing(landing, store, NIGHT2).activity_dates == first.activity_dates - set(
        built
    )
