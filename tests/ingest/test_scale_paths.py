"""The paths ingestion takes only at scale give what the small-run paths give: parsing in
worker processes, activity written in several streaming passes, and duplicate verdicts from
register fingerprints (and from content when a register has none)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.generate import GenerateOptions, generate
from billing_pipeline.ingest import activity, landing
from billing_pipeline.ingest.activity import build_activity_range
from billing_pipeline.ingest.landing import dates_around, ingest_landing
from billing_pipeline.ingest.register import read_register
from billing_pipeline.ratecards import load_ratecards
from billing_pipeline.storage import Store
from tests.ingest.conftest import TIMEZONES, Landing, event, line


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("gen")
    generate(
        GenerateOptions(
            out=root,
            clients=5,
            start=date(2026, 3, 30),
            days=2,
            events_per_day=1500,
            seed=7,
            fault_rate=0.03,
        )
    )
    cards, _ = load_ratecards(root / "ratecards")
    return root, {c: card.timezone for c, card in cards.items()}


def _run(root: Path, zones: dict[str, str], out: Path) -> dict[str, pl.DataFrame]:
    store = Store(out)
    result = ingest_landing(root / "landing", store, zones)
    days = sorted(dates_around(result.touched_dates))
    results = build_activity_range(store, days, zones)
    frames = {}
    for name in ("activity", "quarantine", "manifest"):
        files = sorted((out / name).rglob("*.parquet"))
        frames[name] = pl.concat(
            [
                pl.read_parquet(f).with_columns(pl.lit(str(f.relative_to(out))).alias("_f"))
                for f in files
            ],
            how="diagonal_relaxed",
        )
    frames["results"] = pl.DataFrame(
        [
            {
                "day": r.day,
                "events": r.events,
                "files_read": r.files_read,
                "types": str(sorted(r.events_by_type.items())),
            }
            for r in results
        ]
    )
    return frames


def test_worker_processes_and_several_activity_passes_give_the_same_outputs(
    generated: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, zones = generated
    plain = _run(root, zones, tmp_path / "plain")
    monkeypatch.setattr(landing, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(landing, "POOL_BATCH_BYTES", 64 * 1024)
    # Activity in several streaming passes (groups of clients), partitions in many row groups.
    monkeypatch.setattr(activity, "GROUP_ROWS", 500)
    monkeypatch.setattr(activity, "ROW_GROUP", 64)
    scaled = _run(root, zones, tmp_path / "scaled")
    assert plain["activity"]["_f"].n_unique() > 1
    # The passes' scratch folders are gone: every partition file was moved into place.
    assert not list((tmp_path / "scaled" / "_staging").glob(".activity-*"))
    for name, frame in plain.items():
        assert frame.equals(scaled[name]), name


def test_register_without_fingerprints_still_tells_copies_apart(
    tmp_path: Path,
) -> None:
    land = Landing(tmp_path)
    land.write("a.ndjson", [line(event(event_id="e1")), line(event(event_id="e2"))])
    ingest_landing(land.dir, land.store, TIMEZONES)
    # A register written before fingerprints and segments existed: one file, no index.
    folder = land.store.register_dir("acme")
    old = read_register(land.store, "acme").drop("fingerprint", "fingerprint_of")
    for path in folder.iterdir():
        path.unlink()
    old.write_parquet(folder / "part-0.parquet")
    land.write(
        "b.ndjson",
        [line(event(event_id="e1")), line(event(event_id="e2", payload={"units": 9}))],
    )
    result = ingest_landing(land.dir, land.store, TIMEZONES)
    rows = {r["source_file"]: r for r in result.manifest.iter_rows(named=True)}
    assert (rows["b.ndjson"]["duplicates"], rows["b.ndjson"]["quarantined"]) == (1, 1)
    q = pl.read_parquet(land.store.quarantine_file(rows["b.ndjson"]["file_id"]))
    assert q["reason"].to_list() == ["duplicate_conflict"]
    assert q["detail"][0] == "differs from the first copy at a.ndjson:2"
    day = date(2026, 11, 2)
    built = build_activity_range(land.store, [day - timedelta(days=1), day], TIMEZONES)
    assert sum(r.events for r in built) == 2


class _BrokenPool:
    """A process pool whose workers never start."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> _BrokenPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, *args: object, **kwargs: object) -> Future:
        future: Future = Future()
        future.set_exception(BrokenProcessPool("worker could not start"))
        return future


def test_a_broken_worker_pool_falls_back_to_parsing_in_process(
    generated: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, zones = generated
    plain = _run(root, zones, tmp_path / "plain")
    monkeypatch.setattr(landing, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(landing, "ProcessPoolExecutor", _BrokenPool)
    fallback = _run(root, zones, tmp_path / "fallback")
    for name, frame in plain.items():
        assert frame.equals(fallback[name]), name


def test_parse_workers_run_polars_on_one_thread_and_the_parent_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The parent's setting, whatever it is, is what it has again after the workers start.
    monkeypatch.setenv("POLARS_MAX_THREADS", "7")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = landing.submit_all(pool, pl.thread_pool_size, [(), (), (), ()])
        assert os.environ["POLARS_MAX_THREADS"] == "7"
        assert [f.result() for f in futures] == [1, 1, 1, 1]
    monkeypatch.delenv("POLARS_MAX_THREADS")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        futures = landing.submit_all(pool, pl.thread_pool_size, [()])
        assert "POLARS_MAX_THREADS" not in os.environ
        assert futures[0].result() == 1
