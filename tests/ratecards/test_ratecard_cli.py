from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billing_pipeline.ratecards import main_validate


def test_no_arguments_checks_every_card_of_the_default_dir(
    write: Callable[..., Path],
    base: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(base)
    write(dict(base, client_id="globex"), "globex.yml")
    assert main_validate([], tmp_path) == 0
    out, err = capsys.readouterr()
    assert out == "OK: 2 rate cards valid (acme, globex)\n"
    assert err == ""


def test_problems_go_to_stderr_one_per_line_and_exit_2(
    write: Callable[..., Path],
    base: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(base)
    base["versions"][0]["charges"]["PICK_ORDER"]["rate"] = "2,65"
    base["name"] = ""
    bad = write(dict(base, client_id="globex"), "globex.yaml")
    assert main_validate([str(bad)], tmp_path / "unused") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        'globex.yaml: name: must be a non-empty string, got ""',
        'globex.yaml: versions[0].charges.PICK_ORDER.rate: not a decimal: "2,65"',
    ]


def test_given_files_only(
    write: Callable[..., Path],
    base: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = write(base)
    write("client_id: [broken", "globex.yaml")  # in the directory, but not asked about
    assert main_validate([str(good)], tmp_path) == 0
    assert capsys.readouterr().out == "OK: 1 rate card valid (acme)\n"


def test_missing_file_and_empty_or_missing_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_validate([str(tmp_path / "nope.yaml")], tmp_path) == 2
    assert capsys.readouterr().err == "nope.yaml: cannot read: No such file or directory\n"
    assert main_validate([], tmp_path) == 2
    assert "no rate cards" in capsys.readouterr().err
    assert main_validate([], tmp_path / "missing") == 2
    assert "rate cards directory not found" in capsys.readouterr().err


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_validate(["--bogus"], tmp_path) == 2
    assert "usage: billing ratecard validate" in capsys.readouterr().err
