from __future__ import annotations

import gzip
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from billing_pipeline.generate import GenerateError, GenerateOptions, GenerateSummary, generate

from ._checker import landing_files

SMALL = {"clients": 4, "start": date(2026, 5, 29), "days": 2, "events_per_day": 800}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate(GenerateOptions(out=tmp_path / "a", seed=5, fault_rate=0.05, **SMALL))
    b = generate(GenerateOptions(out=tmp_path / "b", seed=5, fault_rate=0.05, **SMALL))
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert replace(a, landing=Path(), ratecards=Path(), seconds=0) == replace(
        b, landing=Path(), ratecards=Path(), seconds=0
    )


def test_other_seed_other_bytes(tmp_path: Path) -> None:
    generate(GenerateOptions(out=tmp_path / "a", seed=5, **SMALL))
    generate(GenerateOptions(out=tmp_path / "b", seed=6, **SMALL))
    a, b = _tree(tmp_path / "a" / "landing"), _tree(tmp_path / "b" / "landing")
    assert a != b
    shared = set(a) & set(b)
    assert any(a[name] != b[name] for name in shared)


def test_layout_per_warehouse_and_hour(generated: tuple[GenerateOptions, GenerateSummary]) -> None:
    options, summary = generated
    landing = Path(options.out) / "landing"
    files = landing_files(landing)
    assert len(files) == summary.files
    pattern = re.compile(
        r"^(?P<wh>[A-Z0-9]+)/(?P<folder>\d{4}-\d{2}-\d{2})/(?P=wh)_(?P<stamp>\d{8}T\d{2})"
        r"(?P<tag>_redelivery)?\.(ndjson|jsonl)(\.gz)?$"
    )
    suffixes = {".gz": 0, ".jsonl": 0, ".ndjson": 0}
    for path in files:
        rel = path.relative_to(landing).as_posix()
        match = pattern.match(rel)
        assert match, rel
        suffixes[path.suffix] += 1
    # A mix of plain, .jsonl and gzipped files, about a quarter gzipped.
    assert all(suffixes.values())
    assert 0.1 < suffixes[".gz"] / len(files) < 0.4
    assert not list(landing.rglob("*.part"))


def test_gzip_files_are_reproducible_gzip(
    generated: tuple[GenerateOptions, GenerateSummary],
) -> None:
    options, _ = generated
    gz = [p for p in landing_files(Path(options.out) / "landing") if p.name.endswith(".gz")]
    assert gz
    for path in gz:
        data = path.read_bytes()
        assert data[:2] == b"\x1f\x8b"
        assert data[3] & 0x08 == 0, "no file name in the header"
        assert data[4:8] == b"\0\0\0\0", "mtime 0"
        assert gzip.decompress(data).endswith(b"\n")


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path: Path) -> None:
    options = GenerateOptions(out=tmp_path, seed=1, **SMALL)
    generate(options)
    with pytest.raises(GenerateError, match="not empty"):
        generate(options)
    before = _tree(tmp_path)
    generate(replace(options, overwrite=True))
    assert _tree(tmp_path) == before


def test_volume_follows_events_per_day(tmp_path: Path) -> None:
    # A Wednesday in an ordinary month, away from the subscription spike.
    options = GenerateOptions(
        out=tmp_path,
        clients=10,
        start=date(2026, 6, 17),
        days=1,
        events_per_day=20000,
        seed=3,
        fault_rate=0,
    )
    summary = generate(options)
    assert 0.85 * 20000 < sum(summary.events.values()) < 1.15 * 20000


def test_weekend_is_quieter_than_weekday(tmp_path: Path) -> None:
    common = {"clients": 6, "days": 1, "events_per_day": 10000, "seed": 3, "fault_rate": 0.0}
    weekday = generate(GenerateOptions(out=tmp_path / "wd", start=date(2026, 6, 17), **common))
    sunday = generate(GenerateOptions(out=tmp_path / "su", start=date(2026, 6, 21), **common))
    assert sunday.events["order.picked"] < 0.5 * weekday.events["order.picked"]
