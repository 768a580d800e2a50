"""A landing file is hashed again only when its identity (size, mtime, ctime, inode) changed:
hashing every file ever landed made each night cost more than the last."""

from __future__ import annotations

import os

import pytest

from billing_pipeline.ingest import landing as landing_module
from billing_pipeline.ingest.landing import ingest_landing
from tests.ingest.conftest import TIMEZONES, Landing, event, line


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files hashed, in order."""
    seen: list[str] = []
    real = landing_module.file_sha256

    def counting(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(landing_module, "file_sha256", counting)
    return seen


def test_unchanged_files_are_not_hashed_again(landing: Landing, hashed: list[str]) -> None:
    landing.write("a.ndjson", [line(event(event_id="e1"))])
    landing.write("b.ndjson", [line(event(event_id="e2"))])
    first = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert sorted(hashed) == ["a.ndjson", "b.ndjson"] and len(first.files_parsed) == 2
    hashed.clear()
    landing.write("c.ndjson", [line(event(event_id="e3"))])
    second = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert hashed == ["c.ndjson"]
    assert second.files_parsed == ["c.ndjson"]


def test_a_file_changed_under_the_same_size_and_mtime_is_hashed_and_parsed_again(
    landing: Landing, hashed: list[str]
) -> None:
    path = landing.write("a.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    before = path.stat()
    # same length, other content, in place, mtime set back: only ctime tells
    text = path.read_text()
    with path.open("r+") as handle:
        handle.write(text.replace('"e1"', '"e9"'))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    hashed.clear()
    result = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert hashed == ["a.ndjson"]
    assert result.files_parsed == ["a.ndjson"]


def test_a_lost_record_means_hashing_again_not_parsing_again(
    landing: Landing, hashed: list[str]
) -> None:
    landing.write("a.ndjson", [line(event(event_id="e1"))])
    ingest_landing(landing.dir, landing.store, TIMEZONES)
    landing.store.landing_identities_file().unlink()
    hashed.clear()
    result = ingest_landing(landing.dir, landing.store, TIMEZONES)
    assert hashed == ["a.ndjson"]
    assert result.files_parsed == []
