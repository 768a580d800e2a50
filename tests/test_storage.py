"""Atomic writes: a failed or interrupted write leaves the previous file, never a partial one."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.storage import atomic_path, write_parquet


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "part" / "part-0.parquet"
    write_parquet(pl.DataFrame({"a": [1, 2]}), target)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        raise Boom
    assert pl.read_parquet(target)["a"].to_list() == [1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["part-0.parquet"]


def test_the_new_file_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "x.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), target)
    write_parquet(pl.DataFrame({"a": [3, 4, 5]}), target)
    assert pl.read_parquet(target)["a"].to_list() == [3, 4, 5]
