"""The landing listing (reading.landing_entries) finds what the plain pathlib walk it
replaced found, in the same order: nested folders, gzip, symlinks in and out."""

from __future__ import annotations

from pathlib import Path

from billing_pipeline.ingest.reading import LANDING_SUFFIXES, landing_entries


def pathlib_walk(landing: Path) -> list[str]:
    """The previous implementation: every path under the folder (Path.rglob does not enter
    linked folders), kept when it is a landing file resolving inside the folder."""
    root = landing.resolve()
    found = [
        p
        for p in landing.rglob("*")
        if p.is_file() and p.name.endswith(LANDING_SUFFIXES) and p.resolve().is_relative_to(root)
    ]
    return sorted(p.relative_to(landing).as_posix() for p in found)


def test_listing_matches_the_pathlib_walk(tmp_path: Path) -> None:
    landing, outside = tmp_path / "landing", tmp_path / "outside"
    for name in (
        "a.ndjson",
        "a/b.ndjson",
        "a-b/c.jsonl.gz",
        "a/deep/er/d.jsonl",
        ".hidden/e.ndjson",
        "a/notes.txt",
        "z.ndjson.gz",
    ):
        (landing / name).parent.mkdir(parents=True, exist_ok=True)
        (landing / name).write_text("{}\n")
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "f.ndjson").write_text("{}\n")
    (outside / "g.ndjson").write_text("{}\n")
    (landing / "in-link.ndjson").symlink_to(landing / "a" / "b.ndjson")
    (landing / "out-link.ndjson").symlink_to(outside / "g.ndjson")
    (landing / "linked-dir").symlink_to(outside / "x", target_is_directory=True)
    (landing / "broken.ndjson").symlink_to(tmp_path / "missing.ndjson")
    (landing / "folder.ndjson").mkdir()

    entries = landing_entries(landing)
    sources = [source for source, _ in entries]
    assert sources == pathlib_walk(landing)
    assert sources == [
        ".hidden/e.ndjson",
        "a-b/c.jsonl.gz",
        "a.ndjson",
        "a/b.ndjson",
        "a/deep/er/d.jsonl",
        "in-link.ndjson",
        "z.ndjson.gz",
    ]
    assert all(path == landing / source for source, path in entries)


def test_a_missing_landing_folder_lists_nothing(tmp_path: Path) -> None:
    assert landing_entries(tmp_path / "none") == []
