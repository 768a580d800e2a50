"""Classifying only the event ids a run touches (landing._reclassify) gives exactly what one
run over the final files gives: registers, per-line statuses, quarantine and manifest."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.ingest.register import read_register
from billing_pipeline.storage import Store
from tests.ingest.conftest import TIMEZONES, Landing, event, line

TWO = {**TIMEZONES, "bolt": "Asia/Tokyo"}


def ev(n: int, client: str = "acme", units: int = 3) -> str:
    return line(event(event_id=f"e{n}", client_id=client, payload={"units": units}))


def outputs(root: Path) -> dict[str, pl.DataFrame]:
    """Every client's register (its rows: how they are cut into segment files depends on
    the nights), every staged status file and every quarantine file, by path, rows sorted;
    the manifest without its sha256 (the same files give the same hashes anyway)."""
    out = {}
    store = Store(root)
    for folder in sorted((root / "_staging" / "register").iterdir()):
        client_id = folder.name.removeprefix("client_id=")
        out[f"register {client_id}"] = read_register(store, client_id)
    for folder in ("_staging/status", "quarantine"):
        for path in sorted((root / folder).rglob("*.parquet")):
            frame = pl.read_parquet(path)
            out[path.relative_to(root).as_posix()] = frame.sort(frame.columns)
    out["manifest"] = pl.read_parquet(root / "manifest" / "part-0.parquet").sort("source_file")
    return out


def same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equals(b[key]), key


def test_night_by_night_equals_one_run_over_the_final_files(tmp_path: Path) -> None:
    (tmp_path / "nights").mkdir()
    (tmp_path / "once").mkdir()
    nights = Landing(tmp_path / "nights")
    # night 1: two clients' events
    nights.write("d1/a.ndjson", [ev(n) for n in range(1, 21)] + [ev(n, "bolt") for n in (1, 2)])
    ingest_landing(nights.dir, nights.store, TWO)
    # night 2: identical copies of e1..e5, changed copies of e6..e8, new events
    nights.write(
        "d2/b.ndjson",
        [ev(n) for n in range(1, 6)] + [ev(n, units=9) for n in (6, 7, 8)] + [ev(21), ev(22)],
    )
    ingest_landing(nights.dir, nights.store, TWO)
    # night 3: a file whose path sorts first: its copies of e10..e12 become the first ones
    nights.write("d0/early.ndjson", [ev(n, units=7) for n in (10, 11, 12)] + [ev(3)])
    ingest_landing(nights.dir, nights.store, TWO)
    # night 4: b.ndjson delivered again, changed: e6 gone, e7 now equal, e23 new
    nights.write(
        "d2/b.ndjson",
        [ev(n) for n in range(1, 6)] + [ev(7), ev(8, units=9), ev(21), ev(23)],
    )
    last = ingest_landing(nights.dir, nights.store, TWO)
    assert last.files_parsed == ["d2/b.ndjson"]

    once = Landing(tmp_path / "once")
    for path in sorted(nights.dir.rglob("*.ndjson")):
        once.write(path.relative_to(nights.dir).as_posix(), path.read_text())
    ingest_landing(once.dir, once.store, TWO)

    same(outputs(nights.store.root), outputs(once.store.root))
    # the comparison means something: conflicts, duplicates and a first copy that moved
    quarantine = pl.concat(
        [pl.read_parquet(p) for p in (once.store.root / "quarantine").rglob("*.parquet")]
    )
    conflicts = quarantine.filter(pl.col("reason") == "duplicate_conflict")
    assert sorted(conflicts["event_id"].to_list()) == ["e10", "e11", "e12", "e8"]
    assert set(conflicts.filter(pl.col("event_id") == "e10")["source_file"]) == {"d1/a.ndjson"}
