"""``storage.write_files``: several files, each atomic and durable, renamed in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from billing_pipeline import storage
from billing_pipeline.storage import write_files


def test_every_file_is_written_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    folder = tmp_path / "invoices" / "2026-03" / "acme"
    files = [(b"lines", folder / "invoice_lines.csv"), (b"{}", folder / "invoice.json")]
    write_files(files)
    assert sorted(os.listdir(folder)) == ["invoice.json", "invoice_lines.csv"]
    assert (folder / "invoice_lines.csv").read_bytes() == b"lines"
    write_files([(b"new", folder / "invoice.json")])  # replaces
    assert (folder / "invoice.json").read_bytes() == b"new"


def test_each_file_is_flushed_before_any_rename_and_renamed_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(storage.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(
        storage.os,
        "replace",
        lambda a, b: (calls.append(f"replace {Path(b).name}"), real_replace(a, b)),
    )
    names = ["invoice_lines.csv", "invoice.html", "invoice.json"]
    write_files([(name.encode(), tmp_path / name) for name in names])
    assert calls == ["fsync"] * 3 + [f"replace {name}" for name in names]


def test_a_failure_before_the_renames_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where a directory should be")
    good = tmp_path / "ok" / "invoice_lines.csv"
    with pytest.raises(OSError):
        write_files([(b"x", good), (b"y", tmp_path / "blocked" / "invoice.json")])
    assert not good.exists()
    assert os.listdir(good.parent) == []  # its temporary file was removed
