"""Hostile landing lines (issue 8, item 5): the corpus in ``corpus/lines`` and hypothesis
mutations of it go through ``ingest_landing`` (the public entry point, whatever the fast
path does inside) without a crash; every line is accounted for (conservation); every
quarantined line has a reason of the contract's list and a one-line detail."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.catalog import CLIENT_ID_PATTERN
from billing_pipeline.ingest.landing import ingest_landing
from billing_pipeline.storage import Store
from tests.fuzz.conftest import FUZZ_EXAMPLES, corpus_files, one_line

TIMEZONES = {"acme": "America/New_York", "bolt": "Pacific/Kiritimati"}
REASONS = {
    "invalid_json",
    "not_an_object",
    "missing_field",
    "invalid_field",
    "unknown_client",
    "duplicate_conflict",
    "unreadable_file",
    "invalid_encoding",
    "line_too_long",
}
SEEDS = corpus_files("lines", ".ndjson")


def _physical_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def _ingest(landing: Path, out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ingest and check the invariants; the manifest and the quarantine rows."""
    result = ingest_landing(landing, Store(out), TIMEZONES)
    manifest = result.manifest
    for row in manifest.iter_rows(named=True):
        assert row["lines"] == row["valid"] + row["duplicates"] + row["quarantined"], row
        data = (landing / row["source_file"]).read_bytes()
        assert row["lines"] + row["blank_lines"] == _physical_lines(data), row
    parts = [pl.read_parquet(p) for p in sorted((out / "quarantine").rglob("*.parquet"))]
    quarantine = pl.concat(parts) if parts else pl.DataFrame()
    assert quarantine.height == int(manifest["quarantined"].sum())
    for row in quarantine.iter_rows(named=True):
        assert row["reason"] in REASONS, row
        assert one_line(row["detail"]), row
    # Only well-formed client ids reach the per-client datasets (directory names).
    for folder in (out / "_staging" / "register").glob("client_id=*"):
        assert re.match(CLIENT_ID_PATTERN, folder.name.removeprefix("client_id="))
    return manifest, quarantine


def test_the_corpus_ingests_without_a_crash_and_conserves_lines(tmp_path: Path) -> None:
    assert len(SEEDS) >= 8
    landing = tmp_path / "landing"
    shutil.copytree(SEEDS[0].parent, landing)
    manifest, quarantine = _ingest(landing, tmp_path / "out")
    assert manifest.height == len(SEEDS)

    def reason(file: str, line: int) -> tuple[str, str]:
        row = quarantine.filter(
            (pl.col("source_file") == file) & (pl.col("source_line") == line)
        ).row(0, named=True)
        return row["reason"], row["detail"]

    # Seeds that crashed the whole ingest before (issue 8): each is now one quarantined line.
    assert reason("invalid_utf8.ndjson", 4) == (
        "invalid_json",
        "a \\u escape names a lone UTF-16 surrogate, which is not a character",
    )
    assert reason("invalid_utf8.ndjson", 7)[0] == "invalid_json"
    assert reason("huge_numbers.ndjson", 10)[0] == "invalid_field"
    assert "out of range" in reason("huge_numbers.ndjson", 10)[1]
    assert reason("shapes.ndjson", 21)[1].startswith("occurred_at: ")
    # Path-like client ids are refused by the envelope, so no directory is named after them.
    for line in range(1, 11):
        assert reason("hostile_ids.ndjson", line)[1].startswith("client_id: matches"), line
    # Deep arrays are refused, not a RecursionError out of the run (the last two seeds
    # raised it from the msgspec fast path).
    for line in (1, 6, 7):
        assert reason("deep_nesting.ndjson", line)[0] == "invalid_json", line


def test_the_corpus_gives_the_same_outcome_twice(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(SEEDS[0].parent, landing)
    first, q1 = _ingest(landing, tmp_path / "a")
    second, q2 = _ingest(landing, tmp_path / "b")
    key = ["source_file", "source_line"]
    assert first.sort("source_file").equals(second.sort("source_file"))
    assert q1.sort(key).equals(q2.sort(key))


SEED_LINES = [line for path in SEEDS for line in path.read_bytes().split(b"\n") if line][:400]
HOSTILE = [
    b"\x00",
    b"\xff",
    b"\xc0\xaf",
    b"\xef\xbb\xbf",
    b"\\ud800",
    b"\\udfff",
    b"\\u0000",
    b"NaN",
    b"-Infinity",
    b"1e999999999",
    b"9" * 40,
    b"[" * 3000,
    b'{"a":' * 50,
    b'"',
    b"\\",
    b"\r",
    b"\n",
    b",",
    b"}",
    b"../../x",
    b"\xe2\x80\xae",
]


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(SEED_LINES))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        kind = draw(st.sampled_from(["insert", "replace", "truncate", "splice"]))
        if kind == "insert":
            line = line[:at] + draw(st.sampled_from(HOSTILE)) + line[at:]
        elif kind == "replace":
            line = line[:at] + draw(st.sampled_from(HOSTILE)) + line[at + 1 :]
        elif kind == "truncate":
            line = line[:at]
        else:
            other = draw(st.sampled_from(SEED_LINES))
            line = line[:at] + other[draw(st.integers(0, len(other))) :]
    return line


# Any JSON value, strings with any code point (lone surrogates included), odd numbers.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=30,
)


def _objects(lines: list[bytes]) -> list[dict]:
    found = []
    for line in lines:
        try:
            value = json.loads(line)
            json.dumps(value, allow_nan=False)  # 1e400 reads as infinity: not a seed here
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and isinstance(value.get("payload"), dict):
            found.append(value)
    return found


SEED_EVENTS = _objects(SEED_LINES)


@st.composite
def generated_line(draw: st.DrawFn) -> bytes:
    event = json.loads(json.dumps(draw(st.sampled_from(SEED_EVENTS))))
    target = event.get("payload") if draw(st.booleans()) else event
    if isinstance(target, dict):
        keys = [*sorted(target), "extra"]
        target[draw(st.sampled_from(keys))] = draw(json_values)
    return json.dumps(event, ensure_ascii=draw(st.booleans()), allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


@pytest.mark.skipif(not SEED_LINES, reason="no corpus")
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(mutated_line() | generated_line(), min_size=1, max_size=30))
def test_mutated_corpus_lines_never_crash_and_conserve(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        landing.mkdir()
        (landing / "fuzz.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        _ingest(landing, Path(tmp) / "out")
