"""The dedup register in segments (billing_pipeline/ingest/register.py): a night writes the
rows it brings and the segments whose outcomes moved, never the untouched history, and the
register keeps about log2(nights) segments."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.fences import blocks_holding
from billing_pipeline.ingest import register
from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.ingest.register import read_register
from tests.ingest.conftest import TIMEZONES, Landing, event, line
from tests.ingest.test_incremental_classify import outputs, same


def night(landing: Landing, n: int, ids: range, units: int = 3) -> None:
    lines = [line(event(event_id=f"e{i:05d}", payload={"units": units})) for i in ids]
    landing.write(f"d{n:03d}/a.ndjson", lines)
    ingest_landing(landing.dir, landing.store, TIMEZONES)


def segment_files(landing: Landing) -> dict[str, int]:
    """Segment file name -> inode (a rewritten file gets a new name, a kept one its inode)."""
    folder = landing.store.register_dir("acme")
    return {p.name: p.stat().st_ino for p in folder.glob("seg-*.parquet")}


def index(landing: Landing) -> dict:
    return json.loads((landing.store.register_dir("acme") / "index.json").read_text())


def test_nights_of_new_events_keep_few_segments_and_every_row(landing: Landing) -> None:
    for n in range(1, 21):
        night(landing, n, range(n * 10, n * 10 + 10))
    rows = read_register(landing.store, "acme")
    assert rows.height == 200
    assert rows["status"].unique().to_list() == ["valid"]
    # Sizes 10 rows a night merge like a binary counter: 20 nights = 160 + 40 rows.
    assert [r for _, r in index(landing)["segments"]] == [160, 40]
    assert sorted(segment_files(landing)) == sorted(n for n, _ in index(landing)["segments"])


def test_a_night_that_touches_no_old_event_leaves_old_segments_alone(landing: Landing) -> None:
    night(landing, 1, range(0, 40))
    before = segment_files(landing)
    night(landing, 2, range(100, 110))  # 40 rows then 10: no merge (40 >= 2 x 10)
    after = segment_files(landing)
    assert before.items() <= after.items()
    assert len(after) == 2


def test_a_copy_that_moves_an_old_outcome_rewrites_only_its_segment(landing: Landing) -> None:
    night(landing, 5, range(0, 40))
    night(landing, 6, range(100, 110))
    first, second = (name for name, _ in index(landing)["segments"])
    # A late file whose path sorts first: its copy of e00103 (different content) wins, so
    # the night-6 line becomes a duplicate_conflict; the night-5 segment is not touched.
    lines = [line(event(event_id="e00103", payload={"units": 9}))]
    landing.write("d000/late.ndjson", lines)
    inode = segment_files(landing)[first]
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    names = [name for name, _ in index(landing)["segments"]]
    assert names[0] == first and segment_files(landing)[first] == inode
    assert second not in names
    rows = read_register(landing.store, "acme").filter(pl.col("event_id") == "e00103")
    assert sorted(zip(rows["source_file"], rows["status"], rows["reason"], strict=True)) == [
        ("d000/late.ndjson", "valid", None),
        ("d006/a.ndjson", "quarantined", "duplicate_conflict"),
    ]


def test_merges_stop_at_the_segment_size_cap(
    landing: Landing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(register, "MAX_SEGMENT_ROWS", 25)
    for n in range(1, 9):
        night(landing, n, range(n * 10, n * 10 + 10))
    sizes = [r for _, r in index(landing)["segments"]]
    # 10 + 10 merge to 20; 20 + 10 would pass 25, so 20 stays and the next pair merges.
    assert sizes == [20, 20, 20, 20]
    assert read_register(landing.store, "acme").height == 80


def test_files_a_killed_run_left_are_removed_by_the_next_write(landing: Landing) -> None:
    night(landing, 1, range(0, 10))
    folder = landing.store.register_dir("acme")
    (folder / "seg-000099.parquet").write_bytes(b"left by a killed run")
    night(landing, 2, range(10, 20))
    assert not (folder / "seg-000099.parquet").exists()
    assert read_register(landing.store, "acme").height == 20


def test_a_re_parsed_file_drops_its_old_rows_from_their_segment(landing: Landing) -> None:
    night(landing, 1, range(0, 30))
    night(landing, 2, range(30, 40))
    # night 1's file delivered again, changed: e00000..e00004 gone, e00005 new content
    path = Path(landing.dir / "d001/a.ndjson")
    kept = [line(event(event_id=f"e{i:05d}")) for i in range(6, 30)]
    path.write_text("\n".join([line(event(event_id="e00005", payload={"units": 8})), *kept]) + "\n")
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    rows = read_register(landing.store, "acme")
    assert rows.height == 35
    assert rows["event_id"].min() == "e00005"
    assert rows["status"].unique().to_list() == ["valid"]


FILES = ("d0/early.ndjson", "d1/a.ndjson", "d2/b.ndjson", "d3/c.ndjson")
DELIVERY = st.tuples(
    st.sampled_from(FILES),
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["acme", "bolt"]), st.sampled_from([3, 9])),
        min_size=1,
        max_size=8,
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nights=st.lists(st.lists(DELIVERY, min_size=1, max_size=3), min_size=2, max_size=6),
    bolt_from=st.integers(0, 6),
    cap=st.sampled_from([3, 5, 1000]),
    fence_rows=st.sampled_from([1, 2, 3, 65_536]),
)
def test_any_sequence_of_nights_gives_what_one_run_over_the_final_files_gives(
    nights: list[list[tuple[str, list[tuple[int, str, int]]]]],
    bolt_from: int,
    cap: int,
    fence_rows: int,
) -> None:
    # Random deliveries night after night: new files, files delivered again (equal or
    # changed), an early path whose copies win, copies equal or conflicting, and a client
    # whose rate card appears on night ``bolt_from`` (a whole reclassification). Small
    # segment caps force many segments and merges; small fence blocks make the probe read
    # a few rows of each segment (ids e0..e12 sort as text: e1, e10, e11, e12, e2, ...).
    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
        patch.setattr(register, "MAX_SEGMENT_ROWS", cap)
        patch.setattr(register, "FENCE_ROWS", fence_rows)
        root = Path(scratch)
        (root / "nights").mkdir()
        (root / "once").mkdir()
        landing = Landing(root / "nights")
        zones = dict(TIMEZONES)
        for n, deliveries in enumerate(nights):
            if n == bolt_from:
                zones["bolt"] = "Asia/Tokyo"
            for path, lines in deliveries:
                landing.write(path, [delivery_line(*item) for item in lines])
            ingest_landing(landing.dir, landing.store, zones)
        once = Landing(root / "once")
        for path in sorted(landing.dir.rglob("*.ndjson")):
            once.write(path.relative_to(landing.dir).as_posix(), path.read_text())
        ingest_landing(once.dir, once.store, zones)
        same(outputs(landing.store.root), outputs(once.store.root))


def delivery_line(n: int, client_id: str, units: int) -> str:
    return line(event(event_id=f"e{n}", client_id=client_id, payload={"units": units}))


def ids(*values: str) -> pl.Series:
    return pl.Series(values, dtype=pl.String)


def test_fences_say_which_blocks_can_hold_an_id() -> None:
    # 10 rows in blocks of 4: rows 0-3, 4-7, 8-9; an id repeated across a block boundary
    rows = pl.DataFrame({"event_id": ["a", "b", "c", "d", "d", "f", "g", "h", "i", "k"]})
    fences = {"every": 4, "first": ["a", "d", "i"], "last": ["d", "h", "k"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(register, "FENCE_ROWS", 4)
        assert register._fences(rows) == fences
    blocks = blocks_holding
    assert blocks(fences, 10, ids()) == []
    assert blocks(fences, 10, ids("0", "j0", "z")) == [(8, 2)]  # j0 lies between i and k
    assert blocks(fences, 10, ids("b")) == [(0, 4)]
    # d's rows are rows 3 and 4: both blocks, one run
    assert blocks(fences, 10, ids("d")) == [(0, 8)]
    assert blocks(fences, 10, ids("b", "k")) == [(0, 4), (8, 2)]
    assert blocks(fences, 10, ids("i")) == [(8, 2)]
    assert blocks(fences, 10, ids("h0", "hz")) == []  # after block 1's last, before block 2's


def test_a_night_of_new_ids_reads_only_the_blocks_its_ids_fall_in(
    landing: Landing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(register, "FENCE_ROWS", 10)
    night(landing, 1, range(0, 100))
    segments = register.Segments.load(landing.store, "acme")
    assert segments.rows == [100]
    fences = segments.fences[segments.names[0]]
    assert fences["first"] == [f"e{i:05d}" for i in range(0, 100, 10)]
    assert fences["last"] == [f"e{i:05d}" for i in range(9, 100, 10)]
    new = ids(*(f"e{i:05d}" for i in range(100, 110)))
    assert blocks_holding(fences, 100, new) == []  # past the last id: nothing to read
    assert blocks_holding(fences, 100, ids("e00042", "e00105")) == [(40, 10)]
    # and the night that brings them finds the old copy of e00042
    night(landing, 2, [42, *range(100, 110)], units=4)
    rows = read_register(landing.store, "acme").filter(pl.col("event_id") == "e00042")
    assert sorted(zip(rows["status"], rows["reason"], strict=True), key=str) == [
        ("quarantined", "duplicate_conflict"),
        ("valid", None),
    ]


def test_a_register_written_before_fences_is_read_whole(landing: Landing) -> None:
    night(landing, 1, range(0, 30))
    folder = landing.store.register_dir("acme")
    old = index(landing)
    del old["fences"]
    (folder / "index.json").write_text(json.dumps(old))
    night(landing, 2, [5, *range(30, 40)], units=4)
    rows = read_register(landing.store, "acme").filter(pl.col("event_id") == "e00005")
    assert sorted(zip(rows["status"], rows["reason"], strict=True), key=str) == [
        ("quarantined", "duplicate_conflict"),
        ("valid", None),
    ]
    # the old segment keeps no fences (it is read whole) until it is written again
    (_, _), (second, _) = index(landing)["segments"]
    assert list(index(landing)["fences"]) == [second]
